//! `stellwerk conformance`: the native reference outputs every edge is compared against.

use std::collections::BTreeSet;

use assert_cmd::Command;
use serde_json::Value;

fn stellwerk() -> Command {
    let mut cmd = Command::cargo_bin("stellwerk").expect("binary is built");
    cmd.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    cmd
}

fn stdout_of(cmd: &mut Command) -> String {
    String::from_utf8(cmd.assert().success().get_output().stdout.clone()).expect("UTF-8")
}

/// `<kind>/<file>` for every committed vector.
fn committed() -> BTreeSet<String> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/conformance");
    let mut names = BTreeSet::new();
    for kind in stellwerk_core::conformance::KINDS {
        for entry in std::fs::read_dir(format!("{root}/{kind}")).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".json") {
                names.insert(format!("{kind}/{name}"));
            }
        }
    }
    names
}

#[test]
fn conformance_prints_every_vectors_output_one_per_line() {
    let text = stdout_of(stellwerk().arg("conformance"));
    let all: Value = serde_json::from_str(&text).expect("one JSON object");
    let keys: BTreeSet<String> = all.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, committed());
    assert!(keys.iter().any(|k| k.starts_with("decide/")), "{keys:?}");

    // Each line is `"<kind>/<file>":<output>`, the output byte-identical to the one-file form.
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!((lines[0], lines[lines.len() - 1]), ("{", "}"));
    assert_eq!(lines.len(), keys.len() + 2);
    for line in &lines[1..lines.len() - 1] {
        let line = line.strip_suffix(',').unwrap_or(line);
        let (key, output) = line.split_once("\":").expect("key:output");
        let key = key.trim_start_matches('"');
        let (kind, file) = key.split_once('/').unwrap();
        if !["token/sign_exact.json", "decide/fixed_ab_weighted.json"].contains(&key) {
            continue;
        }
        let single = stdout_of(stellwerk().args([
            "conformance",
            "--kind",
            kind,
            &format!("tests/conformance/{kind}/{file}"),
        ]));
        assert_eq!(single, format!("{output}\n"), "{key}");
    }

    // The outputs are the core's real answers: the signed token is the independent one.
    let vector: Value = serde_json::from_str(
        &std::fs::read_to_string("../tests/conformance/token/sign_exact.json").unwrap(),
    )
    .unwrap();
    assert_eq!(all["token/sign_exact.json"]["token"], vector["expectToken"]);
    assert_eq!(
        all["decide/gate_blocks_curl.json"]["gate"]["action"],
        "block"
    );
}

#[test]
fn conformance_refuses_unknown_kinds_and_missing_folders() {
    let out = stellwerk()
        .args([
            "conformance",
            "--kind",
            "nope",
            "tests/conformance/token/valid.json",
        ])
        .assert()
        .code(2)
        .get_output()
        .stderr
        .clone();
    assert!(
        String::from_utf8_lossy(&out).contains("unknown kind \"nope\""),
        "{}",
        String::from_utf8_lossy(&out)
    );
    // A vector of one kind is not a vector of another.
    stellwerk()
        .args([
            "conformance",
            "--kind",
            "decide",
            "tests/conformance/token/valid.json",
        ])
        .assert()
        .code(2);
    stellwerk()
        .args(["conformance", "no/such/folder"])
        .assert()
        .code(2);
}
