//! Manifest parsing and validation: every problem reported as `path: reason`.

use serde_json::{Value, json};
use stellwerk_core::{FeatureSpec, ModelManifest};

const MANIFEST: &[u8] = include_bytes!("../../models/demo/ctr-mlp.manifest.json");

fn manifest_json() -> Value {
    serde_json::from_slice(MANIFEST).expect("committed manifest is JSON")
}

fn issues(value: &Value) -> Vec<String> {
    match ModelManifest::parse(value.to_string().as_bytes()) {
        Ok(_) => Vec::new(),
        Err(invalid) => invalid.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn committed_manifest_parses() {
    let manifest = ModelManifest::parse(MANIFEST).expect("valid");
    assert_eq!(manifest.name, "ctr-mlp");
    assert_eq!(manifest.feature_width(), 10);
    assert_eq!(manifest.inputs[0].shape, vec![1, 10]);
    assert!(
        matches!(manifest.features[0], FeatureSpec::OneHot { ref values, .. } if values.len() == 3)
    );
    assert!((0.0..=100.0).contains(&manifest.canary_percent));
}

#[test]
fn every_problem_is_listed_with_its_path() {
    let mut value = manifest_json();
    value["sha256"] = json!("xyz");
    value["canaryPercent"] = json!(150);
    value["outputs"][0]["shape"] = json!([2, 2]);
    value["features"][0]["values"] = json!(["mobile", "mobile", "tablet"]);
    value["golden"]["tolerance"] = json!(-1);
    value["version"] = json!(" ");
    let found = issues(&value);
    for expected in [
        "sha256: must be 64 hexadecimal digits",
        "canaryPercent: must be between 0 and 100",
        "outputs[0].shape[0]: the batch dimension must be 1, found 2",
        "features[0].values[1]: duplicate value \"mobile\"",
        "golden.tolerance: must be a finite number ≥ 0",
        "version: must not be empty",
    ] {
        assert!(
            found.iter().any(|f| f == expected),
            "missing {expected:?} in {found:#?}"
        );
    }
}

#[test]
fn feature_width_must_match_the_input() {
    let mut value = manifest_json();
    value["features"]
        .as_array_mut()
        .expect("array")
        .push(json!({"kind": "bool", "source": "bot"}));
    let found = issues(&value);
    assert!(
        found
            .iter()
            .any(|f| f == "features: build 11 values but inputs[0] holds 10"),
        "{found:#?}"
    );
    assert!(
        found
            .iter()
            .any(|f| f.starts_with("golden.input: has 10 values")),
        "{found:#?}"
    );
}

#[test]
fn golden_context_must_agree_with_golden_input() {
    let mut value = manifest_json();
    value["golden"]["context"]["country"] = json!("FR");
    let found = issues(&value);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].starts_with("golden.context: builds"), "{found:#?}");
}

#[test]
fn bad_feature_specs_are_refused() {
    let mut value = manifest_json();
    value["features"][1] = json!({"kind": "hashed", "source": "userAgent", "buckets": 0});
    value["features"][2]["source"] = json!("headers.");
    let found = issues(&value);
    assert!(
        found
            .iter()
            .any(|f| f.starts_with("features[1].buckets: must be between 1 and")),
        "{found:#?}"
    );
    assert!(
        found.iter().any(|f| f.starts_with("features[2].source:")),
        "{found:#?}"
    );
}

#[test]
fn unknown_fields_and_kinds_are_refused() {
    let mut value = manifest_json();
    value["extra"] = json!(1);
    assert_eq!(issues(&value).len(), 1);
    let mut value = manifest_json();
    value["features"][1] = json!({"kind": "embedding", "source": "x"});
    let found = issues(&value);
    assert!(
        found[0].contains("does not match the model manifest format"),
        "{found:#?}"
    );
    assert!(ModelManifest::parse(b"{").is_err());
}
