//! One click-propensity inference on the demo model: features from a context, then the MLP.

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use std::hint::black_box;
use stellwerk_core::{Model, ModelManifest, build_features};

const ONNX: &[u8] = include_bytes!("../../models/demo/ctr-mlp.onnx");
const MANIFEST: &[u8] = include_bytes!("../../models/demo/ctr-mlp.manifest.json");

fn inference(c: &mut Criterion) {
    let manifest = ModelManifest::parse(MANIFEST).expect("committed manifest is valid");
    let model = Model::load(manifest.clone(), ONNX).expect("committed model loads");
    let context = json!({
        "targetingKey": "visitor-42", "path": "/shop/shoes/running", "country": "DE",
        "device": "mobile", "hourOfWeek": 37, "returning": true,
        "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)",
        "headers": {"accept-language": "de-DE"}
    });

    c.bench_function("model/score (features + run)", |b| {
        b.iter(|| model.score(black_box(&context)).expect("scores"))
    });
    c.bench_function("model/build_features", |b| {
        b.iter(|| build_features(black_box(&manifest.features), black_box(&context)))
    });
    // What a cold isolate pays once per model version before it caches the plan.
    let mut group = c.benchmark_group("model/load");
    group.sample_size(20);
    group.bench_function("verify + parse + optimise + golden", |b| {
        b.iter(|| Model::load(manifest.clone(), black_box(ONNX)).expect("loads"))
    });
    group.finish();
}

criterion_group!(benches, inference);
criterion_main!(benches);
