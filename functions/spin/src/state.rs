//! What an instance reads from the key-value store, cached for `cache_ttl_ms`, and the
//! instance's own counters.
//!
//! Spin may run many requests in one instance (instance reuse) or one per instance; the cache
//! pays off in the first case and costs nothing in the second. A document that fails
//! validation never replaces a valid one already held: the instance keeps serving its last
//! valid snapshot, as the Worker's isolate does.

use std::cell::RefCell;
use std::rc::Rc;

use spin_sdk::wit::wasi::keyvalue::store;
use stellwerk_core::{ActivePointers, EdgeCounters, PosteriorSnapshot, Snapshot};

/// Key of the active snapshot (same name as in Workers KV).
pub const SNAPSHOT_KEY: &str = "snapshot:active";
/// Key of the bandits' posteriors, written by `stellwerk aggregate`.
pub const POSTERIORS_KEY: &str = "posteriors:active";
/// Key of the active model pointers, written by `stellwerk sync`.
pub const MODEL_POINTERS_KEY: &str = "models:active";

/// The store Spin's `default` label names (`key_value_stores = ["default"]`).
const STORE: &str = "default";

/// State read from the key-value store.
#[derive(Clone, Default)]
pub struct EdgeState {
    pub snapshot: Option<Rc<Snapshot>>,
    pub posteriors: Rc<PosteriorSnapshot>,
    /// The sync's pointers document, shown by `health`.
    pub pointers: Rc<ActivePointers>,
}

struct Cached {
    loaded_at_ms: u64,
    state: EdgeState,
}

thread_local! {
    static CACHE: RefCell<Option<Cached>> = const { RefCell::new(None) };
    static COUNTERS: RefCell<EdgeCounters> = RefCell::new(EdgeCounters::default());
    /// State cache lookups served from the cache, and those that read the store.
    static LOOKUPS: RefCell<(u64, u64)> = const { RefCell::new((0, 0)) };
}

/// The state to decide with: the cached one while fresh, else re-read from the store.
pub fn load(now_ms: u64, ttl_ms: u64) -> EdgeState {
    let previous = CACHE.with(|cache| {
        cache.borrow().as_ref().map(|c| {
            let fresh = now_ms.saturating_sub(c.loaded_at_ms) < ttl_ms;
            (fresh, c.state.clone())
        })
    });
    if let Some((true, state)) = previous {
        LOOKUPS.with(|l| l.borrow_mut().0 += 1);
        return state;
    }
    LOOKUPS.with(|l| l.borrow_mut().1 += 1);
    let previous = previous.map(|(_, state)| state).unwrap_or_default();
    let state = read(previous);
    CACHE.with(|cache| {
        *cache.borrow_mut() = Some(Cached {
            loaded_at_ms: now_ms,
            state: state.clone(),
        })
    });
    state
}

fn read(previous: EdgeState) -> EdgeState {
    let bucket = match store::open(STORE) {
        Ok(bucket) => bucket,
        Err(_) => {
            fallback("kv_unavailable");
            return previous;
        }
    };
    let get = |key: &str| match bucket.get(key) {
        Ok(value) => Ok(value),
        Err(_) => {
            fallback("kv_unavailable");
            Err(())
        }
    };
    let snapshot = match get(SNAPSHOT_KEY) {
        Ok(Some(bytes)) => match Snapshot::parse(&bytes) {
            Ok(snapshot) => Some(Rc::new(snapshot)),
            Err(_) => {
                fallback("snapshot_invalid");
                previous.snapshot.clone()
            }
        },
        Ok(None) => None,
        Err(()) => previous.snapshot.clone(),
    };
    let posteriors = match get(POSTERIORS_KEY) {
        Ok(Some(bytes)) => match PosteriorSnapshot::parse(&bytes) {
            Ok(posteriors) => Rc::new(posteriors),
            Err(_) => {
                fallback("posteriors_invalid");
                previous.posteriors.clone()
            }
        },
        Ok(None) => Rc::default(),
        Err(()) => previous.posteriors.clone(),
    };
    let pointers = match get(MODEL_POINTERS_KEY) {
        Ok(Some(bytes)) => Rc::new(serde_json::from_slice(&bytes).unwrap_or_default()),
        Ok(None) => Rc::default(),
        Err(()) => previous.pointers.clone(),
    };
    EdgeState {
        snapshot,
        posteriors,
        pointers,
    }
}

/// Makes the next request re-read the store (after this instance wrote to it).
pub fn invalidate() {
    CACHE.with(|cache| {
        if let Some(cached) = cache.borrow_mut().as_mut() {
            cached.loaded_at_ms = 0;
        }
    });
}

/// `{hits, misses}` of the state cache, for the status route.
pub fn lookups() -> (u64, u64) {
    LOOKUPS.with(|l| *l.borrow())
}

/// One key's bytes from the store.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, String> {
    let bucket = store::open(STORE).map_err(|e| format!("key-value store: {e:?}"))?;
    bucket
        .get(key)
        .map_err(|e| format!("key-value get {key}: {e:?}"))
}

/// Writes one key of the store.
pub fn put(key: &str, value: &[u8]) -> Result<(), String> {
    let bucket = store::open(STORE).map_err(|e| format!("key-value store: {e:?}"))?;
    bucket
        .set(key, value)
        .map_err(|e| format!("key-value set {key}: {e:?}"))
}

/// Counts a request.
pub fn count_request() {
    COUNTERS.with(|c| c.borrow_mut().requests += 1);
}

/// Counts a page served untouched because something failed.
pub fn fallback(reason: &str) {
    COUNTERS.with(|c| c.borrow_mut().fallback(reason));
}

/// This instance's counters.
pub fn counters() -> EdgeCounters {
    COUNTERS.with(|c| c.borrow().clone())
}
