//! Runs every flagd conformance vector in `tests/conformance/flags/`.
//!
//! Each file is `{"name", "flags": <flagd document>, "cases": [...]}`. A case names a flag, a
//! context, `now` (unix seconds) and the expected resolution; an optional `type` (`Boolean`,
//! `String`, `Integer`, `Float`, `Object`) evaluates through the typed accessor. A file with
//! `issues` holds a document that must be refused with exactly those `path: reason` lines.

mod common;

use std::fs;
use std::path::Path;

use serde_json::Value;
use stellwerk_core::{FlagSet, ValueType};

fn value_type(name: &str) -> ValueType {
    match name {
        "Boolean" => ValueType::Boolean,
        "String" => ValueType::String,
        "Integer" => ValueType::Integer,
        "Float" => ValueType::Float,
        "Object" => ValueType::Object,
        other => panic!("unknown value type {other}"),
    }
}

/// Checks one vector file; returns the number of checks and every failure.
fn check_file(path: &Path) -> (usize, Vec<String>) {
    let name = path.display().to_string();
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let vector: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let parsed = FlagSet::parse(&vector["flags"]);
    let mut failures = Vec::new();

    if let Some(expected) = vector.get("issues") {
        let expected: Vec<String> = serde_json::from_value(expected.clone())
            .unwrap_or_else(|e| panic!("{name}: issues: {e}"));
        match parsed {
            Ok(_) => failures.push(format!("{name}: document was accepted, expected refusal")),
            Err(invalid) => {
                let mut found: Vec<String> = invalid.0.iter().map(ToString::to_string).collect();
                found.sort();
                let mut wanted = expected;
                wanted.sort();
                if found != wanted {
                    failures.push(format!("{name}: issues {found:#?}, expected {wanted:#?}"));
                }
            }
        }
        return (1, failures);
    }

    let flags = match parsed {
        Ok(flags) => flags,
        Err(invalid) => return (1, vec![format!("{name}: document refused:\n{invalid}")]),
    };
    let cases = vector["cases"]
        .as_array()
        .unwrap_or_else(|| panic!("{name}: no cases"));
    for (i, case) in cases.iter().enumerate() {
        let key = case["key"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}[{i}]: key"));
        let now = case["now"]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}[{i}]: now"));
        let resolution = match case.get("type").and_then(Value::as_str) {
            Some(t) => flags.evaluate_as(key, &case["context"], now, value_type(t)),
            None => flags.evaluate(key, &case["context"], now),
        };
        let actual = serde_json::to_value(&resolution).unwrap_or_else(|e| panic!("{e}"));
        if actual != case["expected"] {
            failures.push(format!(
                "{name} case {i} ({key}, context {}): got {actual}, expected {}",
                case["context"], case["expected"]
            ));
        }
    }
    (cases.len(), failures)
}

#[test]
fn every_flagd_vector_resolves_as_flagd_does() {
    let files = common::vector_paths("flags");
    assert!(!files.is_empty(), "no vectors found");

    let mut checked = 0;
    let mut failures = Vec::new();
    for file in &files {
        let (count, mut failed) = check_file(file);
        checked += count;
        failures.append(&mut failed);
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked >= 100, "only {checked} checks ran");
}
