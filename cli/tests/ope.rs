//! `stellwerk ope` on small logs whose estimates are known in closed form.

use assert_cmd::Command;
use serde_json::{Value, json};

fn stellwerk() -> Command {
    let mut cmd = Command::cargo_bin("stellwerk").expect("binary is built");
    cmd.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    cmd
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("stellwerk-ope-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn row(i: usize, experiment: &str, arm: &str, propensity: f64, reward: f64) -> String {
    json!({
        "decision": format!("d{i}"), "ts": 1_700_000_000_000u64 + i as u64,
        "experiment": experiment, "context": {"device": "mobile"},
        "arms": ["control", "benefit"], "arm": arm, "propensity": propensity, "reward": reward,
        "policy": "fixed", "snapshot": "v1", "model": null
    })
    .to_string()
}

/// Control pays 0, benefit pays 1; logged 50/50, two rows each.
fn fifty_fifty_logs(dir: &std::path::Path) -> std::path::PathBuf {
    let lines = [
        row(0, "hero", "control", 0.5, 0.0),
        row(1, "hero", "benefit", 0.5, 1.0),
        row(2, "hero", "control", 0.5, 0.0),
        row(3, "hero", "benefit", 0.5, 1.0),
    ];
    let path = dir.join("rows.ndjson");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn ope_json(args: &[&str]) -> Value {
    let output = stellwerk()
        .arg("ope")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn a_candidate_that_always_plays_the_better_arm() {
    let dir = scratch("better");
    let logs = fifty_fifty_logs(&dir);
    let policy = dir.join("benefit.json");
    std::fs::write(&policy, r#"{"arms": {"benefit": 1}}"#).unwrap();
    let report = ope_json(&[
        "--logs",
        logs.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
        "--folds",
        "1",
    ]);
    assert_eq!(report["experiment"], "hero");
    assert_eq!(report["onPolicy"]["value"], 0.5);
    assert_eq!(report["ips"]["value"], 1.0);
    assert_eq!(report["snips"]["value"], 1.0);
    // Fitted on all rows (one fold), the per-arm means are exact: DR has no residual left.
    assert_eq!(report["dr"]["value"], 1.0);
    assert_eq!(report["dr"]["stdError"], 0.0);
    assert_eq!(
        report["interval"],
        json!({"method": "normal", "level": 0.95})
    );
    assert_eq!(report["diagnostics"]["maxWeight"], 2.0);

    let table = stellwerk()
        .args([
            "ope",
            "--logs",
            logs.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(
        table.contains("experiment hero: 4 rows; 95% intervals by normal approximation"),
        "{table}"
    );
    assert!(table.contains("candidate: IPS"), "{table}");
    assert!(table.contains("effective sample size 2.0 of 4"), "{table}");
}

#[test]
fn a_snapshot_candidate_and_a_seeded_bootstrap() {
    let dir = scratch("snapshot");
    let logs = fifty_fifty_logs(&dir);
    let snapshot = dir.join("snapshot.json");
    let doc = json!({"schema": 1, "version": "v2", "experiments": [{"key": "hero", "arms": [
        {"key": "control", "weight": 1}, {"key": "benefit", "weight": 3}
    ]}]});
    std::fs::write(&snapshot, doc.to_string()).unwrap();
    let args = [
        "--logs",
        logs.to_str().unwrap(),
        "--policy",
        snapshot.to_str().unwrap(),
        "--bootstrap",
        "200",
        "--seed",
        "9",
    ];
    let report = ope_json(&args);
    assert_eq!(report["ips"]["value"], 0.75);
    assert_eq!(report["interval"]["method"], "bootstrap");
    assert_eq!(report, ope_json(&args), "same seed, same intervals");
}

#[test]
fn logs_in_a_folder_with_several_experiments_and_skipped_rows() {
    let dir = scratch("folder");
    let day = dir.join("2026/11/27");
    std::fs::create_dir_all(&day).unwrap();
    std::fs::write(
        day.join("batch-1.ndjson"),
        [
            row(0, "hero", "control", 0.5, 0.0),
            row(1, "hero", "benefit", 0.0, 1.0),
            row(2, "cta", "benefit", 0.5, 1.0),
        ]
        .join("\n"),
    )
    .unwrap();
    std::fs::write(day.join("ignored.txt"), "not rows").unwrap();
    let folder = dir.to_str().unwrap();
    let output = stellwerk()
        .args(["ope", "--logs", folder, "--policy", "uniform"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("several experiments (cta, hero)"));

    let report = ope_json(&[
        "--logs",
        folder,
        "--policy",
        "uniform",
        "--experiment",
        "hero",
    ]);
    assert_eq!(report["diagnostics"]["rows"], 1);
    assert_eq!(
        report["diagnostics"]["skipped"],
        json!({"propensity is 0": 1})
    );
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let dir = scratch("bad");
    let logs = dir.join("rows.ndjson");
    std::fs::write(
        &logs,
        row(0, "hero", "control", 0.5, 0.0) + "\n{\"decision\": 1}\n",
    )
    .unwrap();
    let output = stellwerk()
        .args([
            "ope",
            "--logs",
            logs.to_str().unwrap(),
            "--policy",
            "uniform",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("rows.ndjson:2:"), "{stderr}");

    let logs = fifty_fifty_logs(&dir);
    let policy = dir.join("policy.json");
    std::fs::write(&policy, r#"{"arms": {"benefit": 2}}"#).unwrap();
    let output = stellwerk()
        .args([
            "ope",
            "--logs",
            logs.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not in [0, 1]"));

    std::fs::write(&policy, r#"{"arms": {"other": 1}}"#).unwrap();
    let output = stellwerk()
        .args([
            "ope",
            "--logs",
            logs.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no usable rows: 4 × candidate: candidate puts mass 0.000000"),
        "{stderr}"
    );
}
