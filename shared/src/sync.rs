//! Syncing snapshots and models from object storage: what to fetch, how to verify it, and which
//! version serves which unit.
//!
//! The object store holds a [`SyncManifest`] (`manifest.json`) naming the snapshot object and,
//! per model, a stable version and optionally a candidate with a canary share. The edge keeps
//! [`ActivePointers`] (in KV): the versions that passed verification. A sync only ever moves a
//! pointer to an object that verified; anything else is refused with a reason and the pointer
//! keeps its last good value.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{Model, ModelManifest};
use crate::request::hex;
use crate::snapshot::Snapshot;
use crate::validate::{Invalid, Issues, field, index};

/// `manifest.json` in the object store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncManifest {
    pub snapshot: Option<ObjectRef>,
    #[serde(default)]
    pub models: Vec<ModelRelease>,
}

/// An object in the store and the sha256 it must have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectRef {
    pub key: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelRelease {
    pub name: String,
    pub stable: ModelObjects,
    /// A newer version served to `canaryPercent` of units (from its model manifest).
    #[serde(default)]
    pub candidate: Option<ModelObjects>,
}

/// A model version's two objects: its manifest (which holds the model's sha256) and the ONNX bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelObjects {
    pub manifest_key: String,
    pub model_key: String,
}

impl SyncManifest {
    pub fn parse(bytes: &[u8]) -> Result<SyncManifest, Invalid> {
        let mut issues = Issues::new();
        let manifest: SyncManifest = match serde_json::from_slice(bytes) {
            Ok(m) => m,
            Err(e) => {
                issues.push("", format!("not a sync manifest: {e}"));
                return Err(Invalid(issues.into_vec()));
            }
        };
        if let Some(snapshot) = &manifest.snapshot
            && !is_sha256_hex(&snapshot.sha256)
        {
            issues.push("snapshot.sha256", "must be 64 lowercase hex characters");
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, release) in manifest.models.iter().enumerate() {
            if !names.insert(release.name.as_str()) {
                issues.push(
                    field(&index("models", i), "name"),
                    format!("duplicate model {:?}", release.name),
                );
            }
        }
        issues.finish(manifest)
    }
}

/// What the edge currently serves (kept in KV), and what the last sync refused.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivePointers {
    #[serde(default)]
    pub snapshot: Option<SnapshotPointer>,
    #[serde(default)]
    pub models: BTreeMap<String, ModelPointers>,
    /// Unix seconds of the last completed sync.
    #[serde(default)]
    pub last_sync: Option<u64>,
    /// What the last sync refused and why (kept so `health` can show it).
    #[serde(default)]
    pub refusals: Vec<Refusal>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotPointer {
    pub version: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelPointers {
    pub stable: ModelPointer,
    #[serde(default)]
    pub candidate: Option<ModelPointer>,
}

/// A verified model version: where its bytes are and the manifest they passed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelPointer {
    pub model_key: String,
    pub manifest: ModelManifest,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Refusal {
    pub object: String,
    pub reason: String,
}

/// Lowercase hex sha256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Verifies a snapshot object: its sha256 first, then full validation.
pub fn verify_snapshot(bytes: &[u8], expected_sha256: &str) -> Result<Snapshot, String> {
    let actual = sha256_hex(bytes);
    if actual != expected_sha256 {
        return Err(format!(
            "sha256 mismatch: manifest says {expected_sha256}, object is {actual}"
        ));
    }
    Snapshot::parse(bytes).map_err(|invalid| {
        format!(
            "invalid snapshot: {}",
            invalid
                .0
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        )
    })
}

/// Verifies a model version: its manifest parses, its bytes match the manifest's sha256, tract
/// loads it with the declared shapes, and the golden input gives the golden output.
pub fn verify_model(manifest_bytes: &[u8], model_bytes: &[u8]) -> Result<Model, String> {
    let manifest = ModelManifest::parse(manifest_bytes)
        .map_err(|invalid| format!("invalid model manifest: {invalid}"))?;
    Model::load(manifest, model_bytes).map_err(|e| e.to_string())
}

/// The object-store key of the sync manifest.
pub const MANIFEST_KEY: &str = "manifest.json";

/// What one sync decided: the pointers to store and, when the snapshot changed, the verified
/// snapshot bytes to activate.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncOutcome {
    pub pointers: ActivePointers,
    pub activate_snapshot: Option<Vec<u8>>,
}

/// The next step of a sync: objects to fetch first, or the outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum SyncStep {
    /// Fetch these keys and call [`sync_step`] again with them added to `fetched`
    /// (`None` for an object the store does not have).
    Fetch(Vec<String>),
    Done(SyncOutcome),
}

/// One step of a sync, sans-IO: the adapter fetches what is asked for and calls again.
///
/// Objects are fetched in two rounds: the manifest's snapshot (only when its sha256 differs
/// from the active one) and every model manifest; then the ONNX bytes of model versions whose
/// manifest names a different sha256 than the active pointer. Every object is verified before
/// a pointer moves; a refused object leaves its pointer on the last good version and is listed
/// in `refusals`.
pub fn sync_step(
    manifest_bytes: &[u8],
    current: &ActivePointers,
    fetched: &BTreeMap<String, Option<Vec<u8>>>,
    now: u64,
) -> SyncStep {
    let mut pointers = current.clone();
    pointers.refusals.clear();
    let manifest = match SyncManifest::parse(manifest_bytes) {
        Ok(manifest) => manifest,
        Err(invalid) => {
            pointers.refusals.push(Refusal {
                object: MANIFEST_KEY.into(),
                reason: invalid.to_string(),
            });
            pointers.last_sync = Some(now);
            return SyncStep::Done(SyncOutcome {
                pointers,
                activate_snapshot: None,
            });
        }
    };

    let snapshot_wanted = manifest.snapshot.as_ref().filter(|wanted| {
        current
            .snapshot
            .as_ref()
            .is_none_or(|active| active.sha256 != wanted.sha256)
    });
    let mut missing: Vec<String> = snapshot_wanted.iter().map(|o| o.key.clone()).collect();
    missing.extend(
        manifest
            .models
            .iter()
            .flat_map(model_versions)
            .map(|o| o.manifest_key.clone()),
    );
    missing.retain(|key| !fetched.contains_key(key));
    if !missing.is_empty() {
        return SyncStep::Fetch(missing);
    }

    // Second round: the model bytes that changed.
    let mut model_keys = Vec::new();
    for release in &manifest.models {
        for objects in model_versions(release) {
            if let Some(Some(bytes)) = fetched.get(&objects.manifest_key)
                && let Ok(candidate) = ModelManifest::parse(bytes)
                && active_sha(current, &release.name, &objects.model_key)
                    != Some(candidate.sha256.as_str())
                && !fetched.contains_key(&objects.model_key)
            {
                model_keys.push(objects.model_key.clone());
            }
        }
    }
    if !model_keys.is_empty() {
        return SyncStep::Fetch(model_keys);
    }

    let mut activate_snapshot = None;
    if let Some(wanted) = snapshot_wanted {
        match fetched.get(&wanted.key) {
            Some(Some(bytes)) => match verify_snapshot(bytes, &wanted.sha256) {
                Ok(snapshot) => {
                    pointers.snapshot = Some(SnapshotPointer {
                        version: snapshot.version,
                        sha256: wanted.sha256.clone(),
                    });
                    activate_snapshot = Some(bytes.clone());
                }
                Err(reason) => pointers.refusals.push(Refusal {
                    object: wanted.key.clone(),
                    reason,
                }),
            },
            _ => pointers.refusals.push(Refusal {
                object: wanted.key.clone(),
                reason: "object not found".into(),
            }),
        }
    }

    let mut models = BTreeMap::new();
    for release in &manifest.models {
        let active = current.models.get(&release.name);
        let stable = verified_pointer(
            &release.stable,
            active.map(|a| &a.stable),
            fetched,
            &mut pointers.refusals,
        );
        let candidate = release.candidate.as_ref().and_then(|objects| {
            let active_candidate = active.and_then(|a| a.candidate.as_ref());
            verified_pointer(objects, active_candidate, fetched, &mut pointers.refusals)
        });
        if let Some(stable) = stable {
            models.insert(release.name.clone(), ModelPointers { stable, candidate });
        }
    }
    pointers.models = models;
    pointers.last_sync = Some(now);
    SyncStep::Done(SyncOutcome {
        pointers,
        activate_snapshot,
    })
}

fn model_versions(release: &ModelRelease) -> impl Iterator<Item = &ModelObjects> {
    std::iter::once(&release.stable).chain(release.candidate.as_ref())
}

/// The sha256 of the active pointer that serves `model_key` for this model, if any.
fn active_sha<'a>(current: &'a ActivePointers, model: &str, model_key: &str) -> Option<&'a str> {
    let active = current.models.get(model)?;
    std::iter::once(&active.stable)
        .chain(active.candidate.as_ref())
        .find(|p| p.model_key == model_key)
        .map(|p| p.manifest.sha256.as_str())
}

/// The pointer for one model version: the newly verified one, the unchanged active one, or —
/// when the new objects are refused — the last good one.
fn verified_pointer(
    objects: &ModelObjects,
    active: Option<&ModelPointer>,
    fetched: &BTreeMap<String, Option<Vec<u8>>>,
    refusals: &mut Vec<Refusal>,
) -> Option<ModelPointer> {
    let refuse = |refusals: &mut Vec<Refusal>, object: &str, reason: String| {
        refusals.push(Refusal {
            object: object.to_owned(),
            reason,
        });
        active.cloned()
    };
    let Some(Some(manifest_bytes)) = fetched.get(&objects.manifest_key) else {
        return refuse(refusals, &objects.manifest_key, "object not found".into());
    };
    let manifest = match ModelManifest::parse(manifest_bytes) {
        Ok(manifest) => manifest,
        Err(invalid) => {
            return refuse(
                refusals,
                &objects.manifest_key,
                format!("invalid model manifest: {invalid}"),
            );
        }
    };
    if let Some(active) =
        active.filter(|a| a.model_key == objects.model_key && a.manifest == manifest)
    {
        return Some(active.clone());
    }
    let Some(Some(model_bytes)) = fetched.get(&objects.model_key) else {
        return refuse(refusals, &objects.model_key, "object not found".into());
    };
    match verify_model(manifest_bytes, model_bytes) {
        Ok(model) => Some(ModelPointer {
            model_key: objects.model_key.clone(),
            manifest: model.manifest().clone(),
        }),
        Err(reason) => refuse(refusals, &objects.model_key, reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODEL_MANIFEST: &[u8] = include_bytes!("../../models/demo/ctr-mlp.manifest.json");
    const MODEL: &[u8] = include_bytes!("../../models/demo/ctr-mlp.onnx");
    const SNAPSHOT: &[u8] = include_bytes!("../../examples/snapshot.json");

    fn manifest(snapshot_sha: &str) -> Vec<u8> {
        serde_json::json!({
            "snapshot": { "key": "snapshots/s.json", "sha256": snapshot_sha },
            "models": [{ "name": "ctr", "stable": { "manifestKey": "models/ctr/1.json", "modelKey": "models/ctr/1.onnx" } }]
        })
        .to_string()
        .into_bytes()
    }

    /// Runs a sync against an in-memory store, the way an adapter does against R2 or S3.
    fn run(
        manifest: &[u8],
        current: &ActivePointers,
        store: &BTreeMap<&str, Vec<u8>>,
    ) -> (SyncOutcome, Vec<String>) {
        let mut fetched = BTreeMap::new();
        let mut requested = Vec::new();
        loop {
            match sync_step(manifest, current, &fetched, 1_000) {
                SyncStep::Fetch(keys) => {
                    for key in keys {
                        fetched.insert(key.clone(), store.get(key.as_str()).cloned());
                        requested.push(key);
                    }
                }
                SyncStep::Done(outcome) => return (outcome, requested),
            }
        }
    }

    fn store(model: &[u8]) -> BTreeMap<&'static str, Vec<u8>> {
        BTreeMap::from([
            ("snapshots/s.json", SNAPSHOT.to_vec()),
            ("models/ctr/1.json", MODEL_MANIFEST.to_vec()),
            ("models/ctr/1.onnx", model.to_vec()),
        ])
    }

    #[test]
    fn a_first_sync_verifies_and_activates_everything() {
        let (outcome, _) = run(
            &manifest(&sha256_hex(SNAPSHOT)),
            &ActivePointers::default(),
            &store(MODEL),
        );
        assert_eq!(outcome.activate_snapshot.as_deref(), Some(SNAPSHOT));
        assert_eq!(
            outcome
                .pointers
                .snapshot
                .as_ref()
                .map(|p| p.version.as_str()),
            Some("demo-1")
        );
        assert_eq!(
            outcome.pointers.models["ctr"].stable.model_key,
            "models/ctr/1.onnx"
        );
        assert!(
            outcome.pointers.refusals.is_empty(),
            "{:?}",
            outcome.pointers.refusals
        );
        assert_eq!(outcome.pointers.last_sync, Some(1_000));
    }

    #[test]
    fn an_unchanged_store_downloads_no_model_and_activates_nothing() {
        let m = manifest(&sha256_hex(SNAPSHOT));
        let (first, _) = run(&m, &ActivePointers::default(), &store(MODEL));
        let (second, requested) = run(&m, &first.pointers, &store(MODEL));
        assert_eq!(
            requested,
            vec!["models/ctr/1.json".to_owned()],
            "only the small manifest is read"
        );
        assert_eq!(second.activate_snapshot, None);
        assert_eq!(second.pointers.models, first.pointers.models);
    }

    #[test]
    fn corrupted_objects_are_refused_and_the_last_good_ones_keep_serving() {
        let m = manifest(&sha256_hex(SNAPSHOT));
        let (good, _) = run(&m, &ActivePointers::default(), &store(MODEL));
        // A new model version whose bytes were damaged in the store.
        let mut new_manifest: serde_json::Value = serde_json::from_slice(MODEL_MANIFEST).unwrap();
        new_manifest["version"] = "2.0.0".into();
        let mut corrupted = MODEL.to_vec();
        corrupted[100] ^= 0xff;
        new_manifest["sha256"] = sha256_hex(&corrupted).into();
        let mut bad_store = store(&corrupted);
        bad_store.insert("models/ctr/1.json", new_manifest.to_string().into_bytes());
        let (outcome, _) = run(&m, &good.pointers, &bad_store);
        assert_eq!(
            outcome.pointers.models["ctr"], good.pointers.models["ctr"],
            "old model keeps serving"
        );
        assert_eq!(outcome.pointers.refusals.len(), 1);
        assert_eq!(outcome.pointers.refusals[0].object, "models/ctr/1.onnx");

        // A snapshot whose bytes do not match the manifest's sha256.
        let (outcome, _) = run(&manifest(&"0".repeat(64)), &good.pointers, &store(MODEL));
        assert_eq!(outcome.activate_snapshot, None);
        assert_eq!(outcome.pointers.snapshot, good.pointers.snapshot);
        assert!(
            outcome.pointers.refusals[0]
                .reason
                .contains("sha256 mismatch")
        );
    }

    #[test]
    fn a_broken_manifest_changes_nothing() {
        let (good, _) = run(
            &manifest(&sha256_hex(SNAPSHOT)),
            &ActivePointers::default(),
            &store(MODEL),
        );
        let (outcome, requested) = run(b"{not json", &good.pointers, &store(MODEL));
        assert!(requested.is_empty());
        assert_eq!(outcome.pointers.models, good.pointers.models);
        assert_eq!(outcome.pointers.refusals[0].object, MANIFEST_KEY);
    }
}
