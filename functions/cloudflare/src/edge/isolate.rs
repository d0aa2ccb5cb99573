//! State that lives as long as the isolate: its identity, counters and the snapshot cache.
//!
//! Workers run one request at a time per isolate thread, so `thread_local!` + `RefCell` is
//! enough; no borrow is held across an `.await`.

use crate::bindings::{DEFAULT_SNAPSHOT_TTL_MS, KV, keys, vars};
use crate::body::StreamTally;
use crate::cache::{CacheStats, TtlCache};
use serde::Serialize;
use std::cell::RefCell;
use std::rc::Rc;
use worker::{Env, Result};

/// Identity and counters of this isolate, reported by the health and status routes.
#[derive(Debug, Clone, Serialize)]
pub struct IsolateInfo {
    /// Random id drawn when the isolate served its first request.
    pub id: String,
    /// When that was (ms since the epoch).
    pub started_at_ms: f64,
    /// Requests served by this isolate.
    pub requests: u64,
    /// Bodies streamed through the rewriter.
    pub streams: StreamTotals,
}

/// Sums of the [`StreamTally`]s of every completed rewritten body.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StreamTotals {
    /// Bodies streamed to the end.
    pub responses: u64,
    /// Origin chunks passed through the rewriter.
    pub chunks: u64,
    /// Bytes read from the origin.
    pub bytes_in: u64,
    /// Bytes written to visitors.
    pub bytes_out: u64,
}

/// A snapshot as read from KV; `None` when KV has none (cached too, so an empty namespace does
/// not cost a KV read per request).
pub type SnapshotBytes = Option<Rc<Vec<u8>>>;

/// The snapshot an edge serves with, and where it came from.
pub struct LoadedSnapshot {
    /// The snapshot document, when KV has one.
    pub bytes: SnapshotBytes,
    /// How long ago it was read from KV.
    pub age_ms: f64,
    /// Whether this lookup was served by the isolate cache.
    pub from_cache: bool,
}

thread_local! {
    static INFO: RefCell<Option<IsolateInfo>> = const { RefCell::new(None) };
    static SNAPSHOTS: RefCell<TtlCache<&'static str, SnapshotBytes>> = RefCell::new(TtlCache::new(4));
}

/// Counts a request, drawing the isolate's id on the first one.
pub fn count_request(now_ms: f64) {
    INFO.with(|info| {
        let mut info = info.borrow_mut();
        let info = info.get_or_insert_with(|| IsolateInfo {
            // Math.random is enough for telling isolates apart; it is not a secret.
            id: format!(
                "{:08x}",
                (js_sys::Math::random() * f64::from(u32::MAX)) as u32
            ),
            started_at_ms: now_ms,
            requests: 0,
            streams: StreamTotals::default(),
        });
        info.requests += 1;
    });
}

/// Adds a completed body's tally to the isolate's totals.
pub fn record_stream(tally: StreamTally) {
    INFO.with(|info| {
        if let Some(info) = info.borrow_mut().as_mut() {
            info.streams.responses += 1;
            info.streams.chunks += tally.chunks;
            info.streams.bytes_in += tally.bytes_in;
            info.streams.bytes_out += tally.bytes_out;
        }
    });
}

/// This isolate's identity and counters.
pub fn info() -> Option<IsolateInfo> {
    INFO.with(|info| info.borrow().clone())
}

/// The snapshot cache's counters.
pub fn snapshot_cache_stats() -> CacheStats {
    SNAPSHOTS.with(|cache| cache.borrow().stats())
}

/// Makes the next lookup read KV, after this isolate activated a new snapshot.
pub fn invalidate_snapshot() {
    SNAPSHOTS.with(|cache| cache.borrow_mut().invalidate(&keys::SNAPSHOT));
}

/// The active snapshot: from the isolate cache while fresh, otherwise from KV.
pub async fn snapshot(env: &Env, now_ms: f64) -> Result<LoadedSnapshot> {
    if let Some(hit) = SNAPSHOTS.with(|cache| cache.borrow_mut().get(&keys::SNAPSHOT, now_ms)) {
        return Ok(LoadedSnapshot {
            bytes: hit.value,
            age_ms: hit.age_ms,
            from_cache: true,
        });
    }
    let bytes = env.kv(KV)?.get(keys::SNAPSHOT).bytes().await?.map(Rc::new);
    // CORE: parse and validate with `stellwerk_core::Snapshot::parse` here and cache the parsed
    // snapshot (keeping the last valid one when a new document is refused).
    let ttl = snapshot_ttl_ms(env);
    SNAPSHOTS.with(|cache| {
        cache
            .borrow_mut()
            .insert(keys::SNAPSHOT, bytes.clone(), now_ms, ttl)
    });
    Ok(LoadedSnapshot {
        bytes,
        age_ms: 0.0,
        from_cache: false,
    })
}

fn snapshot_ttl_ms(env: &Env) -> f64 {
    env.var(vars::SNAPSHOT_TTL_MS)
        .ok()
        .and_then(|value| value.to_string().trim().parse::<f64>().ok())
        .filter(|ttl| ttl.is_finite() && *ttl >= 0.0)
        .unwrap_or(DEFAULT_SNAPSHOT_TTL_MS)
}
