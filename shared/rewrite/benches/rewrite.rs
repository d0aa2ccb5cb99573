//! The ~100 KB landing page through `PageRewriter` with the peer benchmark's five mutations
//! and the beacon injection, in 16 KB chunks, against a lol_html pass-through (no handlers) of
//! the same page in the same chunks: the difference is what Stellwerk's rewriting costs. A third
//! run matches the same selectors with handlers that do nothing, to tell lol_html's selector
//! matching from Stellwerk's own work.
//!
//! Run: `cargo bench -p stellwerk-rewrite --bench rewrite -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use stellwerk_rewrite::{Mutation, PageInjection};

#[path = "support/page_cases.rs"]
mod page_cases;
use page_cases::{lol_html_pass_through, peer_mutations, rewrite};

const CHUNK: usize = 16 << 10;

fn landing_page() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/pages/landing.html");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// lol_html matching the five mutations' selectors with handlers that do nothing: separates
/// the cost of selector matching (lol_html must lex every start tag's attributes for `#id`
/// selectors) from the cost of Stellwerk's edits.
fn lol_html_same_selectors(page: &[u8], mutations: &[Mutation]) -> usize {
    let mut written = 0;
    let mut settings = lol_html::Settings::new();
    for mutation in mutations {
        settings = settings
            .append_element_content_handler(lol_html::element!(&mutation.selector, |_| Ok(())));
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
    let mutations = peer_mutations();
    let injection = PageInjection {
        beacon_src: "/_stellwerk/beacon.js".to_owned(),
        decisions_json: r#"{"tokens":["eyJkIjoiMDFKIn0.c2ln"]}"#.to_owned(),
        nonce: Some("r4nd0m".to_owned()),
    };
    let mut group = c.benchmark_group("landing_page");
    group.throughput(Throughput::Bytes(page.len() as u64));
    group.bench_function("lol_html_pass_through", |b| {
        b.iter(|| lol_html_pass_through(black_box(&page), CHUNK))
    });
    group.bench_function("lol_html_same_selectors_noop_handlers", |b| {
        b.iter(|| lol_html_same_selectors(black_box(&page), &mutations))
    });
    group.bench_function("page_rewriter_5_mutations", |b| {
        b.iter(|| rewrite(black_box(&page), &mutations, None, CHUNK))
    });
    group.bench_function("page_rewriter_5_mutations_and_injection", |b| {
        b.iter(|| rewrite(black_box(&page), &mutations, Some(&injection), CHUNK))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
