//! Runs `tests/conformance/bandit/*.json`: exact arm probabilities for fixed, epsilon-greedy
//! and UCB1, Thompson against exact Beta integrals (Monte-Carlo tolerance), and `choose_arm`.

use std::path::PathBuf;

use serde_json::Value;
use stellwerk_core::{Arm, ArmStats, Policy, arm_probabilities, choose_arm};

fn vectors(folder: &str) -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/conformance")
        .join(folder);
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (
                p.display().to_string(),
                serde_json::from_str(&text).unwrap(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn bandit_vectors() {
    let all = vectors("bandit");
    assert!(all.len() >= 10, "only {} bandit vectors", all.len());
    for (path, v) in all {
        if let Some(cases) = v.get("chooseArm") {
            for case in cases.as_array().unwrap() {
                let p: Vec<f64> = serde_json::from_value(case["probabilities"].clone()).unwrap();
                for draw in case["draws"].as_array().unwrap() {
                    let u = draw[0].as_f64().unwrap();
                    let want = draw[1].as_u64().unwrap() as usize;
                    assert_eq!(choose_arm(&p, u), want, "{path}: {p:?} at u = {u}");
                }
            }
            continue;
        }
        let policy: Policy = serde_json::from_value(v["policy"].clone()).unwrap();
        let arms: Vec<Arm> = serde_json::from_value(v["arms"].clone()).unwrap();
        let stats: Vec<ArmStats> = serde_json::from_value(v["stats"].clone()).unwrap();
        let want: Vec<f64> = serde_json::from_value(v["expect"].clone()).unwrap();
        let tolerance = v["tolerance"].as_f64().unwrap();
        let got = arm_probabilities(&policy, &arms, &stats);
        assert_eq!(got.len(), want.len(), "{path}");
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= tolerance,
                "{path}: got {got:?}, want {want:?}"
            );
        }
    }
}
