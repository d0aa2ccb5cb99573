//! The scheduled sync: snapshot and models from R2, verified by the core, activated in KV.

use super::isolate;
use crate::bindings::{KV, keys};
use std::collections::BTreeMap;
use stellwerk_core::{ActivePointers, MANIFEST_KEY, SyncStep, sync_step};
use worker::{Env, Result, console_error, console_log};

/// Runs one sync. Failures are logged and recorded in the pointers' refusals, never thrown, so
/// the next cron tick simply tries again and the last good versions keep serving meanwhile.
pub async fn run(env: &Env, now_ms: f64) {
    if let Err(error) = sync(env, now_ms).await {
        console_error!("stellwerk: sync failed, keeping the active versions: {error}");
    }
}

async fn sync(env: &Env, now_ms: f64) -> Result<()> {
    let Some(manifest) = isolate::fetch_object(env, MANIFEST_KEY).await? else {
        console_log!("stellwerk: sync: no {MANIFEST_KEY} in the bucket, nothing to do");
        return Ok(());
    };
    let kv = env.kv(KV)?;
    let current: ActivePointers = match kv.get(keys::MODEL_POINTERS).text().await? {
        Some(text) => serde_json::from_str(&text).unwrap_or_default(),
        None => ActivePointers::default(),
    };
    let now = (now_ms / 1000.0) as u64;
    let mut fetched = BTreeMap::new();
    let outcome = loop {
        match sync_step(&manifest, &current, &fetched, now) {
            SyncStep::Fetch(objects) => {
                for key in objects {
                    let bytes = isolate::fetch_object(env, &key).await?;
                    fetched.insert(key, bytes);
                }
            }
            SyncStep::Done(outcome) => break outcome,
        }
    };
    for refusal in &outcome.pointers.refusals {
        console_error!(
            "stellwerk: sync refused {}: {}",
            refusal.object,
            refusal.reason
        );
    }
    if let Some(snapshot) = &outcome.activate_snapshot {
        kv.put_bytes(keys::SNAPSHOT, snapshot)?.execute().await?;
        if let Some(activated) = &outcome.pointers.snapshot {
            super::ledger::record(env, &activated.version).await?;
        }
    }
    kv.put(
        keys::MODEL_POINTERS,
        serde_json::to_string(&outcome.pointers)?,
    )?
    .execute()
    .await?;
    isolate::invalidate();
    Ok(())
}
