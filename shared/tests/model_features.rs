//! Feature building and the canary split.

use serde_json::{Value, json};
use stellwerk_core::{FeatureSpec, ModelManifest, build_features, canary_serves_candidate};

const MANIFEST: &[u8] = include_bytes!("../../models/demo/ctr-mlp.manifest.json");

fn spec(value: Value) -> Vec<FeatureSpec> {
    serde_json::from_value(value).expect("test feature spec")
}

#[test]
fn demo_spec_builds_the_trainers_golden_input() {
    // The Python trainer encoded golden.context with its own reading of the spec.
    let manifest = ModelManifest::parse(MANIFEST).expect("valid");
    let context = manifest.golden.context.as_ref().expect("context");
    let built = build_features(&manifest.features, context);
    assert_eq!(built.len(), manifest.feature_width());
    for (got, want) in built.iter().zip(&manifest.golden.input) {
        assert!(
            (got - want).abs() < 1e-6,
            "{built:?} vs {:?}",
            manifest.golden.input
        );
    }
}

#[test]
fn demo_spec_encodes_each_feature_where_expected() {
    let manifest = ModelManifest::parse(MANIFEST).expect("valid");
    let context = json!({"device": "tablet", "returning": true, "hourOfWeek": 167, "country": "GB", "path": "/a/b?c=/d"});
    let built = build_features(&manifest.features, &context);
    let expected = [0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.4];
    for (i, (got, want)) in built.iter().zip(expected).enumerate() {
        assert!((got - want).abs() < 1e-6, "value {i}: {built:?}");
    }
}

#[test]
fn unknown_or_missing_values_encode_neutrally() {
    let manifest = ModelManifest::parse(MANIFEST).expect("valid");
    let built = build_features(
        &manifest.features,
        &json!({"device": "watch", "country": 49, "returning": "yes"}),
    );
    assert_eq!(built, vec![0.0; 10]);
    assert_eq!(
        build_features(&manifest.features, &json!("not an object")),
        vec![0.0; 10]
    );
}

#[test]
fn hashed_buckets_match_pythons_hashlib() {
    // Reference buckets from models/demo/train.py `bucket` (hashlib.sha256, first 8 bytes).
    for (text, buckets, bucket) in [
        ("Mozilla/5.0", 16, 12),
        ("de-DE", 16, 5),
        ("visitor-42", 1000, 900),
        ("Mozilla/5.0", 1000, 340),
    ] {
        let features =
            spec(json!([{"kind": "hashed", "source": "headers.ua", "buckets": buckets}]));
        let built = build_features(&features, &json!({"headers": {"ua": text}}));
        assert_eq!(built.len(), buckets);
        assert_eq!(built.iter().position(|&v| v == 1.0), Some(bucket), "{text}");
        assert_eq!(built.iter().sum::<f32>(), 1.0);
    }
    let features = spec(json!([{"kind": "hashed", "source": "ua", "buckets": 4}]));
    assert_eq!(build_features(&features, &json!({"ua": 7})), vec![0.0; 4]);
}

#[test]
fn canary_split_is_stable_and_close_to_its_percentage() {
    let units: Vec<String> = (0..20_000).map(|i| format!("unit-{i}")).collect();
    let served = |percent: f64| -> Vec<bool> {
        units
            .iter()
            .map(|u| canary_serves_candidate(u, "ctr-mlp", "1.1.0", percent))
            .collect()
    };
    let ten = served(10.0);
    assert_eq!(ten, served(10.0), "same unit, same side");
    let share = ten.iter().filter(|&&s| s).count() as f64 / units.len() as f64;
    assert!((share - 0.10).abs() < 0.01, "share {share}");
    // Raising the percentage only adds units.
    let thirty = served(30.0);
    assert!(ten.iter().zip(&thirty).all(|(a, b)| !a || *b));
    assert!(served(0.0).iter().all(|s| !s));
    assert!(served(100.0).iter().all(|s| *s));
    assert!(served(f64::NAN).iter().all(|s| !s));
    // A new candidate draws a different sample of units.
    let other: Vec<bool> = units
        .iter()
        .map(|u| canary_serves_candidate(u, "ctr-mlp", "1.2.0", 10.0))
        .collect();
    assert_ne!(ten, other);
}
