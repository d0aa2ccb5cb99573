//! The admin JSON API behind `/_stellwerk/admin/api/`, sans-IO: which call a request is, how an
//! edit changes the active snapshot, what the console's views and experiment reports contain,
//! and the audit entry every accepted write leaves.
//!
//! An adapter reads the active snapshot (and posteriors, model pointers, the sync manifest),
//! calls [`admin_call`] and the function for that call, stores what comes back and answers with
//! the [`EdgeResponse`] it is given. Every write is checked against the version the caller last
//! read (`If-Match`: stale → 409), validated by [`Snapshot::from_value`] exactly as
//! `stellwerk validate` does (invalid → 422 with every `path: reason`), and gets a new version.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value, json};

use crate::aggregate::PosteriorSnapshot;
use crate::bandit::{ArmStats, arm_probabilities};
use crate::edge::EdgeResponse;
use crate::history::traffic_shares;
use crate::snapshot::{ExperimentStatus, Policy, Snapshot};
use crate::sync::{ActivePointers, ModelObjects, ModelRelease, SyncManifest, sha256_hex};
use crate::validate::{Invalid, Issue, field};

/// Every API path starts with this.
pub const ADMIN_API_PREFIX: &str = "/_stellwerk/admin/api/";

/// Object-store prefix of the audit log: one object per accepted write.
pub const AUDIT_PREFIX: &str = "audit/";

/// Object-store prefix under which model versions live as `<name>/<version>.manifest.json` and
/// `<name>/<version>.onnx`.
pub const MODELS_PREFIX: &str = "models/";

/// Width of the credible intervals the reports give.
pub const CREDIBLE_LEVEL: f64 = 0.95;

/// What an API request asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum AdminCall {
    /// `GET api/snapshot`: the active snapshot document.
    Snapshot,
    /// `GET api/flags`.
    Flags,
    /// `GET api/experiments`.
    Experiments,
    /// `GET api/experiments/{key}`: the report behind the experiment page.
    ExperimentReport(String),
    /// A write to the snapshot (`POST api/flags/{key}`, `POST api/experiments/{key}`,
    /// `POST api/kill-switch`, `PUT api/snapshot`).
    Edit(SnapshotEdit),
    /// `GET api/models`: active versions and the versions in the store.
    Models,
    /// `POST api/models/{name}/rollback` with `{"version"}`.
    RollbackModel { name: String, version: String },
    /// `GET api/audit`: the newest audit entries.
    Audit,
    /// `GET api/whoami`: who the credentials belong to.
    WhoAmI,
}

impl AdminCall {
    /// Whether the call changes something (and so needs a version and leaves an audit entry).
    pub fn is_write(&self) -> bool {
        matches!(self, AdminCall::Edit(_) | AdminCall::RollbackModel { .. })
    }
}

/// One change to the snapshot.
#[derive(Debug, Clone, PartialEq)]
pub enum SnapshotEdit {
    Flag {
        key: String,
        change: FlagChange,
    },
    Experiment {
        key: String,
        change: ExperimentChange,
    },
    KillSwitch {
        on: bool,
    },
    /// A whole new document (what `stellwerk push` sends).
    Replace(Value),
}

/// Fields of a flag to change; absent fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FlagChange {
    /// `"ENABLED"` or `"DISABLED"` (flagd's state: a disabled flag applies no variant).
    pub state: Option<String>,
    pub default_variant: Option<String>,
    /// JsonLogic rule; `null` removes the targeting.
    #[serde(default, deserialize_with = "present")]
    pub targeting: Option<Value>,
    /// Percentages per variant (summing to 100) for the flag's `fractional` rollout.
    pub rollout: Option<BTreeMap<String, u64>>,
}

/// Fields of an experiment to change; absent fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExperimentChange {
    pub status: Option<ExperimentStatus>,
    /// With `status: stopped`: the arm everyone gets from now on.
    pub winner: Option<String>,
    /// Enrolled share, 0..=1.
    pub traffic: Option<f64>,
    /// JsonLogic rule; `null` removes the targeting.
    #[serde(default, deserialize_with = "present")]
    pub targeting: Option<Value>,
}

/// Keeps an explicit `null` apart from an absent field.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// Which API call `method` + `path` + `body` is, or the 4xx answer for a request that is none.
pub fn admin_call(method: &str, path: &str, body: &[u8]) -> Result<AdminCall, EdgeResponse> {
    let rest = path
        .strip_prefix(ADMIN_API_PREFIX)
        .ok_or_else(not_found)?
        .trim_end_matches('/');
    let segments: Vec<&str> = rest.split('/').collect();
    let method = method.to_ascii_uppercase();
    let get = method == "GET" || method == "HEAD";
    let call = match (segments.as_slice(), get, method.as_str()) {
        (["snapshot"], true, _) => AdminCall::Snapshot,
        (["snapshot"], _, "PUT") => AdminCall::Edit(SnapshotEdit::Replace(json_body(body)?)),
        (["flags"], true, _) => AdminCall::Flags,
        (["flags", key], _, "POST") => AdminCall::Edit(SnapshotEdit::Flag {
            key: (*key).to_owned(),
            change: typed_body(body)?,
        }),
        (["experiments"], true, _) => AdminCall::Experiments,
        (["experiments", key], true, _) => AdminCall::ExperimentReport((*key).to_owned()),
        (["experiments", key], _, "POST") => AdminCall::Edit(SnapshotEdit::Experiment {
            key: (*key).to_owned(),
            change: typed_body(body)?,
        }),
        (["kill-switch"], _, "POST") => {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct KillSwitch {
                on: bool,
            }
            let KillSwitch { on } = typed_body(body)?;
            AdminCall::Edit(SnapshotEdit::KillSwitch { on })
        }
        (["models"], true, _) => AdminCall::Models,
        (["models", name, "rollback"], _, "POST") => {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Rollback {
                version: String,
            }
            let Rollback { version } = typed_body(body)?;
            AdminCall::RollbackModel {
                name: (*name).to_owned(),
                version,
            }
        }
        (["audit"], true, _) => AdminCall::Audit,
        (["whoami"], true, _) => AdminCall::WhoAmI,
        (
            ["snapshot"]
            | ["flags" | "experiments" | "models" | "audit" | "whoami"]
            | ["flags" | "experiments", _]
            | ["kill-switch"]
            | ["models", _, "rollback"],
            _,
            _,
        ) => {
            return Err(EdgeResponse::error(
                405,
                "method_not_allowed",
                "this API route does not take that method",
            ));
        }
        _ => return Err(not_found()),
    };
    Ok(call)
}

fn not_found() -> EdgeResponse {
    EdgeResponse::error(404, "not_found", "no such admin API route")
}

fn json_body(body: &[u8]) -> Result<Value, EdgeResponse> {
    serde_json::from_slice(body)
        .map_err(|e| EdgeResponse::error(400, "malformed_json", &e.to_string()))
}

fn typed_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, EdgeResponse> {
    serde_json::from_slice(body)
        .map_err(|e| EdgeResponse::error(400, "bad_request", &e.to_string()))
}

/// The version a caller last read, from `If-Match` (`"v"`, `W/"v"` or bare).
pub fn expected_version(if_match: Option<&str>) -> Option<String> {
    let value = if_match?.trim();
    let value = value.strip_prefix("W/").unwrap_or(value);
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    (!value.is_empty()).then(|| value.to_owned())
}

/// The `ETag` for a version.
pub fn etag(version: &str) -> String {
    format!("\"{version}\"")
}

/// A write as the audit log keeps it: what changed, and the changed part before and after.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// One line for people: `flag holiday-banner: state ENABLED → DISABLED`.
    pub what: String,
    /// What was written: `flags.holiday-banner`, `experiments.hero`, `killSwitch`, `snapshot`,
    /// `models.ctr-mlp`.
    pub target: String,
    pub before: Value,
    pub after: Value,
    pub version_before: String,
    pub version_after: String,
}

/// An accepted snapshot edit: the document to activate and its audit record.
#[derive(Debug, Clone)]
pub struct EditOutcome {
    pub snapshot: Snapshot,
    /// The new document's bytes, for KV.
    pub bytes: Vec<u8>,
    pub change: Change,
}

/// Applies `edit` to the active snapshot `current`, checked against the version the caller read.
/// With no active snapshot only a whole document ([`SnapshotEdit::Replace`]) is taken, and no
/// version is needed.
///
/// Errors are complete answers: 503 without an active snapshot to edit, 428 without a version, 409 when it is stale (the body names the
/// current version), 404 for an unknown flag or experiment, 422 with every `path: reason` when
/// the edited document would not validate.
pub fn apply_edit(
    current: Option<&[u8]>,
    expected: Option<&str>,
    edit: &SnapshotEdit,
) -> Result<EditOutcome, EdgeResponse> {
    let (current, expected) = match (current, edit) {
        (Some(current), _) => (current, expected),
        (None, SnapshotEdit::Replace(_)) => (&br#"{"version":""}"#[..], Some("")),
        (None, _) => {
            return Err(EdgeResponse::error(
                503,
                "no_snapshot",
                "no valid snapshot is active yet",
            ));
        }
    };
    let mut document: Value = serde_json::from_slice(current).map_err(|e| {
        EdgeResponse::error(
            500,
            "active_snapshot_unreadable",
            &format!("the active snapshot is not JSON: {e}"),
        )
    })?;
    let version_before = document
        .get("version")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    check_version(expected, &version_before)?;

    let (what, target, before, after) = match edit {
        SnapshotEdit::Flag { key, change } => {
            let flag = document
                .pointer_mut(&format!("/flags/flags/{}", pointer_escape(key)))
                .filter(|f| f.is_object())
                .ok_or_else(|| {
                    EdgeResponse::error(404, "unknown_flag", &format!("no flag named {key:?}"))
                })?;
            let before = flag.clone();
            let what = change_flag(key, flag, change)?;
            (what, field("flags", key), before, flag.clone())
        }
        SnapshotEdit::Experiment { key, change } => {
            let experiment = document
                .get_mut("experiments")
                .and_then(Value::as_array_mut)
                .and_then(|all| {
                    all.iter_mut()
                        .find(|e| e.get("key").and_then(Value::as_str) == Some(key))
                })
                .ok_or_else(|| {
                    EdgeResponse::error(
                        404,
                        "unknown_experiment",
                        &format!("no experiment named {key:?}"),
                    )
                })?;
            let before = experiment.clone();
            let what = change_experiment(key, experiment, change);
            (what, field("experiments", key), before, experiment.clone())
        }
        SnapshotEdit::KillSwitch { on } => {
            let before = document.get("killSwitch").cloned().unwrap_or(json!(false));
            document["killSwitch"] = json!(on);
            let what = format!("kill switch {}", if *on { "on" } else { "off" });
            (what, "killSwitch".to_owned(), before, json!(on))
        }
        SnapshotEdit::Replace(new) => {
            let before = document.clone();
            document = new.clone();
            if document.get("version").and_then(Value::as_str) == Some(&version_before) {
                return Err(invalid(vec![Issue {
                    path: "version".into(),
                    reason: format!("must differ from the active version {version_before:?}"),
                }]));
            }
            let what = "snapshot replaced".to_owned();
            (what, "snapshot".to_owned(), before, new.clone())
        }
    };

    if !matches!(edit, SnapshotEdit::Replace(_)) {
        document["version"] = json!(next_version(&version_before));
    }
    let snapshot = Snapshot::from_value(document.clone()).map_err(|i| invalid(i.0))?;
    let bytes = serde_json::to_vec_pretty(&document).unwrap_or_default();
    Ok(EditOutcome {
        change: Change {
            what,
            target,
            before,
            after,
            version_before,
            version_after: snapshot.version.clone(),
        },
        snapshot,
        bytes,
    })
}

fn check_version(expected: Option<&str>, current: &str) -> Result<(), EdgeResponse> {
    match expected {
        None => Err(EdgeResponse::error(
            428,
            "version_required",
            "send the version you edited in If-Match (GET it first)",
        )),
        Some(v) if v != current => Err(stale_version(v, current)),
        Some(_) => Ok(()),
    }
}

/// 409: the edit was made on `edited`, but `current` is (or just became) the active version.
pub fn stale_version(edited: &str, current: &str) -> EdgeResponse {
    EdgeResponse::json(
        409,
        json!({
            "error": "stale_version",
            "reason": format!("the snapshot changed: you edited {edited:?}, the active version is {current:?}"),
            "current": current,
        })
        .to_string(),
    )
}

/// 422 with every `path: reason`, the shape `PUT /_stellwerk/admin/snapshot` answers with.
fn invalid(issues: Vec<Issue>) -> EdgeResponse {
    crate::edge::snapshot_pushed(&Err(Invalid(issues)))
}

/// `demo-1` → `demo-1.r1` → `demo-1.r2`: the console's edits count up from the publisher's version.
pub fn next_version(version: &str) -> String {
    if let Some((base, n)) = version.rsplit_once(".r")
        && let Ok(n) = n.parse::<u64>()
        && !n.to_string().is_empty()
        && n.to_string() == version[base.len() + 2..]
    {
        return format!("{base}.r{}", n + 1);
    }
    format!("{version}.r1")
}

fn pointer_escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn change_flag(key: &str, flag: &mut Value, change: &FlagChange) -> Result<String, EdgeResponse> {
    let mut parts = Vec::new();
    if let Some(state) = &change.state {
        parts.push(format!("state {state}"));
        flag["state"] = json!(state);
    }
    if let Some(variant) = &change.default_variant {
        parts.push(format!("default variant {variant}"));
        flag["defaultVariant"] = json!(variant);
    }
    if let Some(targeting) = &change.targeting {
        parts.push("targeting".to_owned());
        match targeting {
            Value::Null => {
                flag.as_object_mut().map(|f| f.remove("targeting"));
            }
            rule => flag["targeting"] = rule.clone(),
        }
    }
    if let Some(rollout) = &change.rollout {
        let path = field(&field("flags", key), "rollout");
        let mut issues = Vec::new();
        for variant in rollout.keys() {
            if flag
                .pointer(&format!("/variants/{}", pointer_escape(variant)))
                .is_none()
            {
                issues.push(Issue {
                    path: field(&path, variant),
                    reason: format!("the flag has no variant {variant:?}"),
                });
            }
        }
        let total: u64 = rollout.values().sum();
        if total != 100 {
            issues.push(Issue {
                path: path.clone(),
                reason: format!("percentages must add up to 100, not {total}"),
            });
        }
        if !issues.is_empty() {
            return Err(invalid(issues));
        }
        let buckets: Vec<Value> = rollout.iter().map(|(v, w)| json!([v, w])).collect();
        set_rollout(flag, buckets).map_err(|reason| invalid(vec![Issue { path, reason }]))?;
        let shares: Vec<String> = rollout.iter().map(|(v, w)| format!("{v} {w}%")).collect();
        parts.push(format!("rollout {}", shares.join(", ")));
    }
    Ok(format!("flag {key}: {}", parts.join("; ")))
}

/// Replaces the buckets of the flag's `fractional` rule (keeping a custom bucketing key), or
/// makes the rollout the whole targeting when the flag has none.
fn set_rollout(flag: &mut Value, buckets: Vec<Value>) -> Result<(), String> {
    match flag.get_mut("targeting") {
        None | Some(Value::Null) => {
            flag["targeting"] = json!({ "fractional": buckets });
            Ok(())
        }
        Some(targeting) => {
            let fractional = find_fractional(targeting).ok_or(
                "the targeting has no fractional rollout to change; edit the targeting instead",
            )?;
            let key = fractional
                .first()
                .filter(|first| !first.is_array())
                .cloned();
            *fractional = key.into_iter().chain(buckets).collect();
            Ok(())
        }
    }
}

fn find_fractional(rule: &mut Value) -> Option<&mut Vec<Value>> {
    match rule {
        Value::Object(map) => {
            if map.contains_key("fractional") {
                return map.get_mut("fractional").and_then(Value::as_array_mut);
            }
            map.values_mut().find_map(find_fractional)
        }
        Value::Array(items) => items.iter_mut().find_map(find_fractional),
        _ => None,
    }
}

/// `{variant: weight}` of the first `fractional` rule in a targeting, if any.
fn rollout_of(targeting: &Value) -> Option<Map<String, Value>> {
    let mut targeting = targeting.clone();
    let buckets = find_fractional(&mut targeting)?;
    Some(
        buckets
            .iter()
            .filter_map(|b| {
                let pair = b.as_array()?;
                Some((pair.first()?.as_str()?.to_owned(), pair.get(1)?.clone()))
            })
            .collect(),
    )
}

fn change_experiment(key: &str, experiment: &mut Value, change: &ExperimentChange) -> String {
    let mut parts = Vec::new();
    if let Some(status) = change.status {
        let name = match status {
            ExperimentStatus::Running => "running",
            ExperimentStatus::Paused => "paused",
            ExperimentStatus::Stopped => "stopped",
        };
        parts.push(format!("status {name}"));
        experiment["status"] = json!(name);
        if status != ExperimentStatus::Stopped && change.winner.is_none() {
            experiment.as_object_mut().map(|e| e.remove("winner"));
        }
    }
    if let Some(winner) = &change.winner {
        parts.push(format!("winner {winner}"));
        experiment["winner"] = json!(winner);
    }
    if let Some(traffic) = change.traffic {
        parts.push(format!("traffic {traffic}"));
        experiment["traffic"] = json!(traffic);
    }
    if let Some(targeting) = &change.targeting {
        parts.push("targeting".to_owned());
        match targeting {
            Value::Null => {
                experiment.as_object_mut().map(|e| e.remove("targeting"));
            }
            rule => experiment["targeting"] = rule.clone(),
        }
    }
    format!("experiment {key}: {}", parts.join("; "))
}

/// `GET api/flags`: each flag with its state, variants, default, targeting and rollout.
pub fn flags_view(snapshot: &Snapshot) -> Value {
    let flags = snapshot
        .flags
        .get("flags")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let list: Vec<Value> = flags
        .iter()
        .map(|(key, flag)| {
            let targeting = flag.get("targeting").cloned().unwrap_or(Value::Null);
            json!({
                "key": key,
                "state": flag.get("state"),
                "variants": flag.get("variants"),
                "defaultVariant": flag.get("defaultVariant"),
                "targeting": targeting,
                "rollout": rollout_of(&targeting),
                "hasEffects": snapshot.flag_effects.iter().any(|e| &e.flag == key),
            })
        })
        .collect();
    json!({ "version": snapshot.version, "killSwitch": snapshot.kill_switch, "flags": list })
}

/// `GET api/experiments`: each experiment's settings and per-arm numbers.
pub fn experiments_view(snapshot: &Snapshot, posteriors: &PosteriorSnapshot) -> Value {
    let list: Vec<Value> = snapshot
        .experiments
        .iter()
        .filter_map(|e| experiment_report(snapshot, posteriors, &e.key))
        .map(|mut report| {
            report.as_object_mut().map(|r| r.remove("traffic"));
            report
        })
        .collect();
    json!({ "version": snapshot.version, "killSwitch": snapshot.kill_switch, "experiments": list })
}

/// `GET api/experiments/{key}`: exposures, conversions and conversion rate per arm with a
/// [`CREDIBLE_LEVEL`] credible interval (Beta posterior, uniform prior), P(best) under those
/// posteriors whatever the policy, quarantined feedback, and each arm's traffic share over time.
pub fn experiment_report(
    snapshot: &Snapshot,
    posteriors: &PosteriorSnapshot,
    key: &str,
) -> Option<Value> {
    let experiment = snapshot.experiment(key)?;
    let stats = posteriors.arm_stats(snapshot, key);
    let p_best = arm_probabilities(&Policy::Thompson, &experiment.arms, &stats);
    let arms: Vec<Value> = experiment
        .arms
        .iter()
        .zip(&stats)
        .zip(&p_best)
        .map(|((arm, s), p)| {
            let (low, high) = credible_interval(s, CREDIBLE_LEVEL);
            json!({
                "key": arm.key,
                "weight": arm.weight,
                "mutations": arm.mutations.len(),
                "exposures": s.exposures,
                "conversions": s.rewards,
                "rate": s.empirical_mean(),
                "posteriorMean": s.posterior_mean(),
                "interval": [low, high],
                "pBest": p,
            })
        })
        .collect();
    let posterior = posteriors.experiments.get(key);
    let history = posterior.map(|p| p.history.as_slice()).unwrap_or_default();
    let shares = traffic_shares(history);
    let traffic = json!({
        "at": shares.iter().map(|(at, _)| at).collect::<Vec<_>>(),
        "share": experiment.arms.iter().map(|arm| {
            (arm.key.clone(), json!(shares.iter().map(|(_, s)| s.get(&arm.key).copied().unwrap_or(0.0)).collect::<Vec<_>>()))
        }).collect::<Map<String, Value>>(),
        "exposures": experiment.arms.iter().map(|arm| {
            (arm.key.clone(), json!(history.iter().map(|p| p.exposures.get(&arm.key).copied().unwrap_or(0)).collect::<Vec<_>>()))
        }).collect::<Map<String, Value>>(),
        "exposuresAt": history.iter().map(|p| p.at).collect::<Vec<_>>(),
    });
    Some(json!({
        "key": experiment.key,
        "status": experiment.status,
        "winner": experiment.winner,
        "policy": experiment.policy,
        "trafficShare": experiment.traffic,
        "paths": experiment.paths,
        "targeting": experiment.targeting,
        "goals": experiment.goals,
        "arms": arms,
        "quarantined": posterior.map(|p| p.quarantined).unwrap_or(0),
        "credibleLevel": CREDIBLE_LEVEL,
        "posteriorsVersion": posteriors.version,
        "updatedAt": posteriors.updated_at,
        "traffic": traffic,
    }))
}

/// Equal-tailed credible interval of an arm's conversion rate under its Beta posterior.
pub fn credible_interval(stats: &ArmStats, level: f64) -> (f64, f64) {
    let (a, b) = (stats.alpha(), stats.beta());
    let tail = (1.0 - level) / 2.0;
    (
        puruspe::invbetai(tail, a, b),
        puruspe::invbetai(1.0 - tail, a, b),
    )
}

/// `GET api/models`: per model the active stable and candidate versions (from the verified
/// pointers), what the manifest names, and every version found in the store.
pub fn models_view(
    pointers: &ActivePointers,
    manifest: Option<&[u8]>,
    store_keys: &[String],
) -> Value {
    let parsed = manifest.and_then(|m| SyncManifest::parse(m).ok());
    let mut names: Vec<String> = pointers.models.keys().cloned().collect();
    if let Some(m) = &parsed {
        names.extend(m.models.iter().map(|r| r.name.clone()));
    }
    names.sort();
    names.dedup();
    let models: Vec<Value> = names
        .iter()
        .map(|name| {
            let active = pointers.models.get(name);
            let release = parsed
                .as_ref()
                .and_then(|m| m.models.iter().find(|r| &r.name == name));
            json!({
                "name": name,
                "stable": active.map(|p| &p.stable.manifest.version),
                "candidate": active.and_then(|p| p.candidate.as_ref()).map(|c| json!({
                    "version": c.manifest.version, "canaryPercent": c.manifest.canary_percent,
                })),
                "published": release.map(|r| json!({
                    "stable": version_of(name, &r.stable.manifest_key),
                    "candidate": r.candidate.as_ref().and_then(|c| version_of(name, &c.manifest_key)),
                })),
                "versions": store_versions(name, store_keys),
            })
        })
        .collect();
    json!({
        "manifestVersion": manifest.map(sha256_hex),
        "lastSync": pointers.last_sync,
        "refusals": pointers.refusals,
        "models": models,
    })
}

fn version_of(name: &str, manifest_key: &str) -> Option<String> {
    manifest_key
        .strip_prefix(&format!("{MODELS_PREFIX}{name}/"))?
        .strip_suffix(".manifest.json")
        .map(str::to_owned)
}

/// Versions of `name` in the store: those with both a manifest and an ONNX file.
fn store_versions(name: &str, store_keys: &[String]) -> Vec<String> {
    let mut versions: Vec<String> = store_keys
        .iter()
        .filter_map(|key| version_of(name, key))
        .filter(|v| {
            store_keys
                .iter()
                .any(|k| k == &format!("{MODELS_PREFIX}{name}/{v}.onnx"))
        })
        .collect();
    versions.sort();
    versions
}

/// A rollback: the new `manifest.json` to publish (the sync then verifies and activates it).
#[derive(Debug, Clone)]
pub struct RollbackOutcome {
    pub manifest: Vec<u8>,
    pub change: Change,
}

/// Points `name`'s stable release at `version` (found in the store) and drops its candidate.
/// The version check is the manifest's sha256 (`manifestVersion` of [`models_view`]).
pub fn rollback_model(
    manifest: &[u8],
    expected: Option<&str>,
    name: &str,
    version: &str,
    store_keys: &[String],
) -> Result<RollbackOutcome, EdgeResponse> {
    let version_before = sha256_hex(manifest);
    check_version(expected, &version_before)?;
    let mut parsed = SyncManifest::parse(manifest).map_err(|i| {
        EdgeResponse::error(500, "manifest_unreadable", &format!("manifest.json: {i}"))
    })?;
    let release: &mut ModelRelease = parsed
        .models
        .iter_mut()
        .find(|r| r.name == name)
        .ok_or_else(|| {
            EdgeResponse::error(404, "unknown_model", &format!("no model named {name:?}"))
        })?;
    if !store_versions(name, store_keys)
        .iter()
        .any(|v| v == version)
    {
        return Err(invalid(vec![Issue {
            path: field(&field("models", name), "version"),
            reason: format!("no version {version:?} of {name:?} in the store"),
        }]));
    }
    let before = serde_json::to_value(&*release).unwrap_or_default();
    release.stable = ModelObjects {
        manifest_key: format!("{MODELS_PREFIX}{name}/{version}.manifest.json"),
        model_key: format!("{MODELS_PREFIX}{name}/{version}.onnx"),
    };
    release.candidate = None;
    let after = serde_json::to_value(&*release).unwrap_or_default();
    let bytes = serde_json::to_vec_pretty(&parsed).unwrap_or_default();
    Ok(RollbackOutcome {
        change: Change {
            what: format!("model {name}: roll back to {version}"),
            target: field("models", name),
            before,
            after,
            version_before,
            version_after: sha256_hex(&bytes),
        },
        manifest: bytes,
    })
}

/// One audit log entry: who, when, what, before and after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub id: String,
    /// Milliseconds since the epoch.
    pub at_ms: u64,
    pub who: String,
    pub what: String,
    pub target: String,
    pub before: Value,
    pub after: Value,
    pub version_before: String,
    pub version_after: String,
}

impl AuditEntry {
    /// `id` is random hex the adapter drew; `who` the identity the credentials proved.
    pub fn new(id: &str, at_ms: u64, who: &str, change: Change) -> Self {
        AuditEntry {
            id: id.to_owned(),
            at_ms,
            who: who.to_owned(),
            what: change.what,
            target: change.target,
            before: change.before,
            after: change.after,
            version_before: change.version_before,
            version_after: change.version_after,
        }
    }

    /// `audit/<ms, zero-padded>-<id>.json`: keys sort by time, one object per entry.
    pub fn key(&self) -> String {
        format!("{AUDIT_PREFIX}{:013}-{}.json", self.at_ms, self.id)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The answer to an accepted write: the new version (also as `ETag`) and the audit entry.
pub fn write_accepted(entry: &AuditEntry) -> EdgeResponse {
    let mut response = EdgeResponse::json(
        200,
        json!({ "version": entry.version_after, "audit": entry }).to_string(),
    );
    response
        .headers
        .push(("etag".into(), etag(&entry.version_after)));
    response
}

/// A JSON view with the version it was read at as `ETag`.
pub fn view(body: &Value, version: &str) -> EdgeResponse {
    let mut response = EdgeResponse::json(200, body.to_string());
    response.headers.push(("etag".into(), etag(version)));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::ExperimentPosterior;

    fn example() -> Vec<u8> {
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/snapshot.json"
        ))
        .unwrap()
    }

    fn issues(response: &EdgeResponse) -> Vec<String> {
        let body: Value = serde_json::from_slice(&response.body).unwrap();
        body["issues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_str().unwrap().to_owned())
            .collect()
    }

    fn edit(method: &str, path: &str, body: &str) -> SnapshotEdit {
        match admin_call(method, path, body.as_bytes()).unwrap() {
            AdminCall::Edit(edit) => edit,
            other => panic!("not an edit: {other:?}"),
        }
    }

    #[test]
    fn calls_are_routed_by_method_and_path() {
        let call = |m: &str, p: &str, b: &str| admin_call(m, p, b.as_bytes());
        assert_eq!(
            call("GET", "/_stellwerk/admin/api/flags", ""),
            Ok(AdminCall::Flags)
        );
        assert_eq!(
            call("GET", "/_stellwerk/admin/api/experiments/hero-headline", ""),
            Ok(AdminCall::ExperimentReport("hero-headline".into()))
        );
        assert_eq!(
            call(
                "POST",
                "/_stellwerk/admin/api/models/ctr-mlp/rollback",
                r#"{"version":"1"}"#
            ),
            Ok(AdminCall::RollbackModel {
                name: "ctr-mlp".into(),
                version: "1".into()
            })
        );
        assert_eq!(
            call("DELETE", "/_stellwerk/admin/api/flags/x", "")
                .unwrap_err()
                .status,
            405
        );
        assert_eq!(
            call("GET", "/_stellwerk/admin/api/nothing", "")
                .unwrap_err()
                .status,
            404
        );
        let bad = call(
            "POST",
            "/_stellwerk/admin/api/flags/x",
            r#"{"colour":"red"}"#,
        )
        .unwrap_err();
        assert_eq!(bad.status, 400);
        assert!(String::from_utf8(bad.body).unwrap().contains("colour"));
    }

    #[test]
    fn toggling_a_flag_makes_a_new_valid_version_with_before_and_after() {
        let e = edit(
            "POST",
            "/_stellwerk/admin/api/flags/holiday-banner",
            r#"{"state":"DISABLED"}"#,
        );
        let outcome = apply_edit(Some(&example()), Some("demo-1"), &e).unwrap();
        assert_eq!(outcome.snapshot.version, "demo-1.r1");
        assert_eq!(outcome.change.version_before, "demo-1");
        assert_eq!(outcome.change.target, "flags.holiday-banner");
        assert_eq!(outcome.change.before["state"], "ENABLED");
        assert_eq!(outcome.change.after["state"], "DISABLED");
        assert_eq!(outcome.change.what, "flag holiday-banner: state DISABLED");
        // The stored bytes are the validated document.
        let reparsed = Snapshot::parse(&outcome.bytes).unwrap();
        assert_eq!(reparsed.version, "demo-1.r1");
        assert_eq!(
            reparsed.flags["flags"]["holiday-banner"]["state"],
            "DISABLED"
        );
        // Editing on top of it needs the new version.
        let again = apply_edit(Some(&outcome.bytes), Some("demo-1"), &e).unwrap_err();
        assert_eq!(again.status, 409);
        let body: Value = serde_json::from_slice(&again.body).unwrap();
        assert_eq!(body["current"], "demo-1.r1");
        assert_eq!(
            apply_edit(Some(&outcome.bytes), None, &e)
                .unwrap_err()
                .status,
            428
        );
        assert!(apply_edit(Some(&outcome.bytes), Some("demo-1.r1"), &e).is_ok());
    }

    #[test]
    fn an_invalid_edit_is_refused_with_every_path_and_reason() {
        let e = edit(
            "POST",
            "/_stellwerk/admin/api/experiments/grid-layout",
            r#"{"traffic":1.5,"status":"stopped"}"#,
        );
        let refused = apply_edit(Some(&example()), Some("demo-1"), &e).unwrap_err();
        assert_eq!(refused.status, 422);
        assert_eq!(
            issues(&refused),
            [
                "experiments[1].traffic: must be between 0 and 1",
                "experiments[1].winner: a stopped experiment needs a winner arm"
            ]
        );
        let bad_state = edit(
            "POST",
            "/_stellwerk/admin/api/flags/holiday-banner",
            r#"{"state":"MAYBE"}"#,
        );
        let refused = apply_edit(Some(&example()), Some("demo-1"), &bad_state).unwrap_err();
        assert_eq!(
            issues(&refused),
            ["flags.flags.holiday-banner.state: must be \"ENABLED\" or \"DISABLED\""]
        );
    }

    #[test]
    fn experiments_start_pause_and_stop_with_a_winner() {
        let stop = edit(
            "POST",
            "/_stellwerk/admin/api/experiments/hero-headline",
            r#"{"status":"stopped","winner":"benefit"}"#,
        );
        let stopped = apply_edit(Some(&example()), Some("demo-1"), &stop).unwrap();
        let e = stopped.snapshot.experiment("hero-headline").unwrap();
        assert_eq!(e.status, ExperimentStatus::Stopped);
        assert_eq!(e.winner.as_deref(), Some("benefit"));
        let run = edit(
            "POST",
            "/_stellwerk/admin/api/experiments/hero-headline",
            r#"{"status":"running"}"#,
        );
        let running = apply_edit(Some(&stopped.bytes), Some("demo-1.r1"), &run).unwrap();
        let e = running.snapshot.experiment("hero-headline").unwrap();
        assert_eq!(e.status, ExperimentStatus::Running);
        assert_eq!(e.winner, None, "a restarted experiment has no winner");
        assert_eq!(running.snapshot.version, "demo-1.r2");
        let unknown = edit(
            "POST",
            "/_stellwerk/admin/api/experiments/nope",
            r#"{"status":"paused"}"#,
        );
        assert_eq!(
            apply_edit(Some(&example()), Some("demo-1"), &unknown)
                .unwrap_err()
                .status,
            404
        );
    }

    #[test]
    fn rollouts_change_the_fractional_buckets_and_check_the_variants() {
        let e = edit(
            "POST",
            "/_stellwerk/admin/api/flags/holiday-banner",
            r#"{"rollout":{"on":10,"off":90}}"#,
        );
        let outcome = apply_edit(Some(&example()), Some("demo-1"), &e).unwrap();
        let targeting = &outcome.change.after["targeting"];
        // The country rule stays; only the fractional buckets change.
        assert_eq!(
            targeting["if"][2]["fractional"],
            json!([["off", 90], ["on", 10]])
        );
        assert_eq!(targeting["if"][1], "on");
        let view = flags_view(&outcome.snapshot);
        let banner = &view["flags"].as_array().unwrap()[1];
        assert_eq!(banner["key"], "holiday-banner");
        assert_eq!(banner["rollout"], json!({"off": 90, "on": 10}));

        let wrong = edit(
            "POST",
            "/_stellwerk/admin/api/flags/holiday-banner",
            r#"{"rollout":{"on":10,"maybe":80}}"#,
        );
        let refused = apply_edit(Some(&example()), Some("demo-1"), &wrong).unwrap_err();
        assert_eq!(
            issues(&refused),
            [
                "flags.holiday-banner.rollout.maybe: the flag has no variant \"maybe\"",
                "flags.holiday-banner.rollout: percentages must add up to 100, not 90"
            ]
        );
        // A flag whose targeting has no fractional rule cannot get a rollout silently.
        let no_fraction = edit(
            "POST",
            "/_stellwerk/admin/api/flags/free-shipping-threshold",
            r#"{"rollout":{"low":50,"high":50}}"#,
        );
        let refused = apply_edit(Some(&example()), Some("demo-1"), &no_fraction).unwrap_err();
        assert_eq!(refused.status, 422);
    }

    #[test]
    fn the_kill_switch_and_a_replaced_document() {
        let kill = edit(
            "POST",
            "/_stellwerk/admin/api/kill-switch",
            r#"{"on":true}"#,
        );
        let killed = apply_edit(Some(&example()), Some("demo-1"), &kill).unwrap();
        assert!(killed.snapshot.kill_switch);
        assert_eq!(killed.change.before, json!(false));

        let mut doc: Value = serde_json::from_slice(&example()).unwrap();
        let same = SnapshotEdit::Replace(doc.clone());
        assert_eq!(
            issues(&apply_edit(Some(&example()), Some("demo-1"), &same).unwrap_err()),
            ["version: must differ from the active version \"demo-1\""]
        );
        doc["version"] = json!("demo-2");
        let replaced = apply_edit(
            Some(&example()),
            Some("demo-1"),
            &SnapshotEdit::Replace(doc),
        )
        .unwrap();
        assert_eq!(replaced.snapshot.version, "demo-2");
        // The first snapshot of an empty edge needs no version; nothing else can be edited.
        let first = apply_edit(
            None,
            None,
            &SnapshotEdit::Replace(serde_json::from_slice(&example()).unwrap()),
        )
        .unwrap();
        assert_eq!(first.change.version_before, "");
        assert_eq!(apply_edit(None, Some("x"), &kill).unwrap_err().status, 503);
    }

    #[test]
    fn versions_count_up() {
        assert_eq!(next_version("demo-1"), "demo-1.r1");
        assert_eq!(next_version("demo-1.r1"), "demo-1.r2");
        assert_eq!(next_version("demo-1.r19"), "demo-1.r20");
        assert_eq!(next_version("v.rx"), "v.rx.r1");
        assert_eq!(
            expected_version(Some("W/\"demo-1\"")).as_deref(),
            Some("demo-1")
        );
        assert_eq!(expected_version(Some("demo-1")).as_deref(), Some("demo-1"));
        assert_eq!(expected_version(Some("\"\"")), None);
    }

    #[test]
    fn reports_give_rates_intervals_p_best_quarantine_and_traffic() {
        let snapshot = Snapshot::parse(&example()).unwrap();
        let mut posteriors = PosteriorSnapshot::default();
        let mut hero = ExperimentPosterior {
            quarantined: 3,
            ..Default::default()
        };
        hero.arms.insert(
            "control".into(),
            ArmStats {
                exposures: 100,
                rewards: 10.0,
            },
        );
        hero.arms.insert(
            "urgency".into(),
            ArmStats {
                exposures: 100,
                rewards: 30.0,
            },
        );
        hero.arms.insert(
            "benefit".into(),
            ArmStats {
                exposures: 50,
                rewards: 0.0,
            },
        );
        // Earlier: 50 exposures each; since then control and urgency got 50 more each.
        let mut earlier = hero.clone();
        for arm in ["control", "urgency"] {
            earlier.arms.get_mut(arm).unwrap().exposures = 50;
        }
        posteriors
            .experiments
            .insert("hero-headline".into(), earlier);
        crate::history::record(&mut posteriors, &["hero-headline".into()], 10);
        let history = posteriors.experiments["hero-headline"].history.clone();
        hero.history = history;
        posteriors.experiments.insert("hero-headline".into(), hero);
        crate::history::record(&mut posteriors, &["hero-headline".into()], 20);

        let report = experiment_report(&snapshot, &posteriors, "hero-headline").unwrap();
        let arms = report["arms"].as_array().unwrap();
        assert_eq!(arms.len(), 3);
        let control = &arms[0];
        assert_eq!(control["exposures"], 100);
        assert_eq!(control["conversions"], 10.0);
        assert!((control["rate"].as_f64().unwrap() - 0.1).abs() < 1e-12);
        // Beta(11, 91): its 95% interval, by numerical integration of the density.
        let interval = control["interval"].as_array().unwrap();
        assert!(
            (interval[0].as_f64().unwrap() - 0.05564).abs() < 5e-4,
            "{interval:?}"
        );
        assert!(
            (interval[1].as_f64().unwrap() - 0.17455).abs() < 5e-4,
            "{interval:?}"
        );
        let p: Vec<f64> = arms.iter().map(|a| a["pBest"].as_f64().unwrap()).collect();
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(p[2] > 0.9, "urgency converts best: {p:?}");
        assert_eq!(report["quarantined"], 3);
        assert_eq!(report["traffic"]["at"], json!([20]));
        assert_eq!(report["traffic"]["share"]["urgency"], json!([0.5]));
        assert_eq!(report["traffic"]["share"]["benefit"], json!([0.0]));
        assert_eq!(report["traffic"]["exposures"]["control"], json!([50, 100]));
        assert!(experiment_report(&snapshot, &posteriors, "nope").is_none());
    }

    #[test]
    fn credible_intervals_narrow_with_data_and_contain_the_rate() {
        let few = credible_interval(
            &ArmStats {
                exposures: 10,
                rewards: 5.0,
            },
            0.95,
        );
        let many = credible_interval(
            &ArmStats {
                exposures: 1000,
                rewards: 500.0,
            },
            0.95,
        );
        assert!(few.0 < many.0 && many.1 < few.1);
        assert!(many.0 < 0.5 && 0.5 < many.1);
        let none = credible_interval(&ArmStats::default(), 0.95);
        assert!((none.0 - 0.025).abs() < 1e-9 && (none.1 - 0.975).abs() < 1e-9);
    }

    fn store() -> Vec<String> {
        ["1", "2", "3"]
            .iter()
            .flat_map(|v| {
                [
                    format!("models/ctr/{v}.manifest.json"),
                    format!("models/ctr/{v}.onnx"),
                ]
            })
            .chain(["models/ctr/4.manifest.json".to_owned()])
            .collect()
    }

    fn manifest() -> Vec<u8> {
        json!({
            "snapshot": null,
            "models": [{
                "name": "ctr",
                "stable": {"manifestKey": "models/ctr/2.manifest.json", "modelKey": "models/ctr/2.onnx"},
                "candidate": {"manifestKey": "models/ctr/3.manifest.json", "modelKey": "models/ctr/3.onnx"}
            }]
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn models_list_versions_and_roll_back() {
        let view = models_view(&ActivePointers::default(), Some(&manifest()), &store());
        let ctr = &view["models"][0];
        assert_eq!(
            ctr["versions"],
            json!(["1", "2", "3"]),
            "4 has no ONNX file"
        );
        assert_eq!(ctr["published"], json!({"stable": "2", "candidate": "3"}));
        let etag = view["manifestVersion"].as_str().unwrap();

        let outcome = rollback_model(&manifest(), Some(etag), "ctr", "1", &store()).unwrap();
        let new: SyncManifest = SyncManifest::parse(&outcome.manifest).unwrap();
        assert_eq!(new.models[0].stable.model_key, "models/ctr/1.onnx");
        assert_eq!(new.models[0].candidate, None);
        assert_eq!(outcome.change.what, "model ctr: roll back to 1");
        assert_eq!(
            outcome.change.before["stable"]["modelKey"],
            "models/ctr/2.onnx"
        );

        let stale = rollback_model(&outcome.manifest, Some(etag), "ctr", "2", &store());
        assert_eq!(stale.unwrap_err().status, 409);
        let missing = rollback_model(&manifest(), Some(etag), "ctr", "4", &store()).unwrap_err();
        assert_eq!(
            issues(&missing),
            ["models.ctr.version: no version \"4\" of \"ctr\" in the store"]
        );
    }

    #[test]
    fn audit_entries_sort_by_time_in_the_store() {
        let change = Change {
            what: "kill switch on".into(),
            target: "killSwitch".into(),
            before: json!(false),
            after: json!(true),
            version_before: "v".into(),
            version_after: "v.r1".into(),
        };
        let entry = AuditEntry::new("ab12", 1_700_000_000_123, "session:ada", change);
        assert_eq!(entry.key(), "audit/1700000000123-ab12.json");
        let early = AuditEntry {
            at_ms: 999,
            ..entry.clone()
        };
        assert!(early.key() < entry.key());
        let json: Value = serde_json::from_str(&entry.to_json()).unwrap();
        assert_eq!(json["who"], "session:ada");
        assert_eq!(json["before"], false);
        let response = write_accepted(&entry);
        assert!(
            response
                .headers
                .contains(&("etag".into(), "\"v.r1\"".into()))
        );
    }
}
