//! A test host for the Stellwerk Spin component: serves the very `.wasm` that `spin up` runs
//! over HTTP on Wasmtime 44 (the Wasmtime inside Spin 4.0.2), one instance per request as Spin
//! does, and binds the Spin interfaces the component imports to real services:
//!
//! - `wasi:keyvalue/store` → a Redis, laid out as Spin's Redis key-value backend lays it out
//!   (each key verbatim, its value a Redis string; one store per Redis database);
//! - `wasi:config/store` → the `--var name=value` pairs (Spin variables);
//! - `fermyon:spin/redis` → real Redis connections to the address the component names.
//!
//! `wasi:http`, `wasi:io`, `wasi:cli`, `wasi:clocks` and `wasi:random` come from
//! `wasmtime-wasi` and `wasmtime-wasi-http`, as in `wasmtime serve`.
//!
//! Like Spin, it tells the component the client's socket address in `spin-client-addr`; a request
//! that already carries one keeps it (as miniflare keeps a sent `CF-Connecting-IP`), so a test on
//! one machine can act as several clients.

mod bindings;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use hyper::server::conn::http1;
use tokio::net::TcpListener;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::WasiHttpCtx;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p2::{WasiHttpCtxView, WasiHttpView};

/// What every request's instance shares.
pub struct Shared {
    /// Spin variables.
    pub variables: HashMap<String, String>,
    /// The Redis behind the `default` key-value store.
    pub kv: redis::Client,
}

/// One request's store data.
pub struct RequestState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    pub table: ResourceTable,
    pub shared: Arc<Shared>,
}

impl WasiView for RequestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for RequestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: Default::default(),
        }
    }
}

struct Args {
    component: String,
    listen: SocketAddr,
    kv_redis: String,
    variables: HashMap<String, String>,
    list_imports: bool,
}

fn parse_args() -> Result<Args> {
    let mut component = None;
    let mut listen = "127.0.0.1:3000".parse()?;
    let mut kv_redis = "redis://127.0.0.1:6379".to_owned();
    let mut variables = HashMap::new();
    let mut list_imports = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--listen" => listen = value()?.parse()?,
            "--kv-redis" => kv_redis = value()?,
            "--var" => {
                let pair = value()?;
                let (name, v) = pair.split_once('=').context("--var takes name=value")?;
                variables.insert(name.to_owned(), v.to_owned());
            }
            "--list-imports" => list_imports = true,
            other if !other.starts_with("--") && component.is_none() => {
                component = Some(other.to_owned())
            }
            other => bail!(
                "unknown argument {other:?}\nusage: stellwerk-spin-host COMPONENT.wasm \
                 [--listen ADDR] [--kv-redis URL] [--var name=value]... [--list-imports]"
            ),
        }
    }
    Ok(Args {
        component: component.context("which component? (path to the .wasm)")?,
        listen,
        kv_redis,
        variables,
        list_imports,
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let mut config = Config::new();
    config.wasm_component_model(true);
    let engine = Engine::new(&config)?;
    let component = Component::from_file(&engine, &args.component)
        .map_err(|e| anyhow::anyhow!("loading {}: {e:?}", args.component))?;
    if args.list_imports {
        for (name, _) in component.component_type().imports(&engine) {
            println!("import {name}");
        }
        for (name, _) in component.component_type().exports(&engine) {
            println!("export {name}");
        }
        return Ok(());
    }

    let mut linker = Linker::<RequestState>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    bindings::SpinImports::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
    let pre = ProxyPre::new(linker.instantiate_pre(&component)?)?;

    let shared = Arc::new(Shared {
        variables: args.variables,
        kv: redis::Client::open(args.kv_redis.as_str())?,
    });
    let listener = TcpListener::bind(args.listen).await?;
    println!(
        "stellwerk-spin-host: serving {} on http://{}",
        args.component,
        listener.local_addr()?
    );
    loop {
        let (client, peer) = listener.accept().await?;
        let pre = pre.clone();
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
                if let Ok(address) = hyper::header::HeaderValue::from_str(&peer.to_string()) {
                    req.headers_mut()
                        .entry("spin-client-addr")
                        .or_insert(address);
                }
                handle(pre.clone(), Arc::clone(&shared), req)
            });
            if let Err(e) = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(client), service)
                .await
            {
                eprintln!("stellwerk-spin-host: connection: {e}");
            }
        });
    }
}

/// Runs one request in a fresh instance, as Spin does.
async fn handle(
    pre: ProxyPre<RequestState>,
    shared: Arc<Shared>,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<HyperOutgoingBody>> {
    let mut store = Store::new(
        pre.engine(),
        RequestState {
            wasi: WasiCtx::builder().inherit_stdout().inherit_stderr().build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            shared,
        },
    );
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let req = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, req)?;
    let out = store.data_mut().http().new_response_outparam(sender)?;
    let task = tokio::task::spawn(async move {
        let proxy = pre.instantiate_async(&mut store).await?;
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut store, req, out)
            .await
    });
    match receiver.await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(code)) => bail!("the component answered with an error: {code:?}"),
        Err(_) => match task.await {
            Ok(Ok(())) => bail!("the component never set a response"),
            Ok(Err(e)) => bail!("the component trapped: {e:?}"),
            Err(e) => Err(e.into()),
        },
    }
}
