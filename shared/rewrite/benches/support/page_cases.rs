//! The page rewrites that the criterion bench (`benches/rewrite.rs`) and the wasm timing
//! example (`examples/page_timing.rs`, run by `bench/rewrite-wasm.mjs`) both measure.

use std::hint::black_box;

use stellwerk_rewrite::{Mutation, PageInjection, PageRewriter};

/// The peer benchmark's five mutations, on the hero of `tests/pages/landing.html`
/// (`tests/pages/landing-mutations.json`, which the rewrite conformance test applies too).
pub fn peer_mutations() -> Vec<Mutation> {
    serde_json::from_str(include_str!(
        "../../../../tests/pages/landing-mutations.json"
    ))
    .expect("mutations")
}

/// Rewrites `page` in `chunk`-byte pieces; every mutation must match exactly one element.
/// Returns the bytes written.
pub fn rewrite(
    page: &[u8],
    mutations: &[Mutation],
    injection: Option<&PageInjection>,
    chunk: usize,
) -> usize {
    let mut written = 0;
    let mut rewriter = PageRewriter::new(
        mutations,
        injection,
        Some("text/html; charset=utf-8"),
        |bytes: &[u8]| written += black_box(bytes).len(),
    )
    .expect("rewriter");
    for piece in page.chunks(chunk) {
        rewriter.write(piece).expect("write");
    }
    let summary = rewriter.end().expect("end");
    assert!(summary.matches.iter().all(|&n| n == 1));
    written
}

/// lol_html with no handlers, in `chunk`-byte pieces: the least any rewrite of the page costs.
pub fn lol_html_pass_through(page: &[u8], chunk: usize) -> usize {
    let mut written = 0;
    let mut rewriter = lol_html::HtmlRewriter::new(lol_html::Settings::new(), |bytes: &[u8]| {
        written += black_box(bytes).len()
    });
    for piece in page.chunks(chunk) {
        rewriter.write(piece).expect("write");
    }
    rewriter.end().expect("end");
    written
}
