//! The core's actual outputs for a conformance vector, so every edge can be compared with the
//! native build byte for byte.
//!
//! A vector file (`tests/conformance/<kind>/*.json`) holds inputs and the expected outputs; the
//! native runners check the expectations. [`run`] ignores the expectations and answers with
//! what this build of the core computes for every input in the file. An edge exposes it behind
//! an admin endpoint; a driver compares each edge's answer with the native CLI's
//! (`stellwerk conformance`). The answer is canonical JSON: object keys sorted, floats printed
//! by serde_json (ryu), so equal outputs serialise to equal bytes on every platform.
//!
//! Everything comes from the vector: no clock, no randomness. A behaviour of the core (a
//! refused document, a rejected beacon, a rewrite error) is an output; only an unknown kind or
//! a vector that is not shaped as its kind requires is an error.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::aggregate::{PosteriorSnapshot, apply_events};
use crate::bandit::{ArmStats, arm_probabilities, choose_arm};
use crate::contextual::{Exploration, normal_best_probabilities};
use crate::decide::{DecideInput, Keys, decide};
use crate::event::{ConsentState, Event};
use crate::feedback::accept_feedback;
use crate::flags::{FlagSet, ValueType};
use crate::request::{RequestFacts, hex};
use crate::snapshot::{Arm, Mutation, Policy, Snapshot};
use crate::token::{DecisionToken, TokenError};
use stellwerk_rewrite::{PageInjection, PageRewriter, RewriteError, RewriteSummary, charset_of};

/// Every kind of vector [`run`] understands, one folder of `tests/conformance/` each.
pub const KINDS: &[&str] = &[
    "aggregate",
    "bandit",
    "contextual",
    "decide",
    "feedback",
    "flags",
    "rewrite",
    "token",
];

/// Runs every input of one vector file of `kind` through the core and returns the outputs as
/// canonical JSON; `Err` names an unknown kind or what is wrong with the vector.
pub fn run(kind: &str, vector: &Value) -> Result<Value, String> {
    if !vector.is_object() {
        return Err("a vector must be a JSON object".to_owned());
    }
    let output = match kind {
        "aggregate" => aggregate(vector),
        "bandit" => bandit(vector),
        "contextual" => contextual(vector),
        "decide" => decide_vector(vector),
        "feedback" => feedback(vector),
        "flags" => flags(vector),
        "rewrite" => rewrite(vector),
        "token" => token(vector),
        other => Err(format!(
            "unknown kind {other:?}; expected one of {}",
            KINDS.join(", ")
        )),
    }?;
    Ok(canonical(output))
}

/// Sorts every object's keys, whatever map serde_json was built with (`preserve_order` keeps
/// insertion order, and feature unification may switch it on in some platform build).
fn canonical(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, canonical(v)))
                    .collect::<Map<String, Value>>(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

fn get<'a>(v: &'a Value, name: &str) -> Result<&'a Value, String> {
    v.get(name).ok_or_else(|| format!("{name}: missing"))
}

fn text<'a>(v: &'a Value, name: &str) -> Result<&'a str, String> {
    get(v, name)?
        .as_str()
        .ok_or_else(|| format!("{name}: expected a string"))
}

fn whole(v: &Value, name: &str) -> Result<u64, String> {
    get(v, name)?
        .as_u64()
        .ok_or_else(|| format!("{name}: expected a whole number >= 0"))
}

fn list<'a>(v: &'a Value, name: &str) -> Result<&'a Vec<Value>, String> {
    get(v, name)?
        .as_array()
        .ok_or_else(|| format!("{name}: expected an array"))
}

fn typed<T: DeserializeOwned>(v: &Value, name: &str) -> Result<T, String> {
    serde_json::from_value(get(v, name)?.clone()).map_err(|e| format!("{name}: {e}"))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, String> {
    serde_json::to_value(value).map_err(|e| format!("output: {e}"))
}

fn snapshot(v: &Value) -> Result<Snapshot, String> {
    Snapshot::from_value(get(v, "snapshot")?.clone())
        .map_err(|invalid| format!("snapshot refused:\n{invalid}"))
}

/// The posteriors as they would arrive from KV (absent or `null`: none yet).
fn posteriors(v: &Value) -> Result<PosteriorSnapshot, String> {
    match v.get("posteriors") {
        None | Some(Value::Null) => Ok(PosteriorSnapshot::default()),
        Some(p) => PosteriorSnapshot::parse(p.to_string().as_bytes())
            .map_err(|invalid| format!("posteriors refused:\n{invalid}")),
    }
}

/// flags: `{"issues": [...]}` (sorted) for a refused document, else `{"resolutions": [...]}`,
/// one `FlagResolution` per case.
fn flags(v: &Value) -> Result<Value, String> {
    let document = get(v, "flags")?;
    let flag_set = match FlagSet::parse(document) {
        Ok(flag_set) => flag_set,
        Err(invalid) => {
            let mut issues: Vec<String> = invalid.0.iter().map(ToString::to_string).collect();
            issues.sort();
            return Ok(json!({ "issues": issues }));
        }
    };
    let cases = match (v.get("cases"), v.get("issues")) {
        (Some(_), _) => list(v, "cases")?.as_slice(),
        (None, Some(_)) => &[],
        (None, None) => return Err("cases: missing".to_owned()),
    };
    let mut resolutions = Vec::with_capacity(cases.len());
    for (i, case) in cases.iter().enumerate() {
        let at = |e: String| format!("cases[{i}].{e}");
        let key = text(case, "key").map_err(at)?;
        let now = whole(case, "now").map_err(at)?;
        let context = case.get("context").unwrap_or(&Value::Null);
        let resolution = match case.get("type") {
            None => flag_set.evaluate(key, context, now),
            Some(t) => {
                let value_type = match t.as_str() {
                    Some("Boolean") => ValueType::Boolean,
                    Some("String") => ValueType::String,
                    Some("Integer") => ValueType::Integer,
                    Some("Float") => ValueType::Float,
                    Some("Object") => ValueType::Object,
                    _ => return Err(at(format!("type: unknown value type {t}"))),
                };
                flag_set.evaluate_as(key, context, now, value_type)
            }
        };
        resolutions.push(to_json(&resolution)?);
    }
    Ok(json!({ "resolutions": resolutions }))
}

/// token: `{"token": ...}` for a `sign` vector; else `{"ok": <wire fields>}` or
/// `{"error": code, "reason": ..., "age"?: seconds}`.
fn token(v: &Value) -> Result<Value, String> {
    let key = text(v, "keyUtf8")?.as_bytes();
    if let Some(fields) = v.get("sign") {
        let at = |e: String| format!("sign.{e}");
        let propensity = get(fields, "propensity")
            .map_err(at)?
            .as_f64()
            .ok_or_else(|| at("propensity: expected a number".to_owned()))?;
        let decision = DecisionToken {
            decision_id: text(fields, "decisionId").map_err(at)?.to_owned(),
            experiment: text(fields, "experiment").map_err(at)?.to_owned(),
            arm: text(fields, "arm").map_err(at)?.to_owned(),
            propensity,
            policy_version: text(fields, "policyVersion").map_err(at)?.to_owned(),
            issued_at: whole(fields, "issuedAt").map_err(at)?,
            unit: text(fields, "unit").map_err(at)?.to_owned(),
        };
        return Ok(json!({ "token": decision.sign(key) }));
    }
    let verified = DecisionToken::verify(
        text(v, "token")?,
        key,
        whole(v, "now")?,
        whole(v, "attributionWindowSeconds")?,
    );
    Ok(match verified {
        Ok(decision) => json!({ "ok": to_json(&decision)? }),
        Err(error) => {
            let mut out = json!({ "reason": error.to_string() });
            let code = match &error {
                TokenError::Malformed(_) => "malformed",
                TokenError::Forged => "forged",
                TokenError::FromTheFuture => "from_the_future",
                TokenError::Expired { age } => {
                    out["age"] = json!(age);
                    "expired"
                }
            };
            out["error"] = json!(code);
            out
        }
    })
}

/// feedback: `{"accepted": {event, dedupeKey, destinations}}` or
/// `{"rejected": {status, error, reason}}`.
fn feedback(v: &Value) -> Result<Value, String> {
    let snapshot = snapshot(v)?;
    let consent: ConsentState = typed(v, "consent")?;
    let outcome = accept_feedback(
        text(v, "body")?.as_bytes(),
        &snapshot.feedback,
        &snapshot.experiments,
        text(v, "keyUtf8")?.as_bytes(),
        whole(v, "now")?,
        consent,
    );
    Ok(match outcome {
        Ok(accepted) => json!({ "accepted": {
            "event": to_json(&accepted.event)?,
            "dedupeKey": accepted.dedupe_key,
            "destinations": to_json(&accepted.destinations)?,
        }}),
        Err(rejection) => json!({ "rejected": {
            "status": rejection.status,
            "error": rejection.code,
            "reason": rejection.reason,
        }}),
    })
}

/// bandit: `{"chooseArm": [[arm per draw] per case]}` or `{"probabilities": [...]}`.
fn bandit(v: &Value) -> Result<Value, String> {
    if v.get("chooseArm").is_some() {
        let mut chosen = Vec::new();
        for (i, case) in list(v, "chooseArm")?.iter().enumerate() {
            let at = |e: String| format!("chooseArm[{i}].{e}");
            let probabilities: Vec<f64> = typed(case, "probabilities").map_err(at)?;
            let mut arms = Vec::new();
            for (j, draw) in list(case, "draws").map_err(at)?.iter().enumerate() {
                let u = draw
                    .get(0)
                    .and_then(Value::as_f64)
                    .ok_or_else(|| at(format!("draws[{j}]: expected [u, arm]")))?;
                arms.push(choose_arm(&probabilities, u));
            }
            chosen.push(arms);
        }
        return Ok(json!({ "chooseArm": chosen }));
    }
    let policy: Policy = typed(v, "policy")?;
    let arms: Vec<Arm> = typed(v, "arms")?;
    let stats: Vec<ArmStats> = typed(v, "stats")?;
    Ok(json!({ "probabilities": arm_probabilities(&policy, &arms, &stats) }))
}

/// contextual: `{"probabilities": [...]}`, the exploration strategy's distribution over arms for
/// the vector's reward-model scores, or P(best) for independent normal scores (linear Thompson).
fn contextual(v: &Value) -> Result<Value, String> {
    if let Some(normal) = v.get("normalBest") {
        let at = |e: String| format!("normalBest.{e}");
        let means: Vec<f64> = typed(normal, "means").map_err(at)?;
        let spreads: Vec<f64> = typed(normal, "spreads").map_err(at)?;
        if means.len() != spreads.len() {
            return Err(at("means and spreads differ in length".to_owned()));
        }
        return Ok(json!({ "probabilities": normal_best_probabilities(&means, &spreads) }));
    }
    let exploration: Exploration = typed(v, "exploration")?;
    let scores: Vec<f64> = typed(v, "scores")?;
    Ok(json!({ "probabilities": exploration.probabilities(&scores) }))
}

/// aggregate: `{"reports": [one per batch], "posteriors": <the resulting document>}`.
fn aggregate(v: &Value) -> Result<Value, String> {
    let snapshot = snapshot(v)?;
    let mut posteriors = posteriors(v)?;
    let now = whole(v, "now")?;
    let mut reports = Vec::new();
    for (i, batch) in list(v, "batches")?.iter().enumerate() {
        let batch = batch
            .as_array()
            .ok_or_else(|| format!("batches[{i}]: expected an array of events"))?;
        let mut events = Vec::with_capacity(batch.len());
        for (j, event) in batch.iter().enumerate() {
            events.push(
                Event::from_json(event.to_string().as_bytes())
                    .map_err(|e| format!("batches[{i}][{j}]: event refused:\n{e}"))?,
            );
        }
        reports.push(to_json(&apply_events(
            &mut posteriors,
            &events,
            &snapshot,
            now,
        ))?);
    }
    Ok(json!({ "reports": reports, "posteriors": to_json(&posteriors)? }))
}

/// rewrite: `{"output": text, "matches", "injected", "bailOut"}` for the vector's input written
/// in its `chunks` (the rest in one piece), or `{"error": reason}` when the rewriter refuses.
/// The output bytes are decoded with the vector's encoding; `outputHex` carries them exactly
/// when they do not decode cleanly.
fn rewrite(v: &Value) -> Result<Value, String> {
    let content_type = text(v, "contentType")?;
    let label = match v.get("encoding") {
        None | Some(Value::Null) => charset_of(content_type).unwrap_or("utf-8"),
        Some(_) => text(v, "encoding")?,
    };
    let encoding = encoding_rs::Encoding::for_label(label.as_bytes())
        .ok_or_else(|| format!("encoding: unknown label {label:?}"))?;
    let (input, _, unmappable) = encoding.encode(text(v, "input")?);
    if unmappable {
        return Err(format!("input: not representable in {label}"));
    }
    let mutations: Vec<Mutation> = typed(v, "mutations")?;
    let injection = match v.get("injection") {
        None | Some(Value::Null) => None,
        Some(i) => Some(PageInjection {
            beacon_src: text(i, "beaconSrc")
                .map_err(|e| format!("injection.{e}"))?
                .to_owned(),
            decisions_json: text(i, "decisionsJson")
                .map_err(|e| format!("injection.{e}"))?
                .to_owned(),
            nonce: match i.get("nonce") {
                None | Some(Value::Null) => None,
                Some(_) => Some(
                    text(i, "nonce")
                        .map_err(|e| format!("injection.{e}"))?
                        .to_owned(),
                ),
            },
        }),
    };
    let chunks: Vec<usize> = match v.get("chunks") {
        None | Some(Value::Null) => Vec::new(),
        Some(_) => typed(v, "chunks")?,
    };

    let mut output = Vec::new();
    let rewritten = rewrite_in_chunks(
        &mutations,
        injection.as_ref(),
        content_type,
        &input,
        &chunks,
        |bytes| output.extend_from_slice(bytes),
    );
    let summary = match rewritten {
        Ok(summary) => summary,
        Err(error) => return Ok(json!({ "error": error.to_string() })),
    };
    let mut out = json!({
        "matches": summary.matches,
        "injected": summary.injected,
        "bailOut": summary.bail_out.map(|e| e.to_string()),
    });
    match encoding.decode_without_bom_handling_and_without_replacement(&output) {
        Some(decoded) => out["output"] = json!(decoded),
        None => {
            let (lossy, _) = encoding.decode_without_bom_handling(&output);
            out["output"] = json!(lossy);
            out["outputHex"] = json!(hex(&output));
        }
    }
    Ok(out)
}

fn rewrite_in_chunks(
    mutations: &[Mutation],
    injection: Option<&PageInjection>,
    content_type: &str,
    input: &[u8],
    sizes: &[usize],
    sink: impl FnMut(&[u8]),
) -> Result<RewriteSummary, RewriteError> {
    let mut rewriter = PageRewriter::new(mutations, injection, Some(content_type), sink)?;
    let mut rest = input;
    for &size in sizes {
        let (piece, tail) = rest.split_at(size.min(rest.len()));
        rewriter.write(piece)?;
        rest = tail;
    }
    rewriter.write(rest)?;
    rewriter.end()
}

/// decide: the `PageDecision` for the vector's request, snapshot, posteriors, keys, random
/// bytes and time.
fn decide_vector(v: &Value) -> Result<Value, String> {
    let snapshot = snapshot(v)?;
    let posteriors = posteriors(v)?;
    let facts: RequestFacts = typed(v, "request")?;
    let random = random_bytes(text(v, "random")?)?;
    let keys = get(v, "keys")?;
    let at = |e: String| format!("keys.{e}");
    let decision = decide(&DecideInput {
        snapshot: &snapshot,
        posteriors: &posteriors,
        facts: &facts,
        keys: Keys {
            token: text(keys, "token").map_err(at)?.as_bytes(),
            unit: text(keys, "unit").map_err(at)?.as_bytes(),
        },
        random,
        now: whole(v, "now")?,
        // Decide vectors carry no model; model scoring is checked in shared/tests/decide.rs.
        models: &[],
    });
    to_json(&decision)
}

/// The request's 16 random bytes, written as 32 hex characters.
fn random_bytes(hex: &str) -> Result<[u8; 16], String> {
    let bad = || format!("random: expected 32 hex characters, got {hex:?}");
    if hex.len() != 32 || !hex.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every committed vector of every kind, as (kind, file name, parsed JSON).
    fn committed_vectors() -> Vec<(&'static str, String, Value)> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/conformance");
        let mut all = Vec::new();
        for kind in KINDS {
            let mut paths: Vec<_> = std::fs::read_dir(root.join(kind))
                .unwrap_or_else(|e| panic!("{kind}: {e}"))
                .map(|entry| entry.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            paths.sort();
            assert!(!paths.is_empty(), "no {kind} vectors");
            for path in paths {
                let text = std::fs::read_to_string(&path).unwrap();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                all.push((*kind, name, serde_json::from_str(&text).unwrap()));
            }
        }
        all
    }

    #[test]
    fn every_committed_vector_runs_and_answers_the_same_bytes_twice() {
        let all = committed_vectors();
        assert!(all.len() >= 90, "only {} vectors", all.len());
        for (kind, name, vector) in &all {
            let first = run(kind, vector).unwrap_or_else(|e| panic!("{kind}/{name}: {e}"));
            let second = run(kind, vector).unwrap();
            assert_eq!(first.to_string(), second.to_string(), "{kind}/{name}");
        }
    }

    /// The outputs the edges are compared on are the ones the native runners check: each
    /// vector's own expectations hold in `run`'s answer.
    #[test]
    fn outputs_meet_every_vectors_expectations() {
        for (kind, name, v) in committed_vectors() {
            let out = run(kind, &v).unwrap();
            let at = format!("{kind}/{name}");
            let expect = &v["expect"];
            match kind {
                "flags" => match v.get("issues") {
                    Some(issues) => {
                        let mut issues: Vec<String> =
                            serde_json::from_value(issues.clone()).unwrap();
                        issues.sort();
                        assert_eq!(out["issues"], json!(issues), "{at}");
                    }
                    None => {
                        let cases = v["cases"].as_array().unwrap();
                        assert_eq!(out["resolutions"].as_array().unwrap().len(), cases.len());
                        for (i, case) in cases.iter().enumerate() {
                            assert_eq!(out["resolutions"][i], case["expected"], "{at} case {i}");
                        }
                    }
                },
                "token" => {
                    if let Some(token) = v.get("expectToken") {
                        assert_eq!(&out["token"], token, "{at}");
                    } else if let Some(ok) = expect.get("ok") {
                        assert_eq!(&out["ok"], ok, "{at}");
                    } else {
                        assert_eq!(out["error"], expect["error"], "{at}");
                        if let Some(age) = expect.get("age") {
                            assert_eq!(&out["age"], age, "{at}");
                        }
                    }
                }
                "feedback" => match expect.get("accepted") {
                    Some(want) => {
                        for field in ["event", "dedupeKey", "destinations"] {
                            assert_eq!(out["accepted"][field], want[field], "{at}: {field}");
                        }
                    }
                    None => {
                        assert_eq!(out["rejected"]["status"], expect["status"], "{at}");
                        assert_eq!(out["rejected"]["error"], expect["code"], "{at}");
                    }
                },
                "contextual" => assert_probabilities(&v, expect, &out, &at),
                "bandit" => match v.get("chooseArm") {
                    Some(cases) => {
                        for (i, case) in cases.as_array().unwrap().iter().enumerate() {
                            for (j, draw) in case["draws"].as_array().unwrap().iter().enumerate() {
                                assert_eq!(out["chooseArm"][i][j], draw[1], "{at} [{i}][{j}]");
                            }
                        }
                    }
                    None => assert_probabilities(&v, expect, &out, &at),
                },
                "aggregate" => {
                    assert_eq!(out["reports"], expect["reports"], "{at}");
                    assert_eq!(out["posteriors"]["version"], expect["version"], "{at}");
                    assert_eq!(
                        out["posteriors"]["appliedSince"], expect["appliedSince"],
                        "{at}"
                    );
                    for (key, want) in expect["experiments"].as_object().unwrap() {
                        let got = &out["posteriors"]["experiments"][key];
                        assert_eq!(got["arms"], want["arms"], "{at}: {key}");
                        assert_eq!(got["quarantined"], want["quarantined"], "{at}: {key}");
                    }
                }
                "rewrite" => {
                    assert_eq!(out["output"], v["expected"], "{at}");
                    assert_eq!(out.get("outputHex"), None, "{at}");
                    assert_eq!(out["bailOut"], Value::Null, "{at}");
                    if let Some(matches) = v.get("matches") {
                        assert_eq!(&out["matches"], matches, "{at}");
                    }
                    if let Some(injected) = v.get("injected") {
                        assert_eq!(&out["injected"], injected, "{at}");
                    }
                }
                "decide" => {
                    assert_eq!(out["gate"]["action"], expect["gate"], "{at}");
                    assert_eq!(out["unit"], expect["unit"], "{at}");
                    let arms: Vec<&Value> = out["assignments"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|a| &a["arm"])
                        .collect();
                    let want: Vec<&Value> = expect["assignments"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|a| &a["arm"])
                        .collect();
                    assert_eq!(arms, want, "{at}");
                    // Contextual vectors also name the deciding policy and any fallback.
                    for (i, want) in expect["assignments"].as_array().unwrap().iter().enumerate() {
                        for field in ["policy", "fallback", "propensity"] {
                            if let Some(w) = want.get(field) {
                                assert_eq!(&out["assignments"][i][field], w, "{at}: {field}");
                            }
                        }
                    }
                }
                other => panic!("no expectations checked for kind {other}"),
            }
        }
    }

    /// `out.probabilities` equals the vector's expected list within its `tolerance`.
    fn assert_probabilities(v: &Value, expect: &Value, out: &Value, at: &str) {
        let tolerance = v["tolerance"].as_f64().unwrap();
        let want = expect.as_array().unwrap();
        let got = out["probabilities"].as_array().unwrap();
        assert_eq!(got.len(), want.len(), "{at}");
        for (g, w) in got.iter().zip(want) {
            let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
            assert!((g - w).abs() <= tolerance, "{at}: {got:?} vs {want:?}");
        }
    }

    #[test]
    fn unknown_kind_and_malformed_vectors_are_errors() {
        assert!(
            run("nope", &json!({}))
                .unwrap_err()
                .contains("unknown kind")
        );
        assert!(run("token", &json!([])).is_err());
        assert_eq!(
            run("token", &json!({ "keyUtf8": "k", "now": 1 })),
            Err("token: missing".to_owned())
        );
        assert!(
            run(
                "decide",
                &json!({ "snapshot": { "schema": 1, "version": "v" } })
            )
            .unwrap_err()
            .contains("request")
        );
        assert!(random_bytes("zz".repeat(16).as_str()).is_err());
        assert!(random_bytes(&"é".repeat(16)).is_err());
        assert_eq!(random_bytes(&"0f".repeat(16)), Ok([15u8; 16]));
    }

    #[test]
    fn canonical_output_keeps_every_value_with_keys_sorted() {
        let mut inner = Map::new();
        inner.insert("b".into(), json!(1));
        inner.insert("a".into(), json!([{ "z": 1, "y": 2 }]));
        let text = canonical(Value::Object(inner)).to_string();
        assert_eq!(text, r#"{"a":[{"y":2,"z":1}],"b":1}"#);
    }
}
