//! `stellwerk sync --store BASE_URL --redis URL`: moves Spin's active snapshot and model
//! pointers to what the object store publishes, after the same verification the Worker runs.
//!
//! The steps are the core's `sync_step` (the Worker's scheduled sync and the Spin component's
//! admin sync run the same ones): `BASE_URL/manifest.json`, then the snapshot and model objects
//! that changed, each verified (sha256 and validation; tract test-load and golden input) before
//! anything is written to the key-value store (Spin's Redis backend layout: each key verbatim).
//! Anything refused is recorded in the pointers document with its reason and the last good
//! version keeps serving. Requests are plain GETs, signed with AWS SigV4 when access keys are
//! given (any S3-compatible store).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use redis::Commands;
use serde_json::json;
use stellwerk_core::s3::{ObjectRequest, ObjectStore, S3Credentials};
use stellwerk_core::{ActivePointers, MANIFEST_KEY, SyncStep, sync_step};

const SNAPSHOT_KEY: &str = "snapshot:active";
const MODEL_POINTERS_KEY: &str = "models:active";
/// Largest object fetched (a model of a few MB; a snapshot of a few KB).
const MAX_OBJECT_BYTES: u64 = 256 << 20;

/// Options of `stellwerk sync`.
#[derive(clap::Args)]
pub struct SyncArgs {
    /// Base URL of the object store (`https://bucket.s3.example.com/stellwerk`).
    #[arg(long)]
    store: String,
    /// Redis backing Spin's key-value store.
    #[arg(long)]
    redis: String,
    #[command(flatten)]
    keys: StoreKeys,
}

/// The object store's access keys: with them, requests are signed with AWS SigV4.
#[derive(clap::Args)]
pub struct StoreKeys {
    /// Access key id: with the secret, requests are signed with AWS SigV4.
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    access_key_id: Option<String>,
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    secret_access_key: Option<String>,
    /// Signing region (`auto` for R2).
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    region: String,
    #[arg(long, env = "AWS_SESSION_TOKEN", hide_env_values = true)]
    session_token: Option<String>,
}

impl StoreKeys {
    /// The store at `base`, signing when keys are given.
    pub fn store(&self, base: &str) -> Result<ObjectStore, String> {
        let credentials = match (&self.access_key_id, &self.secret_access_key) {
            (Some(id), Some(secret)) => Some(S3Credentials {
                access_key_id: id.clone(),
                secret_access_key: secret.clone(),
                region: self.region.clone(),
                session_token: self.session_token.clone(),
            }),
            (None, None) => None,
            _ => {
                return Err("give both --access-key-id and --secret-access-key, or neither".into());
            }
        };
        ObjectStore::new(base, credentials)
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `request`'s headers (SigV4 when signing) on `builder`; every status is an answer, not an error.
fn signed<B>(builder: ureq::RequestBuilder<B>, request: &ObjectRequest) -> ureq::RequestBuilder<B> {
    let mut builder = builder.config().http_status_as_error(false).build();
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    builder
}

/// An object's bytes; `None` when the store answers 404.
fn fetch(store: &ObjectStore, key: &str) -> Result<Option<Vec<u8>>, String> {
    let request = store.request("GET", key, b"", now());
    let mut response = signed(ureq::get(&request.url), &request)
        .call()
        .map_err(|e| format!("GET {}: {e}", request.url))?;
    match response.status().as_u16() {
        200 => response
            .body_mut()
            .with_config()
            .limit(MAX_OBJECT_BYTES)
            .read_to_vec()
            .map(Some)
            .map_err(|e| format!("GET {}: {e}", request.url)),
        404 => Ok(None),
        status => Err(format!("GET {}: the store answered {status}", request.url)),
    }
}

/// Writes an object; any answer but 2xx is an error.
pub fn put(store: &ObjectStore, key: &str, body: &[u8]) -> Result<(), String> {
    let request = store.request("PUT", key, body, now());
    let response = signed(ureq::put(&request.url), &request)
        .send(body)
        .map_err(|e| format!("PUT {}: {e}", request.url))?;
    match response.status().as_u16() {
        200..=299 => Ok(()),
        status => Err(format!("PUT {}: the store answered {status}", request.url)),
    }
}

/// Runs one sync. `Ok(false)` (exit status 1) when anything was refused (recorded, last good
/// kept); `Err` when the store or Redis could not be read (nothing changed).
pub fn run(args: &SyncArgs) -> Result<bool, String> {
    let store = args.keys.store(&args.store)?;
    let manifest = fetch(&store, MANIFEST_KEY)?
        .ok_or_else(|| format!("no {MANIFEST_KEY} in the object store"))?;
    let mut kv = redis::Client::open(args.redis.as_str())
        .and_then(|c| c.get_connection())
        .map_err(|e| format!("redis: {e}"))?;
    let current: Option<Vec<u8>> = kv
        .get(MODEL_POINTERS_KEY)
        .map_err(|e| format!("GET: {e}"))?;
    let current: ActivePointers = current
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();

    let mut fetched = BTreeMap::new();
    let outcome = loop {
        match sync_step(&manifest, &current, &fetched, now()) {
            SyncStep::Fetch(keys) => {
                for key in keys {
                    let bytes = fetch(&store, &key)?;
                    fetched.insert(key, bytes);
                }
            }
            SyncStep::Done(outcome) => break outcome,
        }
    };
    if let Some(snapshot) = &outcome.activate_snapshot {
        let () = kv
            .set(SNAPSHOT_KEY, snapshot)
            .map_err(|e| format!("SET: {e}"))?;
    }
    let pointers = &outcome.pointers;
    let document = serde_json::to_string(pointers).map_err(|e| e.to_string())?;
    let () = kv
        .set(MODEL_POINTERS_KEY, document)
        .map_err(|e| format!("SET: {e}"))?;
    println!(
        "{}",
        json!({
            "activatedSnapshot": outcome.activate_snapshot.is_some(),
            "refusals": pointers.refusals,
            "pointers": pointers,
        })
    );
    Ok(pointers.refusals.is_empty())
}
