//! Contextual experiments through `decide` with a real ONNX reward model (10 arms, loaded by
//! tract): the scores decide, the propensity is the exploration's exact probability, the model
//! version is logged, and every reason not to trust the model falls back to the plain policy.

use serde_json::{Value, json};
use stellwerk_core::{
    DecideInput, Exploration, Keys, LoadedModel, Model, ModelManifest, PageDecision, PlatformFacts,
    PosteriorSnapshot, RequestFacts, Snapshot, decide, reward_model_choice,
};

const ONNX: &[u8] = include_bytes!("../benches/fixtures/reward10.onnx");
const MANIFEST: &[u8] = include_bytes!("../benches/fixtures/reward10.manifest.json");
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 Safari/604.1";
const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36";

fn model() -> Model {
    Model::load(ModelManifest::parse(MANIFEST).unwrap(), ONNX).unwrap()
}

fn snapshot(min_version: Option<&str>, arms: usize) -> Snapshot {
    let arms: Vec<Value> = (0..arms)
        .map(|i| json!({"key": format!("arm{i}")}))
        .collect();
    let mut requirement = json!({"name": "reward10"});
    if let Some(v) = min_version {
        requirement["minVersion"] = json!(v);
    }
    Snapshot::from_value(
        json!({"schema": 1, "version": "v1", "models": [requirement],
        "experiments": [{"key": "hero", "policy": {"type": "thompson"},
            "contextual": {"type": "reward_model", "model": "reward10",
                           "exploration": {"type": "softmax", "temperature": 0.2}},
            "arms": arms}]}),
    )
    .unwrap()
}

fn visit(snapshot: &Snapshot, model: &Model, user_agent: &str, random: u8) -> PageDecision {
    let facts = RequestFacts {
        method: "GET".into(),
        url: "https://shop.example/".into(),
        headers: vec![
            ("user-agent".into(), user_agent.into()),
            (
                "cookie".into(),
                "stellwerk_id=5f1c0e9a7b3d4c2a8e6f0b1d2c3a4e5f".into(),
            ),
        ],
        platform: PlatformFacts::default(),
    };
    decide(&DecideInput {
        snapshot,
        posteriors: &PosteriorSnapshot::default(),
        facts: &facts,
        keys: Keys {
            token: b"k",
            unit: b"u",
        },
        random: [random; 16],
        now: 1_767_225_600,
        models: &[LoadedModel {
            name: "reward10",
            stable: model,
            candidate: None,
        }],
    })
}

#[test]
fn the_reward_model_decides_with_its_exact_probability_and_is_logged() {
    let model = model();
    let snapshot = snapshot(Some("1.0.0"), 10);
    let decision = visit(&snapshot, &model, IPHONE, 3);
    let assignment = &decision.assignments[0];
    assert_eq!(assignment.policy, "softmax");
    assert_eq!(assignment.fallback, None);
    assert_eq!(assignment.model.as_deref(), Some("reward10@1.0.0"));
    assert_eq!(decision.models["reward10"], "1.0.0");
    let context = json!({"device": "mobile", "returning": true, "referrerClass": "direct"});
    let arms: Vec<String> = (0..10).map(|i| format!("arm{i}")).collect();
    let refs: Vec<&str> = arms.iter().map(String::as_str).collect();
    let exploration = Exploration::Softmax { temperature: 0.2 };
    let choice = reward_model_choice(Some(&model), None, &exploration, &refs, &context).unwrap();
    let index = refs.iter().position(|a| *a == assignment.arm).unwrap();
    assert_eq!(assignment.propensity, choice.draw.probabilities()[index]);
    let exposure = &decision.events[0];
    assert_eq!(exposure.policy.as_deref(), Some("softmax"));
    assert_eq!(exposure.model_versions["reward10"], "1.0.0");
    assert_eq!(exposure.propensity, Some(assignment.propensity));
}

#[test]
fn different_contexts_get_different_distributions() {
    let model = model();
    let arms: Vec<String> = (0..10).map(|i| format!("arm{i}")).collect();
    let refs: Vec<&str> = arms.iter().map(String::as_str).collect();
    let exploration = Exploration::Squarecb { gamma: 50.0 };
    let p = |device: &str| {
        reward_model_choice(
            Some(&model),
            None,
            &exploration,
            &refs,
            &json!({"device": device, "returning": false, "referrerClass": "search"}),
        )
        .unwrap()
        .draw
        .probabilities()
    };
    let (mobile, desktop) = (p("mobile"), p("desktop"));
    assert!((mobile.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    assert_ne!(mobile, desktop);
}

#[test]
fn an_outdated_missing_or_incomplete_model_falls_back_to_the_plain_policy() {
    let model = model();
    let outdated = visit(&snapshot(Some("1.1.0"), 10), &model, CHROME, 3);
    let a = &outdated.assignments[0];
    assert_eq!(a.policy, "thompson");
    assert!(
        a.fallback.as_deref().unwrap().starts_with("model_outdated"),
        "{a:?}"
    );
    assert!(a.model.is_none());
    assert!(!outdated.models.contains_key("reward10"));
    assert_eq!(outdated.events[0].policy.as_deref(), Some("thompson"));
    // An arm the model has no output for.
    let eleven = visit(&snapshot(None, 11), &model, CHROME, 3);
    assert!(
        eleven.assignments[0]
            .fallback
            .as_deref()
            .unwrap()
            .starts_with("model_failed: model has no output arm:arm10"),
        "{:?}",
        eleven.assignments[0]
    );
    // A bot's device is not in the model's feature spec.
    let bot = visit(&snapshot(None, 10), &model, "Googlebot/2.1", 3);
    assert_eq!(
        bot.assignments[0].fallback.as_deref(),
        Some("unknown_feature: device = \"bot\"")
    );
}

#[test]
fn a_snapshot_refuses_contextual_policies_it_cannot_run() {
    let refused = Snapshot::from_value(json!({"schema": 1, "version": "v1",
        "models": [{"name": "reward10", "minVersion": "newest"}],
        "experiments": [
            {"key": "a", "contextual": {"type": "reward_model", "model": "nope",
                "exploration": {"type": "softmax", "temperature": 0}}, "arms": [{"key": "x"}]},
            {"key": "b", "contextual": {"type": "reward_model", "model": "reward10",
                "exploration": {"type": "squarecb", "gamma": -1}}, "arms": [{"key": "x"}, {"key": "y"}]},
            {"key": "c", "contextual": {"type": "linear_thompson", "exploration": 0, "features": [
                {"kind": "one_hot", "source": "userAgent", "values": ["x"]}]},
             "arms": [{"key": "x"}, {"key": "y"}]}
        ]}))
    .unwrap_err();
    let paths: Vec<String> = refused.0.iter().map(|i| i.path.clone()).collect();
    assert_eq!(
        paths,
        vec![
            "experiments[0].contextual.model",
            "experiments[0].contextual.exploration.temperature",
            "experiments[0].contextual",
            "experiments[1].contextual.model",
            "experiments[1].contextual.exploration.gamma",
            "experiments[2].contextual.features[0].source",
            "experiments[2].contextual.exploration",
        ],
        "{refused}"
    );
}
