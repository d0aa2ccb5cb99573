//! The fraud gate per request: features from the request facts, then the shipped model, against
//! the header heuristics the gate falls back to without a model (the baseline, same run).

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use stellwerk_core::{
    FraudPolicy, GateMode, Model, ModelManifest, PlatformFacts, RequestFacts, gate, model_score,
    request_features,
};

const ONNX: &[u8] = include_bytes!("../../models/fraud/fraud-gate.onnx");
const MANIFEST: &[u8] = include_bytes!("../../models/fraud/fraud-gate.manifest.json");

fn chrome_navigation() -> RequestFacts {
    let headers = [
        (
            "sec-ch-ua",
            "\"Google Chrome\";v=\"131\", \"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\"",
        ),
        ("sec-ch-ua-mobile", "?0"),
        ("sec-ch-ua-platform", "\"Windows\""),
        ("upgrade-insecure-requests", "1"),
        (
            "user-agent",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        ),
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8",
        ),
        ("sec-fetch-site", "same-origin"),
        ("sec-fetch-mode", "navigate"),
        ("sec-fetch-user", "?1"),
        ("sec-fetch-dest", "document"),
        ("referer", "https://shop.example/products"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("accept-language", "de-DE,de;q=0.9,en-US;q=0.8,en;q=0.7"),
        (
            "cookie",
            "stellwerk_id=0123456789abcdef0123456789abcdef; _ga=GA1.1.123.456",
        ),
    ];
    RequestFacts {
        method: "GET".into(),
        url: "https://shop.example/products/42?color=red".into(),
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        platform: PlatformFacts {
            country: Some("DE".into()),
            asn: Some(3320),
            tls_version: Some("TLSv1.3".into()),
            ..PlatformFacts::default()
        },
    }
}

fn fraud_gate(c: &mut Criterion) {
    let manifest = ModelManifest::parse(MANIFEST).expect("committed manifest is valid");
    let model = Model::load(manifest, ONNX).expect("committed model loads");
    let facts = chrome_navigation();
    let policy = FraudPolicy {
        mode: GateMode::Block,
        model: Some("fraud-gate".into()),
        ..FraudPolicy::default()
    };

    c.bench_function("fraud/request_features", |b| {
        b.iter(|| request_features(black_box(&facts)))
    });
    let features = request_features(&facts);
    c.bench_function("fraud/model_score (inference only)", |b| {
        b.iter(|| model_score(black_box(&model), black_box(&features)))
    });
    c.bench_function("fraud/gate with model (features + inference)", |b| {
        b.iter(|| gate(black_box(&policy), black_box(&facts), Some(&model)))
    });
    c.bench_function("fraud/gate heuristics only (baseline)", |b| {
        b.iter(|| gate(black_box(&policy), black_box(&facts), None))
    });
}

criterion_group!(benches, fraud_gate);
criterion_main!(benches);
