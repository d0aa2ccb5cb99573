//! What reading the posteriors costs an edge: the published document against the aggregator's
//! state with the applied ids at their cap ([`MAX_APPLIED`]). The Worker parses the published one
//! on every cache refresh, Spin on every request; before they were split, that was the state.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use stellwerk_core::{ArmStats, MAX_APPLIED, PosteriorSnapshot};

fn state() -> PosteriorSnapshot {
    let mut posteriors = PosteriorSnapshot::default();
    let experiment = posteriors
        .experiments
        .entry("hero-headline".to_owned())
        .or_default();
    for (arm, exposures) in [
        ("control", 41_000),
        ("benefit", 40_500),
        ("urgency", 18_500),
    ] {
        let stats = ArmStats {
            exposures,
            rewards: exposures as f64 * 0.04,
        };
        experiment.arms.insert(arm.to_owned(), stats);
        experiment.probabilities.insert(arm.to_owned(), 1.0 / 3.0);
    }
    for i in 0..MAX_APPLIED as u64 {
        // Decision ids are 32 hex digits.
        let id = format!("{:032x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        posteriors.applied.insert(id, 1_700_000_000 + i / 100);
    }
    posteriors
}

fn bench(c: &mut Criterion) {
    let state = state();
    let state_json = state.to_json();
    let published_json = state.published().to_json();
    eprintln!(
        "posteriors: state {} bytes, published {} bytes",
        state_json.len(),
        published_json.len()
    );
    c.bench_function("posteriors_parse_published", |b| {
        b.iter(|| PosteriorSnapshot::parse(black_box(published_json.as_bytes())))
    });
    let mut group = c.benchmark_group("posteriors_state");
    group.sample_size(10);
    group.bench_function("parse_with_applied_ids", |b| {
        b.iter(|| PosteriorSnapshot::parse(black_box(state_json.as_bytes())))
    });
    group.bench_function("serialise_with_applied_ids", |b| {
        b.iter(|| black_box(&state).to_json())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
