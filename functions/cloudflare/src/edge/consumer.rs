//! Queue consumers: the events queue (aggregator) and its dead-letter queue.
//!
//! `wrangler.toml` sets `max_concurrency = 1` on the events consumer: KV has no transactions,
//! so only one invocation at a time may read-modify-write the posteriors and progress records.

use crate::bindings::{KV, keys};
use crate::status::{ConsumerStatus, DeadLetterStatus, QueuedEvent};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use wasm_bindgen::JsValue;
use worker::{Env, KvStore, MessageBatch, MessageExt, Result, console_warn};

/// Aggregates one batch of events. Messages that are not events are retried (and reach the
/// dead-letter queue after `max_retries`); a failed KV write returns the error before any
/// message is acknowledged, and the caller retries the whole batch.
pub async fn events(batch: &MessageBatch<JsValue>, env: &Env, now_ms: f64) -> Result<()> {
    let mut accepted = Vec::new();
    let mut to_ack = Vec::new();
    let mut rejected = 0;
    // Bodies are decoded one by one: a single malformed message must not fail its batch.
    for message in batch.raw_iter() {
        let event = body_json(&message.body())
            .ok_or_else(|| "body is not JSON".to_string())
            .and_then(|body| {
                serde_json::from_value::<QueuedEvent>(body).map_err(|error| error.to_string())
            });
        match event {
            Ok(event) => {
                accepted.push(event);
                to_ack.push(message);
            }
            Err(error) => {
                console_warn!(
                    "stellwerk: message {} is not an event: {error}",
                    message.id()
                );
                message.retry();
                rejected += 1;
            }
        }
    }

    // CORE: `stellwerk_core::aggregate(&accepted, posteriors)` folds the batch into the
    // posteriors (idempotent by event id), written back to `keys::POSTERIORS` here.

    let kv = env.kv(KV)?;
    let mut status: ConsumerStatus = read_record(&kv, keys::CONSUMER_STATUS).await?;
    status.record(&accepted, rejected, now_ms);
    write_record(&kv, keys::CONSUMER_STATUS, &status).await?;
    for message in to_ack {
        message.ack();
    }
    Ok(())
}

/// Records dead letters in KV so an operator can see what was given up on.
pub async fn dead_letters(batch: &MessageBatch<JsValue>, env: &Env, now_ms: f64) -> Result<()> {
    let bodies = batch
        .raw_iter()
        .map(|message| body_json(&message.body()).unwrap_or(Value::Null))
        .collect();
    let kv = env.kv(KV)?;
    let mut status: DeadLetterStatus = read_record(&kv, keys::DEAD_LETTER_STATUS).await?;
    status.record(bodies, now_ms);
    write_record(&kv, keys::DEAD_LETTER_STATUS, &status).await?;
    batch.ack_all();
    Ok(())
}

/// A message body as JSON. Bodies are sent as JSON (`contentType: "json"`), so this is exact;
/// `None` for anything `JSON.stringify` cannot express.
fn body_json(body: &JsValue) -> Option<Value> {
    let text = js_sys::JSON::stringify(body).ok()?.as_string()?;
    serde_json::from_str(&text).ok()
}

/// A progress record, or a fresh one when the key is absent or unreadable (a corrupt record
/// must not wedge the consumer).
async fn read_record<T: DeserializeOwned + Default>(kv: &KvStore, key: &str) -> Result<T> {
    let Some(text) = kv.get(key).text().await? else {
        return Ok(T::default());
    };
    Ok(serde_json::from_str(&text).unwrap_or_else(|error| {
        console_warn!("stellwerk: {key} unreadable, starting afresh: {error}");
        T::default()
    }))
}

async fn write_record<T: Serialize>(kv: &KvStore, key: &str, record: &T) -> Result<()> {
    kv.put(key, serde_json::to_string(record)?)?
        .execute()
        .await?;
    Ok(())
}
