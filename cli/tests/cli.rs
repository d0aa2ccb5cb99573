//! The `stellwerk` binary as a developer runs it.

use assert_cmd::Command;
use serde_json::Value;

const UNIT: &str = "0123456789abcdef0123456789abcdef";

fn stellwerk() -> Command {
    let mut cmd = Command::cargo_bin("stellwerk").expect("binary is built");
    cmd.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    cmd.env_remove("STELLWERK_HMAC_KEY")
        .env_remove("STELLWERK_UNIT_KEY");
    cmd
}

fn json_of(output: &[u8]) -> Value {
    serde_json::from_slice(output).expect("stdout is JSON")
}

#[test]
fn validate_accepts_the_example_and_lists_every_problem_of_a_broken_one() {
    stellwerk()
        .args(["validate", "examples/snapshot.json"])
        .assert()
        .success();

    let dir = tempfile_dir();
    let mut broken: Value =
        serde_json::from_str(&std::fs::read_to_string("../examples/snapshot.json").unwrap())
            .unwrap();
    broken["experiments"][0]["arms"][1]["mutations"][0]["selector"] = "h1[".into();
    broken["experiments"][1]["traffic"] = 3.into();
    broken["flagEffects"][0]["flag"] = "no-such-flag".into();
    let path = dir.join("broken.json");
    std::fs::write(&path, broken.to_string()).unwrap();
    let output = stellwerk()
        .arg("validate")
        .arg(&path)
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(output).unwrap();
    assert!(
        text.contains("experiments[0].arms[1].mutations[0].selector: invalid CSS selector"),
        "{text}"
    );
    assert!(
        text.contains("experiments[1].traffic: must be between 0 and 1"),
        "{text}"
    );
    assert!(
        text.contains("flagEffects[0].flag: no flag named \"no-such-flag\""),
        "{text}"
    );
}

#[test]
fn flag_prints_one_resolution_for_snapshots_and_plain_flagd_files() {
    let out = stellwerk()
        .args([
            "flag",
            "examples/snapshot.json",
            "holiday-banner",
            "--context",
            r#"{"targetingKey":"u1","country":"DE"}"#,
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let resolution = json_of(&out);
    assert_eq!(resolution["value"], true);
    assert_eq!(resolution["variant"], "on");
    assert_eq!(resolution["reason"], "TARGETING_MATCH");
    assert_eq!(resolution["errorCode"], Value::Null);

    let dir = tempfile_dir();
    let path = dir.join("flags.json");
    std::fs::write(
        &path,
        r#"{"flags":{"f":{"state":"DISABLED","variants":{"a":1},"defaultVariant":"a"}}}"#,
    )
    .unwrap();
    let out = stellwerk()
        .arg("flag")
        .arg(&path)
        .arg("f")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(json_of(&out)["reason"], "DISABLED");
    let out = stellwerk()
        .arg("flag")
        .arg(&path)
        .arg("missing")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(json_of(&out)["errorCode"], "FLAG_NOT_FOUND");
}

#[test]
fn decide_is_deterministic_given_time_and_randomness() {
    let run = || {
        let out = stellwerk()
            .args([
                "decide",
                "examples/snapshot.json",
                "--unit",
                UNIT,
                "--now",
                "1767225600",
            ])
            .args(["--random", "000102030405060708090a0b0c0d0e0f"])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        json_of(&out)
    };
    let first = run();
    assert_eq!(first, run());
    let assignment = &first["assignments"][0];
    assert_eq!(assignment["experiment"], "hero-headline");
    assert!((assignment["propensity"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-12);
    assert!(
        !first.to_string().contains(UNIT),
        "the raw unit id must not appear"
    );
}

#[test]
fn decide_blocks_curl_under_the_example_fraud_policy() {
    let out = stellwerk()
        .args([
            "decide",
            "examples/snapshot.json",
            "--unit",
            UNIT,
            "--header",
            "User-Agent: curl/8.5.0",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let decision = json_of(&out);
    assert_eq!(decision["gate"]["action"], "block");
    assert_eq!(decision["assignments"], Value::Array(vec![]));
}

#[test]
fn rewrite_streams_the_page_with_the_arm_and_the_beacon() {
    let page = std::fs::read("../tests/pages/landing.html").unwrap();
    let out = stellwerk()
        .args([
            "rewrite",
            "examples/snapshot.json",
            "--unit",
            UNIT,
            "--url",
            "https://shop.example/",
        ])
        .write_stdin(page.clone())
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let html = String::from_utf8(out).unwrap();
    assert!(
        html.contains(r#"<script src="/_stellwerk/beacon.js" defer>"#),
        "beacon injected"
    );
    assert!(html.contains("window.__stellwerk="), "decisions injected");
    assert!(html.len() > page.len());

    // JSON is not a page: it passes through byte for byte.
    let out = stellwerk()
        .args([
            "rewrite",
            "examples/snapshot.json",
            "--unit",
            UNIT,
            "--content-type",
            "application/json",
        ])
        .write_stdin(page.clone())
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(out, page);
}

#[test]
fn tokens_sign_and_verify_and_forgeries_fail() {
    let token_json = r#"{"decisionId":"d1","experiment":"hero","arm":"b","propensity":0.5,"policyVersion":"v1","issuedAt":1767225600,"unit":"u"}"#;
    let out = stellwerk()
        .args(["token", "sign", token_json])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let token = String::from_utf8(out).unwrap().trim().to_owned();
    let out = stellwerk()
        .args(["token", "verify", &token, "--now", "1767225700"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(json_of(&out)["arm"], "b");
    stellwerk()
        .args([
            "token",
            "verify",
            &token,
            "--now",
            "1767225700",
            "--hmac-key",
            "other",
        ])
        .assert()
        .code(1);
    stellwerk()
        .args(["token", "verify", &token, "--now", "1867225700"])
        .assert()
        .code(1);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "stellwerk-cli-test-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn score_request_explains_a_block_and_lets_a_browser_through() {
    let output = stellwerk()
        .args([
            "score-request",
            "--ua",
            "curl/8.5.0",
            "--header",
            "accept: */*",
        ])
        .assert()
        .success();
    let report = json_of(&output.get_output().stdout);
    assert_eq!(report["verdict"], "block");
    assert!(report["score"].as_f64().unwrap() >= report["threshold"].as_f64().unwrap());
    let top = report["contributions"].as_array().unwrap();
    assert!(!top.is_empty() && top.len() <= 8);
    assert!(top[0]["feature"].is_string() && top[0]["logOdds"].is_number());

    let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
    let output = stellwerk()
        .args(["score-request", "--ua", chrome])
        .args([
            "--header",
            "sec-ch-ua: \"Google Chrome\";v=\"131\", \"Chromium\";v=\"131\"",
        ])
        .args([
            "--header",
            "sec-ch-ua-mobile: ?0",
            "--header",
            "sec-ch-ua-platform: \"Windows\"",
        ])
        .args([
            "--header",
            "accept: text/html,application/xhtml+xml",
            "--header",
            "accept-language: en-US,en;q=0.9",
        ])
        .args([
            "--header",
            "sec-fetch-site: none",
            "--header",
            "sec-fetch-mode: navigate",
        ])
        .args([
            "--header",
            "sec-fetch-dest: document",
            "--header",
            "sec-fetch-user: ?1",
        ])
        .assert()
        .success();
    assert_eq!(json_of(&output.get_output().stdout)["verdict"], "allow");
}

#[test]
fn fraud_features_reads_json_lines_and_names_every_value() {
    let names = stellwerk()
        .args(["fraud-features", "--names"])
        .assert()
        .success();
    let names = json_of(&names.get_output().stdout);
    let request =
        r#"{"method":"GET","url":"https://a.example/","headers":[["user-agent","curl/8.5.0"]]}"#;
    let output = stellwerk()
        .arg("fraud-features")
        .write_stdin(format!("{request}\n{request}\n"))
        .assert()
        .success();
    let lines: Vec<Value> = String::from_utf8(output.get_output().stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[0].as_array().unwrap().len(),
        names.as_array().unwrap().len()
    );
}
