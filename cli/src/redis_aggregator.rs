//! `stellwerk aggregate --redis URL`: the aggregator of Spin deployments.
//!
//! It reads the edges' events from the Redis stream with a consumer group, folds each batch
//! into the posteriors through the core's `apply_events`, writes the posteriors to the
//! key-value key the components read, and only then acknowledges the batch. A consumer killed
//! between the write and the ack re-reads its pending entries on restart (or another consumer
//! claims them once idle): the core remembers applied event ids, so nothing is counted twice,
//! and nothing acknowledged was left uncounted.
//!
//! The posteriors are written under `WATCH`/`MULTI`, so several aggregators can share one
//! group without losing each other's updates. Entries that are not events go to a dead-letter
//! stream and are acknowledged, so one bad message cannot wedge the group.
//!
//! As the Worker's consumer does, it joins exposures and rewards into training rows (the join
//! state lives beside the posteriors and is written in the same transaction), teaches linear
//! Thompson experiments the joined rows, and with `--store` writes them as hour-partitioned
//! NDJSON objects to the S3-compatible store before the transaction commits (same rows, same
//! key: a retried batch rewrites the same objects).

use std::time::{SystemTime, UNIX_EPOCH};

use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamReadOptions, StreamReadReply,
};
use redis::{Commands, Connection, RedisResult};
use serde_json::json;
use stellwerk_core::s3::ObjectStore;
use stellwerk_core::{
    ApplyReport, Event, JoinState, PendingRow, PosteriorSnapshot, Snapshot, apply_events,
    close_buckets, join_batch, learn_linear, training_batches,
};

use crate::spin_sync::{StoreKeys, put};

/// The stream the Spin component adds events to.
pub const EVENTS_STREAM: &str = "stellwerk:events";
/// Where entries that are not events are kept for an operator.
pub const DEAD_LETTER_STREAM: &str = "stellwerk:events:dead";
/// The stream entry field holding an event's JSON.
const EVENT_FIELD: &str = "event";

/// Options of `stellwerk aggregate`.
#[derive(clap::Args)]
pub struct AggregateArgs {
    /// Redis holding the event stream (`redis://host:port/db`).
    #[arg(long)]
    redis: String,
    /// Redis backing Spin's key-value store, where the components read snapshot and posteriors
    /// (default: the same as --redis).
    #[arg(long)]
    kv_redis: Option<String>,
    #[arg(long, default_value = "stellwerk-aggregators")]
    group: String,
    /// This consumer's name: keep it stable across restarts so it finds its own pending entries.
    #[arg(long, default_value = "aggregator-1")]
    consumer: String,
    /// Entries per batch.
    #[arg(long, default_value_t = 500)]
    count: usize,
    /// Claim entries another consumer left pending for this long.
    #[arg(long, default_value_t = 60_000)]
    claim_idle_ms: usize,
    /// How long one read waits for new entries.
    #[arg(long, default_value_t = 5_000)]
    block_ms: usize,
    /// Stop once nothing is pending or new.
    #[arg(long)]
    once: bool,
    /// Object store for the training rows (`https://bucket.s3.example.com/stellwerk`); without
    /// it rows are joined and learned from but not written.
    #[arg(long)]
    store: Option<String>,
    #[command(flatten)]
    keys: StoreKeys,
    /// How long an exposure waits for its reward before it becomes a training row (the
    /// Worker's TRAINING_JOIN_SECONDS).
    #[arg(long, default_value_t = 1800)]
    join_seconds: u64,
    /// Test hook: exit with status 3 after writing the posteriors of this many batches,
    /// before acknowledging the last one (what a crash at the worst moment looks like).
    #[arg(long, hide = true)]
    exit_before_ack: Option<u64>,
}

const SNAPSHOT_KEY: &str = "snapshot:active";
/// What the components read: the posteriors without the applied ids.
const POSTERIORS_KEY: &str = "posteriors:active";
/// The aggregator's own copy, with the ids it applied.
const POSTERIORS_STATE_KEY: &str = "posteriors:state";
/// The training join's rewards (`JoinState`); every batch writes it, so watching it serialises
/// the aggregators' changes to the join.
const TRAINING_JOIN_KEY: &str = "training:join";
/// Bucket starts that have exposure lists (`training:exposures:<start>`, one entry per batch).
const JOIN_BUCKETS_KEY: &str = "training:exposure-buckets";

fn join_segments_key(start: u64) -> String {
    format!("training:exposures:{start}")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn err(context: &str) -> impl Fn(redis::RedisError) -> String + '_ {
    move |e| format!("{context}: {e}")
}

/// Runs the aggregator until stopped (or, with `--once`, until the stream is drained).
pub fn run(args: &AggregateArgs) -> Result<(), String> {
    let mut events = redis::Client::open(args.redis.as_str())
        .and_then(|c| c.get_connection())
        .map_err(err("redis"))?;
    let mut kv = redis::Client::open(args.kv_redis.as_deref().unwrap_or(&args.redis))
        .and_then(|c| c.get_connection())
        .map_err(err("kv redis"))?;
    let store = args
        .store
        .as_deref()
        .map(|base| args.keys.store(base))
        .transpose()?;
    create_group(&mut events, &args.group)?;
    let mut batches = 0u64;
    loop {
        // Own pending entries first (a restart after a crash), then entries a dead consumer
        // left behind, then new ones.
        let mut batch = read(&mut events, args, "0")?;
        if batch.is_empty() {
            batch = claim(&mut events, args)?;
        }
        if batch.is_empty() {
            batch = read(&mut events, args, ">")?;
        }
        if batch.is_empty() {
            if args.once {
                return Ok(());
            }
            continue;
        }
        let report = apply_batch(&mut kv, &batch, store.as_ref(), args.join_seconds)?;
        batches += 1;
        println!(
            "{}",
            json!({ "batch": batches, "entries": batch.len(), "report": report.0, "posteriorsVersion": report.1, "deadLetters": report.2, "trainingRows": report.4 })
        );
        if args.exit_before_ack == Some(batches) {
            std::process::exit(3);
        }
        for letter in &report.3 {
            let _: String = events
                .xadd(
                    DEAD_LETTER_STREAM,
                    "*",
                    &[("entry", letter.0.as_str()), ("reason", letter.1.as_str())],
                )
                .map_err(err("XADD dead letter"))?;
        }
        let ids: Vec<&str> = batch.iter().map(|e| e.id.as_str()).collect();
        let _: u64 = events
            .xack(EVENTS_STREAM, &args.group, &ids)
            .map_err(err("XACK"))?;
    }
}

fn create_group(con: &mut Connection, group: &str) -> Result<(), String> {
    let created: RedisResult<String> = con.xgroup_create_mkstream(EVENTS_STREAM, group, "0");
    match created {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        Err(e) => Err(format!("XGROUP CREATE: {e}")),
    }
}

fn read(con: &mut Connection, args: &AggregateArgs, from: &str) -> Result<Vec<StreamId>, String> {
    let mut options = StreamReadOptions::default()
        .group(&args.group, &args.consumer)
        .count(args.count);
    if from == ">" {
        options = options.block(if args.once { 1 } else { args.block_ms });
    }
    let reply: Option<StreamReadReply> = con
        .xread_options(&[EVENTS_STREAM], &[from], &options)
        .map_err(err("XREADGROUP"))?;
    Ok(reply
        .into_iter()
        .flat_map(|r| r.keys)
        .flat_map(|k| k.ids)
        .collect())
}

fn claim(con: &mut Connection, args: &AggregateArgs) -> Result<Vec<StreamId>, String> {
    let reply: StreamAutoClaimReply = con
        .xautoclaim_options(
            EVENTS_STREAM,
            &args.group,
            &args.consumer,
            args.claim_idle_ms,
            "0-0",
            StreamAutoClaimOptions::default().count(args.count),
        )
        .map_err(err("XAUTOCLAIM"))?;
    Ok(reply.claimed)
}

/// An entry that is not an event: its id and why.
type DeadLetter = (String, String);

/// Folds a batch into the posteriors and the training join and writes both, atomically against
/// other aggregators; the batch's training rows reach the store first.
fn apply_batch(
    kv: &mut Connection,
    batch: &[StreamId],
    store: Option<&ObjectStore>,
    join_seconds: u64,
) -> Result<(ApplyReport, u64, usize, Vec<DeadLetter>, usize), String> {
    let mut parsed = Vec::with_capacity(batch.len());
    let mut dead = Vec::new();
    for entry in batch {
        let bytes: Option<Vec<u8>> = entry.get(EVENT_FIELD);
        match bytes.map(|b| Event::from_json(&b)) {
            Some(Ok(event)) => parsed.push(event),
            Some(Err(invalid)) => {
                dead.push((entry.id.clone(), format!("not an event: {invalid:?}")))
            }
            None => dead.push((entry.id.clone(), format!("no {EVENT_FIELD:?} field"))),
        }
    }
    let now = now();
    let (report, version, rows): (ApplyReport, u64, usize) = redis::transaction(
        kv,
        &[POSTERIORS_STATE_KEY, POSTERIORS_KEY, TRAINING_JOIN_KEY],
        |kv, pipe| {
            let snapshot: Option<Vec<u8>> = kv.get(SNAPSHOT_KEY)?;
            let Some(snapshot) = snapshot else {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::Client,
                    "no snapshot in the key-value store: nothing to aggregate against",
                )));
            };
            let snapshot = Snapshot::parse(&snapshot).map_err(|e| {
                redis::RedisError::from((
                    redis::ErrorKind::Client,
                    "the active snapshot is invalid",
                    format!("{e:?}"),
                ))
            })?;
            // A store written before the aggregator kept its own copy has only the published
            // one, which then still carried the applied ids.
            let current: Option<Vec<u8>> = match kv.get(POSTERIORS_STATE_KEY)? {
                Some(state) => Some(state),
                None => kv.get(POSTERIORS_KEY)?,
            };
            let mut posteriors = match current {
                Some(bytes) => PosteriorSnapshot::parse(&bytes).map_err(|e| {
                    redis::RedisError::from((
                        redis::ErrorKind::Client,
                        "the stored posteriors are invalid; refusing to overwrite them",
                        format!("{e:?}"),
                    ))
                })?,
                None => PosteriorSnapshot::default(),
            };
            let before = posteriors.version;
            let report = apply_events(&mut posteriors, &parsed, &snapshot, now);
            let stored: Option<Vec<u8>> = kv.get(TRAINING_JOIN_KEY)?;
            // An unreadable join state costs the rewards it held, never the posteriors.
            let mut join = stored
                .and_then(|bytes| JoinState::parse(&bytes).ok())
                .unwrap_or_default();
            // The batch's exposures, by bucket: appended to their bucket's list, or, for a bucket
            // that closes now, joined straight away with the lists stored before.
            let mut segments = join_batch(&mut join, &parsed, &snapshot, now, join_seconds);
            let mut closing: Vec<Vec<PendingRow>> = Vec::new();
            let mut closed = Vec::new();
            if let Some(open) = join.closing_before(now, join_seconds) {
                let starts: Vec<u64> = kv.smembers(JOIN_BUCKETS_KEY)?;
                for start in starts.into_iter().filter(|start| *start < open) {
                    let lists: Vec<Vec<u8>> = kv.lrange(join_segments_key(start), 0, -1)?;
                    for list in &lists {
                        match serde_json::from_slice(list) {
                            Ok(segment) => closing.push(segment),
                            Err(e) => eprintln!(
                                "stellwerk aggregate: a training segment of bucket {start} is unreadable, its rows are lost: {e}"
                            ),
                        }
                    }
                    closed.push(start);
                }
                let still_open = segments.split_off(&open);
                closing.extend(std::mem::replace(&mut segments, still_open).into_values());
            }
            let rows = close_buckets(&mut join, &closing, now, join_seconds);
            learn_linear(&mut posteriors, &rows, &snapshot, now);
            if let Some(store) = store {
                for batch in training_batches(&rows) {
                    put(store, &batch.key, batch.body.as_bytes()).map_err(|e| {
                        redis::RedisError::from((
                            redis::ErrorKind::Io,
                            "training rows not written",
                            e,
                        ))
                    })?;
                }
            }
            if posteriors.version != before {
                pipe.set(POSTERIORS_STATE_KEY, posteriors.to_json())
                    .ignore();
                pipe.set(POSTERIORS_KEY, posteriors.published().to_json())
                    .ignore();
            } else {
                pipe.get(POSTERIORS_KEY).ignore();
            }
            for (start, segment) in &segments {
                let segment = serde_json::to_string(segment).unwrap_or_default();
                pipe.rpush(join_segments_key(*start), segment).ignore();
                pipe.sadd(JOIN_BUCKETS_KEY, start).ignore();
            }
            for start in &closed {
                pipe.del(join_segments_key(*start)).ignore();
                pipe.srem(JOIN_BUCKETS_KEY, start).ignore();
            }
            pipe.set(TRAINING_JOIN_KEY, join.to_json()).ignore();
            let done: Option<()> = pipe.query(kv)?;
            Ok(done.map(|()| (report, posteriors.version, rows.len())))
        },
    )
    .map_err(err("posteriors"))?;
    Ok((report, version, dead.len(), dead, rows))
}
