//! Contextual policies per request: scoring all arms with a reward model (the target is
//! ≤ 100 µs for 10 arms), linear Thompson's draw with its propensity (and, for comparison, the
//! P(best) of every arm, which a request once computed), and a whole `decide` with a
//! contextual experiment next to the same experiment under plain Thompson (the baseline).

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use stellwerk_core::{
    DEFAULT_CONTEXT_PRECISION, DecideInput, Exploration, FeatureSpec, Keys, LinearArm, LoadedModel,
    Model, ModelManifest, PlatformFacts, PosteriorSnapshot, RequestFacts, Snapshot, apply_events,
    decide, linear_features, linear_thompson_choice, reward_model_choice,
};

const ONNX: &[u8] = include_bytes!("fixtures/reward10.onnx");
const MANIFEST: &[u8] = include_bytes!("fixtures/reward10.manifest.json");

fn arms() -> Vec<String> {
    (0..10).map(|i| format!("arm{i}")).collect()
}

fn snapshot(contextual: serde_json::Value) -> Snapshot {
    let mut experiment = json!({"key": "hero", "policy": {"type": "thompson"},
        "arms": arms().iter().map(|a| json!({"key": a})).collect::<Vec<_>>()});
    if !contextual.is_null() {
        experiment["contextual"] = contextual;
    }
    Snapshot::from_value(
        json!({"schema": 1, "version": "bench", "fraud": {"mode": "off"},
        "models": [{"name": "reward10"}], "experiments": [experiment]}),
    )
    .expect("bench snapshot is valid")
}

fn contextual(c: &mut Criterion) {
    let manifest = ModelManifest::parse(MANIFEST).expect("fixture manifest is valid");
    let model = Model::load(manifest.clone(), ONNX).expect("fixture model loads");
    let context = json!({"path": "/", "device": "mobile", "returning": true,
        "referrerClass": "search", "hourOfWeek": 37, "language": "de"});
    let arm_names = arms();
    let arm_refs: Vec<&str> = arm_names.iter().map(String::as_str).collect();
    let squarecb = Exploration::Squarecb { gamma: 50.0 };

    c.bench_function("contextual/reward model: score 10 arms + squarecb", |b| {
        b.iter(|| {
            reward_model_choice(
                Some(&model),
                None,
                &squarecb,
                &arm_refs,
                black_box(&context),
            )
            .expect("scores")
        })
    });

    let features: Vec<FeatureSpec> = manifest.features.clone();
    let x = linear_features(&features, &context);
    let mut posteriors = BTreeMap::new();
    for (i, arm) in arm_names.iter().enumerate() {
        let mut p = LinearArm::prior(x.len(), 1.0, DEFAULT_CONTEXT_PRECISION);
        for n in 0..200 {
            let reward = if (n + i) % 7 == 0 { 1.0 } else { 0.0 };
            p.learn(&x, reward);
        }
        posteriors.insert(arm.clone(), p);
    }
    let linear_choice = || {
        linear_thompson_choice(
            &features,
            1.0,
            (1.0, DEFAULT_CONTEXT_PRECISION),
            &arm_refs,
            Some(&posteriors),
            black_box(&context),
        )
        .expect("decides")
    };
    // Per request: every arm's score distribution, one Thompson draw, P(best) of the drawn arm.
    c.bench_function(
        "contextual/linear thompson: draw + propensity, 10 arms",
        |b| b.iter(|| linear_choice().draw.draw(black_box(0.37))),
    );
    // What a request used to cost: P(best) of every arm (now only for offline evaluation).
    c.bench_function("contextual/linear thompson: P(best) of all 10 arms", |b| {
        b.iter(|| linear_choice().draw.probabilities())
    });

    // A whole request: plain Thompson (precomputed P(best)) vs the reward model with SquareCB.
    let facts = RequestFacts {
        method: "GET".into(),
        url: "https://shop.example/".into(),
        headers: vec![
            ("user-agent".into(), "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 Safari/604.1".into()),
            ("cookie".into(), "stellwerk_id=5f1c0e9a7b3d4c2a8e6f0b1d2c3a4e5f".into()),
        ],
        platform: PlatformFacts::default(),
    };
    let loaded = [LoadedModel {
        name: "reward10",
        stable: &model,
        candidate: None,
    }];
    let keys = Keys {
        token: b"bench-token-key",
        unit: b"bench-unit-key",
    };
    let plain = snapshot(serde_json::Value::Null);
    let mut plain_posteriors = PosteriorSnapshot::default();
    apply_events(&mut plain_posteriors, &[], &plain, 1_767_225_600);
    let with_model = snapshot(json!({"type": "reward_model", "model": "reward10",
        "exploration": {"type": "squarecb", "gamma": 50.0}}));
    let mut group = c.benchmark_group("contextual/decide, 10 arms");
    for (name, snapshot, posteriors) in [
        ("plain thompson (baseline)", &plain, &plain_posteriors),
        (
            "reward model + squarecb",
            &with_model,
            &PosteriorSnapshot::default(),
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let decision = decide(&DecideInput {
                    snapshot,
                    posteriors,
                    facts: &facts,
                    keys,
                    random: [7; 16],
                    now: 1_767_225_600,
                    models: &loaded,
                });
                assert!(decision.assignments[0].fallback.is_none());
                decision
            })
        });
    }
    group.finish();
}

criterion_group!(benches, contextual);
criterion_main!(benches);
