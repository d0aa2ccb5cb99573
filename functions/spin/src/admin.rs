//! The admin routes behind `Authorization: Bearer <admin_token>`, answering as the Worker does:
//! push a snapshot, publish an object, sync now, status, and the conformance runner.

use serde_json::{Value, json};
use stellwerk_core::{EdgeResponse, Route, Snapshot, object_key, snapshot_pushed};

use crate::queue::{DEAD_LETTER_STREAM, EVENTS_STREAM, Queue};
use crate::settings::Settings;
use crate::state::{self, MODEL_POINTERS_KEY, SNAPSHOT_KEY};
use crate::{models, store, sync};

/// Whether an `Authorization` header carries `Bearer <token>` for the configured admin token.
/// An unset token authorizes nobody; the comparison takes as long for a near miss as for a
/// wild guess.
pub fn authorized(authorization: Option<&str>, admin_token: &str) -> bool {
    let Some(presented) = authorization.and_then(|value| value.strip_prefix("Bearer ")) else {
        return false;
    };
    let (presented, expected) = (presented.trim().as_bytes(), admin_token.as_bytes());
    !expected.is_empty()
        && presented.len() == expected.len()
        && presented
            .iter()
            .zip(expected)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

pub fn unauthorized() -> EdgeResponse {
    EdgeResponse::error(
        401,
        "unauthorized",
        "this route needs the admin bearer token",
    )
}

/// Serves one admin route (already authorized).
pub async fn handle(
    route: Route,
    path: &str,
    body: Vec<u8>,
    settings: &Settings,
    now_ms: u64,
) -> EdgeResponse {
    let now = now_ms / 1000;
    match route {
        Route::Conformance => conformance(&body),
        Route::PushSnapshot => push_snapshot(&body),
        Route::PutObject => put_object(path, body, settings, now).await,
        Route::SyncNow => {
            if let Err(error) = sync::run(settings, now).await {
                eprintln!("stellwerk: sync failed, keeping the active versions: {error}");
            }
            match state::get(MODEL_POINTERS_KEY) {
                Ok(pointers) => EdgeResponse::json(
                    200,
                    pointers
                        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                        .unwrap_or_else(|| "{}".into()),
                ),
                Err(reason) => EdgeResponse::error(503, "kv_unavailable", &reason),
            }
        }
        Route::Status => status(settings),
        _ => EdgeResponse::error(404, "not_found", "no such Stellwerk route"),
    }
}

/// Runs a conformance vector through this build of the core; serde_json parses the raw bytes,
/// as the native CLI does.
fn conformance(body: &[u8]) -> EdgeResponse {
    let body: Value = match serde_json::from_slice(body) {
        Ok(body) => body,
        Err(error) => return EdgeResponse::error(400, "malformed_json", &error.to_string()),
    };
    let kind = body.get("kind").and_then(Value::as_str).unwrap_or_default();
    match stellwerk_core::conformance::run(kind, body.get("vector").unwrap_or(&Value::Null)) {
        Ok(output) => EdgeResponse::json(200, output.to_string()),
        Err(reason) => EdgeResponse::error(422, "invalid_vector", &reason),
    }
}

/// The core validates; only a valid document reaches the key-value store.
fn push_snapshot(body: &[u8]) -> EdgeResponse {
    let parsed = Snapshot::parse(body);
    if parsed.is_ok() {
        if let Err(reason) = state::put(SNAPSHOT_KEY, body) {
            return EdgeResponse::error(503, "kv_unavailable", &reason);
        }
        state::invalidate();
    }
    snapshot_pushed(&parsed)
}

/// Publishes an object to the store the sync reads; nothing serves from it until a sync has
/// verified it.
async fn put_object(path: &str, body: Vec<u8>, settings: &Settings, now: u64) -> EdgeResponse {
    let key = object_key(path).unwrap_or_default().to_owned();
    let object_store = match &settings.object_store {
        Ok(object_store) => object_store,
        Err(reason) => return EdgeResponse::error(503, "object_store_unavailable", reason),
    };
    let size = body.len();
    match store::put(object_store, &key, body, now).await {
        Ok(()) => EdgeResponse::json(201, json!({ "key": key, "bytes": size }).to_string()),
        Err(reason) => EdgeResponse::error(502, "object_store_unavailable", &reason),
    }
}

/// What the background parts have done as far as this instance can see: the stream's and the
/// dead letters' lengths (the aggregator's lag is in `XINFO GROUPS`), this instance's caches.
fn status(settings: &Settings) -> EdgeResponse {
    let queue = settings.redis_url.as_deref().map(Queue::open);
    let length = |stream: &str| match &queue {
        Some(Ok(queue)) => queue.length(stream).map_or(Value::Null, Value::from),
        _ => Value::Null,
    };
    let (hits, misses) = state::lookups();
    let body = json!({
        "events": { "stream": EVENTS_STREAM, "length": length(EVENTS_STREAM) },
        "deadLetters": { "stream": DEAD_LETTER_STREAM, "length": length(DEAD_LETTER_STREAM) },
        "stateCache": { "hits": hits, "misses": misses },
        "modelPlans": models::plans_held(),
        "objectStore": { "signed": settings.object_store.as_ref().is_ok_and(|s| s.signs()) },
    });
    EdgeResponse::json(200, body.to_string())
}
