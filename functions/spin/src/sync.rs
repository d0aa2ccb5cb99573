//! The sync run by the admin route (`POST /_stellwerk/admin/sync`): the object store's
//! manifest, snapshot and models, verified by the core's `sync_step` (sha256, validation, tract
//! test-load, golden input), then activated in the key-value store. The same steps as the
//! Worker's scheduled sync and `stellwerk sync`.

use std::collections::BTreeMap;

use stellwerk_core::{ActivePointers, MANIFEST_KEY, SyncStep, sync_step};

use crate::settings::Settings;
use crate::state::{self, MODEL_POINTERS_KEY, SNAPSHOT_KEY};
use crate::store;

/// Runs one sync. Anything refused is listed in the pointers' `refusals` and the last good
/// versions keep serving; an unreachable store or key-value store changes nothing.
pub async fn run(settings: &Settings, now: u64) -> Result<(), String> {
    let object_store = settings.object_store.as_ref().map_err(Clone::clone)?;
    let Some(manifest) = store::get(object_store, MANIFEST_KEY, now).await? else {
        eprintln!("stellwerk: sync: no {MANIFEST_KEY} in the object store, nothing to do");
        return Ok(());
    };
    let current: ActivePointers = state::get(MODEL_POINTERS_KEY)?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    let mut fetched = BTreeMap::new();
    let outcome = loop {
        match sync_step(&manifest, &current, &fetched, now) {
            SyncStep::Fetch(keys) => {
                for key in keys {
                    let bytes = store::get(object_store, &key, now).await?;
                    fetched.insert(key, bytes);
                }
            }
            SyncStep::Done(outcome) => break outcome,
        }
    };
    for refusal in &outcome.pointers.refusals {
        eprintln!(
            "stellwerk: sync refused {}: {}",
            refusal.object, refusal.reason
        );
    }
    if let Some(snapshot) = &outcome.activate_snapshot {
        state::put(SNAPSHOT_KEY, snapshot)?;
    }
    let pointers = serde_json::to_vec(&outcome.pointers).map_err(|e| e.to_string())?;
    state::put(MODEL_POINTERS_KEY, &pointers)?;
    state::invalidate();
    Ok(())
}
