//! Runs `tests/conformance/feedback/*.json`: beacon acceptance and refusal, with dedupe keys
//! and expected events computed by an independent implementation (Python hashlib).

mod common;

use serde_json::Value;
use stellwerk_core::{ConsentState, Snapshot, accept_feedback};

#[test]
fn feedback_vectors() {
    let all = common::vectors("feedback");
    assert!(all.len() >= 20, "only {} feedback vectors", all.len());
    let mut accepted = 0;
    for (path, v) in all {
        let snapshot = Snapshot::from_value(v["snapshot"].clone())
            .unwrap_or_else(|e| panic!("{path}: snapshot refused: {e}"));
        let consent: ConsentState = serde_json::from_value(v["consent"].clone()).unwrap();
        let got = accept_feedback(
            v["body"].as_str().unwrap().as_bytes(),
            &snapshot.feedback,
            &snapshot.experiments,
            v["keyUtf8"].as_str().unwrap().as_bytes(),
            v["now"].as_u64().unwrap(),
            consent,
        );
        let expect = &v["expect"];
        match (expect.get("accepted"), got) {
            (Some(want), Ok(got)) => {
                accepted += 1;
                assert_eq!(
                    got.dedupe_key,
                    want["dedupeKey"].as_str().unwrap(),
                    "{path}"
                );
                assert_eq!(
                    serde_json::to_value(&got.destinations).unwrap(),
                    want["destinations"],
                    "{path}"
                );
                let event: Value = serde_json::from_str(&got.event.to_json()).unwrap();
                assert_eq!(event, want["event"], "{path}");
                assert_eq!(got.event.validate(), Ok(()), "{path}");
            }
            (None, Err(rejection)) => {
                assert_eq!(
                    (u64::from(rejection.status), rejection.code),
                    (
                        expect["status"].as_u64().unwrap(),
                        expect["code"].as_str().unwrap()
                    ),
                    "{path}: {}",
                    rejection.reason
                );
                let body: Value = serde_json::from_str(&rejection.to_json()).unwrap();
                assert_eq!(body["error"], expect["code"], "{path}");
            }
            (_, got) => panic!("{path}: expected {expect}, got {got:?}"),
        }
    }
    assert!(accepted >= 5, "only {accepted} accepting vectors");
}
