//! The shipped fraud model against this build of the core: its manifest must declare exactly the
//! feature vector `request_features` builds (so a feature change without retraining fails here),
//! and it must separate a browser from automation at the shipped threshold.

use serde_json::Value;
use stellwerk_core::{
    FraudPolicy, GateAction, GateMode, Model, ModelManifest, PlatformFacts, RequestFacts,
    feature_names, gate, is_fraud_model, request_features,
};

const ONNX: &[u8] = include_bytes!("../../models/fraud/fraud-gate.onnx");
const MANIFEST: &[u8] = include_bytes!("../../models/fraud/fraud-gate.manifest.json");
const THRESHOLD: &str = include_str!("../../models/fraud/threshold.json");
const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

fn model() -> Model {
    Model::load(ModelManifest::parse(MANIFEST).expect("manifest"), ONNX).expect("model loads")
}

fn policy() -> FraudPolicy {
    let threshold: Value = serde_json::from_str(THRESHOLD).expect("threshold.json");
    FraudPolicy {
        mode: GateMode::Block,
        threshold: threshold["threshold"].as_f64().expect("a number"),
        model: Some("fraud-gate".into()),
        ..FraudPolicy::default()
    }
}

fn request(headers: &[(&str, &str)]) -> RequestFacts {
    RequestFacts {
        method: "GET".into(),
        url: "https://shop.example/products/42".into(),
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        platform: PlatformFacts::default(),
    }
}

#[test]
fn the_manifest_declares_this_builds_feature_vector() {
    let model = model();
    assert!(is_fraud_model(&model));
    assert_eq!(model.manifest().feature_width(), feature_names().len());
}

#[test]
fn a_browser_passes_and_automation_is_blocked() {
    let model = model();
    let browser = request(&[
        (
            "sec-ch-ua",
            "\"Google Chrome\";v=\"131\", \"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\"",
        ),
        ("sec-ch-ua-mobile", "?0"),
        ("sec-ch-ua-platform", "\"Windows\""),
        ("upgrade-insecure-requests", "1"),
        ("user-agent", CHROME),
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("sec-fetch-site", "none"),
        ("sec-fetch-mode", "navigate"),
        ("sec-fetch-user", "?1"),
        ("sec-fetch-dest", "document"),
        ("accept-language", "de-DE,de;q=0.9"),
    ]);
    let verdict = gate(&policy(), &browser, Some(&model));
    assert_eq!(verdict.action, GateAction::Allow, "{verdict:?}");

    // python-requests claiming Chrome: no client hints, no fetch metadata.
    let spoofed = request(&[
        ("user-agent", CHROME),
        ("accept-encoding", "gzip, deflate"),
        ("accept", "*/*"),
    ]);
    assert_eq!(
        gate(&policy(), &spoofed, Some(&model)).action,
        GateAction::Block
    );

    let curl = request(&[("user-agent", "curl/8.5.0"), ("accept", "*/*")]);
    assert_eq!(
        gate(&policy(), &curl, Some(&model)).action,
        GateAction::Block
    );
    assert_eq!(
        request_features(&curl).len(),
        model.manifest().feature_width()
    );
}

#[test]
fn fraud_rules_are_validated_with_path_and_reason() {
    let snapshot = serde_json::json!({
        "schema": 1,
        "version": "v",
        "fraud": {
            "model": "fraud-gate",
            "denyPaths": ["wp-login.php"],
            "goodBots": [{"userAgent": "Googlebot", "reverseDns": ["not a domain"]}],
            "challenge": {"scriptUrl": "http://insecure.example/api.js", "siteKey": "\"><script>"}
        }
    });
    let invalid =
        stellwerk_core::Snapshot::parse(snapshot.to_string().as_bytes()).expect_err("refused");
    let paths: Vec<&str> = invalid.0.iter().map(|i| i.path.as_str()).collect();
    for expected in [
        "fraud.denyPaths[0]",
        "fraud.goodBots[0].reverseDns[0]",
        "fraud.model",
        "fraud.challenge.scriptUrl",
        "fraud.challenge.siteKey",
    ] {
        assert!(paths.contains(&expected), "{expected} missing in {paths:?}");
    }
}
