//! Queue consumers: the events queue (the aggregator) and its dead-letter queue.
//!
//! `wrangler.toml` sets `max_concurrency = 1` on the events consumer: KV has no transactions,
//! so only one invocation at a time may read-modify-write the posteriors.

use super::isolate;
use crate::bindings::{DEFAULT_TRAINING_JOIN_SECONDS, KV, MODELS, keys, vars};
use crate::status::{ConsumerStatus, DeadLetterStatus};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::cell::RefCell;
use stellwerk_core::{
    Event, JoinState, PendingRow, PosteriorSnapshot, TrainingRow, apply_events, close_buckets,
    join_batch, learn_linear, training_batches,
};
use wasm_bindgen::JsValue;
use worker::{Env, Error, KvStore, MessageBatch, MessageExt, Result, console_warn};

/// Folds one batch into the posteriors. A message that is not a valid event is retried (and
/// reaches the dead-letter queue after `max_retries`); the posteriors are written before any
/// message is acknowledged, and a failed write fails the batch, which the caller retries. A
/// redelivered event changes nothing: `apply_events` remembers the ids it applied.
pub async fn events(batch: &MessageBatch<JsValue>, env: &Env, now_ms: f64) -> Result<()> {
    let mut accepted = Vec::new();
    let mut to_ack = Vec::new();
    let mut rejected = 0;
    for message in batch.raw_iter() {
        let event = js_sys::JSON::stringify(&message.body())
            .ok()
            .and_then(|text| text.as_string())
            .ok_or_else(|| "body is not JSON".to_owned())
            .and_then(|text| Event::from_json(text.as_bytes()).map_err(|e| e.to_string()));
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

    let state = isolate::state(env, now_ms).await?;
    let snapshot = state
        .snapshot
        .as_deref()
        .ok_or_else(|| Error::RustError("no valid snapshot to aggregate with".into()))?;
    let kv = env.kv(KV)?;
    // Read afresh (or as this isolate wrote it last), not from the pages' cache: this is a
    // read-modify-write.
    let ConsumerState {
        mut posteriors,
        mut join,
    } = read_state(&kv).await?;
    let now = (now_ms / 1000.0) as u64;
    let report = apply_events(&mut posteriors, &accepted, snapshot, now);

    // Training rows: the batch's exposures are stored as segments of their decision-time bucket;
    // buckets whose window has ended are read and closed into rows. The row objects are written
    // first, under keys that hash their rows, so a retried batch rewrites the same objects; the
    // join state is saved with the posteriors, and closed segments are deleted last.
    let window = join_window_seconds(env);
    for (start, segment) in join_batch(&mut join, &accepted, snapshot, now, window) {
        let key = format!(
            "{}{start:010}:{}",
            keys::JOIN_SEGMENT_PREFIX,
            super::random_hex::<8>()?
        );
        kv.put(&key, serde_json::to_string(&segment)?)?
            .execute()
            .await?;
    }
    let (rows, closed_segments) = close_buckets_due(&kv, &mut join, now, window).await?;
    learn_linear(&mut posteriors, &rows, snapshot, now);
    let bucket = env.bucket(MODELS)?;
    for batch in training_batches(&rows) {
        bucket.put(&batch.key, batch.body).execute().await?;
    }
    let published = posteriors.published();
    write_state(&kv, ConsumerState { posteriors, join }, &published).await?;
    isolate::replace_posteriors(published, now_ms);
    for key in closed_segments {
        kv.delete(&key).await?;
    }

    let mut status: ConsumerStatus = read_record(&kv, keys::CONSUMER_STATUS).await?;
    status.record(&accepted, rejected, &report, now_ms);
    write_record(&kv, keys::CONSUMER_STATUS, &status).await?;
    for message in to_ack {
        message.ack();
    }
    Ok(())
}

/// Closes the buckets whose window has ended, when there are any (about once per bucket, a
/// minute with the default window): lists the stored segments, reads those of closable buckets
/// and hands them to the core. Returns the rows and the keys of the segments now closed.
/// KV lists are eventually consistent, but a segment is closed a whole window after it was
/// written. KV takes one write a second per key (the posteriors), which keeps the consumer near
/// a batch a second: a minute's bucket holds about sixty segments, well inside the operations
/// an invocation may make.
async fn close_buckets_due(
    kv: &KvStore,
    join: &mut JoinState,
    now: u64,
    window: u64,
) -> Result<(Vec<TrainingRow>, Vec<String>)> {
    let Some(open) = join.closing_before(now, window) else {
        return Ok((Vec::new(), Vec::new()));
    };
    let mut closable = Vec::new();
    let mut cursor = None;
    loop {
        let mut list = kv.list().prefix(keys::JOIN_SEGMENT_PREFIX.to_owned());
        if let Some(cursor) = cursor.take() {
            list = list.cursor(cursor);
        }
        let page = list.execute().await?;
        for key in page.keys {
            let start = key.name[keys::JOIN_SEGMENT_PREFIX.len()..]
                .split(':')
                .next()
                .and_then(|start| start.parse::<u64>().ok());
            if start.is_some_and(|start| start < open) {
                closable.push(key.name);
            }
        }
        match page.cursor {
            Some(next) if !page.list_complete => cursor = Some(next),
            _ => break,
        }
    }
    let bodies = futures_util::future::try_join_all(
        closable
            .iter()
            .map(|key| async move { kv.get(key).bytes().await }),
    )
    .await?;
    let segments: Vec<Vec<PendingRow>> = bodies
        .into_iter()
        .zip(&closable)
        .filter_map(|(bytes, key)| match serde_json::from_slice(&bytes?) {
            Ok(segment) => Some(segment),
            Err(error) => {
                console_warn!(
                    "stellwerk: training segment {key} unreadable, its rows are lost: {error}"
                );
                None
            }
        })
        .collect();
    Ok((close_buckets(join, &segments, now, window), closable))
}

/// What the consumer carries from batch to batch: the posteriors with the ids it applied, and
/// the training join's rewards.
struct ConsumerState {
    posteriors: PosteriorSnapshot,
    join: JoinState,
}

thread_local! {
    /// The state this isolate wrote last, under the tag it wrote before it.
    static LAST_STATE: RefCell<Option<(String, ConsumerState)>> = const { RefCell::new(None) };
}

/// The consumer's state: the one this isolate wrote last if KV still carries its tag, else read
/// and parsed from KV. It holds every applied id, so parsing it is most of a batch's work; the
/// consumer usually runs in the isolate that wrote the last state.
async fn read_state(kv: &KvStore) -> Result<ConsumerState> {
    // Taken out, not borrowed: a batch that fails after changing it must not leave it cached.
    let cached = LAST_STATE.with(|last| last.borrow_mut().take());
    let tag = kv.get(keys::CONSUMER_STATE_TAG).text().await?;
    if let Some((cached_tag, state)) = cached
        && tag.as_deref() == Some(cached_tag.as_str())
    {
        return Ok(state);
    }
    let (posteriors, join) = futures_util::future::join(
        kv.get(keys::POSTERIORS_STATE).bytes(),
        kv.get(keys::TRAINING_JOIN).bytes(),
    )
    .await;
    // A namespace written before the consumer kept its own copy has only the published one,
    // which then still carried the applied ids.
    let posteriors = match posteriors? {
        Some(bytes) => Some(bytes),
        None => kv.get(keys::POSTERIORS).bytes().await?,
    };
    let posteriors = match posteriors {
        Some(bytes) => PosteriorSnapshot::parse(&bytes)
            .map_err(|e| Error::RustError(format!("posteriors in KV: {e}")))?,
        None => PosteriorSnapshot::default(),
    };
    let join = match join? {
        Some(bytes) => JoinState::parse(&bytes).unwrap_or_else(|error| {
            console_warn!("stellwerk: training join state unreadable, starting afresh: {error}");
            JoinState::default()
        }),
        None => JoinState::default(),
    };
    Ok(ConsumerState { posteriors, join })
}

/// Writes a fresh tag, then the state and the published posteriors; keeps the state in this
/// isolate once all are written. The tag goes first so that no isolate can pair its cached
/// state with a tag KV carries beside a newer state.
async fn write_state(
    kv: &KvStore,
    state: ConsumerState,
    published: &PosteriorSnapshot,
) -> Result<()> {
    let tag = super::random_hex::<16>()?;
    for (key, value) in [
        (keys::CONSUMER_STATE_TAG, tag.clone()),
        (keys::POSTERIORS_STATE, state.posteriors.to_json()),
        (keys::POSTERIORS, published.to_json()),
        (keys::TRAINING_JOIN, state.join.to_json()),
    ] {
        kv.put(key, value)?.execute().await?;
    }
    LAST_STATE.with(|last| *last.borrow_mut() = Some((tag, state)));
    Ok(())
}

fn join_window_seconds(env: &Env) -> u64 {
    env.var(vars::TRAINING_JOIN_SECONDS)
        .ok()
        .and_then(|value| value.to_string().trim().parse::<u64>().ok())
        .unwrap_or(DEFAULT_TRAINING_JOIN_SECONDS)
}

/// Records dead letters in KV so an operator can see what was given up on.
pub async fn dead_letters(batch: &MessageBatch<JsValue>, env: &Env, now_ms: f64) -> Result<()> {
    let bodies = batch
        .raw_iter()
        .map(|message| {
            js_sys::JSON::stringify(&message.body())
                .ok()
                .and_then(|text| text.as_string())
                .and_then(|text| serde_json::from_str(&text).ok())
                .unwrap_or(Value::Null)
        })
        .collect();
    let kv = env.kv(KV)?;
    let mut status: DeadLetterStatus = read_record(&kv, keys::DEAD_LETTER_STATUS).await?;
    status.record(bodies, now_ms);
    write_record(&kv, keys::DEAD_LETTER_STATUS, &status).await?;
    batch.ack_all();
    Ok(())
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
