//! What the conformance runners share: finding and reading the vectors of `tests/conformance/`.

// Each test crate includes this module and uses only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::Value;

/// `tests/conformance/<folder>` of the repository.
pub fn vector_dir(folder: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/conformance")
        .join(folder)
}

/// The `.json` files of `tests/conformance/<folder>`, sorted.
pub fn vector_paths(folder: &str) -> Vec<PathBuf> {
    let dir = vector_dir(folder);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
}

/// Every vector of `tests/conformance/<folder>` as (path, parsed JSON), sorted by path.
pub fn vectors(folder: &str) -> Vec<(String, Value)> {
    vector_paths(folder)
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (
                p.display().to_string(),
                serde_json::from_str(&text).unwrap(),
            )
        })
        .collect()
}
