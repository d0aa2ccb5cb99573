//! Serialises snapshot writes. KV has no compare-and-swap, so two console edits made on the same
//! version could both pass the version check and the later would silently overwrite the
//! earlier. R2 has conditional puts: every snapshot write records the version it made in one R2
//! object, and an edit first claims the step from the version it read to the one it makes with
//! a put conditional on the etag it saw. Of two racing edits exactly one wins; the other gets 409.

use crate::bindings::MODELS;
use worker::{Conditional, Env, Result};

/// The R2 object holding the version of the last snapshot write.
const LEDGER_KEY: &str = "admin/snapshot-version";

/// KV shows a write everywhere within about a minute. A ledger entry older than that which KV
/// still does not show belongs to a write whose KV put failed; it no longer blocks edits.
const KV_SETTLE_MS: f64 = 60_000.0;

pub enum Claim {
    Won,
    /// Another write is ahead; `current` is the version it made.
    Lost {
        current: String,
    },
}

/// Claims the step `from` → `to` for a snapshot edit based on `from`.
pub async fn claim(env: &Env, from: &str, to: &str, now_ms: f64) -> Result<Claim> {
    let condition = match read(env).await? {
        None => Conditional {
            etag_does_not_match: Some("*".into()),
            ..Conditional::default()
        },
        Some(entry) => {
            let abandoned = now_ms - entry.uploaded_ms > KV_SETTLE_MS;
            if entry.version != from && !abandoned {
                return Ok(Claim::Lost {
                    current: entry.version,
                });
            }
            Conditional {
                etag_matches: Some(entry.etag),
                ..Conditional::default()
            }
        }
    };
    let written = env
        .bucket(MODELS)?
        .put(LEDGER_KEY, to.as_bytes().to_vec())
        .only_if(condition)
        .execute()
        .await?;
    if written.is_some() {
        return Ok(Claim::Won);
    }
    let current = read(env).await?.map(|e| e.version).unwrap_or_default();
    Ok(Claim::Lost { current })
}

/// Records a write that replaced the snapshot outright (a push, the sync).
pub async fn record(env: &Env, version: &str) -> Result<()> {
    env.bucket(MODELS)?
        .put(LEDGER_KEY, version.as_bytes().to_vec())
        .execute()
        .await?;
    Ok(())
}

struct Entry {
    version: String,
    etag: String,
    uploaded_ms: f64,
}

async fn read(env: &Env) -> Result<Option<Entry>> {
    let Some(object) = env.bucket(MODELS)?.get(LEDGER_KEY).execute().await? else {
        return Ok(None);
    };
    let version = match object.body() {
        Some(body) => body.text().await?,
        None => String::new(),
    };
    Ok(Some(Entry {
        version,
        etag: object.etag(),
        uploaded_ms: object.uploaded().as_millis() as f64,
    }))
}
