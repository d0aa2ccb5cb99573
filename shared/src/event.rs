//! The event envelope: one shape for exposures, feedback and fraud verdicts, from the edge
//! through the queue to the aggregator.
//!
//! Ids are idempotency keys: an exposure's id is its decision id, a feedback event's id is its
//! dedupe key, so a redelivered event is recognised wherever it lands. Events carry no raw IP
//! and no raw user id; [`Event::validate`] refuses any string that parses as an IP address.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::snapshot::Destination;
use crate::token::DecisionToken;
use crate::validate::{Invalid, Issue, Issues, field};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A visitor was shown an arm.
    Exposure,
    Click,
    Conversion,
    /// A named goal defined by the site.
    Custom,
    /// The fraud gate's score for a request.
    FraudVerdict,
}

impl EventKind {
    /// The wire name (`exposure`, `click`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Exposure => "exposure",
            EventKind::Click => "click",
            EventKind::Conversion => "conversion",
            EventKind::Custom => "custom",
            EventKind::FraudVerdict => "fraud_verdict",
        }
    }

    /// Click, conversion or custom: the kinds a beacon reports.
    pub fn is_feedback(self) -> bool {
        matches!(
            self,
            EventKind::Click | EventKind::Conversion | EventKind::Custom
        )
    }
}

/// The visitor's consent as the adapter resolved it (cookie, `Sec-GPC`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentState {
    Granted,
    Denied,
    #[default]
    Unknown,
}

/// One event on its way to the queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Event {
    /// Idempotency key: decision id for exposures, dedupe key for feedback.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// Unix seconds at which the edge saw it.
    pub time: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propensity: Option<f64>,
    pub policy_version: String,
    /// The policy that chose the arm (`thompson`, `softmax`, `linear-thompson`, …; exposures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Model name → version used for the decision.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub model_versions: BTreeMap<String, String>,
    /// Context features; never a raw IP or a raw user id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub context: BTreeMap<String, Value>,
    /// Bandit reward (1.0 for a goal), when this feedback counts as one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward: Option<f64>,
    /// Monetary or other value reported with a conversion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Name of a custom event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraud_score: Option<f64>,
    #[serde(default)]
    pub consent: ConsentState,
    /// Pseudonymous unit id.
    pub unit: String,
    pub destinations: Vec<Destination>,
}

impl Event {
    /// The exposure for a decision: id = decision id, destined for the bandit and analytics.
    /// Model versions and context features are left for the caller to fill in.
    pub fn exposure(decision: &DecisionToken, consent: ConsentState) -> Event {
        Event {
            id: decision.decision_id.clone(),
            kind: EventKind::Exposure,
            time: decision.issued_at,
            experiment: Some(decision.experiment.clone()),
            arm: Some(decision.arm.clone()),
            decision_id: Some(decision.decision_id.clone()),
            propensity: Some(decision.propensity),
            policy_version: decision.policy_version.clone(),
            policy: None,
            model_versions: BTreeMap::new(),
            context: BTreeMap::new(),
            reward: None,
            value: None,
            name: None,
            fraud_score: None,
            consent,
            unit: decision.unit.clone(),
            destinations: vec![Destination::Bandit, Destination::Analytics],
        }
    }

    /// A fraud gate verdict for one request, kept for analytics.
    pub fn fraud_verdict(
        id: String,
        time: u64,
        score: f64,
        unit: String,
        policy_version: String,
        consent: ConsentState,
    ) -> Event {
        Event {
            id,
            kind: EventKind::FraudVerdict,
            time,
            experiment: None,
            arm: None,
            decision_id: None,
            propensity: None,
            policy_version,
            policy: None,
            model_versions: BTreeMap::new(),
            context: BTreeMap::new(),
            reward: None,
            value: None,
            name: None,
            fraud_score: Some(score),
            consent,
            unit,
            destinations: vec![Destination::Analytics],
        }
    }

    /// Sends the event to quarantine only: it is kept apart and never counted by a bandit.
    pub fn quarantine(&mut self) {
        self.destinations = vec![Destination::Quarantine];
    }

    /// Parses and validates one event.
    pub fn from_json(bytes: &[u8]) -> Result<Event, Invalid> {
        let event: Event = serde_json::from_slice(bytes).map_err(|e| {
            Invalid(vec![Issue {
                path: String::new(),
                reason: format!("not an event: {e}"),
            }])
        })?;
        event.validate()?;
        Ok(event)
    }

    /// The event as compact JSON.
    pub fn to_json(&self) -> String {
        // Every field serialises; non-finite floats would become `null` and fail `from_json`.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Checks the invariants every producer must keep, above all that no IP address leaks.
    pub fn validate(&self) -> Result<(), Invalid> {
        let mut issues = Issues::new();
        if self.id.is_empty() || self.id.len() > 128 {
            issues.push("id", "must be 1-128 characters");
        }
        if let Some(p) = self.propensity
            && !(p > 0.0 && p <= 1.0)
        {
            issues.push("propensity", "must be in (0, 1]");
        }
        for (name, number) in [
            ("reward", self.reward),
            ("value", self.value),
            ("fraudScore", self.fraud_score),
        ] {
            if let Some(n) = number
                && !n.is_finite()
            {
                issues.push(name, "must be a finite number");
            }
        }
        if self.kind == EventKind::Exposure
            && (self.experiment.is_none() || self.arm.is_none() || self.propensity.is_none())
        {
            issues.push("", "an exposure needs experiment, arm and propensity");
        }
        if self.kind == EventKind::Custom && self.name.is_none() {
            issues.push("name", "a custom event needs a name");
        }
        let mut strings: Vec<(String, &str)> = vec![
            ("id".to_owned(), &self.id),
            ("policyVersion".to_owned(), &self.policy_version),
            ("unit".to_owned(), &self.unit),
        ];
        for (name, value) in [
            ("experiment", &self.experiment),
            ("arm", &self.arm),
            ("decisionId", &self.decision_id),
            ("name", &self.name),
        ] {
            if let Some(v) = value {
                strings.push((name.to_owned(), v));
            }
        }
        for (k, v) in &self.model_versions {
            let path = field("modelVersions", k);
            strings.push((path.clone(), k));
            strings.push((path, v));
        }
        for (path, s) in strings {
            if contains_ip_address(s) {
                issues.push(path, "looks like an IP address; events never carry one");
            }
        }
        for (k, v) in &self.context {
            let path = field("context", k);
            if contains_ip_address(k) || value_contains_ip_address(v) {
                issues.push(path, "looks like an IP address; events never carry one");
            }
        }
        issues.finish(())
    }
}

/// True when any run of address characters in `s` parses as an IPv4 or IPv6 address.
pub fn contains_ip_address(s: &str) -> bool {
    s.split(|c: char| !(c.is_ascii_hexdigit() || c == '.' || c == ':' || c == '%'))
        .any(|run| {
            // Trim the punctuation a sentence puts around an address ("at 10.0.0.1.").
            let run = run.trim_matches('.');
            run.len() >= 2
                && run.bytes().any(|b| b.is_ascii_digit())
                && (run.parse::<IpAddr>().is_ok()
                    || run
                        .split_once('%')
                        .is_some_and(|(addr, _zone)| addr.parse::<IpAddr>().is_ok()))
        })
}

fn value_contains_ip_address(value: &Value) -> bool {
    match value {
        Value::String(s) => contains_ip_address(s),
        Value::Array(items) => items.iter().any(value_contains_ip_address),
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| contains_ip_address(k) || value_contains_ip_address(v)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decision() -> DecisionToken {
        DecisionToken {
            decision_id: "dec-42".to_owned(),
            experiment: "hero".to_owned(),
            arm: "b".to_owned(),
            propensity: 0.5,
            policy_version: "v3".to_owned(),
            issued_at: 1_700_000_000,
            unit: "u_9f".to_owned(),
        }
    }

    #[test]
    fn exposure_id_is_the_decision_id_and_json_round_trips() {
        let mut e = Event::exposure(&decision(), ConsentState::Granted);
        e.context.insert("device".to_owned(), json!("mobile"));
        e.model_versions
            .insert("fraud".to_owned(), "2024-05-01".to_owned());
        assert_eq!(e.id, "dec-42");
        let json = e.to_json();
        assert!(json.contains(r#""type":"exposure""#), "{json}");
        assert!(json.contains(r#""decisionId":"dec-42""#), "{json}");
        assert!(json.contains(r#""destinations":["bandit","analytics"]"#));
        assert_eq!(Event::from_json(json.as_bytes()), Ok(e));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let mut v =
            serde_json::to_value(Event::exposure(&decision(), ConsentState::Unknown)).unwrap();
        v["ip"] = json!("x");
        assert!(Event::from_json(v.to_string().as_bytes()).is_err());
    }

    #[test]
    fn ip_addresses_are_refused_anywhere() {
        let cases: Vec<fn(&mut Event)> = vec![
            |e: &mut Event| e.unit = "203.0.113.9".to_owned(),
            |e: &mut Event| e.unit = "2001:db8::1".to_owned(),
            |e: &mut Event| e.policy_version = "from 10.0.0.1.".to_owned(),
            |e: &mut Event| {
                e.context
                    .insert("client".to_owned(), json!("::ffff:192.0.2.1"));
            },
            |e: &mut Event| {
                e.context
                    .insert("nested".to_owned(), json!({"a": ["fe80::1%eth0"]}));
            },
            |e: &mut Event| {
                e.context.insert("198.51.100.7".to_owned(), json!(1));
            },
            |e: &mut Event| {
                e.model_versions
                    .insert("m".to_owned(), "host=192.168.1.20".to_owned());
            },
        ];
        for (i, case) in cases.iter().enumerate() {
            let mut e = Event::exposure(&decision(), ConsentState::Granted);
            case(&mut e);
            assert!(
                e.validate().is_err(),
                "case {i} was accepted: {}",
                e.to_json()
            );
        }
    }

    #[test]
    fn ordinary_values_are_not_mistaken_for_addresses() {
        for s in [
            "v1.2.3",
            "2024-05-01",
            "12:30:00",
            "u_9f3a",
            "deadbeef",
            "::",
            "1.5",
            "cafe:babe",
            "300.1.1.1",
        ] {
            assert!(!contains_ip_address(s), "{s}");
        }
    }

    #[test]
    fn invalid_numbers_are_refused() {
        let mut e = Event::exposure(&decision(), ConsentState::Granted);
        e.propensity = Some(0.0);
        assert!(e.validate().is_err());
        let mut e = Event::exposure(&decision(), ConsentState::Granted);
        e.fraud_score = Some(f64::INFINITY);
        assert!(e.validate().is_err());
    }

    #[test]
    fn fraud_verdict_validates() {
        let e = Event::fraud_verdict(
            "req-1".to_owned(),
            1,
            0.93,
            "u_1".to_owned(),
            "v3".to_owned(),
            ConsentState::Unknown,
        );
        assert_eq!(e.validate(), Ok(()));
        assert_eq!(Event::from_json(e.to_json().as_bytes()), Ok(e));
    }
}
