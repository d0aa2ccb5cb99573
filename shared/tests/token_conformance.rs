//! Runs `tests/conformance/token/*.json`: token verification against vectors produced by an
//! independent implementation (Python hmac/hashlib/base64).

mod common;

use serde_json::Value;
use stellwerk_core::{DecisionToken, TokenError};

fn token_from_wire(v: &Value) -> DecisionToken {
    DecisionToken {
        decision_id: v["d"].as_str().unwrap().to_owned(),
        experiment: v["e"].as_str().unwrap().to_owned(),
        arm: v["a"].as_str().unwrap().to_owned(),
        propensity: v["p"].as_f64().unwrap(),
        policy_version: v["v"].as_str().unwrap().to_owned(),
        issued_at: v["t"].as_u64().unwrap(),
        unit: v["u"].as_str().unwrap().to_owned(),
    }
}

#[test]
fn token_vectors() {
    let all = common::vectors("token");
    assert!(all.len() >= 10, "only {} token vectors", all.len());
    for (path, v) in all {
        let key = v["keyUtf8"].as_str().unwrap().as_bytes();
        if let Some(fields) = v.get("sign") {
            let token = DecisionToken {
                decision_id: fields["decisionId"].as_str().unwrap().to_owned(),
                experiment: fields["experiment"].as_str().unwrap().to_owned(),
                arm: fields["arm"].as_str().unwrap().to_owned(),
                propensity: fields["propensity"].as_f64().unwrap(),
                policy_version: fields["policyVersion"].as_str().unwrap().to_owned(),
                issued_at: fields["issuedAt"].as_u64().unwrap(),
                unit: fields["unit"].as_str().unwrap().to_owned(),
            };
            assert_eq!(
                token.sign(key),
                v["expectToken"].as_str().unwrap(),
                "{path}"
            );
            continue;
        }
        let got = DecisionToken::verify(
            v["token"].as_str().unwrap(),
            key,
            v["now"].as_u64().unwrap(),
            v["attributionWindowSeconds"].as_u64().unwrap(),
        );
        let expect = &v["expect"];
        if let Some(ok) = expect.get("ok") {
            assert_eq!(got, Ok(token_from_wire(ok)), "{path}");
            continue;
        }
        let matches = match (expect["error"].as_str().unwrap(), &got) {
            ("malformed", Err(TokenError::Malformed(_))) => true,
            ("forged", Err(TokenError::Forged)) => true,
            ("from_the_future", Err(TokenError::FromTheFuture)) => true,
            ("expired", Err(TokenError::Expired { age })) => Some(*age) == expect["age"].as_u64(),
            _ => false,
        };
        assert!(matches, "{path}: expected {expect}, got {got:?}");
    }
}
