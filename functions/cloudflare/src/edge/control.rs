//! Routes under `/_stellwerk/`: health (public), status and beacons (admin until the core
//! verifies decision tokens).

use super::isolate;
use crate::admin::is_admin;
use crate::bindings::{EVENTS, KV, MAX_EVENTS_PER_BATCH, keys, secrets};
use serde_json::{Value, json};
use worker::{
    Context, Env, Method, QueueContentType, RawMessageBuilder, Request, Response, Result,
    SendMessage, console_error,
};

/// Dispatches a control route (`route` is the path after `/_stellwerk/`).
pub async fn handle(
    route: &str,
    mut req: Request,
    env: &Env,
    ctx: &Context,
    now_ms: f64,
) -> Result<Response> {
    match (req.method(), route) {
        (Method::Get, "health") => health(env, now_ms).await,
        (Method::Get, "status") if admin(&req, env)? => status(env).await,
        (Method::Post, "beacon") if admin(&req, env)? => beacon(&mut req, env, ctx).await,
        (_, "status" | "beacon") => Response::error("unauthorized", 401),
        _ => Response::error("not found", 404),
    }
}

fn admin(req: &Request, env: &Env) -> Result<bool> {
    let token = env
        .secret(secrets::ADMIN_TOKEN)
        .map(|secret| secret.to_string())
        .unwrap_or_default();
    Ok(is_admin(
        req.headers().get("authorization")?.as_deref(),
        &token,
    ))
}

/// Liveness plus what this edge serves with: answers without the origin.
async fn health(env: &Env, now_ms: f64) -> Result<Response> {
    let snapshot = match isolate::snapshot(env, now_ms).await {
        Ok(loaded) => json!({
            "loaded": loaded.bytes.is_some(),
            "bytes": loaded.bytes.as_ref().map(|bytes| bytes.len()),
            "age_ms": loaded.age_ms,
            "from_cache": loaded.from_cache,
        }),
        Err(error) => json!({ "loaded": false, "error": error.to_string() }),
    };
    Response::from_json(&json!({
        "status": "ok",
        "service": "stellwerk",
        "version": env!("CARGO_PKG_VERSION"),
        "isolate": isolate::info().map(|info| json!({
            "id": info.id,
            "age_ms": now_ms - info.started_at_ms,
            "requests": info.requests,
        })),
        "snapshot": snapshot,
    }))
}

/// What the background parts have done: consumer, dead letters, sync, and this isolate.
async fn status(env: &Env) -> Result<Response> {
    let kv = env.kv(KV)?;
    let mut records = serde_json::Map::new();
    for (name, key) in [
        ("events", keys::CONSUMER_STATUS),
        ("dead_letters", keys::DEAD_LETTER_STATUS),
        ("sync", keys::SYNC_STATUS),
    ] {
        let text = kv.get(key).text().await?;
        let value = text
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or(Value::Null);
        records.insert(name.into(), value);
    }
    records.insert("isolate".into(), serde_json::to_value(isolate::info())?);
    records.insert(
        "snapshot_cache".into(),
        serde_json::to_value(isolate::snapshot_cache_stats())?,
    );
    Response::from_json(&Value::Object(records))
}

/// Queues the events a beacon carries (one event or an array).
async fn beacon(req: &mut Request, env: &Env, ctx: &Context) -> Result<Response> {
    let events = match req.json::<Value>().await {
        Ok(Value::Array(events)) => events,
        Ok(event @ Value::Object(_)) => vec![event],
        _ => return Response::error("beacon: expected a JSON object or array", 400),
    };
    if events.is_empty() || events.len() > MAX_EVENTS_PER_BATCH {
        return Response::error(
            format!("beacon: expected 1 to {MAX_EVENTS_PER_BATCH} events"),
            400,
        );
    }
    // CORE: `stellwerk_core::feedback` verifies each decision token, drops bot feedback,
    // dedupes and routes; until then the consumer is the only check on what was queued.
    let count = events.len();
    send_events(ctx, env, events)?;
    Response::from_json(&json!({ "queued": count })).map(|r| r.with_status(202))
}

/// Sends events to the queue after the response has gone out.
pub fn send_events(ctx: &Context, env: &Env, events: Vec<Value>) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let queue = env.queue(EVENTS)?;
    // Plain JSON objects on the wire (serde-wasm-bindgen would send maps as JS `Map`s), so any
    // consumer, and an operator reading the dead letters, sees ordinary JSON.
    let messages = events
        .iter()
        .map(|event| {
            let body = js_sys::JSON::parse(&serde_json::to_string(event)?)?;
            Ok(RawMessageBuilder::new(body).build_with_content_type(QueueContentType::Json))
        })
        .collect::<Result<Vec<SendMessage<_>>>>()?;
    ctx.wait_until(async move {
        if let Err(error) = queue.send_raw_batch(messages).await {
            console_error!("stellwerk: queue send failed: {error}");
        }
    });
    Ok(())
}
