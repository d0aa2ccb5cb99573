//! Property tests: loading never panics, feature building always has the declared width.

use proptest::prelude::*;
use serde_json::{Value, json};
use stellwerk_core::{Model, ModelManifest, build_features};

const ONNX: &[u8] = include_bytes!("../../models/demo/ctr-mlp.onnx");
const MANIFEST: &[u8] = include_bytes!("../../models/demo/ctr-mlp.manifest.json");

fn manifest_for(bytes: &[u8]) -> ModelManifest {
    use sha2::{Digest, Sha256};
    let mut manifest = ModelManifest::parse(MANIFEST).expect("valid");
    manifest.sha256 = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    manifest
}

fn context_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[a-zA-Z/?#]{0,12}".prop_map(Value::String),
        prop_oneof![Just("mobile"), Just("DE"), Just("/a/b")].prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop::collection::btree_map(
            prop_oneof![
                Just("device".to_owned()),
                Just("country".to_owned()),
                Just("path".to_owned()),
                Just("hourOfWeek".to_owned()),
                Just("returning".to_owned()),
                "[a-z]{1,6}"
            ],
            inner,
            0..6,
        )
        .prop_map(|m| Value::Object(m.into_iter().collect()))
    })
}

// 256 cases by default; PROPTEST_CASES=20000 for a longer hunt.
proptest! {

    #[test]
    fn load_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        prop_assert!(Model::load(manifest_for(&bytes), &bytes).is_err());
    }

    #[test]
    fn load_never_panics_on_mutated_model_bytes(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let mut bytes = ONNX.to_vec();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        // Ok is possible (a change the golden check tolerates); a panic is not.
        let _ = Model::load(manifest_for(&bytes), &bytes);
    }

    #[test]
    fn features_always_have_the_declared_width(context in context_value()) {
        let manifest = ModelManifest::parse(MANIFEST).expect("valid");
        let built = build_features(&manifest.features, &context);
        prop_assert_eq!(built.len(), manifest.feature_width());
        prop_assert!(built.iter().all(|v| v.is_finite()));
    }
}
