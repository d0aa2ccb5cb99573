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
