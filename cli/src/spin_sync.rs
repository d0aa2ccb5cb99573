//! `stellwerk sync --store BASE_URL --redis URL`: moves Spin's active snapshot and model
//! pointers to what the object store publishes, after the same verification the Worker runs.
//!
//! Reads `BASE_URL/manifest.json`, fetches every object it names over HTTP(S) (any
//! S3-compatible bucket readable by URL, or a plain web server), verifies it with the core
//! (`verify_snapshot`: sha256 + validation; `verify_model`: sha256, tract test-load, golden
//! input), and only then writes it to the key-value store (Spin's Redis backend layout: each
//! key verbatim). Anything refused is recorded in the pointers document with its reason and
//! the last good version keeps serving.

use std::time::{SystemTime, UNIX_EPOCH};

use redis::Commands;
use serde_json::json;
use stellwerk_core::{
    ActivePointers, ModelObjects, ModelPointer, ModelPointers, Refusal, SnapshotPointer,
    SyncManifest, verify_model, verify_snapshot,
};

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
}

fn fetch(base: &str, key: &str) -> Result<Vec<u8>, String> {
    let url = format!(
        "{}/{}",
        base.trim_end_matches('/'),
        key.trim_start_matches('/')
    );
    let mut response = ureq::get(&url)
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?;
    response
        .body_mut()
        .with_config()
        .limit(MAX_OBJECT_BYTES)
        .read_to_vec()
        .map_err(|e| format!("GET {url}: {e}"))
}

/// Fetches and verifies one model version; the pointer on success, the refusal otherwise.
fn verify_release(base: &str, objects: &ModelObjects) -> Result<ModelPointer, Refusal> {
    let refuse = |reason: String| Refusal {
        object: objects.model_key.clone(),
        reason,
    };
    let manifest = fetch(base, &objects.manifest_key).map_err(refuse)?;
    let model = fetch(base, &objects.model_key).map_err(refuse)?;
    let model = verify_model(&manifest, &model).map_err(refuse)?;
    Ok(ModelPointer {
        model_key: objects.model_key.clone(),
        manifest: model.manifest().clone(),
    })
}

/// Runs one sync. Exit status 1 when anything was refused (recorded, last good kept).
pub fn run(args: &SyncArgs) -> Result<bool, String> {
    let manifest = fetch(&args.store, "manifest.json")?;
    let manifest = SyncManifest::parse(&manifest).map_err(|e| format!("manifest.json: {e:?}"))?;
    let mut kv = redis::Client::open(args.redis.as_str())
        .and_then(|c| c.get_connection())
        .map_err(|e| format!("redis: {e}"))?;
    let current: Option<Vec<u8>> = kv
        .get(MODEL_POINTERS_KEY)
        .map_err(|e| format!("GET: {e}"))?;
    let mut pointers: ActivePointers = current
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    let mut refusals = Vec::new();
    let mut activated = Vec::new();

    if let Some(object) = &manifest.snapshot {
        let verified = fetch(&args.store, &object.key)
            .and_then(|bytes| verify_snapshot(&bytes, &object.sha256).map(|s| (bytes, s)));
        match verified {
            Ok((bytes, snapshot)) => {
                let unchanged =
                    pointers.snapshot.as_ref().map(|p| &p.sha256) == Some(&object.sha256);
                if !unchanged {
                    let () = kv
                        .set(SNAPSHOT_KEY, bytes)
                        .map_err(|e| format!("SET: {e}"))?;
                    activated.push(object.key.clone());
                }
                pointers.snapshot = Some(SnapshotPointer {
                    version: snapshot.version,
                    sha256: object.sha256.clone(),
                });
            }
            Err(reason) => refusals.push(Refusal {
                object: object.key.clone(),
                reason,
            }),
        }
    }

    for release in &manifest.models {
        let previous = pointers.models.get(&release.name).cloned();
        let stable = match verify_release(&args.store, &release.stable) {
            Ok(pointer) => Some(pointer),
            Err(refusal) => {
                refusals.push(refusal);
                previous.as_ref().map(|p| p.stable.clone())
            }
        };
        let candidate = match &release.candidate {
            None => None,
            Some(objects) => match verify_release(&args.store, objects) {
                Ok(pointer) => Some(pointer),
                Err(refusal) => {
                    refusals.push(refusal);
                    previous.as_ref().and_then(|p| p.candidate.clone())
                }
            },
        };
        // Without any verified stable version the model is not served at all.
        if let Some(stable) = stable {
            for pointer in std::iter::once(&stable).chain(candidate.as_ref()) {
                let known = previous.as_ref().is_some_and(|p| {
                    p.stable.manifest.sha256 == pointer.manifest.sha256
                        || p.candidate
                            .as_ref()
                            .is_some_and(|c| c.manifest.sha256 == pointer.manifest.sha256)
                });
                if !known {
                    activated.push(pointer.model_key.clone());
                }
            }
            pointers
                .models
                .insert(release.name.clone(), ModelPointers { stable, candidate });
        }
    }

    pointers.last_sync = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs());
    pointers.refusals = refusals.clone();
    let document = serde_json::to_string(&pointers).map_err(|e| e.to_string())?;
    let () = kv
        .set(MODEL_POINTERS_KEY, document)
        .map_err(|e| format!("SET: {e}"))?;
    println!(
        "{}",
        json!({ "activated": activated, "refusals": refusals, "pointers": pointers })
    );
    Ok(refusals.is_empty())
}
