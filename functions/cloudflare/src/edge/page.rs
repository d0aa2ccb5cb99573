//! Every non-control request: fetch the origin and stream its HTML through the rewriter.

use super::isolate;
use crate::bindings::vars;
use crate::body::{RewriteError, rewrite_stream};
use crate::origin::{DROPPED_WHEN_REWRITTEN, FORWARDED_REQUEST_HEADERS, is_html, origin_url};
use wasm_bindgen::JsValue;
use worker::{
    Context, Env, Error, Fetch, Headers, Method, Request, RequestInit, RequestRedirect, Response,
    ResponseBody, Result, console_error,
};

impl From<RewriteError> for Error {
    fn from(error: RewriteError) -> Self {
        Error::RustError(error.to_string())
    }
}

/// Proxies one visitor request to the origin.
pub async fn handle(req: Request, env: &Env, ctx: &Context, now_ms: f64) -> Result<Response> {
    // A KV outage must not take the site down: without a snapshot the edge passes through.
    let snapshot = match isolate::snapshot(env, now_ms).await {
        Ok(loaded) => loaded.bytes,
        Err(error) => {
            console_error!("stellwerk: snapshot unavailable, passing through: {error}");
            None
        }
    };
    // CORE: `stellwerk_core::gate(&snapshot, &facts)` blocks, challenges or tags here, and
    // `stellwerk_core::decide(&snapshot, &facts, rng, now)` picks flags and arms for the visitor.
    let _ = snapshot;

    let origin_request = origin_request(&req, env)?;
    let mut origin = match Fetch::Request(origin_request).send().await {
        Ok(response) => response,
        Err(error) => {
            console_error!("stellwerk: origin fetch failed: {error}");
            return Response::error("stellwerk: origin unreachable", 502);
        }
    };

    // CORE: the decisions' exposures go to the queue off the response path
    // (`super::control::send_events(ctx, env, events)`).
    let _ = ctx;

    let content_type = origin.headers().get("content-type")?;
    if !is_html(content_type.as_deref()) || !matches!(origin.body(), ResponseBody::Stream(_)) {
        // Not a page (or no body): the runtime streams it to the visitor untouched.
        return Ok(origin);
    }
    let status = origin.status_code();
    let headers = Headers::new();
    for (name, value) in origin.headers().entries() {
        if !DROPPED_WHEN_REWRITTEN.contains(&name.as_str()) {
            headers.append(&name, &value)?;
        }
    }
    // CORE: `stellwerk_core::rewrite(decisions)` becomes the rewriter; until then every byte
    // passes through the same chunked path unchanged.
    let rewriter = |chunk: &[u8]| chunk.to_vec();
    let body = rewrite_stream(origin.stream()?, rewriter, isolate::record_stream);
    Ok(Response::from_stream(body)?
        .with_status(status)
        .with_headers(headers))
}

/// The visitor's request re-addressed to `ORIGIN_URL`, with only the forwarded headers.
fn origin_request(req: &Request, env: &Env) -> Result<Request> {
    let origin = env.var(vars::ORIGIN_URL)?.to_string();
    let url = req.url()?;
    let target = origin_url(&origin, url.path(), url.query())
        .map_err(|e| Error::RustError(e.to_string()))?;

    let headers = Headers::new();
    for name in FORWARDED_REQUEST_HEADERS {
        if let Some(value) = req.headers().get(name)? {
            headers.set(name, &value)?;
        }
    }
    if let Some(host) = url.host_str() {
        headers.set("x-forwarded-host", host)?;
    }
    headers.set("x-forwarded-proto", url.scheme())?;

    let method = req.method();
    let mut init = RequestInit::new();
    init.with_method(method.clone())
        .with_headers(headers)
        // The visitor's browser follows the origin's redirects, not the edge.
        .with_redirect(RequestRedirect::Manual);
    if !matches!(method, Method::Get | Method::Head) {
        init.with_body(req.inner().body().map(JsValue::from));
    }
    Request::new_with_init(&target, &init)
}
