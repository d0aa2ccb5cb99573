//! The ~100 KB landing page through `PageRewriter` with the peer benchmark's five mutations
//! and the beacon injection, in 16 KB chunks, against a lol_html pass-through (no handlers) of
//! the same page in the same chunks: the difference is what Stellwerk's rewriting costs. A third
//! run matches the same selectors with handlers that do nothing, to tell lol_html's selector
//! matching from Stellwerk's own work.
//!
//! Run: `cargo bench -p stellwerk-core --bench rewrite -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use stellwerk_core::{Mutation, PageInjection, PageRewriter};

const CHUNK: usize = 16 << 10;

fn landing_page() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/pages/landing.html");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn five_mutations() -> Vec<Mutation> {
    serde_json::from_str(
        r##"[
            {"selector": "#hero h1", "action": "set_text", "value": "Built to be repaired, not replaced"},
            {"selector": "#cta", "action": "set_text", "value": "Find your gear"},
            {"selector": "#hero", "action": "add_class", "value": "hero--highlight"},
            {"selector": "#cta", "action": "set_attr", "attribute": "href", "value": "/shop?src=hero-b"},
            {"selector": "#promo-banner", "action": "hide"}
        ]"##,
    )
    .expect("mutations")
}

fn rewrite(page: &[u8], mutations: &[Mutation], injection: Option<&PageInjection>) -> usize {
    let mut written = 0;
    let mut rewriter = PageRewriter::new(
        mutations,
        injection,
        Some("text/html; charset=utf-8"),
        |chunk: &[u8]| written += black_box(chunk).len(),
    )
    .expect("rewriter");
    for chunk in page.chunks(CHUNK) {
        rewriter.write(chunk).expect("write");
    }
    let summary = rewriter.end().expect("end");
    assert!(summary.matches.iter().all(|&n| n == 1));
    written
}

fn lol_html_pass_through(page: &[u8]) -> usize {
    let mut written = 0;
    let mut rewriter = lol_html::HtmlRewriter::new(lol_html::Settings::new(), |chunk: &[u8]| {
        written += black_box(chunk).len()
    });
    for chunk in page.chunks(CHUNK) {
        rewriter.write(chunk).expect("write");
    }
    rewriter.end().expect("end");
    written
}

/// lol_html matching the five mutations' selectors with handlers that do nothing: separates
/// the cost of selector matching (lol_html must lex every start tag's attributes for `#id`
/// selectors) from the cost of Stellwerk's edits.
fn lol_html_same_selectors(page: &[u8]) -> usize {
    let mut written = 0;
    let mut settings = lol_html::Settings::new();
    for selector in ["#hero h1", "#cta", "#hero", "#cta", "#promo-banner"] {
        settings =
            settings.append_element_content_handler(lol_html::element!(selector, |_| Ok(())));
    }
    let mut rewriter =
        lol_html::HtmlRewriter::new(settings, |chunk: &[u8]| written += black_box(chunk).len());
    for chunk in page.chunks(CHUNK) {
        rewriter.write(chunk).expect("write");
    }
    rewriter.end().expect("end");
    written
}

fn bench(c: &mut Criterion) {
    let page = landing_page();
    let mutations = five_mutations();
    let injection = PageInjection {
        beacon_src: "/_stellwerk/beacon.js".to_owned(),
        decisions_json: r#"{"tokens":["eyJkIjoiMDFKIn0.c2ln"]}"#.to_owned(),
        nonce: Some("r4nd0m".to_owned()),
    };
    let mut group = c.benchmark_group("landing_page");
    group.throughput(Throughput::Bytes(page.len() as u64));
    group.bench_function("lol_html_pass_through", |b| {
        b.iter(|| lol_html_pass_through(black_box(&page)))
    });
    group.bench_function("lol_html_same_selectors_noop_handlers", |b| {
        b.iter(|| lol_html_same_selectors(black_box(&page)))
    });
    group.bench_function("page_rewriter_5_mutations", |b| {
        b.iter(|| rewrite(black_box(&page), &mutations, None))
    });
    group.bench_function("page_rewriter_5_mutations_and_injection", |b| {
        b.iter(|| rewrite(black_box(&page), &mutations, Some(&injection)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
