//! Runs the rewrite conformance vectors of `tests/conformance/rewrite/*.json` and the five
//! peer-benchmark mutations on the landing page of `tests/pages/`.
//!
//! A vector's `input` and `expected` are text; the runner encodes both in `encoding` (default:
//! the content type's charset, else UTF-8) so legacy-charset pages can be written as JSON.
//! Every vector is also run byte by byte and in 7- and 64-byte chunks: the output must not
//! change.

mod common;

use std::path::{Path, PathBuf};

use serde::Deserialize;
use stellwerk_core::{Mutation, PageInjection, PageRewriter, RewriteSummary, charset_of};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Vector {
    name: String,
    /// What the vector shows, for a reader of the JSON.
    #[serde(default, rename = "description")]
    _description: Option<String>,
    content_type: String,
    #[serde(default)]
    encoding: Option<String>,
    mutations: Vec<Mutation>,
    injection: Option<Injection>,
    input: String,
    #[serde(default)]
    chunks: Option<Vec<usize>>,
    expected: String,
    #[serde(default)]
    matches: Option<Vec<u32>>,
    #[serde(default)]
    injected: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Injection {
    beacon_src: String,
    decisions_json: String,
    nonce: Option<String>,
}

fn repo_dir(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

/// Writes `input` in pieces of the given sizes (the rest in one last piece).
fn rewrite(
    mutations: &[Mutation],
    injection: Option<&PageInjection>,
    content_type: &str,
    input: &[u8],
    sizes: &[usize],
) -> (Vec<u8>, RewriteSummary) {
    let mut out = Vec::new();
    let mut rewriter = PageRewriter::new(mutations, injection, Some(content_type), |chunk| {
        out.extend_from_slice(chunk)
    })
    .expect("rewriter");
    let mut rest = input;
    for &size in sizes {
        let (piece, tail) = rest.split_at(size.min(rest.len()));
        rewriter.write(piece).expect("write");
        rest = tail;
    }
    rewriter.write(rest).expect("write");
    let summary = rewriter.end().expect("end");
    (out, summary)
}

fn encode(text: &str, label: &str) -> Vec<u8> {
    let encoding = encoding_rs::Encoding::for_label(label.as_bytes()).expect("known label");
    let (bytes, _, unmappable) = encoding.encode(text);
    assert!(!unmappable, "vector text must be representable in {label}");
    bytes.into_owned()
}

fn run_vector(path: &Path) {
    let text = std::fs::read_to_string(path).expect("readable vector");
    let vector: Vector = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{}: not a vector: {e}", path.display()));
    let name = &vector.name;
    let label = vector
        .encoding
        .as_deref()
        .or_else(|| charset_of(&vector.content_type))
        .unwrap_or("utf-8");
    let input = encode(&vector.input, label);
    let expected = encode(&vector.expected, label);
    let injection = vector.injection.as_ref().map(|i| PageInjection {
        beacon_src: i.beacon_src.clone(),
        decisions_json: i.decisions_json.clone(),
        nonce: i.nonce.clone(),
    });

    let given = vector.chunks.clone().unwrap_or_default();
    let every_byte = vec![1; input.len()];
    let sevens = vec![7; input.len() / 7];
    let sixty_fours = vec![64; input.len() / 64];
    for sizes in [&given, &every_byte, &sevens, &sixty_fours] {
        let (out, summary) = rewrite(
            &vector.mutations,
            injection.as_ref(),
            &vector.content_type,
            &input,
            sizes,
        );
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&expected),
            "{name} in chunks {sizes:?}"
        );
        assert_eq!(out, expected, "{name}: bytes");
        if let Some(matches) = &vector.matches {
            assert_eq!(&summary.matches, matches, "{name}: matches");
        }
        if let Some(injected) = vector.injected {
            assert_eq!(summary.injected, injected, "{name}: injected");
        }
        assert_eq!(summary.bail_out, None, "{name}");
    }
}

#[test]
fn rewrite_conformance_vectors() {
    let dir = common::vector_dir("rewrite");
    let paths = common::vector_paths("rewrite");
    assert!(
        paths.len() >= 15,
        "expected the rewrite vectors in {}",
        dir.display()
    );
    for path in &paths {
        run_vector(path);
    }
}

/// The peer benchmark's five mutations (its `mutations.json`), in Stellwerk's words, aimed at
/// the landing page; the rewrite benchmarks measure the same list.
fn landing_mutations() -> Vec<Mutation> {
    serde_json::from_str(include_str!("../../tests/pages/landing-mutations.json"))
        .expect("mutations")
}

#[test]
fn landing_page_gets_the_five_mutations_and_nothing_else() {
    let page = std::fs::read(repo_dir("tests/pages/landing.html")).expect("landing page");
    assert!(
        page.len() > 90_000,
        "the landing page should be about 100 KB"
    );
    let injection = PageInjection {
        beacon_src: "/_sw/beacon.js".to_owned(),
        decisions_json: r#"{"tokens":["t1"]}"#.to_owned(),
        nonce: None,
    };
    let (out, summary) = rewrite(
        &landing_mutations(),
        Some(&injection),
        "text/html; charset=utf-8",
        &page,
        &vec![16 << 10; page.len() / (16 << 10)],
    );
    assert_eq!(summary.matches, vec![1, 1, 1, 1, 1]);
    assert!(summary.injected);

    // Undo each change by hand: what is left must be the original page, byte for byte.
    let replacements = [
        (
            r#"<div id="promo-banner" class="promo" role="note" style="display:none !important">"#,
            r#"<div id="promo-banner" class="promo" role="note">"#,
        ),
        (
            r#"<section id="hero" class="hero hero--highlight">"#,
            r#"<section id="hero" class="hero">"#,
        ),
        (
            "<h1>Built to be repaired, not replaced</h1>",
            "<h1>Parts that outlast the ride</h1>",
        ),
        (
            r#"<a id="cta" class="button solid cta" href="/shop?src=hero-b" data-track="hero-cta">Find your gear</a>"#,
            r#"<a id="cta" class="button solid cta" href="/shop" data-track="hero-cta">Shop the range</a>"#,
        ),
        (
            r#"<script>window.__stellwerk={"tokens":["t1"]};</script><script src="/_sw/beacon.js" defer></script></head>"#,
            "</head>",
        ),
    ];
    let mut restored = String::from_utf8(out).expect("utf-8 page");
    for (new, old) in replacements {
        assert_eq!(restored.matches(new).count(), 1, "{new}");
        restored = restored.replacen(new, old, 1);
    }
    assert!(
        restored.as_bytes() == page,
        "bytes outside the mutations changed"
    );
}
