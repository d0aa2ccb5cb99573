//! Runs `tests/conformance/bandit/*.json`: exact arm probabilities for fixed, epsilon-greedy
//! and UCB1, Thompson against exact Beta integrals (Monte-Carlo tolerance), and `choose_arm`.

mod common;

use stellwerk_core::{Arm, ArmStats, Policy, arm_probabilities, choose_arm};

#[test]
fn bandit_vectors() {
    let all = common::vectors("bandit");
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
