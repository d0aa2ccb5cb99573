//! Feedback beacons: from untrusted bytes to a routed event, or a reason to refuse.
//!
//! Body: `{"token": "...", "type": "click"|"conversion"|"custom", "value"?: number,
//! "name"?: string, "at"?: unix seconds}`. Checks run cheapest first: size before parsing,
//! shape before the token, the token's MAC before anything it claims is believed.
//!
//! Feedback for an experiment (or arm) that the current snapshot no longer has is genuine but
//! useless to a bandit: it goes to the routes' other destinations (analytics, quarantine) and is
//! refused as `unknown_experiment` only when no route sends it anywhere but the bandit.
//! The dedupe key makes one click per decision count once; the adapter answers 409 when it has
//! seen the key before.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::event::{ConsentState, Event, EventKind};
use crate::snapshot::{Destination, Experiment, FeedbackPolicy};
use crate::token::{CLOCK_SKEW_SECONDS, DecisionToken, TokenError};

/// Largest `value` a beacon may report.
pub const MAX_FEEDBACK_VALUE: f64 = 1e9;

/// Longest custom event name.
pub const MAX_NAME_CHARS: usize = 64;

/// Body bytes accepted whatever the policy says (the snapshot caps the policy at this too).
const HARD_MAX_BODY_BYTES: usize = 64 * 1024;

/// A beacon that passed every check, with the event to forward.
#[derive(Debug, Clone, PartialEq)]
pub struct AcceptedFeedback {
    pub event: Event,
    /// Stable over retries: the same decision, type and name give the same key.
    pub dedupe_key: String,
    /// Where the event goes (also in `event.destinations`); never empty.
    pub destinations: Vec<Destination>,
}

/// Why a beacon was refused: an HTTP status, a machine code and a human reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackRejection {
    pub status: u16,
    pub code: &'static str,
    pub reason: String,
}

impl FeedbackRejection {
    fn new(status: u16, code: &'static str, reason: impl Into<String>) -> Self {
        Self {
            status,
            code,
            reason: reason.into(),
        }
    }

    /// The response body: `{"error": code, "reason": ...}`.
    pub fn to_json(&self) -> String {
        serde_json::json!({ "error": self.code, "reason": self.reason }).to_string()
    }
}

impl std::fmt::Display for FeedbackRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.reason)
    }
}

impl std::error::Error for FeedbackRejection {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
enum FeedbackType {
    Click,
    Conversion,
    Custom,
}

impl FeedbackType {
    fn kind(self) -> EventKind {
        match self {
            FeedbackType::Click => EventKind::Click,
            FeedbackType::Conversion => EventKind::Conversion,
            FeedbackType::Custom => EventKind::Custom,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Beacon {
    token: String,
    #[serde(rename = "type")]
    kind: FeedbackType,
    #[serde(default)]
    value: Option<f64>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    at: Option<u64>,
}

/// Verifies, validates and routes one beacon body. `now` is unix seconds; `consent` is the
/// visitor's consent as the adapter resolved it from the privacy policy.
pub fn accept_feedback(
    body: &[u8],
    policy: &FeedbackPolicy,
    experiments: &[Experiment],
    key: &[u8],
    now: u64,
    consent: ConsentState,
) -> Result<AcceptedFeedback, FeedbackRejection> {
    let limit = policy.max_body_bytes.min(HARD_MAX_BODY_BYTES);
    if body.len() > limit {
        return Err(FeedbackRejection::new(
            413,
            "oversize",
            format!("body is {} bytes, the limit is {limit}", body.len()),
        ));
    }
    let json: Value = serde_json::from_slice(body)
        .map_err(|e| FeedbackRejection::new(400, "malformed_json", format!("not JSON: {e}")))?;
    if !json.is_object() {
        return Err(FeedbackRejection::new(
            400,
            "malformed_json",
            "body must be a JSON object",
        ));
    }
    let beacon: Beacon = serde_json::from_value(json)
        .map_err(|e| FeedbackRejection::new(422, "invalid_body", e.to_string()))?;
    check_fields(&beacon)?;

    let decision =
        DecisionToken::verify(&beacon.token, key, now, policy.attribution_window_seconds)
            .map_err(token_rejection)?;

    if let Some(at) = beacon.at
        && (at.saturating_add(CLOCK_SKEW_SECONDS) < decision.issued_at
            || at > now.saturating_add(CLOCK_SKEW_SECONDS))
    {
        return Err(FeedbackRejection::new(
            422,
            "invalid_time",
            "at must lie between the decision and now",
        ));
    }
    if consent == ConsentState::Denied {
        return Err(FeedbackRejection::new(
            403,
            "consent_denied",
            "the visitor has not consented to feedback being recorded",
        ));
    }

    let type_name = beacon.kind.kind().as_str();
    let experiment = experiments
        .iter()
        .find(|e| e.key == decision.experiment)
        .filter(|e| e.arms.iter().any(|a| a.key == decision.arm));
    let mut destinations = route(policy, type_name, &decision.experiment);
    if experiment.is_none() {
        destinations.retain(|d| *d != Destination::Bandit);
        if destinations.is_empty() {
            return Err(FeedbackRejection::new(
                422,
                "unknown_experiment",
                format!(
                    "experiment {:?} arm {:?} is not in the current snapshot, and no route sends its feedback anywhere but the bandit",
                    decision.experiment, decision.arm
                ),
            ));
        }
    }
    if destinations.is_empty() {
        return Err(FeedbackRejection::new(
            422,
            "unrouted",
            format!(
                "no feedback route takes {type_name} for {:?}",
                decision.experiment
            ),
        ));
    }

    let reward = experiment
        .filter(|e| is_goal(e, beacon.kind, beacon.name.as_deref()))
        .map(|_| 1.0);
    let dedupe_key = dedupe_key(&decision.decision_id, type_name, beacon.name.as_deref());
    let mut context = BTreeMap::new();
    context.insert(
        "sinceDecision".to_owned(),
        Value::from(now.saturating_sub(decision.issued_at)),
    );
    if let Some(at) = beacon.at {
        context.insert("at".to_owned(), Value::from(at));
    }
    let event = Event {
        id: dedupe_key.clone(),
        kind: beacon.kind.kind(),
        time: now,
        experiment: Some(decision.experiment),
        arm: Some(decision.arm),
        decision_id: Some(decision.decision_id),
        propensity: Some(decision.propensity),
        policy_version: decision.policy_version,
        policy: None,
        model_versions: BTreeMap::new(),
        context,
        reward,
        value: beacon.value,
        name: beacon.name,
        fraud_score: None,
        consent,
        unit: decision.unit,
        destinations: destinations.clone(),
    };
    // The token came from our own edge, but an event the aggregator would refuse must not
    // reach the queue (an over-long decision id, an address in the unit).
    event
        .validate()
        .map_err(|e| FeedbackRejection::new(422, "invalid_event", e.to_string()))?;
    Ok(AcceptedFeedback {
        event,
        dedupe_key,
        destinations,
    })
}

fn check_fields(beacon: &Beacon) -> Result<(), FeedbackRejection> {
    if let Some(v) = beacon.value
        && !(v.is_finite() && (0.0..=MAX_FEEDBACK_VALUE).contains(&v))
    {
        return Err(FeedbackRejection::new(
            422,
            "invalid_value",
            format!("value must be a number from 0 to {MAX_FEEDBACK_VALUE}"),
        ));
    }
    match (&beacon.name, beacon.kind) {
        (None, FeedbackType::Custom) => Err(FeedbackRejection::new(
            422,
            "missing_name",
            "custom feedback needs a name",
        )),
        // A name on a click would let one click count once per invented name.
        (Some(_), FeedbackType::Click | FeedbackType::Conversion) => Err(FeedbackRejection::new(
            422,
            "invalid_name",
            "only custom feedback has a name",
        )),
        (Some(name), FeedbackType::Custom) if !valid_name(name) => Err(FeedbackRejection::new(
            422,
            "invalid_name",
            format!("name must be 1-{MAX_NAME_CHARS} characters of A-Z a-z 0-9 _ . -"),
        )),
        _ => Ok(()),
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_CHARS
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn token_rejection(error: TokenError) -> FeedbackRejection {
    let reason = error.to_string();
    match error {
        TokenError::Malformed(_) => FeedbackRejection::new(400, "malformed_token", reason),
        TokenError::Forged => FeedbackRejection::new(401, "forged_token", reason),
        TokenError::Expired { .. } => FeedbackRejection::new(410, "expired_token", reason),
        TokenError::FromTheFuture => FeedbackRejection::new(422, "future_token", reason),
    }
}

/// Union of the destinations of every matching route, in `Destination` order, each once.
fn route(policy: &FeedbackPolicy, type_name: &str, experiment: &str) -> Vec<Destination> {
    let mut destinations: Vec<Destination> = policy
        .routes
        .iter()
        .filter(|r| r.types.is_empty() || r.types.iter().any(|t| t == type_name))
        .filter(|r| r.experiments.is_empty() || r.experiments.iter().any(|e| e == experiment))
        .flat_map(|r| r.destinations.iter().copied())
        .collect();
    destinations.sort();
    destinations.dedup();
    destinations
}

/// A goal is a type (`click`, `conversion`, `custom` for every custom event) or
/// `custom:NAME` for one custom event.
fn is_goal(experiment: &Experiment, kind: FeedbackType, name: Option<&str>) -> bool {
    let type_name = kind.kind().as_str();
    experiment.goals.iter().any(|goal| {
        goal == type_name
            || (kind == FeedbackType::Custom
                && goal
                    .strip_prefix("custom:")
                    .is_some_and(|g| Some(g) == name))
    })
}

/// `fb_` + the first 128 bits of SHA-256(decision id, type, name) in hex, fields separated by a
/// byte that no field may contain unescaped (length-prefixed, so no two inputs collide).
pub fn dedupe_key(decision_id: &str, type_name: &str, name: Option<&str>) -> String {
    let mut hash = Sha256::new();
    for part in [decision_id, type_name, name.unwrap_or("")] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    let digest = hash.finalize();
    let mut key = String::with_capacity(3 + 32);
    key.push_str("fb_");
    for b in &digest[..16] {
        key.push_str(&format!("{b:02x}"));
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{Arm, FeedbackRoute, Policy};
    use proptest::prelude::*;

    const KEY: &[u8] = b"feedback-test-key-feedback-test-key";
    const NOW: u64 = 1_700_000_000;

    fn experiment(key: &str, goals: &[&str]) -> Experiment {
        serde_json::from_value(serde_json::json!({
            "key": key,
            "policy": {"type": "thompson"},
            "goals": goals,
            "arms": [{"key": "a"}, {"key": "b"}],
        }))
        .unwrap()
    }

    fn token(experiment: &str, arm: &str) -> String {
        DecisionToken {
            decision_id: "dec-1".to_owned(),
            experiment: experiment.to_owned(),
            arm: arm.to_owned(),
            propensity: 0.5,
            policy_version: "v1".to_owned(),
            issued_at: NOW - 30,
            unit: "u1".to_owned(),
        }
        .sign(KEY)
    }

    fn body(fields: Value) -> Vec<u8> {
        fields.to_string().into_bytes()
    }

    fn accept(body: &[u8], policy: &FeedbackPolicy) -> Result<AcceptedFeedback, FeedbackRejection> {
        accept_feedback(
            body,
            policy,
            &[experiment("hero", &["click", "custom:signup"])],
            KEY,
            NOW,
            ConsentState::Granted,
        )
    }

    fn code(r: Result<AcceptedFeedback, FeedbackRejection>) -> (u16, &'static str) {
        let e = r.unwrap_err();
        (e.status, e.code)
    }

    #[test]
    fn a_click_on_a_goal_is_a_reward_for_the_bandit() {
        let got = accept(
            &body(serde_json::json!({"token": token("hero", "b"), "type": "click"})),
            &FeedbackPolicy::default(),
        )
        .unwrap();
        assert_eq!(got.destinations, vec![Destination::Bandit]);
        assert_eq!(got.event.kind, EventKind::Click);
        assert_eq!(got.event.reward, Some(1.0));
        assert_eq!(got.event.arm.as_deref(), Some("b"));
        assert_eq!(got.event.id, got.dedupe_key);
        assert_eq!(got.event.time, NOW);
        assert_eq!(got.event.validate(), Ok(()));
    }

    #[test]
    fn goals_decide_the_reward() {
        let policy = FeedbackPolicy::default();
        let conversion = accept(
            &body(serde_json::json!({"token": token("hero", "a"), "type": "conversion", "value": 12.5})),
            &policy,
        )
        .unwrap();
        assert_eq!(conversion.event.reward, None);
        assert_eq!(conversion.event.value, Some(12.5));
        let signup = accept(
            &body(serde_json::json!({"token": token("hero", "a"), "type": "custom", "name": "signup"})),
            &policy,
        )
        .unwrap();
        assert_eq!(signup.event.reward, Some(1.0));
        let other = accept(
            &body(
                serde_json::json!({"token": token("hero", "a"), "type": "custom", "name": "share"}),
            ),
            &policy,
        )
        .unwrap();
        assert_eq!(other.event.reward, None);
        assert_ne!(signup.dedupe_key, other.dedupe_key);
    }

    #[test]
    fn the_same_beacon_twice_has_the_same_dedupe_key() {
        let b = body(serde_json::json!({"token": token("hero", "a"), "type": "click"}));
        let one = accept(&b, &FeedbackPolicy::default()).unwrap();
        let two = accept(&b, &FeedbackPolicy::default()).unwrap();
        assert_eq!(one.dedupe_key, two.dedupe_key);
        let b = body(serde_json::json!({"token": token("hero", "a"), "type": "conversion"}));
        assert_ne!(
            accept(&b, &FeedbackPolicy::default()).unwrap().dedupe_key,
            one.dedupe_key
        );
    }

    #[test]
    fn routes_are_unioned_and_filtered() {
        let policy = FeedbackPolicy {
            routes: vec![
                FeedbackRoute {
                    types: vec!["conversion".to_owned()],
                    experiments: vec![],
                    destinations: vec![Destination::Analytics],
                },
                FeedbackRoute {
                    types: vec![],
                    experiments: vec!["hero".to_owned()],
                    destinations: vec![Destination::Bandit, Destination::Analytics],
                },
                FeedbackRoute {
                    types: vec![],
                    experiments: vec!["other".to_owned()],
                    destinations: vec![Destination::Quarantine],
                },
            ],
            ..FeedbackPolicy::default()
        };
        let got = accept(
            &body(serde_json::json!({"token": token("hero", "a"), "type": "conversion"})),
            &policy,
        )
        .unwrap();
        assert_eq!(
            got.destinations,
            vec![Destination::Bandit, Destination::Analytics]
        );
        assert_eq!(got.event.destinations, got.destinations);
    }

    #[test]
    fn unknown_experiment_goes_to_analytics_or_is_refused() {
        let b = body(serde_json::json!({"token": token("gone", "a"), "type": "click"}));
        assert_eq!(
            code(accept(&b, &FeedbackPolicy::default())),
            (422, "unknown_experiment")
        );
        let policy = FeedbackPolicy {
            routes: vec![FeedbackRoute {
                types: vec![],
                experiments: vec![],
                destinations: vec![Destination::Bandit, Destination::Analytics],
            }],
            ..FeedbackPolicy::default()
        };
        let got = accept(&b, &policy).unwrap();
        assert_eq!(got.destinations, vec![Destination::Analytics]);
        assert_eq!(got.event.reward, None);
        // A removed arm is treated the same way.
        let b = body(serde_json::json!({"token": token("hero", "zz"), "type": "click"}));
        assert_eq!(
            accept(&b, &policy).unwrap().destinations,
            vec![Destination::Analytics]
        );
    }

    #[test]
    fn every_refusal_has_its_status_and_code() {
        let policy = FeedbackPolicy::default();
        let t = token("hero", "a");
        let cases: Vec<(Vec<u8>, (u16, &str))> = vec![
            (b"{not json".to_vec(), (400, "malformed_json")),
            (b"[1]".to_vec(), (400, "malformed_json")),
            (
                body(serde_json::json!({"type": "click"})),
                (422, "invalid_body"),
            ),
            (
                body(serde_json::json!({"token": t, "type": "view"})),
                (422, "invalid_body"),
            ),
            (
                body(serde_json::json!({"token": t, "type": "click", "ip": "x"})),
                (422, "invalid_body"),
            ),
            (
                body(serde_json::json!({"token": t, "type": "conversion", "value": -1})),
                (422, "invalid_value"),
            ),
            (
                body(serde_json::json!({"token": t, "type": "conversion", "value": 2e9})),
                (422, "invalid_value"),
            ),
            (
                body(serde_json::json!({"token": t, "type": "custom"})),
                (422, "missing_name"),
            ),
            (
                body(serde_json::json!({"token": t, "type": "custom", "name": "a b"})),
                (422, "invalid_name"),
            ),
            (
                body(serde_json::json!({"token": t, "type": "custom", "name": "x".repeat(65)})),
                (422, "invalid_name"),
            ),
            (
                body(serde_json::json!({"token": t, "type": "click", "name": "x"})),
                (422, "invalid_name"),
            ),
            (
                body(serde_json::json!({"token": "abc", "type": "click"})),
                (400, "malformed_token"),
            ),
            (
                body(serde_json::json!({"token": t, "type": "click", "at": NOW + 3600})),
                (422, "invalid_time"),
            ),
            (
                body(serde_json::json!({"token": t, "type": "click", "at": 5})),
                (422, "invalid_time"),
            ),
        ];
        for (b, expected) in cases {
            assert_eq!(
                code(accept(&b, &policy)),
                expected,
                "{}",
                String::from_utf8_lossy(&b)
            );
        }
        let forged = accept_feedback(
            &body(serde_json::json!({"token": t, "type": "click"})),
            &policy,
            &[experiment("hero", &["click"])],
            b"wrong key",
            NOW,
            ConsentState::Granted,
        );
        assert_eq!(code(forged), (401, "forged_token"));
        let late = accept_feedback(
            &body(serde_json::json!({"token": t, "type": "click"})),
            &policy,
            &[experiment("hero", &["click"])],
            KEY,
            NOW + policy.attribution_window_seconds,
            ConsentState::Granted,
        );
        assert_eq!(code(late), (410, "expired_token"));
        let denied = accept_feedback(
            &body(serde_json::json!({"token": t, "type": "click"})),
            &policy,
            &[experiment("hero", &["click"])],
            KEY,
            NOW,
            ConsentState::Denied,
        );
        assert_eq!(code(denied), (403, "consent_denied"));
    }

    #[test]
    fn an_event_the_aggregator_would_refuse_never_leaves() {
        let t = DecisionToken {
            decision_id: "dec-9".to_owned(),
            experiment: "hero".to_owned(),
            arm: "a".to_owned(),
            propensity: 0.5,
            policy_version: "v1".to_owned(),
            issued_at: NOW,
            unit: "192.0.2.44".to_owned(),
        }
        .sign(KEY);
        let got = accept(
            &body(serde_json::json!({"token": t, "type": "click"})),
            &FeedbackPolicy::default(),
        );
        assert_eq!(code(got), (422, "invalid_event"));
    }

    #[test]
    fn rejection_json_names_the_code() {
        let r = FeedbackRejection::new(413, "oversize", "too big");
        let v: Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": "oversize", "reason": "too big"})
        );
    }

    #[test]
    fn policy_is_used_for_experiment_lookup_only_by_key() {
        // Policy type does not matter for acceptance: a fixed experiment also gets rewards.
        let mut e = experiment("hero", &["click"]);
        e.policy = Policy::Fixed;
        e.arms.push(Arm {
            key: "c".to_owned(),
            weight: 1.0,
            mutations: vec![],
        });
        let got = accept_feedback(
            &body(serde_json::json!({"token": token("hero", "c"), "type": "click"})),
            &FeedbackPolicy::default(),
            &[e],
            KEY,
            NOW,
            ConsentState::Unknown,
        )
        .unwrap();
        assert_eq!(got.event.reward, Some(1.0));
        assert_eq!(got.event.consent, ConsentState::Unknown);
    }

    proptest! {
        #[test]
        fn oversize_is_never_accepted(extra in 1usize..5000, limit in 16usize..2048) {
            let policy = FeedbackPolicy { max_body_bytes: limit, ..FeedbackPolicy::default() };
            // A perfectly valid beacon, padded with whitespace past the limit.
            let mut b = body(serde_json::json!({"token": token("hero", "a"), "type": "click"}));
            let pad = (limit + extra).saturating_sub(b.len());
            b.extend(std::iter::repeat_n(b' ', pad));
            prop_assume!(b.len() > limit);
            prop_assert_eq!(code(accept(&b, &policy)), (413, "oversize"));
        }

        #[test]
        fn arbitrary_bodies_never_panic_and_never_pass(b in prop::collection::vec(any::<u8>(), 0..600)) {
            prop_assert!(accept(&b, &FeedbackPolicy::default()).is_err());
        }
    }
}
