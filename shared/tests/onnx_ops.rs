//! Every operator the edge imports, against onnxruntime: one tiny model per operator and
//! attribute variant (`models/ops/make_cases.py`), loaded through `Model::load` (whose golden
//! check is onnxruntime's output) and run again on the recorded input.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use stellwerk_core::{Model, ModelError, ModelManifest};

const TOLERANCE: f32 = 1e-5;

fn cases() -> Vec<Value> {
    serde_json::from_str(include_str!("fixtures/ops/cases.json")).expect("cases.json")
}

fn floats(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .expect("a list")
        .iter()
        .map(|v| v.as_f64().expect("a number") as f32)
        .collect()
}

fn manifest(case: &Value, bytes: &[u8]) -> ModelManifest {
    let width = case["input"].as_array().expect("input").len();
    let features: Vec<Value> = (0..width)
        .map(
            |i| json!({"kind": "numeric", "source": format!("f{i}"), "scale": 1.0, "default": 0.0}),
        )
        .collect();
    let sha256: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let manifest = json!({
        "name": "op-case",
        "version": "1.0.0",
        "sha256": sha256,
        "inputs": [{"name": "x", "shape": case["input_shape"]}],
        "outputs": [{"name": "y", "shape": case["output_shape"]}],
        "features": features,
        "canaryPercent": 0,
        "golden": {"input": case["input"], "output": case["output"], "tolerance": TOLERANCE},
    });
    ModelManifest::parse(manifest.to_string().as_bytes()).expect("a valid manifest")
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/ops/{name}.onnx",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn load(name: &str) -> (Value, Result<Model, ModelError>) {
    let case = cases()
        .into_iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no case {name}"));
    let bytes = fixture(name);
    let loaded = Model::load(manifest(&case, &bytes), &bytes);
    (case, loaded)
}

#[test]
fn every_operator_case_matches_onnxruntime() {
    let cases = cases();
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for case in cases.iter().filter(|c| c.get("refused").is_none()) {
        let name = case["name"].as_str().expect("name");
        match load(name).1 {
            Ok(model) => {
                let got = model.run(&floats(&case["input"])).expect("runs");
                let want = floats(&case["output"]);
                let close = got.len() == want.len()
                    && got
                        .iter()
                        .zip(&want)
                        .all(|(a, b)| (a - b).abs() <= TOLERANCE);
                if !close {
                    failures.push(format!("{name}: got {got:?}, onnxruntime {want:?}"));
                }
            }
            Err(error) => failures.push(format!("{name}: {error}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn refused_layouts_name_the_reason() {
    let refused: Vec<Value> = cases()
        .into_iter()
        .filter(|c| c.get("refused").is_some())
        .collect();
    assert!(!refused.is_empty());
    for case in refused {
        let name = case["name"].as_str().expect("name");
        let reason = case["refused"].as_str().expect("reason");
        match load(name).1 {
            Err(ModelError::Unparseable(message)) => {
                assert!(message.contains(reason), "{name}: {message}")
            }
            other => panic!("{name}: expected a refusal, got {other:?}"),
        }
    }
}

#[test]
fn every_supported_operator_has_a_case() {
    let covered: std::collections::BTreeSet<String> = cases()
        .iter()
        .flat_map(|c| c["operators"].as_array().expect("operators").clone())
        .map(|op| op.as_str().expect("a name").to_owned())
        .collect();
    let missing: Vec<_> = stellwerk_core::supported_onnx_operators()
        .filter(|op| !covered.contains(*op))
        .collect();
    assert!(missing.is_empty(), "operators without a case: {missing:?}");
}

#[test]
fn a_wrong_reference_output_fails_the_golden_check() {
    // The comparison is live: the same model with one expected value moved is refused.
    let (mut case, _) = load("classifier_binary_logistic");
    case["output"][1] = json!(case["output"][1].as_f64().expect("number") + 0.01);
    let bytes = fixture("classifier_binary_logistic");
    assert!(matches!(
        Model::load(manifest(&case, &bytes), &bytes),
        Err(ModelError::GoldenMismatch { .. })
    ));
}
