//! The scheduled sync: published snapshot (and later models) from R2 into KV.

use super::isolate;
use crate::bindings::{DEFAULT_SNAPSHOT_OBJECT, KV, MODELS, keys, vars};
use crate::status::SyncStatus;
use worker::{Env, Error, Result, ScheduledEvent, console_error};

/// Runs one sync and records its outcome; failures are recorded, not thrown, so the next cron
/// tick simply tries again.
pub async fn run(event: &ScheduledEvent, env: &Env) {
    let object = env
        .var(vars::SNAPSHOT_OBJECT)
        .map(|value| value.to_string())
        .unwrap_or_else(|_| DEFAULT_SNAPSHOT_OBJECT.to_string());
    let mut status = SyncStatus {
        cron: event.cron(),
        scheduled_time_ms: event.schedule(),
        object: object.clone(),
        outcome: "missing".into(),
        etag: None,
        bytes: None,
        reason: None,
    };
    match sync_snapshot(env, &object).await {
        Ok(Some((etag, bytes))) => {
            status.outcome = "activated".into();
            status.etag = Some(etag);
            status.bytes = Some(bytes);
        }
        Ok(None) => {}
        Err(error) => {
            console_error!("stellwerk: sync of {object} failed: {error}");
            status.outcome = "failed".into();
            status.reason = Some(error.to_string());
        }
    }
    if let Err(error) = write_status(env, &status).await {
        console_error!("stellwerk: sync status not written: {error}");
    }
}

/// Copies the published snapshot into KV; `None` when the bucket has no such object.
async fn sync_snapshot(env: &Env, object: &str) -> Result<Option<(String, u64)>> {
    let Some(found) = env.bucket(MODELS)?.get(object).execute().await? else {
        return Ok(None);
    };
    let etag = found.etag();
    let bytes = found
        .body()
        .ok_or_else(|| Error::RustError(format!("{object}: object has no body")))?
        .bytes()
        .await?;
    // CORE: `stellwerk_core::sync` checks the manifest's sha256, test-parses the snapshot and
    // test-loads its models (canary, last-known-good) before anything is activated; the model
    // pointers go to `keys::MODEL_POINTERS`.
    env.kv(KV)?
        .put_bytes(keys::SNAPSHOT, &bytes)?
        .execute()
        .await?;
    isolate::invalidate_snapshot();
    Ok(Some((etag, bytes.len() as u64)))
}

async fn write_status(env: &Env, status: &SyncStatus) -> Result<()> {
    env.kv(KV)?
        .put(keys::SYNC_STATUS, serde_json::to_string(status)?)?
        .execute()
        .await?;
    Ok(())
}
