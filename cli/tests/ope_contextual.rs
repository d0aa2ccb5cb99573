//! `stellwerk ope` with contextual candidates on uniform logs whose click rates per device are
//! known: a reward model with SquareCB (the committed ONNX model, `models/reward/`) and linear
//! Thompson with learned posteriors, and doubly robust with the ONNX model as q̂. The truth
//! each estimate must bracket is computed from the known rates and the candidate's exact
//! distribution for each row.

use assert_cmd::Command;
use serde_json::{Value, json};
use stellwerk_core::{
    Exploration, Model, ModelManifest, PosteriorSnapshot, Snapshot, SplitMix64, TrainingRow,
    learn_linear, linear_thompson_choice, reward_model_choice,
};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const MANIFEST: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../models/reward/reward.manifest.json"
);
const ARMS: [&str; 3] = ["a", "b", "c"];
const DEVICES: [&str; 3] = ["mobile", "desktop", "tablet"];
/// Click rates per device and arm: each device has its own best arm.
const RATES: [[f64; 3]; 3] = [[0.10, 0.04, 0.05], [0.04, 0.10, 0.05], [0.05, 0.04, 0.10]];
const ROWS: usize = 6000;

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("stellwerk-ope-ctx-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Uniformly logged rows (propensity 1/3) with seeded clicks at the known rates.
fn uniform_rows() -> Vec<TrainingRow> {
    let mut rng = SplitMix64(11);
    (0..ROWS)
        .map(|i| {
            let device = rng.below(3);
            let arm = rng.below(3);
            let reward = f64::from(u8::from(rng.uniform() < RATES[device][arm]));
            serde_json::from_value(json!({
                "decision": format!("d{i}"), "ts": 1_767_225_600_000u64 + i as u64,
                "experiment": "hero",
                "context": {"device": DEVICES[device], "returning": i % 3 == 0,
                            "referrerClass": "direct"},
                "arms": ARMS, "arm": ARMS[arm], "propensity": 1.0 / 3.0, "reward": reward,
                "policy": "fixed", "snapshot": "v1", "model": null
            }))
            .unwrap()
        })
        .collect()
}

fn write_rows(dir: &std::path::Path, rows: &[TrainingRow]) -> std::path::PathBuf {
    let path = dir.join("rows.ndjson");
    let lines: Vec<String> = rows
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn candidate(dir: &std::path::Path, contextual: Value) -> (std::path::PathBuf, Snapshot) {
    let value = json!({"schema": 1, "version": "candidate", "models": [{"name": "reward"}],
        "experiments": [{"key": "hero", "policy": {"type": "thompson"}, "contextual": contextual,
                         "arms": ARMS.iter().map(|a| json!({"key": a})).collect::<Vec<_>>()}]});
    let path = dir.join("candidate.json");
    std::fs::write(&path, value.to_string()).unwrap();
    (path, Snapshot::from_value(value).unwrap())
}

fn ope(args: &[&str]) -> std::process::Output {
    Command::cargo_bin("stellwerk")
        .unwrap()
        .current_dir(ROOT)
        .arg("ope")
        .args(args)
        .output()
        .unwrap()
}

fn ope_json(args: &[&str]) -> Value {
    let output = ope(&[args, &["--json"]].concat());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// `ope --json` of a reward-model candidate given its model, with that ONNX model as DR's q̂.
fn ope_with_onnx_q(logs: &str, policy: &str) -> Value {
    ope_json(&[
        "--logs",
        logs,
        "--policy",
        policy,
        "--model",
        MANIFEST,
        "--reward-model",
        MANIFEST,
    ])
}

/// The candidate's true mean reward on these rows' contexts: Σ_a π(a | x) · rate(x, a).
fn truth(rows: &[TrainingRow], distribution: impl Fn(&TrainingRow) -> Vec<f64>) -> f64 {
    let total: f64 = rows
        .iter()
        .map(|row| {
            let device = DEVICES
                .iter()
                .position(|d| row.context["device"] == *d)
                .unwrap();
            let p = distribution(row);
            (0..3).map(|a| p[a] * RATES[device][a]).sum::<f64>()
        })
        .sum();
    total / rows.len() as f64
}

fn context(row: &TrainingRow) -> Value {
    Value::Object(row.context.clone().into_iter().collect())
}

fn brackets(report: &Value, estimator: &str, value: f64) {
    let e = &report[estimator];
    assert!(
        e["low"].as_f64().unwrap() <= value && value <= e["high"].as_f64().unwrap(),
        "{estimator} {e} misses {value}"
    );
}

#[test]
fn a_reward_model_candidate_with_the_onnx_model_as_dr_reward_model() {
    let dir = scratch("squarecb");
    let rows = uniform_rows();
    let logs = write_rows(&dir, &rows);
    let (policy, _) = candidate(
        &dir,
        json!({"type": "reward_model", "model": "reward",
               "exploration": {"type": "squarecb", "gamma": 50}}),
    );
    let (logs, policy) = (logs.to_str().unwrap(), policy.to_str().unwrap());
    let report = ope_with_onnx_q(logs, policy);
    assert_eq!(report["rewardModel"], "ONNX reward model reward@1.0.0");
    assert_eq!(report["contextualFallbacks"], json!({}));
    assert_eq!(report["diagnostics"]["rows"], ROWS);

    let manifest = ModelManifest::parse(&std::fs::read(MANIFEST).unwrap()).unwrap();
    let onnx = std::fs::read(format!("{ROOT}/models/reward/reward.onnx")).unwrap();
    let model = Model::load(manifest, &onnx).unwrap();
    let squarecb = Exploration::Squarecb { gamma: 50.0 };
    let value = truth(&rows, |row| {
        reward_model_choice(Some(&model), None, &squarecb, &ARMS, &context(row))
            .unwrap()
            .draw
            .probabilities()
    });
    for estimator in ["ips", "snips", "dr"] {
        brackets(&report, estimator, value);
    }
    // Serving each device its own best arm beats the uniform logging policy outright.
    assert!(report["dr"]["low"].as_f64().unwrap() > report["onPolicy"]["high"].as_f64().unwrap());
    // A reward model that knows the devices leaves DR less to correct than IPS (clicks are
    // rare, so the reward's own noise dominates both).
    let se = |e: &str| report[e]["stdError"].as_f64().unwrap();
    assert!(se("dr") < se("ips"), "{report}");

    // The same candidate with the per-arm means as q̂: DR still brackets the truth.
    let means = ope_json(&["--logs", logs, "--policy", policy, "--model", MANIFEST]);
    assert!(
        means["rewardModel"]
            .as_str()
            .unwrap()
            .starts_with("per-arm mean")
    );
    brackets(&means, "dr", value);
}

#[test]
fn a_linear_thompson_candidate_with_learned_posteriors() {
    let dir = scratch("linear");
    let rows = uniform_rows();
    let logs = write_rows(&dir, &rows);
    let features = json!([{"kind": "one_hot", "source": "device",
                           "values": ["mobile", "desktop", "tablet"]}]);
    let (policy, snapshot) = candidate(
        &dir,
        json!({"type": "linear_thompson", "features": features, "exploration": 1.0}),
    );
    // Posteriors learned from the first half of the rows, evaluated on all of them.
    let mut posteriors = PosteriorSnapshot::default();
    let learned = learn_linear(&mut posteriors, &rows[..ROWS / 2], &snapshot, 1_767_300_000);
    assert_eq!(learned, (ROWS / 2) as u64);
    let posteriors_path = dir.join("posteriors.json");
    std::fs::write(&posteriors_path, posteriors.to_json()).unwrap();
    let report = ope_json(&[
        "--logs",
        logs.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
        "--posteriors",
        posteriors_path.to_str().unwrap(),
    ]);
    assert_eq!(report["contextualFallbacks"], json!({}));
    let features: Vec<stellwerk_core::FeatureSpec> = serde_json::from_value(features).unwrap();
    let linear = &posteriors.experiments["hero"].linear;
    let value = truth(&rows, |row| {
        linear_thompson_choice(
            &features,
            1.0,
            (1.0, 100.0),
            &ARMS,
            Some(linear),
            &context(row),
        )
        .unwrap()
        .draw
        .probabilities()
    });
    for estimator in ["ips", "snips", "dr"] {
        brackets(&report, estimator, value);
    }
    assert!(report["ips"]["low"].as_f64().unwrap() > report["onPolicy"]["high"].as_f64().unwrap());
}

#[test]
fn contextual_candidates_fall_back_or_refuse_with_a_reason() {
    let dir = scratch("refuse");
    let mut rows = uniform_rows();
    rows.truncate(300);
    // A tenth of the rows lack the device: the candidate falls back there, counted, and the
    // ONNX q̂ cannot score them, so DR skips them with the reason.
    for row in rows.iter_mut().step_by(10) {
        row.context.remove("device");
    }
    let logs = write_rows(&dir, &rows);
    let (policy, _) = candidate(
        &dir,
        json!({"type": "reward_model", "model": "reward",
               "exploration": {"type": "epsilon_greedy", "epsilon": 0.1}}),
    );
    let (logs, policy) = (logs.to_str().unwrap(), policy.to_str().unwrap());
    let report = ope_with_onnx_q(logs, policy);
    assert_eq!(report["diagnostics"]["rows"], 270);
    assert_eq!(
        report["diagnostics"]["skipped"]["reward model: no finite estimate for every arm"],
        30
    );
    // Without the ONNX q̂ every row counts; the 30 without a device get the plain policy.
    let plain_q = ope_json(&["--logs", logs, "--policy", policy, "--model", MANIFEST]);
    assert_eq!(plain_q["diagnostics"]["rows"], 300);
    assert_eq!(
        plain_q["contextualFallbacks"],
        json!({"missing_feature": 30})
    );

    // The candidate's model not given: refused, not silently the plain policy.
    let output = ope(&["--logs", logs, "--policy", policy]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("give its manifest with --model"),
        "{stderr}"
    );
    // A reward model file that is not a manifest: refused with the path.
    let broken = dir.join("broken.manifest.json");
    std::fs::write(&broken, "{}").unwrap();
    let output = ope(&[
        "--logs",
        logs,
        "--policy",
        "uniform",
        "--reward-model",
        broken.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--reward-model") && stderr.contains("broken.manifest.json"),
        "{stderr}"
    );
}
