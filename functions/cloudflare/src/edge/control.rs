//! Stellwerk's own routes under `/_stellwerk/`: feedback beacons, the beacon script, health,
//! and the admin-only status and conformance routes. Which route, and every answer's bytes,
//! come from the core (`stellwerk_core::route`, `feedback`, `health_json`, ...).

use super::isolate;
use super::page::{request_facts, secret};
use crate::admin::is_admin;
use crate::bindings::{EVENTS, KV, MODELS, keys, secrets};
use serde_json::Value;
use stellwerk_core::{
    EdgeResponse, Event, FeedbackOutcome, LoadedModel, Route, Snapshot, duplicate_feedback,
    feedback_accepted, feedback_scored, feedback_unavailable, health_json, object_key,
    reserved_route_error, snapshot_pushed,
};
use worker::{
    Context, Env, Headers, QueueContentType, RawMessageBuilder, Request, Response, Result,
    SendMessage, console_error,
};

/// Dispatches one of Stellwerk's routes.
pub async fn handle(
    route: Route,
    mut req: Request,
    env: &Env,
    ctx: &Context,
    now_ms: f64,
) -> Result<Response> {
    if route.is_admin() && !admin(&req, env)? {
        return edge_response(EdgeResponse::error(
            401,
            "unauthorized",
            "this route needs the admin bearer token",
        ));
    }
    match route {
        Route::Feedback => beacon(&mut req, env, ctx, now_ms).await,
        Route::BeaconScript => edge_response(EdgeResponse::beacon_script()),
        Route::Health => health(env, now_ms).await,
        Route::Status => status(env).await,
        Route::Conformance => conformance(&mut req).await,
        Route::PushSnapshot => push_snapshot(&mut req, env).await,
        Route::PutObject => put_object(&mut req, env).await,
        Route::SyncNow => {
            super::sync::run(env, now_ms).await;
            let pointers = env
                .kv(KV)?
                .get(keys::MODEL_POINTERS)
                .text()
                .await?
                .unwrap_or_else(|| "{}".into());
            edge_response(EdgeResponse::json(200, pointers))
        }
        Route::Console => super::console::handle(req, env, now_ms).await,
        Route::MethodNotAllowed | Route::NotFound | Route::Page => {
            edge_response(reserved_route_error(route).unwrap_or_else(|| {
                EdgeResponse::error(404, "not_found", "no such Stellwerk route")
            }))
        }
    }
}

/// A core-built response as a Worker response.
pub fn edge_response(response: EdgeResponse) -> Result<Response> {
    let headers = Headers::new();
    for (name, value) in &response.headers {
        headers.append(name, value)?;
    }
    Ok(Response::from_bytes(response.body)?
        .with_status(response.status)
        .with_headers(headers))
}

fn admin(req: &Request, env: &Env) -> Result<bool> {
    let token = env
        .secret(secrets::ADMIN_TOKEN)
        .map(|s| s.to_string())
        .unwrap_or_default();
    Ok(is_admin(
        req.headers().get("authorization")?.as_deref(),
        &token,
    ))
}

/// `POST /_stellwerk/feedback`: verify, dedupe, enqueue.
///
/// The dedupe key is remembered in KV for the attribution window. KV is eventually consistent
/// across locations, so a replay at another location within about a minute can pass here; the
/// aggregator dedupes again by event id, so it is never counted twice.
async fn beacon(req: &mut Request, env: &Env, ctx: &Context, now_ms: f64) -> Result<Response> {
    let state = isolate::state(env, now_ms).await?;
    let Some(snapshot) = state.snapshot.as_deref() else {
        return edge_response(feedback_unavailable());
    };
    // Refuse an announced oversize body before reading it; the core checks the real length.
    let announced: Option<usize> = req
        .headers()
        .get("content-length")?
        .and_then(|v| v.parse().ok());
    let body = match announced {
        Some(length) if length > snapshot.feedback.max_body_bytes => vec![0; length.min(1 << 20)],
        _ => req.bytes().await?,
    };
    let facts = request_facts(req)?;
    let now = (now_ms / 1000.0) as u64;
    // The beacon's request is scored by the fraud model as pages are.
    let models = isolate::models(env, &state.pointers).await;
    let loaded: Vec<LoadedModel<'_>> = models.iter().map(isolate::IsolateModel::loaded).collect();
    let accepted = match feedback_scored(
        &body,
        snapshot,
        &facts,
        &secret(env, secrets::HMAC_KEY),
        now,
        &loaded,
    ) {
        FeedbackOutcome::Accepted(accepted) => accepted,
        FeedbackOutcome::Rejected(response) => return edge_response(response),
    };
    let kv = env.kv(KV)?;
    let dedupe = format!("{}{}", keys::DEDUPE_PREFIX, accepted.dedupe_key);
    if kv.get(&dedupe).text().await?.is_some() {
        return edge_response(duplicate_feedback());
    }
    let ttl = snapshot.feedback.attribution_window_seconds.max(60);
    kv.put(&dedupe, "1")?.expiration_ttl(ttl).execute().await?;
    send_events(ctx, env, std::slice::from_ref(&accepted.event))?;
    edge_response(feedback_accepted(&accepted))
}

/// Public: what this edge serves with, and what the last sync refused.
async fn health(env: &Env, now_ms: f64) -> Result<Response> {
    let state = isolate::state(env, now_ms).await?;
    let body = health_json(
        "cloudflare",
        state.snapshot.as_deref(),
        &state.posteriors,
        &state.pointers,
        &isolate::counters(),
    );
    edge_response(EdgeResponse::json(200, body))
}

/// What the background parts have done: consumer, dead letters, sync, and this isolate's cache.
async fn status(env: &Env) -> Result<Response> {
    let kv = env.kv(KV)?;
    let mut records = serde_json::Map::new();
    for (name, key) in [
        ("events", keys::CONSUMER_STATUS),
        ("deadLetters", keys::DEAD_LETTER_STATUS),
    ] {
        let value = kv
            .get(key)
            .text()
            .await?
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        records.insert(name.into(), value);
    }
    records.insert(
        "stateCache".into(),
        serde_json::to_value(isolate::cache_stats())?,
    );
    Response::from_json(&Value::Object(records))
}

/// Runs a conformance vector through this build of the core, so a driver can compare every
/// edge's answer with the native one byte for byte.
async fn conformance(req: &mut Request) -> Result<Response> {
    // Parsed from the raw bytes by serde_json, as the native CLI does: going through a JS object
    // would lose the difference between `0` and `0.0`.
    let body: Value = match serde_json::from_slice(&req.bytes().await?) {
        Ok(body) => body,
        Err(error) => {
            return edge_response(EdgeResponse::error(
                400,
                "malformed_json",
                &error.to_string(),
            ));
        }
    };
    let kind = body.get("kind").and_then(Value::as_str).unwrap_or_default();
    match stellwerk_core::conformance::run(kind, body.get("vector").unwrap_or(&Value::Null)) {
        Ok(output) => edge_response(EdgeResponse::json(200, output.to_string())),
        Err(reason) => edge_response(EdgeResponse::error(422, "invalid_vector", &reason)),
    }
}

/// `PUT /_stellwerk/admin/snapshot`: the core validates; only a valid document reaches KV.
async fn push_snapshot(req: &mut Request, env: &Env) -> Result<Response> {
    let body = req.bytes().await?;
    let parsed = Snapshot::parse(&body);
    if let Ok(snapshot) = &parsed {
        env.kv(KV)?
            .put_bytes(keys::SNAPSHOT, &body)?
            .execute()
            .await?;
        super::ledger::record(env, &snapshot.version).await?;
        isolate::invalidate();
    }
    edge_response(snapshot_pushed(&parsed))
}

/// `PUT /_stellwerk/admin/objects/{key}`: publishes an object to R2. Nothing serves from it until
/// a sync has verified it.
async fn put_object(req: &mut Request, env: &Env) -> Result<Response> {
    let path = req.path();
    let key = object_key(&path).unwrap_or_default().to_owned();
    let body = req.bytes().await?;
    let size = body.len();
    env.bucket(MODELS)?.put(&key, body).execute().await?;
    edge_response(EdgeResponse::json(
        201,
        serde_json::json!({ "key": key, "bytes": size }).to_string(),
    ))
}

/// Sends events to the queue after the response has gone out.
pub fn send_events(ctx: &Context, env: &Env, events: &[Event]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let queue = env.queue(EVENTS)?;
    // Plain JSON objects on the wire (serde-wasm-bindgen would send maps as JS `Map`s), so any
    // consumer, and an operator reading the dead letters, sees ordinary JSON.
    let messages = stellwerk_core::queue_messages(events)
        .iter()
        .map(|json| {
            Ok(RawMessageBuilder::new(js_sys::JSON::parse(json)?)
                .build_with_content_type(QueueContentType::Json))
        })
        .collect::<Result<Vec<SendMessage<_>>>>()?;
    ctx.wait_until(async move {
        if let Err(error) = queue.send_raw_batch(messages).await {
            console_error!("stellwerk: queue send failed: {error}");
        }
    });
    Ok(())
}
