//! The per-request decision: gate, 20 running experiments (fixed A/B and bandits with
//! posteriors, targeting and traffic splits), flag effects and token signing, for one visitor.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use stellwerk_core::{
    ArmStats, DecideInput, ExperimentPosterior, Keys, PlatformFacts, PosteriorSnapshot,
    RequestFacts, Snapshot, apply_events, decide,
};

const NOW: u64 = 1_767_225_600;

fn snapshot() -> Snapshot {
    let policies = [
        json!({ "type": "fixed" }),
        json!({ "type": "thompson" }),
        json!({ "type": "ucb1" }),
        json!({ "type": "epsilon_greedy", "epsilon": 0.1 }),
    ];
    let experiments: Vec<_> = (0..20)
        .map(|i| {
            json!({
                "key": format!("exp-{i}"),
                "policy": policies[i % 4],
                "traffic": if i % 5 == 0 { 0.5 } else { 1.0 },
                "stickySeconds": if i % 2 == 0 { 86_400 } else { 0 },
                "targeting": if i % 3 == 0 { json!({ "in": [{ "var": "device" }, ["desktop", "mobile"]] }) } else { json!(null) },
                "arms": [
                    { "key": "control" },
                    { "key": "b", "mutations": [{ "selector": format!(".slot-{i} h2"), "action": "set_text", "value": "B" }] },
                    { "key": "c", "mutations": [{ "selector": format!(".slot-{i}"), "action": "add_class", "value": "c" }] }
                ]
            })
        })
        .collect();
    Snapshot::from_value(json!({
        "schema": 1,
        "version": "bench",
        "flags": { "flags": { "banner": { "state": "ENABLED", "variants": { "on": true, "off": false }, "defaultVariant": "off",
            "targeting": { "fractional": [["on", 50], ["off", 50]] } } } },
        "flagEffects": [{ "flag": "banner", "variants": { "on": [{ "selector": "body", "action": "prepend", "value": "<p>sale</p>" }] } }],
        "experiments": experiments,
        "fraud": { "mode": "block", "denyUserAgents": ["curl/"] }
    }))
    .expect("bench snapshot is valid")
}

/// Posteriors with data for every arm, Thompson probabilities precomputed as the aggregator does.
fn posteriors(snapshot: &Snapshot) -> PosteriorSnapshot {
    let mut posteriors = PosteriorSnapshot::default();
    for (i, experiment) in snapshot.experiments.iter().enumerate() {
        let arms = experiment
            .arms
            .iter()
            .enumerate()
            .map(|(a, arm)| {
                (
                    arm.key.clone(),
                    ArmStats {
                        exposures: 1000,
                        rewards: (50 + 10 * a + i) as f64,
                    },
                )
            })
            .collect();
        posteriors.experiments.insert(
            experiment.key.clone(),
            ExperimentPosterior {
                arms,
                ..Default::default()
            },
        );
    }
    // An empty batch recomputes the Thompson probabilities, as after every aggregation.
    apply_events(&mut posteriors, &[], snapshot, NOW);
    posteriors
}

fn bench(c: &mut Criterion) {
    let snapshot = snapshot();
    let posteriors = posteriors(&snapshot);
    let facts = RequestFacts {
        method: "GET".into(),
        url: "https://shop.example/products?utm_source=news".into(),
        headers: vec![
            ("user-agent".into(), "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36".into()),
            ("accept".into(), "text/html".into()),
            ("accept-language".into(), "de-DE,de;q=0.9".into()),
            ("cookie".into(), "stellwerk_id=0123456789abcdef0123456789abcdef".into()),
        ],
        platform: PlatformFacts { country: Some("DE".into()), ..PlatformFacts::default() },
    };
    let mut random = [0u8; 16];
    c.bench_function("decide_20_experiments", |b| {
        b.iter(|| {
            random[0] = random[0].wrapping_add(1);
            decide(black_box(&DecideInput {
                snapshot: &snapshot,
                posteriors: &posteriors,
                facts: &facts,
                keys: Keys {
                    token: b"bench-token-key",
                    unit: b"bench-unit-key",
                },
                random,
                now: NOW,
                models: &[],
            }))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
