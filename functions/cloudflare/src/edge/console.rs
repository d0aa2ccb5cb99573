//! The marketers' console and its JSON API under `/_stellwerk/admin/`: the I/O around the core's
//! `admin_api`, `admin_auth` and `console`. Snapshots are read fresh from KV (not the isolate
//! cache) and written back there; every accepted write first leaves its audit entry in R2, one
//! object per entry, never overwritten.
//!
//! KV has no compare-and-swap: edits claim their version step in R2 first (`ledger`), so of two
//! writes racing on the same version one gets 409.

use super::access;
use super::control::edge_response;
use super::isolate;
use super::ledger::{self, Claim};
use crate::bindings::{KV, MODELS, keys, secrets};
use stellwerk_core::{
    ActivePointers, AdminCall, AuditEntry, Change, ChartLibrary, ConsoleRoute, EdgeResponse,
    MANIFEST_KEY, MODELS_PREFIX, PosteriorSnapshot, Snapshot, admin_call, admin_identity,
    apply_edit, console_page, console_route, expected_version, experiment_report, experiments_view,
    flags_view, login, logout, models_view, rollback_model, stale_version, unauthorized, view,
    whoami, write_accepted,
};
use worker::{Env, Request, Response, Result};

/// uPlot, embedded by build.rs from node_modules.
const CHART: ChartLibrary<'static> = ChartLibrary {
    script: include_bytes!(concat!(env!("OUT_DIR"), "/uplot.js")),
    style: include_bytes!(concat!(env!("OUT_DIR"), "/uplot.css")),
};

/// How many audit entries `GET api/audit` returns (the newest).
const AUDIT_PAGE: usize = 50;

pub async fn handle(mut req: Request, env: &Env, now_ms: f64) -> Result<Response> {
    let path = req.path();
    let method = req.method().to_string();
    let secret = env
        .secret(secrets::ADMIN_TOKEN)
        .map(|s| s.to_string())
        .unwrap_or_default();
    let now = (now_ms / 1000.0) as u64;
    let secure = req.url()?.scheme() == "https";
    let route = console_route(&method, &path);
    match route {
        ConsoleRoute::Login => {
            let form = req.bytes().await?;
            return edge_response(login(&form, &secret, now, secure));
        }
        ConsoleRoute::Logout => return edge_response(logout(secure)),
        _ => {}
    }
    let headers = req.headers();
    let who = match admin_identity(
        headers.get("authorization")?.as_deref(),
        headers.get("cookie")?.as_deref(),
        &secret,
        now,
    ) {
        Some(who) => Some(who),
        None => access::identity(&req, env, now_ms).await,
    };
    if route != ConsoleRoute::Api {
        return edge_response(console_page(route, who.as_deref(), CHART));
    }
    let Some(who) = who else {
        return edge_response(unauthorized());
    };
    let if_match = expected_version(headers.get("if-match")?.as_deref());
    let json_body = headers
        .get("content-type")?
        .is_some_and(|t| t.starts_with("application/json"));
    let body = if matches!(method.as_str(), "GET" | "HEAD") {
        Vec::new()
    } else {
        req.bytes().await?
    };
    let call = match admin_call(&method, &path, &body) {
        Ok(call) => call,
        Err(answer) => return edge_response(answer),
    };
    // A browser sends JSON cross-site only after a CORS preflight this API never grants, so a
    // session's writes must be JSON (the cookie is also SameSite=Strict).
    if call.is_write() && !json_body {
        return edge_response(EdgeResponse::error(
            415,
            "json_required",
            "writes take Content-Type: application/json",
        ));
    }
    let answer = match call {
        AdminCall::WhoAmI => whoami(&who),
        AdminCall::Snapshot => match active_snapshot(env).await? {
            Some((bytes, snapshot)) => {
                let mut answer = view(&serde_json::Value::Null, &snapshot.version);
                answer.body = bytes;
                answer
            }
            None => no_snapshot(),
        },
        AdminCall::Flags => match active_snapshot(env).await? {
            Some((_, snapshot)) => view(&flags_view(&snapshot), &snapshot.version),
            None => no_snapshot(),
        },
        AdminCall::Experiments => match active_snapshot(env).await? {
            Some((_, snapshot)) => view(
                &experiments_view(&snapshot, &posteriors(env).await?),
                &snapshot.version,
            ),
            None => no_snapshot(),
        },
        AdminCall::ExperimentReport(key) => match active_snapshot(env).await? {
            Some((_, snapshot)) => {
                match experiment_report(&snapshot, &posteriors(env).await?, &key) {
                    Some(report) => view(&report, &snapshot.version),
                    None => EdgeResponse::error(
                        404,
                        "unknown_experiment",
                        &format!("no experiment named {key:?}"),
                    ),
                }
            }
            None => no_snapshot(),
        },
        AdminCall::Edit(edit) => {
            let current = env.kv(KV)?.get(keys::SNAPSHOT).bytes().await?;
            match apply_edit(current.as_deref(), if_match.as_deref(), &edit) {
                Ok(outcome) => {
                    let (from, to) = (&outcome.change.version_before, &outcome.snapshot.version);
                    if let Claim::Lost { current } = ledger::claim(env, from, to, now_ms).await? {
                        return edge_response(stale_version(from, &current));
                    }
                    let entry = audit(env, &who, now_ms, outcome.change).await?;
                    env.kv(KV)?
                        .put_bytes(keys::SNAPSHOT, &outcome.bytes)?
                        .execute()
                        .await?;
                    isolate::invalidate();
                    write_accepted(&entry)
                }
                Err(refused) => refused,
            }
        }
        AdminCall::Models => {
            let manifest = isolate::fetch_object(env, MANIFEST_KEY).await?;
            let pointers = model_pointers(env).await?;
            let keys = store_keys(env, MODELS_PREFIX).await?;
            EdgeResponse::json(
                200,
                models_view(&pointers, manifest.as_deref(), &keys).to_string(),
            )
        }
        AdminCall::RollbackModel { name, version } => {
            let Some(manifest) = isolate::fetch_object(env, MANIFEST_KEY).await? else {
                return edge_response(EdgeResponse::error(
                    404,
                    "no_manifest",
                    "the store has no manifest.json",
                ));
            };
            let keys = store_keys(env, MODELS_PREFIX).await?;
            match rollback_model(&manifest, if_match.as_deref(), &name, &version, &keys) {
                Ok(outcome) => {
                    let entry = audit(env, &who, now_ms, outcome.change).await?;
                    env.bucket(MODELS)?
                        .put(MANIFEST_KEY, outcome.manifest)
                        .execute()
                        .await?;
                    // The sync verifies the version before any edge serves it.
                    super::sync::run(env, now_ms).await;
                    let pointers = model_pointers(env).await?;
                    let mut answer = write_accepted(&entry);
                    let mut body: serde_json::Value =
                        serde_json::from_slice(&answer.body).unwrap_or_default();
                    body["refusals"] = serde_json::to_value(&pointers.refusals)?;
                    answer.body = body.to_string().into_bytes();
                    answer
                }
                Err(refused) => refused,
            }
        }
        AdminCall::Audit => EdgeResponse::json(
            200,
            serde_json::json!({ "entries": audit_entries(env).await? }).to_string(),
        ),
    };
    edge_response(answer)
}

fn no_snapshot() -> EdgeResponse {
    EdgeResponse::error(503, "no_snapshot", "no valid snapshot is active yet")
}

async fn active_snapshot(env: &Env) -> Result<Option<(Vec<u8>, Snapshot)>> {
    let Some(bytes) = env.kv(KV)?.get(keys::SNAPSHOT).bytes().await? else {
        return Ok(None);
    };
    Ok(Snapshot::parse(&bytes)
        .ok()
        .map(|snapshot| (bytes, snapshot)))
}

async fn posteriors(env: &Env) -> Result<PosteriorSnapshot> {
    let bytes = env.kv(KV)?.get(keys::POSTERIORS).bytes().await?;
    Ok(bytes
        .and_then(|b| PosteriorSnapshot::parse(&b).ok())
        .unwrap_or_default())
}

async fn model_pointers(env: &Env) -> Result<ActivePointers> {
    let text = env.kv(KV)?.get(keys::MODEL_POINTERS).text().await?;
    Ok(text
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default())
}

/// Appends the entry to the audit log; the write it records happens only after this succeeded.
async fn audit(env: &Env, who: &str, now_ms: f64, change: Change) -> Result<AuditEntry> {
    let id = super::random_hex::<8>()?;
    let entry = AuditEntry::new(&id, now_ms as u64, who, change);
    env.bucket(MODELS)?
        .put(entry.key(), entry.to_json().into_bytes())
        .execute()
        .await?;
    Ok(entry)
}

/// Every key under `prefix`, in key order.
async fn store_keys(env: &Env, prefix: &str) -> Result<Vec<String>> {
    let bucket = env.bucket(MODELS)?;
    let mut keys = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut list = bucket.list().prefix(prefix);
        if let Some(c) = cursor.take() {
            list = list.cursor(c);
        }
        let page = list.execute().await?;
        keys.extend(page.objects().iter().map(|o| o.key()));
        match page.cursor().filter(|_| page.truncated()) {
            Some(next) => cursor = Some(next),
            None => return Ok(keys),
        }
    }
}

/// The newest audit entries, newest first.
async fn audit_entries(env: &Env) -> Result<Vec<serde_json::Value>> {
    let keys = store_keys(env, stellwerk_core::AUDIT_PREFIX).await?;
    let mut entries = Vec::new();
    for key in keys.iter().rev().take(AUDIT_PAGE) {
        if let Some(bytes) = isolate::fetch_object(env, key).await?
            && let Ok(entry) = serde_json::from_slice(&bytes)
        {
            entries.push(entry);
        }
    }
    Ok(entries)
}
