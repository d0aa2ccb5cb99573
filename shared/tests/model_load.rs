//! Loading the committed demo model, and every way a model is refused.

use serde_json::{Value, json};
use stellwerk_core::{Model, ModelError, ModelManifest};

const ONNX: &[u8] = include_bytes!("../../models/demo/ctr-mlp.onnx");
const MANIFEST: &[u8] = include_bytes!("../../models/demo/ctr-mlp.manifest.json");

fn manifest_json() -> Value {
    serde_json::from_slice(MANIFEST).expect("committed manifest is JSON")
}

fn manifest_from(value: Value) -> ModelManifest {
    serde_json::from_value(value).expect("test manifest deserialises")
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn demo() -> Model {
    let manifest = ModelManifest::parse(MANIFEST).expect("committed manifest is valid");
    Model::load(manifest, ONNX).expect("committed model loads")
}

#[test]
fn committed_model_loads_and_reproduces_its_golden_example() {
    let model = demo();
    let manifest = model.manifest().clone();
    assert_eq!(model.version(), "1.0.0");
    assert_eq!(model.sha256(), sha256_hex(ONNX));
    let context = manifest
        .golden
        .context
        .clone()
        .expect("demo golden has a context");
    let scored = model.score(&context).expect("scores");
    assert_eq!(scored.len(), 2);
    for (got, want) in scored.iter().zip(&manifest.golden.output) {
        assert!(
            (got - want).abs() <= manifest.golden.tolerance,
            "{got} vs {want}"
        );
    }
}

#[test]
fn outputs_are_probabilities_that_sum_to_one() {
    let model = demo();
    for context in [
        json!({}),
        json!({"device": "tablet", "country": "JP", "path": "/a/b/c/d/e/f", "hourOfWeek": 160}),
        json!({"device": "mobile", "returning": true, "country": "DE", "path": "/"}),
    ] {
        let p = model.score(&context).expect("scores");
        assert!(p.iter().all(|v| (0.0..=1.0).contains(v)), "{p:?}");
        assert!((p[0] + p[1] - 1.0).abs() < 1e-5, "{p:?}");
    }
}

#[test]
fn model_learned_the_generators_strongest_effects() {
    // The synthetic generator gives returning mobile visitors on shallow pages far more clicks
    // than new tablet visitors deep in the site; a trained model must rank them the same way.
    let model = demo();
    let keen = json!({"device": "mobile", "returning": true, "country": "DE", "path": "/", "hourOfWeek": 14});
    let cold = json!({"device": "tablet", "returning": false, "country": "JP", "path": "/a/b/c/d", "hourOfWeek": 14});
    let p_keen = model.score(&keen).expect("scores")[1];
    let p_cold = model.score(&cold).expect("scores")[1];
    assert!(p_keen > 2.0 * p_cold, "keen {p_keen} vs cold {p_cold}");
}

#[test]
fn wrong_sha256_is_refused_before_parsing() {
    let mut value = manifest_json();
    value["sha256"] = json!("00".repeat(32));
    let err = Model::load(manifest_from(value.clone()), ONNX).unwrap_err();
    assert_eq!(
        err,
        ModelError::HashMismatch {
            expected: "00".repeat(32),
            actual: sha256_hex(ONNX)
        }
    );
    // Garbage that would not parse is still reported as a hash mismatch: it never reached tract.
    let err = Model::load(manifest_from(value), b"not an onnx file").unwrap_err();
    assert!(matches!(err, ModelError::HashMismatch { .. }), "{err}");
    assert!(err.to_string().contains("sha256"), "{err}");
}

#[test]
fn uppercase_sha256_in_the_manifest_is_accepted() {
    let mut value = manifest_json();
    value["sha256"] = json!(sha256_hex(ONNX).to_uppercase());
    let model = Model::load(manifest_from(value), ONNX).expect("loads");
    assert_eq!(model.sha256(), sha256_hex(ONNX));
}

fn load_with_matching_hash(bytes: &[u8]) -> Result<Model, ModelError> {
    let mut value = manifest_json();
    value["sha256"] = json!(sha256_hex(bytes));
    Model::load(manifest_from(value), bytes)
}

#[test]
fn truncated_or_garbled_bytes_are_unparseable() {
    for bytes in [
        &ONNX[..ONNX.len() / 2],
        &ONNX[..10],
        &[0xffu8; 64][..],
        &[][..],
    ] {
        let err = load_with_matching_hash(bytes).unwrap_err();
        assert!(
            matches!(err, ModelError::Unparseable(_) | ModelError::Signature(_)),
            "{} bytes: {err}",
            bytes.len()
        );
    }
}

/// The demo model with the one place that holds `original` replaced by as many other bytes.
fn demo_with(original: &[u8], replacement: &[u8]) -> Vec<u8> {
    let at = ONNX
        .windows(original.len())
        .position(|w| w == original)
        .expect("the demo model holds the original bytes");
    let mut bytes = ONNX.to_vec();
    bytes[at..at + original.len()].copy_from_slice(replacement);
    bytes
}

#[test]
fn a_cast_to_an_unknown_data_type_is_unparseable() {
    // The demo's first node casts its input `to` FLOAT (type code 1); 17 is no ONNX type.
    let bytes = demo_with(b"\x02to\x18\x01", b"\x02to\x18\x11");
    let err = load_with_matching_hash(&bytes).unwrap_err();
    assert!(matches!(err, ModelError::Unparseable(_)), "{err}");
    assert!(err.to_string().contains("unknown data type 17"), "{err}");
}

#[test]
fn raw_tensor_bytes_that_do_not_fill_the_dimensions_are_unparseable() {
    // The demo's 1×1 output bias, stored as one float (`float_data`, field 4), becomes two
    // rows of raw bytes (`raw_data`, field 9) that still hold four bytes.
    let bytes = demo_with(
        b"\x08\x01\x08\x01\x10\x01\x22\x04",
        b"\x08\x02\x08\x01\x10\x01\x4a\x04",
    );
    let err = load_with_matching_hash(&bytes).unwrap_err();
    assert!(matches!(err, ModelError::Unparseable(_)), "{err}");
    assert!(err.to_string().contains("do not fill"), "{err}");
}

#[test]
fn a_changed_weight_fails_the_golden_check() {
    // Scaling the whole model is not possible from outside, but any byte change that still
    // parses must either break the golden example or leave the output within tolerance.
    let mut refused_by_golden = 0;
    for at in (ONNX.len() / 4..ONNX.len()).step_by(7) {
        let mut bytes = ONNX.to_vec();
        bytes[at] ^= 0x40;
        match load_with_matching_hash(&bytes) {
            Err(ModelError::GoldenMismatch { .. }) => refused_by_golden += 1,
            Ok(model) => {
                let golden = &model.manifest().golden;
                let out = model.run(&golden.input).expect("runs");
                assert!(
                    out.iter()
                        .zip(&golden.output)
                        .all(|(a, b)| (a - b).abs() <= golden.tolerance)
                );
            }
            Err(_) => {}
        }
    }
    assert!(
        refused_by_golden > 0,
        "no flipped byte reached the golden check"
    );
}

#[test]
fn golden_mismatch_is_refused() {
    let mut value = manifest_json();
    let out = value["golden"]["output"][1].as_f64().expect("number");
    value["golden"]["output"][1] = json!(out + 0.01);
    let err = Model::load(manifest_from(value), ONNX).unwrap_err();
    match &err {
        ModelError::GoldenMismatch {
            index,
            expected,
            actual,
            ..
        } => {
            assert_eq!(*index, 1);
            assert!((expected - actual - 0.01).abs() < 1e-4, "{err}");
        }
        other => panic!("expected GoldenMismatch, got {other}"),
    }
    assert!(err.to_string().contains("golden output value 1"), "{err}");
}

#[test]
fn golden_within_tolerance_is_accepted() {
    let mut value = manifest_json();
    let out = value["golden"]["output"][1].as_f64().expect("number");
    value["golden"]["output"][1] = json!(out + 0.00005);
    assert!(Model::load(manifest_from(value), ONNX).is_ok());
}

#[test]
fn wrong_declared_input_shape_is_refused() {
    // Drop the last feature: the manifest is self-consistent at 9 inputs, the graph takes 10.
    let mut value = manifest_json();
    value["features"].as_array_mut().expect("array").pop();
    value["inputs"][0]["shape"] = json!([1, 9]);
    value["golden"]["input"]
        .as_array_mut()
        .expect("array")
        .pop();
    value["golden"]
        .as_object_mut()
        .expect("object")
        .remove("context");
    ModelManifest::parse(value.to_string().as_bytes()).expect("self-consistent manifest");
    let err = Model::load(manifest_from(value), ONNX).unwrap_err();
    match &err {
        ModelError::ShapeMismatch {
            tensor, declared, ..
        } => {
            assert_eq!(tensor, "features");
            assert_eq!(declared, &vec![1, 9]);
        }
        other => panic!("expected ShapeMismatch, got {other}"),
    }
}

#[test]
fn wrong_declared_output_shape_is_refused() {
    let mut value = manifest_json();
    value["outputs"][0]["shape"] = json!([1, 3]);
    value["golden"]["output"]
        .as_array_mut()
        .expect("array")
        .push(json!(0.0));
    let err = Model::load(manifest_from(value), ONNX).unwrap_err();
    assert!(
        matches!(&err, ModelError::ShapeMismatch { tensor, .. } if tensor == "probabilities"),
        "{err}"
    );
    assert!(err.to_string().contains("[1, 3]"), "{err}");
}

#[test]
fn unknown_tensor_names_are_refused() {
    let mut value = manifest_json();
    value["outputs"][0]["name"] = json!("scores");
    let err = Model::load(manifest_from(value), ONNX).unwrap_err();
    assert!(matches!(err, ModelError::Signature(_)), "{err}");
    assert!(err.to_string().contains("scores"), "{err}");

    let mut value = manifest_json();
    value["inputs"][0]["name"] = json!("x");
    let err = Model::load(manifest_from(value), ONNX).unwrap_err();
    assert!(matches!(err, ModelError::Signature(_)), "{err}");
}

#[test]
fn invalid_manifest_is_refused_by_load_too() {
    let mut value = manifest_json();
    value["canaryPercent"] = json!(120);
    let err = Model::load(manifest_from(value), ONNX).unwrap_err();
    assert!(matches!(err, ModelError::Manifest(_)), "{err}");
}

#[test]
fn run_checks_the_input_length() {
    let model = demo();
    assert_eq!(
        model.run(&[0.0; 3]).unwrap_err(),
        ModelError::InputLength {
            expected: 10,
            actual: 3
        }
    );
}

#[test]
fn operators_outside_the_supported_set_are_refused() {
    // The demo's `label` output goes through ArgMax, which is not supported; `probabilities`
    // loads because the label branch is pruned before import.
    let mut value = manifest_json();
    value["outputs"][0]["name"] = json!("label");
    value["outputs"][0]["shape"] = json!([1]);
    value["golden"]["output"] = json!([1.0]);
    let err = Model::load(manifest_from(value), ONNX).unwrap_err();
    assert!(matches!(err, ModelError::Unparseable(_)), "{err}");
    assert!(err.to_string().contains("\"ArgMax\""), "{err}");
}
