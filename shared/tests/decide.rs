//! `decide` as a platform calls it: stickiness, statuses, consent, the gate, tokens and events.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::json;
use stellwerk_core::{
    ArmStats, ConsentState, DecideInput, DecisionToken, EventKind, ExperimentPosterior, GateAction,
    Keys, PageDecision, PlatformFacts, PosteriorSnapshot, RequestFacts, Snapshot, decide,
    pseudonymise,
};

const KEY: &[u8] = b"test-token-key";
const UNIT_KEY: &[u8] = b"test-unit-key";
const NOW: u64 = 1_767_225_600;
const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36";

fn snapshot(experiments: serde_json::Value) -> Snapshot {
    Snapshot::from_value(json!({
        "schema": 1,
        "version": "v1",
        "flags": { "flags": {
            "banner": { "state": "ENABLED", "variants": { "on": true, "off": false }, "defaultVariant": "off",
                        "targeting": { "if": [{ "==": [{ "var": "country" }, "DE"] }, "on", null] } }
        }},
        "flagEffects": [{ "flag": "banner", "variants": { "on": [{ "selector": "body", "action": "prepend", "value": "<p>sale</p>" }] } }],
        "experiments": experiments,
        "fraud": { "mode": "block", "denyUserAgents": ["curl/"] }
    }))
    .expect("test snapshot is valid")
}

fn ab(traffic: f64) -> serde_json::Value {
    json!([{ "key": "hero", "traffic": traffic, "arms": [
        { "key": "a", "weight": 1, "mutations": [] },
        { "key": "b", "weight": 3, "mutations": [{ "selector": "h1", "action": "set_text", "value": "B" }] }
    ]}])
}

fn unit(n: u64) -> String {
    format!("{n:032x}")
}

fn visit(unit_id: Option<&str>, extra: &[(&str, &str)]) -> RequestFacts {
    let mut headers = vec![
        ("user-agent".to_owned(), CHROME.to_owned()),
        ("accept".to_owned(), "text/html".to_owned()),
        ("accept-language".to_owned(), "en".to_owned()),
    ];
    if let Some(id) = unit_id {
        headers.push(("cookie".to_owned(), format!("stellwerk_id={id}")));
    }
    headers.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    RequestFacts {
        method: "GET".into(),
        url: "https://shop.example/".into(),
        headers,
        platform: PlatformFacts::default(),
    }
}

fn run(
    snapshot: &Snapshot,
    posteriors: &PosteriorSnapshot,
    facts: &RequestFacts,
    random: u8,
    now: u64,
) -> PageDecision {
    run_with_models(snapshot, posteriors, facts, random, now, &[])
}

fn run_with_models(
    snapshot: &Snapshot,
    posteriors: &PosteriorSnapshot,
    facts: &RequestFacts,
    random: u8,
    now: u64,
    models: &[stellwerk_core::LoadedModel<'_>],
) -> PageDecision {
    decide(&DecideInput {
        snapshot,
        posteriors,
        facts,
        keys: Keys {
            token: KEY,
            unit: UNIT_KEY,
        },
        random: [random; 16],
        models,
        now,
    })
}

fn arm_of(decision: &PageDecision, experiment: &str) -> Option<String> {
    decision
        .assignments
        .iter()
        .find(|a| a.experiment == experiment)
        .map(|a| a.arm.clone())
}

#[test]
fn fixed_assignment_is_sticky_and_weighted() {
    let s = snapshot(ab(1.0));
    let empty = PosteriorSnapshot::default();
    let mut b_count = 0;
    for n in 0..2000 {
        let id = unit(n);
        let first = run(&s, &empty, &visit(Some(&id), &[]), 1, NOW);
        let again = run(&s, &empty, &visit(Some(&id), &[]), 2, NOW + 3600);
        assert_eq!(
            arm_of(&first, "hero"),
            arm_of(&again, "hero"),
            "unit {id} flickered"
        );
        let assignment = &first.assignments[0];
        let expected = if assignment.arm == "b" { 0.75 } else { 0.25 };
        assert!((assignment.propensity - expected).abs() < 1e-12);
        b_count += usize::from(assignment.arm == "b");
    }
    assert!(
        (1400..1600).contains(&b_count),
        "weight 3:1 gave {b_count}/2000 on b"
    );
}

#[test]
fn assignment_survives_a_new_version_but_not_new_arms() {
    let s1 = snapshot(ab(1.0));
    let mut v2 = serde_json::to_value(&s1).unwrap();
    v2["version"] = json!("v2");
    v2["experiments"][0]["arms"][1]["mutations"][0]["value"] = json!("Another B");
    let s2 = Snapshot::from_value(v2.clone()).unwrap();
    v2["experiments"][0]["arms"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "key": "c", "weight": 1 }));
    let s3 = Snapshot::from_value(v2).unwrap();
    let empty = PosteriorSnapshot::default();
    let mut moved_with_new_arm = 0;
    for n in 0..500 {
        let facts = visit(Some(&unit(n)), &[]);
        let before = arm_of(&run(&s1, &empty, &facts, 1, NOW), "hero");
        assert_eq!(before, arm_of(&run(&s2, &empty, &facts, 9, NOW), "hero"));
        moved_with_new_arm +=
            usize::from(before != arm_of(&run(&s3, &empty, &facts, 1, NOW), "hero"));
    }
    assert!(
        moved_with_new_arm > 100,
        "adding an arm should reshuffle, moved {moved_with_new_arm}"
    );
}

#[test]
fn traffic_share_is_respected() {
    let s = snapshot(ab(0.2));
    let empty = PosteriorSnapshot::default();
    let enrolled = (0..3000)
        .filter(|n| {
            arm_of(
                &run(&s, &empty, &visit(Some(&unit(*n)), &[]), 1, NOW),
                "hero",
            )
            .is_some()
        })
        .count();
    assert!(
        (480..720).contains(&enrolled),
        "20% traffic enrolled {enrolled}/3000"
    );
}

#[test]
fn paused_stopped_and_kill_switch() {
    let empty = PosteriorSnapshot::default();
    let facts = visit(Some(&unit(7)), &[("x-ignored", "1")]);
    let mut experiments = ab(1.0);
    experiments[0]["status"] = json!("paused");
    let paused = run(&snapshot(experiments.clone()), &empty, &facts, 1, NOW);
    assert!(
        paused.assignments.is_empty() && paused.mutations.is_empty() && paused.events.is_empty()
    );

    experiments[0]["status"] = json!("stopped");
    experiments[0]["winner"] = json!("b");
    let stopped = run(&snapshot(experiments), &empty, &facts, 1, NOW);
    assert_eq!(arm_of(&stopped, "hero").as_deref(), Some("b"));
    assert!(
        stopped.assignments[0].token.is_none(),
        "a winner is not an experiment any more"
    );
    assert!(stopped.events.iter().all(|e| e.kind != EventKind::Exposure));
    assert_eq!(stopped.mutations.len(), 1);

    let mut killed = serde_json::to_value(snapshot(ab(1.0))).unwrap();
    killed["killSwitch"] = json!(true);
    let killed = Snapshot::from_value(killed).unwrap();
    let de = RequestFacts {
        platform: PlatformFacts {
            country: Some("DE".into()),
            ..Default::default()
        },
        ..facts
    };
    let decision = run(&killed, &empty, &de, 1, NOW);
    assert!(
        decision.mutations.is_empty()
            && decision.assignments.is_empty()
            && decision.flags.is_empty()
    );
    assert!(!decision.is_personalised());
}

#[test]
fn flag_effects_follow_the_resolved_variant() {
    let s = snapshot(json!([]));
    let empty = PosteriorSnapshot::default();
    let mut de = visit(Some(&unit(1)), &[]);
    de.platform.country = Some("DE".into());
    let decision = run(&s, &empty, &de, 1, NOW);
    assert_eq!(decision.flags[0].variant.as_deref(), Some("on"));
    assert_eq!(decision.mutations.len(), 1);
    let fr = run(&s, &empty, &visit(Some(&unit(1)), &[]), 1, NOW);
    assert_eq!(fr.flags[0].variant.as_deref(), Some("off"));
    assert!(fr.mutations.is_empty());
}

#[test]
fn tokens_verify_and_events_carry_no_raw_unit_id() {
    let s = snapshot(ab(1.0));
    let id = unit(42);
    let decision = run(
        &s,
        &PosteriorSnapshot::default(),
        &visit(Some(&id), &[]),
        3,
        NOW,
    );
    let assignment = &decision.assignments[0];
    let token =
        DecisionToken::verify(assignment.token.as_deref().unwrap(), KEY, NOW + 10, 3600).unwrap();
    assert_eq!(
        (token.experiment.as_str(), token.arm.as_str()),
        ("hero", assignment.arm.as_str())
    );
    assert_eq!(token.decision_id, assignment.decision_id);
    assert_eq!(token.unit, pseudonymise(&id, UNIT_KEY));
    assert!(
        DecisionToken::verify(
            assignment.token.as_deref().unwrap(),
            b"other key",
            NOW,
            3600
        )
        .is_err()
    );
    let exposure = decision
        .events
        .iter()
        .find(|e| e.kind == EventKind::Exposure)
        .unwrap();
    assert_eq!(exposure.id, assignment.decision_id);
    assert_eq!(exposure.propensity, Some(assignment.propensity));
    let logged = serde_json::to_string(&decision.events).unwrap();
    assert!(!logged.contains(&id), "raw unit id leaked into events");
    assert!(
        decision.new_unit_id.is_none(),
        "the visitor already had a unit id"
    );
}

#[test]
fn a_new_visitor_gets_a_unit_id_unless_consent_is_denied() {
    let s = snapshot(ab(1.0));
    let empty = PosteriorSnapshot::default();
    let fresh = run(&s, &empty, &visit(None, &[]), 5, NOW);
    let minted = fresh.new_unit_id.clone().expect("a unit id is minted");
    assert_eq!(minted.len(), 32);
    assert_eq!(
        fresh.unit.as_deref(),
        Some(pseudonymise(&minted, UNIT_KEY).as_str())
    );
    assert_eq!(fresh.assignments.len(), 1);

    let gpc = run(
        &s,
        &empty,
        &visit(Some(&unit(1)), &[("sec-gpc", "1")]),
        5,
        NOW,
    );
    assert_eq!(gpc.consent, ConsentState::Denied);
    assert!(gpc.new_unit_id.is_none() && gpc.unit.is_none());
    assert!(gpc.assignments.is_empty() && gpc.events.is_empty());
}

#[test]
fn the_gate_blocks_before_anything_is_decided() {
    let s = snapshot(ab(1.0));
    let mut facts = visit(Some(&unit(1)), &[]);
    facts.headers[0].1 = "curl/8.5.0".into();
    let decision = run(&s, &PosteriorSnapshot::default(), &facts, 1, NOW);
    assert_eq!(decision.gate.action, GateAction::Block);
    assert!(decision.assignments.is_empty() && decision.mutations.is_empty());
    assert_eq!(decision.events.len(), 1);
    assert_eq!(decision.events[0].kind, EventKind::FraudVerdict);
}

fn bandit(sticky_seconds: u64) -> Snapshot {
    snapshot(
        json!([{ "key": "bandit", "policy": { "type": "thompson" }, "stickySeconds": sticky_seconds, "arms": [
            { "key": "x" }, { "key": "y" }, { "key": "z" }
        ]}]),
    )
}

fn posteriors_favouring_z() -> PosteriorSnapshot {
    let arms: BTreeMap<String, ArmStats> = [("x", 10.0), ("y", 12.0), ("z", 60.0)]
        .into_iter()
        .map(|(k, rewards)| {
            (
                k.to_owned(),
                ArmStats {
                    exposures: 200,
                    rewards,
                },
            )
        })
        .collect();
    let mut posteriors = PosteriorSnapshot::default();
    posteriors.experiments.insert(
        "bandit".into(),
        ExperimentPosterior {
            arms,
            ..Default::default()
        },
    );
    posteriors
}

#[test]
fn thompson_prefers_the_best_arm_and_logs_its_probability() {
    let s = bandit(0);
    let posteriors = posteriors_favouring_z();
    let mut z = 0;
    for r in 0..=255u8 {
        let decision = run(&s, &posteriors, &visit(Some(&unit(1)), &[]), r, NOW);
        let a = &decision.assignments[0];
        assert!(a.propensity > 0.0 && a.propensity <= 1.0);
        z += usize::from(a.arm == "z");
    }
    assert!(z > 240, "z is far better and was chosen {z}/256 times");
}

#[test]
fn sticky_bandits_keep_the_arm_within_the_window() {
    let s = bandit(3600);
    let empty = PosteriorSnapshot::default();
    let start = NOW - NOW % 3600;
    for n in 0..200 {
        let facts = visit(Some(&unit(n)), &[]);
        let first = arm_of(&run(&s, &empty, &facts, 1, start), "bandit");
        assert_eq!(
            first,
            arm_of(&run(&s, &empty, &facts, 2, start + 3599), "bandit")
        );
    }
}

proptest! {
    #[test]
    fn propensities_match_the_arm_chosen(random in any::<u8>(), n in 0u64..10_000) {
        let s = snapshot(ab(1.0));
        let decision = run(&s, &PosteriorSnapshot::default(), &visit(Some(&unit(n)), &[]), random, NOW);
        for a in &decision.assignments {
            let p = if a.arm == "b" { 0.75 } else { 0.25 };
            prop_assert!((a.propensity - p).abs() < 1e-12);
        }
    }
}

fn demo_model(version: &str, canary_percent: f64) -> stellwerk_core::Model {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/demo/");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{root}ctr-mlp.manifest.json")).unwrap())
            .unwrap();
    manifest["version"] = json!(version);
    manifest["canaryPercent"] = json!(canary_percent);
    let manifest = stellwerk_core::ModelManifest::parse(manifest.to_string().as_bytes()).unwrap();
    stellwerk_core::Model::load(
        manifest,
        &std::fs::read(format!("{root}ctr-mlp.onnx")).unwrap(),
    )
    .unwrap()
}

#[test]
fn model_scores_feed_targeting_and_a_canary_serves_its_share() {
    let s = snapshot(
        json!([{ "key": "scored", "targeting": { "!=": [{ "var": "model.ctr" }, null] }, "arms": [{ "key": "only" }] }]),
    );
    let stable = demo_model("1", 0.0);
    let candidate = demo_model("2", 30.0);
    let models = [stellwerk_core::LoadedModel {
        name: "ctr",
        stable: &stable,
        candidate: Some(&candidate),
    }];
    let empty = PosteriorSnapshot::default();
    let mut on_candidate = 0;
    for n in 0..1000 {
        let facts = visit(Some(&unit(n)), &[]);
        let decide_unit = || run_with_models(&s, &empty, &facts, 1, NOW, &models);
        let decision = decide_unit();
        assert_eq!(
            arm_of(&decision, "scored").as_deref(),
            Some("only"),
            "the score made the unit eligible"
        );
        let version = decision
            .models
            .get("ctr")
            .expect("the model scored the request")
            .clone();
        assert_eq!(decision.events[0].model_versions.get("ctr"), Some(&version));
        assert_eq!(
            version,
            decide_unit().models["ctr"],
            "a unit stays on its side of the canary"
        );
        on_candidate += usize::from(version == "2");
    }
    assert!(
        (240..360).contains(&on_candidate),
        "30% canary served {on_candidate}/1000"
    );
    // Without the model the rule's variable is missing and nobody is enrolled.
    let without = run(&s, &empty, &visit(Some(&unit(1)), &[]), 1, NOW);
    assert!(without.assignments.is_empty());
}

#[test]
fn a_model_no_rule_reads_is_not_run() {
    let model = demo_model("1", 0.0);
    let models = [stellwerk_core::LoadedModel {
        name: "ctr",
        stable: &model,
        candidate: None,
    }];
    let empty = PosteriorSnapshot::default();
    let facts = visit(Some(&unit(1)), &[]);
    let decide_with = |s: &Snapshot| run_with_models(s, &empty, &facts, 1, NOW, &models);
    let unread = snapshot(json!([{ "key": "plain", "arms": [{ "key": "only" }] }]));
    assert!(!unread.reads_model("ctr"));
    assert!(!decide_with(&unread).models.contains_key("ctr"));

    // Reading the score by name, or building the name inside the rule, runs the model.
    for rule in [
        json!({ "<": [{ "var": "model.ctr" }, 2] }),
        json!({ "<": [{ "var": { "cat": ["model.", "c", "tr"] } }, 2] }),
        json!({ "!=": [{ "var": "model" }, null] }),
    ] {
        let read =
            snapshot(json!([{ "key": "scored", "targeting": rule, "arms": [{ "key": "only" }] }]));
        assert!(read.reads_model("ctr"), "{rule}");
        let decision = decide_with(&read);
        assert_eq!(
            decision.models.get("ctr").map(String::as_str),
            Some("1"),
            "{rule}"
        );
        assert_eq!(
            arm_of(&decision, "scored").as_deref(),
            Some("only"),
            "{rule}"
        );
    }
    // Another model's name is not a read of this one.
    let other = snapshot(
        json!([{ "key": "s", "targeting": { "<": [{ "var": "model.ctr2" }, 2] }, "arms": [{ "key": "only" }] }]),
    );
    assert!(!other.reads_model("ctr"));
}
