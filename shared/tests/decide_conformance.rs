//! Runs `tests/conformance/decide/*.json`: whole page decisions from a snapshot, posteriors, a
//! request, the keys, 16 random bytes and the time. `expect` pins the gate action, consent,
//! kill switch, the minted and pseudonymous unit ids, every assignment (arm, policy,
//! propensity, token), each flag's variant, the number of mutations and the event types; the
//! expectations were computed by an independent model of `decide` (Python hashlib/hmac).

mod common;

use serde_json::{Value, json};
use stellwerk_core::{
    DecideInput, Keys, PageDecision, PosteriorSnapshot, RequestFacts, Snapshot, conformance, decide,
};

fn random_bytes(hex: &str) -> [u8; 16] {
    assert_eq!(hex.len(), 32, "random: {hex}");
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

fn decide_vector(path: &str, v: &Value) -> PageDecision {
    let snapshot = Snapshot::from_value(v["snapshot"].clone())
        .unwrap_or_else(|e| panic!("{path}: snapshot refused: {e}"));
    let posteriors = match v.get("posteriors") {
        Some(p) => PosteriorSnapshot::parse(p.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{path}: posteriors refused: {e}")),
        None => PosteriorSnapshot::default(),
    };
    let facts: RequestFacts = serde_json::from_value(v["request"].clone())
        .unwrap_or_else(|e| panic!("{path}: request: {e}"));
    decide(&DecideInput {
        snapshot: &snapshot,
        posteriors: &posteriors,
        facts: &facts,
        keys: Keys {
            token: v["keys"]["token"].as_str().unwrap().as_bytes(),
            unit: v["keys"]["unit"].as_str().unwrap().as_bytes(),
        },
        random: random_bytes(v["random"].as_str().unwrap()),
        now: v["now"].as_u64().unwrap(),
        models: &[],
    })
}

#[test]
fn decide_vectors() {
    let all = common::vectors("decide");
    assert!(all.len() >= 8, "only {} decide vectors", all.len());
    let mut tokens = 0;
    for (path, v) in all {
        let decision = decide_vector(&path, &v);
        let got = serde_json::to_value(&decision).unwrap();
        let expect = &v["expect"];

        assert_eq!(got["gate"]["action"], expect["gate"], "{path}: gate");
        assert_eq!(got["consent"], expect["consent"], "{path}: consent");
        assert_eq!(got["killSwitch"], expect["killSwitch"], "{path}");
        assert_eq!(got["newUnitId"], expect["newUnitId"], "{path}: new unit");
        assert_eq!(got["unit"], expect["unit"], "{path}: unit");

        let want = expect["assignments"].as_array().unwrap();
        assert_eq!(decision.assignments.len(), want.len(), "{path}: {got}");
        for (a, w) in decision.assignments.iter().zip(want) {
            assert_eq!(a.experiment, w["experiment"].as_str().unwrap(), "{path}");
            assert_eq!(a.arm, w["arm"].as_str().unwrap(), "{path}: arm");
            assert_eq!(a.policy, w["policy"].as_str().unwrap(), "{path}");
            let propensity = w["propensity"].as_f64().unwrap();
            assert!(
                (a.propensity - propensity).abs() < 1e-12,
                "{path}: propensity {} vs {propensity}",
                a.propensity
            );
            assert_eq!(json!(a.token), w["token"], "{path}: token");
            assert_eq!(
                a.fallback.as_deref(),
                w["fallback"].as_str(),
                "{path}: fallback"
            );
            tokens += usize::from(a.token.is_some());
        }

        let flags: serde_json::Map<String, Value> = decision
            .flags
            .iter()
            .map(|f| (f.key.clone(), json!(f.variant)))
            .collect();
        assert_eq!(Value::Object(flags), expect["flags"], "{path}: flags");
        assert_eq!(
            Some(decision.mutations.len() as u64),
            expect["mutations"].as_u64(),
            "{path}: mutations {:?}",
            decision.mutations
        );
        let events: Vec<&str> = decision.events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(json!(events), expect["events"], "{path}: events");

        // What an edge answers for this vector is exactly this decision.
        assert_eq!(conformance::run("decide", &v), Ok(got), "{path}");
    }
    assert!(tokens >= 5, "only {tokens} signed assignments");
}
