//! Mean time to rewrite one page with `PageRewriter`, per case, as JSON lines. Built natively
//! and for wasm32-wasip1 by `bench/rewrite-wasm.mjs`, which runs both and compares them: what
//! the rewrite costs in WebAssembly, apart from everything else the Worker does.
//!
//! Usage: `page_timing PAGE [ITERATIONS]`

use std::hint::black_box;
use std::time::Instant;

use stellwerk_rewrite::{Mutation, PageInjection, PageRewriter};

/// The Worker reads the origin's body in pieces of at least 32 KB.
const CHUNK: usize = 32 << 10;

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
    rewriter.end().expect("end");
    written
}

/// lol_html with no handlers: the least any rewrite of the page costs.
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

fn mutations(json: &str) -> Vec<Mutation> {
    serde_json::from_str(json).expect("mutations")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: page_timing PAGE [ITERATIONS]");
    let iterations: u32 = args.next().map_or(200, |n| n.parse().expect("ITERATIONS"));
    let page = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));

    // The peer benchmark's five mutations and the demo snapshot's `urgency` arm.
    let peer = mutations(
        r##"[{"selector": "#hero h1", "action": "set_text", "value": "Built to be repaired, not replaced"},
             {"selector": "#cta", "action": "set_text", "value": "Find your gear"},
             {"selector": "#hero", "action": "add_class", "value": "hero--highlight"},
             {"selector": "#cta", "action": "set_attr", "attribute": "href", "value": "/shop?src=hero-b"},
             {"selector": "#promo-banner", "action": "hide"}]"##,
    );
    let urgency = mutations(
        r##"[{"selector": ".hero h1", "action": "set_text", "value": "Only this week: our best sellers, restocked"},
             {"selector": "#cta", "action": "set_text", "value": "Shop before it's gone"},
             {"selector": ".hero", "action": "add_class", "value": "hero--highlight"}]"##,
    );
    let injection = PageInjection {
        beacon_src: "/_stellwerk/beacon.js".to_owned(),
        decisions_json: r#"{"tokens":["eyJkIjoiMDFKIn0.c2ln"]}"#.to_owned(),
        nonce: None,
    };

    let cases: [(&str, &dyn Fn() -> usize); 4] = [
        ("lol_html, no handlers", &|| lol_html_pass_through(&page)),
        ("injection only (a control arm)", &|| {
            rewrite(&page, &[], Some(&injection))
        }),
        ("demo urgency arm + injection", &|| {
            rewrite(&page, &urgency, Some(&injection))
        }),
        ("peer's 5 mutations + injection", &|| {
            rewrite(&page, &peer, Some(&injection))
        }),
    ];
    for (name, run) in cases {
        for _ in 0..iterations / 10 {
            black_box(run());
        }
        let start = Instant::now();
        for _ in 0..iterations {
            black_box(run());
        }
        let micros = start.elapsed().as_secs_f64() * 1e6 / f64::from(iterations);
        println!(r#"{{"case": "{name}", "micros": {micros:.1}}}"#);
    }
}
