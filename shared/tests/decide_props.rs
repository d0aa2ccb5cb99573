//! What reaches `decide` from outside never makes it panic, and it decides the same way twice:
//! - a broken snapshot is refused with a reason or served: mutated copies of every decide
//!   vector's snapshot, and of the example snapshot, either fail `Snapshot::parse` or decide the
//!   vector's request and rewrite a real page;
//! - any visitor request (method, URL, headers, cookies, the platform's facts) is decided
//!   under every vector's snapshot, and the page is rewritten.

mod common;

use std::sync::LazyLock;

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use stellwerk_core::{
    DecideInput, Keys, PageDecision, PageRewriter, PlatformFacts, PosteriorSnapshot, RequestFacts,
    Snapshot, decide,
};

const EXAMPLE: &str = include_str!("../../examples/snapshot.json");
const PAGE: &[u8] = include_bytes!("../../tests/pages/landing.html");
const NOW: u64 = 1_767_225_600;

struct Seed {
    /// The document the snapshot property mutates.
    snapshot: Value,
    /// The same snapshot parsed, which the visitor property decides under.
    parsed: Snapshot,
    posteriors: PosteriorSnapshot,
    facts: RequestFacts,
}

/// Every decide vector's snapshot, posteriors and request, and the example snapshot with the
/// first vector's request.
static SEEDS: LazyLock<Vec<Seed>> = LazyLock::new(|| {
    let mut seeds: Vec<Seed> = common::vectors("decide")
        .into_iter()
        .map(|(path, v)| Seed {
            snapshot: v["snapshot"].clone(),
            parsed: Snapshot::from_value(v["snapshot"].clone())
                .unwrap_or_else(|e| panic!("{path}: {e}")),
            posteriors: v
                .get("posteriors")
                .map_or_else(PosteriorSnapshot::default, |p| {
                    PosteriorSnapshot::parse(p.to_string().as_bytes())
                        .unwrap_or_else(|e| panic!("{path}: {e}"))
                }),
            facts: serde_json::from_value(v["request"].clone())
                .unwrap_or_else(|e| panic!("{path}: {e}")),
        })
        .collect();
    let mut facts = seeds[0].facts.clone();
    facts.url = "https://shop.example/".into();
    let example: Value = serde_json::from_str(EXAMPLE).expect("the example snapshot is JSON");
    seeds.push(Seed {
        parsed: Snapshot::from_value(example.clone()).expect("the example snapshot is valid"),
        snapshot: example,
        posteriors: PosteriorSnapshot::default(),
        facts,
    });
    seeds
});

/// One change to a snapshot document, at a node picked among all of its nodes.
#[derive(Debug, Clone)]
enum Edit {
    /// Another value of the same kind: a string for a string, a number for a number, the
    /// other boolean (most of a snapshot's meaning lives in its scalars).
    Tweak(prop::sample::Index, prop::sample::Index),
    Replace(prop::sample::Index, Value),
    /// Puts a copy of another node of the document in its place.
    Copy(prop::sample::Index, prop::sample::Index),
    Remove(prop::sample::Index),
}

const NUMBERS: &[f64] = &[
    -3.0,
    -1.0,
    0.0,
    0.5,
    1.0,
    2.0,
    3.0,
    100.0,
    1e300,
    -1e300,
    9.223_372_036_854_776e18,
];

const STRINGS: &[&str] = &[
    "",
    "h1",
    "*",
    "body > p",
    "h1[",
    "::before",
    ":nth-child(-1)",
    "<script>x</script>",
    "</body>",
    "\u{0}",
    "é\u{202e}",
    "/",
    "/*",
    "running",
    "paused",
    "stopped",
    "thompson",
    "linear_thompson",
    "epsilon_greedy",
    "fixed",
    "remove",
    "hide",
    "set_attr",
    "set_html",
    "set_text",
    "add_class",
    "append",
    "prepend",
    "before",
    "after",
    "one_hot",
    "numeric",
    "device",
    "country",
    "banner",
    "on",
    "off",
    "control",
    "ctr-mlp",
    "block",
    "log",
];

/// Whole numbers as JSON integers, as a person would write them.
fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        Value::from(n as i64)
    } else {
        json!(n)
    }
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop::sample::select(NUMBERS).prop_map(number),
        prop::sample::select(STRINGS).prop_map(Value::from),
        Just(Value::from("x".repeat(5000))),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "selector",
                        "action",
                        "value",
                        "attribute",
                        "key",
                        "weight",
                        "type",
                        "arms",
                        "policy",
                        "traffic",
                        "features",
                        "kind",
                        "source",
                    ]),
                    inner,
                ),
                0..4,
            )
            .prop_map(|pairs| Value::Object(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect::<Map<_, _>>()
            )),
        ]
    })
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        6 => (any::<prop::sample::Index>(), any::<prop::sample::Index>())
            .prop_map(|(at, pick)| Edit::Tweak(at, pick)),
        1 => (any::<prop::sample::Index>(), value()).prop_map(|(at, v)| Edit::Replace(at, v)),
        1 => (any::<prop::sample::Index>(), any::<prop::sample::Index>())
            .prop_map(|(at, from)| Edit::Copy(at, from)),
        1 => any::<prop::sample::Index>().prop_map(Edit::Remove),
    ]
}

/// JSON pointers to every node of `value`, the root first.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match value {
        Value::Object(o) => {
            for (key, child) in o {
                let key = key.replace('~', "~0").replace('/', "~1");
                pointers(child, format!("{at}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn apply(doc: &mut Value, edit: &Edit) {
    let mut all = Vec::new();
    pointers(doc, String::new(), &mut all);
    match edit {
        Edit::Tweak(at, pick) => {
            let node = doc.pointer_mut(&all[at.index(all.len())]).unwrap();
            *node = match node {
                Value::String(_) => Value::from(STRINGS[pick.index(STRINGS.len())]),
                Value::Number(_) => number(NUMBERS[pick.index(NUMBERS.len())]),
                Value::Bool(b) => Value::Bool(!*b),
                _ => return,
            };
        }
        Edit::Replace(at, value) => {
            *doc.pointer_mut(&all[at.index(all.len())]).unwrap() = value.clone()
        }
        Edit::Copy(at, from) => {
            let copy = doc.pointer(&all[from.index(all.len())]).unwrap().clone();
            *doc.pointer_mut(&all[at.index(all.len())]).unwrap() = copy;
        }
        Edit::Remove(at) => {
            let target = &all[at.index(all.len())];
            let Some((parent, last)) = target.rsplit_once('/') else {
                return; // the root stays
            };
            match doc.pointer_mut(parent).unwrap() {
                Value::Object(o) => {
                    o.remove(&last.replace("~1", "/").replace("~0", "~"));
                }
                Value::Array(items) => {
                    items.remove(last.parse::<usize>().unwrap());
                }
                _ => unreachable!("a pointer's parent holds children"),
            }
        }
    }
}

fn decide_once(
    snapshot: &Snapshot,
    posteriors: &PosteriorSnapshot,
    facts: &RequestFacts,
    random: [u8; 16],
    now: u64,
) -> PageDecision {
    decide(&DecideInput {
        snapshot,
        posteriors,
        facts,
        keys: Keys {
            token: b"property-token-key",
            unit: b"property-unit-key",
        },
        random,
        now,
        models: &[],
    })
}

/// Decides twice, checks both agree and that the page still rewrites from its doctype.
fn decide_and_serve(
    snapshot: &Snapshot,
    posteriors: &PosteriorSnapshot,
    facts: &RequestFacts,
    random: [u8; 16],
    now: u64,
) -> Result<(), TestCaseError> {
    let decision = decide_once(snapshot, posteriors, facts, random, now);
    let again = decide_once(snapshot, posteriors, facts, random, now);
    prop_assert_eq!(
        serde_json::to_value(&decision).unwrap(),
        serde_json::to_value(&again).unwrap()
    );
    if let Some(page) = rewrite(&decision) {
        // No mutation reaches before the document's first element.
        prop_assert!(page.starts_with(b"<!DOCTYPE html>"));
    }
    Ok(())
}

/// The rewritten page, or `None` when the rewriter refused the decision's mutations (the
/// platforms then serve the origin's page untouched).
fn rewrite(decision: &PageDecision) -> Option<Vec<u8>> {
    let injection = decision.page_injection("/_stellwerk/beacon.js", None);
    let mut page = Vec::new();
    let mut rewriter = PageRewriter::new(
        &decision.mutations,
        injection.as_ref(),
        Some("text/html; charset=utf-8"),
        |chunk: &[u8]| page.extend_from_slice(chunk),
    )
    .ok()?;
    for chunk in PAGE.chunks(4096) {
        rewriter.write(chunk).ok()?;
    }
    rewriter.end().ok()?;
    Some(page)
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,40}",
        prop::sample::select(STRINGS).prop_map(str::to_owned),
        Just("x".repeat(9000)),
    ]
}

fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => text(),
        1 => prop::sample::select(vec![
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
            "curl/8.5.0",
            "Googlebot/2.1",
            "de-DE,de;q=0.9,en;q=0.8",
            "*;q=",
            "1",
            "https://www.google.com/search?q=x",
            "203.0.113.7, 10.0.0.1",
        ])
        .prop_map(str::to_owned),
        2 => (
            prop::sample::select(vec!["stellwerk_id", "stellwerk_consent", "other"]),
            prop_oneof![
                "[0-9a-f]{32}",
                "[0-9a-zA-Z=;, ]{0,40}",
                prop::sample::select(vec!["granted", "denied", ""]).prop_map(str::to_owned),
            ],
        )
            .prop_map(|(name, value)| format!("{name}={value}")),
    ]
}

/// A request as a visitor (or a bot) can shape it; the platform's facts arbitrary too.
fn visitor() -> impl Strategy<Value = RequestFacts> {
    let header = (
        prop::sample::select(vec![
            "user-agent",
            "cookie",
            "accept",
            "accept-language",
            "sec-gpc",
            "dnt",
            "referer",
            "x-forwarded-for",
            "sec-ch-ua-mobile",
            "User-Agent",
            "Cookie",
        ]),
        header_value(),
    )
        .prop_map(|(name, value)| (name.to_owned(), value));
    let url = prop_oneof![
        prop::sample::select(vec![
            "https://shop.example/",
            "https://shop.example/checkout?plan=1&x=%ZZ",
            "https://shop.example/products/../../etc",
            "https://[::1]:99999/",
            "https://shop.example/%E9/é",
            "/relative",
            "",
        ])
        .prop_map(str::to_owned),
        text(),
    ];
    let platform = (
        prop::option::of(prop_oneof![
            prop::sample::select(vec!["DE", "US", "XX", "T1"]).prop_map(str::to_owned),
            text(),
        ]),
        any::<Option<u32>>(),
        prop::option::of(text()),
        any::<Option<u8>>(),
        prop::option::of(text()),
    )
        .prop_map(
            |(country, asn, tls_version, bot_score, reverse_dns)| PlatformFacts {
                country,
                asn,
                tls_version,
                bot_score,
                reverse_dns,
                client_rate: None,
            },
        );
    (
        prop::sample::select(vec!["GET", "HEAD", "POST", "get", "", "BREW"]),
        url,
        prop::collection::vec(header, 0..8),
        platform,
    )
        .prop_map(|(method, url, headers, platform)| RequestFacts {
            method: method.to_owned(),
            url,
            headers,
            platform,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn a_mutated_snapshot_is_refused_or_served(
        which in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..4),
    ) {
        let seed = &SEEDS[which.index(SEEDS.len())];
        let mut doc = seed.snapshot.clone();
        for edit in &edits {
            apply(&mut doc, edit);
        }
        let snapshot = match Snapshot::parse(&serde_json::to_vec(&doc).unwrap()) {
            Ok(snapshot) => snapshot,
            Err(refused) => {
                prop_assert!(!refused.to_string().is_empty());
                return Ok(());
            }
        };
        decide_and_serve(&snapshot, &seed.posteriors, &seed.facts, [7; 16], NOW)?;
    }

    #[test]
    fn any_visitor_request_is_decided(
        which in any::<prop::sample::Index>(),
        facts in visitor(),
        random in any::<[u8; 16]>(),
        // 2017 to 2096: the platform's clock, not the visitor's.
        now in 1_500_000_000u64..4_000_000_000,
    ) {
        let seed = &SEEDS[which.index(SEEDS.len())];
        decide_and_serve(&seed.parsed, &seed.posteriors, &facts, random, now)?;
    }
}
