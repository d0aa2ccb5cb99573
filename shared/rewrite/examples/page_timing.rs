//! Mean time to rewrite one page with `PageRewriter`, per case, as JSON lines. Built natively
//! and for wasm32-wasip1 by `bench/rewrite-wasm.mjs`, which runs both and compares them: what
//! the rewrite costs in WebAssembly, apart from everything else the Worker does.
//!
//! Usage: `page_timing PAGE [ITERATIONS]`

use std::hint::black_box;
use std::time::Instant;

use stellwerk_rewrite::{Mutation, PageInjection};

#[path = "../benches/support/page_cases.rs"]
mod page_cases;
use page_cases::{lol_html_pass_through, peer_mutations, rewrite};

/// The Worker reads the origin's body in pieces of at least 32 KB.
const CHUNK: usize = 32 << 10;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: page_timing PAGE [ITERATIONS]");
    let iterations: u32 = args.next().map_or(200, |n| n.parse().expect("ITERATIONS"));
    let page = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));

    let peer = peer_mutations();
    // The demo snapshot's `urgency` arm.
    let urgency: Vec<Mutation> = serde_json::from_str(
        r##"[{"selector": ".hero h1", "action": "set_text", "value": "Only this week: our best sellers, restocked"},
             {"selector": "#cta", "action": "set_text", "value": "Shop before it's gone"},
             {"selector": ".hero", "action": "add_class", "value": "hero--highlight"}]"##,
    )
    .expect("mutations");
    let injection = PageInjection {
        beacon_src: "/_stellwerk/beacon.js".to_owned(),
        decisions_json: r#"{"tokens":["eyJkIjoiMDFKIn0.c2ln"]}"#.to_owned(),
        nonce: None,
    };

    let cases: [(&str, &dyn Fn() -> usize); 4] = [
        ("lol_html, no handlers", &|| {
            lol_html_pass_through(&page, CHUNK)
        }),
        ("injection only (a control arm)", &|| {
            rewrite(&page, &[], Some(&injection), CHUNK)
        }),
        ("demo urgency arm + injection", &|| {
            rewrite(&page, &urgency, Some(&injection), CHUNK)
        }),
        ("peer's 5 mutations + injection", &|| {
            rewrite(&page, &peer, Some(&injection), CHUNK)
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
