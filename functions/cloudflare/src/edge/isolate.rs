//! State that lives as long as the isolate: the parsed snapshot, posteriors and model pointers
//! (re-read from KV after a short TTL), loaded model plans (by sha256), and counters.
//!
//! Workers run one request at a time per isolate thread, so `thread_local!` + `RefCell` is
//! enough; no borrow is held across an `.await`.

use crate::bindings::{DEFAULT_SNAPSHOT_TTL_MS, KV, MODELS, keys, vars};
use crate::cache::{CacheStats, TtlCache};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use stellwerk_core::{
    ActivePointers, EdgeCounters, LoadedModel, Model, PosteriorSnapshot, Snapshot, sha256_hex,
};
use worker::{Env, Result, console_error, console_warn};

/// What a request decides with.
pub struct EdgeState {
    /// The last valid snapshot this isolate saw; `None` until one was valid.
    pub snapshot: Option<Rc<Snapshot>>,
    pub posteriors: Rc<PosteriorSnapshot>,
    pub pointers: Rc<ActivePointers>,
}

/// A model the snapshot's pointers name, as loaded in this isolate.
pub struct IsolateModel {
    pub name: String,
    pub stable: Rc<Model>,
    pub candidate: Option<Rc<Model>>,
}

impl IsolateModel {
    /// The model as the core's `decide`/`feedback_scored` take it.
    pub fn loaded(&self) -> LoadedModel<'_> {
        LoadedModel {
            name: &self.name,
            stable: &self.stable,
            candidate: self.candidate.as_deref(),
        }
    }
}

thread_local! {
    static STATE: RefCell<TtlCache<(), Rc<EdgeState>>> = RefCell::new(TtlCache::new(1));
    /// Parsed snapshots by the sha256 of their bytes: a re-read of unchanged bytes is not re-parsed,
    /// and the last valid one survives a refused document.
    static LAST_GOOD: RefCell<Option<(String, Rc<Snapshot>)>> = const { RefCell::new(None) };
    /// Loaded plans by model sha256 and version (a canary may ship the same bytes under a new
    /// version); `None` marks a model that failed to load (not retried).
    static PLANS: RefCell<HashMap<String, Option<Rc<Model>>>> = RefCell::new(HashMap::new());
    static COUNTERS: RefCell<EdgeCounters> = RefCell::new(EdgeCounters::default());
}

pub fn count_request() {
    COUNTERS.with(|c| c.borrow_mut().requests += 1);
}

/// Counts a page served untouched because something failed.
pub fn count_fallback(reason: &str) {
    COUNTERS.with(|c| c.borrow_mut().fallback(reason));
}

pub fn counters() -> EdgeCounters {
    COUNTERS.with(|c| c.borrow().clone())
}

pub fn cache_stats() -> CacheStats {
    STATE.with(|cache| cache.borrow().stats())
}

/// Makes the next request re-read KV (after this isolate activated something new).
pub fn invalidate() {
    STATE.with(|cache| cache.borrow_mut().invalidate(&()));
}

/// Serves `posteriors`, just written to KV by this isolate, from the cached state without
/// re-reading KV: the snapshot, pointers and expiry stay as they were. (Dropping the whole state
/// instead made the next page wait for three KV reads after every queue batch.)
pub fn replace_posteriors(posteriors: PosteriorSnapshot, now_ms: f64) {
    let posteriors = Rc::new(posteriors);
    STATE.with(|cache| {
        cache.borrow_mut().replace(&(), now_ms, |state| {
            Rc::new(EdgeState {
                snapshot: state.snapshot.clone(),
                posteriors: Rc::clone(&posteriors),
                pointers: Rc::clone(&state.pointers),
            })
        })
    });
}

/// The state to decide with: from the isolate cache while fresh, otherwise from KV.
pub async fn state(env: &Env, now_ms: f64) -> Result<Rc<EdgeState>> {
    if let Some(hit) = STATE.with(|cache| cache.borrow_mut().get(&(), now_ms)) {
        return Ok(hit.value);
    }
    let kv = env.kv(KV)?;
    let (snapshot, posteriors, pointers) = futures_util::future::join3(
        kv.get(keys::SNAPSHOT).bytes(),
        kv.get(keys::POSTERIORS).bytes(),
        kv.get(keys::MODEL_POINTERS).bytes(),
    )
    .await;
    let state = Rc::new(EdgeState {
        snapshot: snapshot?.and_then(|bytes| parse_snapshot(&bytes)),
        posteriors: Rc::new(parse_or_default(
            posteriors?,
            PosteriorSnapshot::parse,
            "posteriors",
        )),
        pointers: Rc::new(parse_or_default(
            pointers?,
            |b| serde_json::from_slice(b).map_err(|e| e.to_string()),
            "pointers",
        )),
    });
    let ttl = snapshot_ttl_ms(env);
    STATE.with(|cache| {
        cache
            .borrow_mut()
            .insert((), Rc::clone(&state), now_ms, ttl)
    });
    Ok(state)
}

/// Parses the snapshot in KV, or keeps the last valid one when the document is refused.
fn parse_snapshot(bytes: &[u8]) -> Option<Rc<Snapshot>> {
    let sha = sha256_hex(bytes);
    let last_good = LAST_GOOD.with(|last| last.borrow().clone());
    if let Some((last_sha, snapshot)) = &last_good
        && *last_sha == sha
    {
        return Some(Rc::clone(snapshot));
    }
    match Snapshot::parse(bytes) {
        Ok(snapshot) => {
            let snapshot = Rc::new(snapshot);
            LAST_GOOD.with(|last| *last.borrow_mut() = Some((sha, Rc::clone(&snapshot))));
            Some(snapshot)
        }
        Err(invalid) => {
            console_error!(
                "stellwerk: snapshot in KV refused, keeping the last valid one: {invalid}"
            );
            count_fallback("invalid_snapshot");
            last_good.map(|(_, snapshot)| snapshot)
        }
    }
}

fn parse_or_default<T: Default, E: std::fmt::Display>(
    bytes: Option<Vec<u8>>,
    parse: impl Fn(&[u8]) -> std::result::Result<T, E>,
    what: &str,
) -> T {
    match bytes.map(|b| parse(&b)) {
        Some(Ok(value)) => value,
        Some(Err(error)) => {
            console_warn!("stellwerk: {what} in KV unreadable, using none: {error}");
            T::default()
        }
        None => T::default(),
    }
}

/// The models the pointers name, loaded from R2 once per isolate and kept by sha256. A model
/// whose bytes fail to load is left out (and counted); the decision goes on without it.
pub async fn models(env: &Env, pointers: &ActivePointers) -> Vec<IsolateModel> {
    let mut loaded = Vec::new();
    for (name, versions) in &pointers.models {
        let Some(stable) = plan(env, &versions.stable).await else {
            continue;
        };
        let candidate = match &versions.candidate {
            Some(candidate) => plan(env, candidate).await,
            None => None,
        };
        loaded.push(IsolateModel {
            name: name.clone(),
            stable,
            candidate,
        });
    }
    loaded
}

async fn plan(env: &Env, pointer: &stellwerk_core::ModelPointer) -> Option<Rc<Model>> {
    let key = format!("{}/{}", pointer.manifest.sha256, pointer.manifest.version);
    if let Some(cached) = PLANS.with(|plans| plans.borrow().get(&key).cloned()) {
        return cached;
    }
    let loaded = match fetch_object(env, &pointer.model_key).await {
        Ok(Some(bytes)) => Model::load(pointer.manifest.clone(), &bytes).map_err(|e| e.to_string()),
        Ok(None) => Err("object not found".into()),
        Err(error) => Err(error.to_string()),
    };
    let plan = match loaded {
        Ok(model) => Some(Rc::new(model)),
        Err(reason) => {
            console_error!("stellwerk: model {} refused: {reason}", pointer.model_key);
            count_fallback("model_load");
            None
        }
    };
    PLANS.with(|plans| plans.borrow_mut().insert(key, plan.clone()));
    plan
}

/// An R2 object's bytes, `None` when absent.
pub async fn fetch_object(env: &Env, key: &str) -> Result<Option<Vec<u8>>> {
    match env.bucket(MODELS)?.get(key).execute().await? {
        Some(object) => match object.body() {
            Some(body) => Ok(Some(body.bytes().await?)),
            None => Ok(Some(Vec::new())),
        },
        None => Ok(None),
    }
}

fn snapshot_ttl_ms(env: &Env) -> f64 {
    env.var(vars::SNAPSHOT_TTL_MS)
        .ok()
        .and_then(|value| value.to_string().trim().parse::<f64>().ok())
        .filter(|ttl| ttl.is_finite() && *ttl >= 0.0)
        .unwrap_or(DEFAULT_SNAPSHOT_TTL_MS)
}
