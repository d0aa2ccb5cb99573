//! Decision token cost: verifying a beacon's token (the per-beacon hot path) and signing one
//! (once per decision). Also the Thompson Monte-Carlo estimate, to show why the aggregator
//! precomputes it instead of every request.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use stellwerk_core::{Arm, ArmStats, DecisionToken, Policy, arm_probabilities};

const KEY: &[u8] = b"bench-key-0123456789abcdef0123456789abcdef";
const NOW: u64 = 1_700_000_000;

fn token() -> DecisionToken {
    DecisionToken {
        decision_id: "01J0Z3K4Q5R6S7T8V9W0X1Y2Z3".to_owned(),
        experiment: "homepage-hero".to_owned(),
        arm: "variant-b".to_owned(),
        propensity: 0.3333333333333333,
        policy_version: "2024-06-01.17".to_owned(),
        issued_at: NOW - 300,
        unit: "u_5f1d3a9c2b7e4f60".to_owned(),
    }
}

fn bench(c: &mut Criterion) {
    let signed = token().sign(KEY);
    c.bench_function("token_verify", |b| {
        b.iter(|| DecisionToken::verify(black_box(&signed), KEY, NOW, 7 * 24 * 3600))
    });
    let forged = token().sign(b"another key");
    c.bench_function("token_verify_forged", |b| {
        b.iter(|| DecisionToken::verify(black_box(&forged), KEY, NOW, 7 * 24 * 3600))
    });
    let t = token();
    c.bench_function("token_sign", |b| b.iter(|| black_box(&t).sign(KEY)));
}

fn thompson(c: &mut Criterion) {
    let arms: Vec<Arm> = ["a", "b", "c"]
        .iter()
        .map(|k| Arm {
            key: (*k).to_owned(),
            weight: 1.0,
            mutations: Vec::new(),
        })
        .collect();
    let stats = [
        ArmStats {
            exposures: 1200,
            rewards: 60.0,
        },
        ArmStats {
            exposures: 1100,
            rewards: 66.0,
        },
        ArmStats {
            exposures: 900,
            rewards: 50.0,
        },
    ];
    c.bench_function("thompson_probabilities_3_arms", |b| {
        b.iter(|| arm_probabilities(&Policy::Thompson, black_box(&arms), black_box(&stats)))
    });
}

criterion_group!(benches, bench, thompson);
criterion_main!(benches);
