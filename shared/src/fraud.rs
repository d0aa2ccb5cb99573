//! The fraud model's request features: one fixed-width vector per request, built from what the
//! adapter read (headers, method, URL, the platform's facts) and nothing else.
//!
//! This is the single implementation: the trainer in `models/fraud/` gets its training vectors
//! from `stellwerk fraud-features`, which calls [`request_features`], so training and the edge
//! cannot read a request differently. The model's manifest declares the same vector as `numeric`
//! features over the context `{"fraud": {name: value}}` ([`feature_spec`], [`feature_context`]);
//! the gate refuses a model whose spec differs, i.e. one trained on another feature version.
//!
//! Header order is not a feature: the Fetch `Headers` a Worker reads iterate in sorted order, so
//! the order a client sent is lost there. `accept-encoding` is not one either: CDNs rewrite it.

use std::sync::OnceLock;

use serde_json::{Map, Value};

use crate::model::{FeatureSpec, Model, ModelError};
use crate::request::{RequestFacts, UNIT_COOKIE};

/// Buckets the user agent's tokens are hashed into.
pub const UA_TOKEN_BUCKETS: usize = 128;

/// The named features before the user-agent token buckets, in vector order.
const NAMED: &[&str] = &[
    "ua_empty",
    "ua_length",
    "ua_token_count",
    "ua_mozilla",
    "ua_compatible",
    "ua_automation_marker",
    "ua_http_library",
    "ua_bot_word",
    "ua_contact_url",
    "ua_claims_chromium",
    "ua_claims_firefox",
    "ua_claims_safari",
    "ua_claims_mobile",
    "accept",
    "accept_html",
    "accept_wildcard_only",
    "accept_language",
    "accept_language_weighted",
    "sec_fetch_mode",
    "sec_fetch_navigate",
    "sec_fetch_site",
    "sec_fetch_dest",
    "sec_fetch_user",
    "upgrade_insecure_requests",
    "referer",
    "origin",
    "cookie",
    "unit_cookie",
    "header_count",
    "client_hints",
    "client_hints_expected_missing",
    "client_hints_unexpected",
    "client_hints_headless_brand",
    "client_hints_platform_mismatch",
    "client_hints_mobile_mismatch",
    "client_hints_version_mismatch",
    "fetch_metadata_expected_missing",
    "method_get",
    "method_head",
    "method_post",
    "method_other",
    "path_root",
    "path_depth",
    "path_query",
    "path_probe",
    "path_stellwerk",
    "tls_known",
    "tls_1_3",
    "asn_known",
    "asn_hosting",
];

/// The index of a named feature in the vector; evaluated at compile time by `request_features`.
const fn slot(name: &str) -> usize {
    let mut i = 0;
    while i < NAMED.len() {
        if NAMED[i].len() == name.len() {
            let (a, b) = (NAMED[i].as_bytes(), name.as_bytes());
            let mut j = 0;
            while j < a.len() && a[j] == b[j] {
                j += 1;
            }
            if j == a.len() {
                return i;
            }
        }
        i += 1;
    }
    panic!("not a fraud feature name")
}

/// Width of the feature vector.
pub const FRAUD_FEATURE_WIDTH: usize = NAMED.len() + UA_TOKEN_BUCKETS;

/// Headers a platform or proxy adds or rewrites: they say nothing about the client.
const PLATFORM_HEADERS: &[&str] = &[
    "host",
    "connection",
    "accept-encoding",
    "content-length",
    "x-real-ip",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "cdn-loop",
    "true-client-ip",
    "forwarded",
];

const AUTOMATION_MARKERS: &[&str] = &[
    "headless",
    "phantomjs",
    "selenium",
    "puppeteer",
    "playwright",
    "webdriver",
    "slimerjs",
];

const HTTP_LIBRARIES: &[&str] = &[
    "curl/",
    "wget/",
    "python",
    "go-http-client",
    "java/",
    "okhttp",
    "axios",
    "node-fetch",
    "undici",
    "node",
    "libwww",
    "httpclient",
    "scrapy",
    "aiohttp",
    "httpx",
    "ruby",
    "guzzle",
    "php/",
    "postman",
    "insomnia",
    "reqwest",
    "hyper/",
];

const BOT_WORDS: &[&str] = &[
    "bot", "crawl", "spider", "scrap", "slurp", "fetch", "monitor", "checker", "preview", "archive",
];

const PROBE_PATHS: &[&str] = &[
    "wp-",
    ".php",
    ".env",
    ".git",
    "xmlrpc",
    "cgi-bin",
    "phpmyadmin",
    ".asp",
    "/admin",
    "/.well-known/security",
    "config.",
    "/actuator",
];

/// Autonomous systems of large hosting and cloud providers: browsers rarely come from there.
const HOSTING_ASNS: &[u32] = &[
    16509, 14618, 8987, // Amazon
    15169, 396982, 19527, // Google
    8075,  // Microsoft
    14061, // DigitalOcean
    16276, // OVH
    24940, // Hetzner
    63949, // Akamai Linode
    20473, // Vultr (Choopa)
    45102, // Alibaba
    31898, // Oracle
    132203, 45090, // Tencent
    12876, // Scaleway
    51167, // Contabo
];

/// The feature names in vector order (the token buckets are `ua_token_000` …).
pub fn feature_names() -> &'static [String] {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        NAMED
            .iter()
            .map(|n| (*n).to_owned())
            .chain((0..UA_TOKEN_BUCKETS).map(|i| format!("ua_token_{i:03}")))
            .collect()
    })
}

/// The feature spec a fraud model's manifest must declare: one `numeric` per feature, read from
/// `fraud.<name>` (default 0, so the context can omit zeros).
pub fn feature_spec() -> Vec<FeatureSpec> {
    feature_names()
        .iter()
        .map(|name| FeatureSpec::Numeric {
            source: format!("fraud.{name}"),
            scale: 1.0,
            default: 0.0,
        })
        .collect()
}

/// The features as an evaluation context (`{"fraud": {name: value}}`, non-zero values only), the
/// form the model manifest's spec reads; used for golden examples.
pub fn feature_context(features: &[f32]) -> Value {
    let values: Map<String, Value> = feature_names()
        .iter()
        .zip(features)
        .filter(|(_, v)| **v != 0.0)
        .map(|(name, v)| (name.clone(), Value::from(f64::from(*v))))
        .collect();
    let mut context = Map::new();
    context.insert("fraud".into(), Value::Object(values));
    Value::Object(context)
}

/// Builds the fraud model's input vector for one request.
pub fn request_features(facts: &RequestFacts) -> Vec<f32> {
    let mut out = vec![0.0f32; FRAUD_FEATURE_WIDTH];
    // `slot!` resolves each name to its index at compile time (an unknown name does not build).
    macro_rules! set {
        ($name:literal, $value:expr $(,)?) => {
            out[const { slot($name) }] = $value
        };
    }
    let flag = |b: bool| if b { 1.0 } else { 0.0 };

    let ua_raw = facts.header("user-agent").unwrap_or("").trim();
    let ua = ua_raw.to_ascii_lowercase();
    let tokens = ua_tokens(&ua);
    let claims = BrowserClaim::of(&ua);
    set!("ua_empty", flag(ua.is_empty()));
    set!("ua_length", (ua.len() as f32 / 128.0).min(4.0));
    set!("ua_token_count", (tokens.len() as f32 / 16.0).min(4.0));
    set!("ua_mozilla", flag(ua.starts_with("mozilla/5.0")));
    set!("ua_compatible", flag(ua.contains("compatible;")));
    set!(
        "ua_automation_marker",
        flag(contains_any(&ua, AUTOMATION_MARKERS)),
    );
    set!("ua_http_library", flag(contains_any(&ua, HTTP_LIBRARIES)));
    set!("ua_bot_word", flag(contains_any(&ua, BOT_WORDS)));
    set!(
        "ua_contact_url",
        flag(contains_any(
            &ua,
            &["http://", "https://", "www.", ".com", "@"],
        )),
    );
    set!("ua_claims_chromium", flag(claims.chromium_major.is_some()));
    set!("ua_claims_firefox", flag(claims.firefox_major.is_some()));
    set!("ua_claims_safari", flag(claims.safari_version.is_some()));
    set!("ua_claims_mobile", flag(claims.mobile));

    let header = |name: &str| facts.header(name).map(str::trim);
    let accept = header("accept");
    set!("accept", flag(accept.is_some()));
    set!(
        "accept_html",
        flag(accept.is_some_and(|a| a.contains("text/html"))),
    );
    set!("accept_wildcard_only", flag(accept == Some("*/*")));
    let language = header("accept-language");
    set!("accept_language", flag(language.is_some()));
    set!(
        "accept_language_weighted",
        flag(language.is_some_and(|l| l.contains(";q="))),
    );
    let fetch_mode = header("sec-fetch-mode");
    set!("sec_fetch_mode", flag(fetch_mode.is_some()));
    set!("sec_fetch_navigate", flag(fetch_mode == Some("navigate")));
    set!("sec_fetch_site", flag(header("sec-fetch-site").is_some()));
    set!("sec_fetch_dest", flag(header("sec-fetch-dest").is_some()));
    set!("sec_fetch_user", flag(header("sec-fetch-user").is_some()));
    set!(
        "upgrade_insecure_requests",
        flag(header("upgrade-insecure-requests").is_some()),
    );
    set!("referer", flag(header("referer").is_some()));
    set!("origin", flag(header("origin").is_some()));
    set!("cookie", flag(header("cookie").is_some()));
    set!("unit_cookie", flag(facts.cookie(UNIT_COOKIE).is_some()));
    let client_headers = facts
        .headers
        .iter()
        .filter(|(name, _)| {
            let platform = PLATFORM_HEADERS
                .iter()
                .any(|p| name.eq_ignore_ascii_case(p))
                || name.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("cf-"));
            !platform
        })
        .count();
    set!("header_count", (client_headers as f32 / 16.0).min(2.0));

    let hints = header("sec-ch-ua");
    // Chromium sends client hints from version 90 on, except on iOS (where it is WebKit).
    let hints_expected = claims.chromium_major.is_some_and(|v| v >= 90) && !claims.ios;
    set!("client_hints", flag(hints.is_some()));
    set!(
        "client_hints_expected_missing",
        flag(hints_expected && hints.is_none()),
    );
    set!(
        "client_hints_unexpected",
        flag(hints.is_some() && claims.chromium_major.is_none()),
    );
    if let Some(hints) = hints {
        let lower = hints.to_ascii_lowercase();
        set!(
            "client_hints_headless_brand",
            flag(lower.contains("headless")),
        );
        let platform =
            header("sec-ch-ua-platform").map(|p| p.trim_matches('"').to_ascii_lowercase());
        set!(
            "client_hints_platform_mismatch",
            flag(matches!((platform.as_deref(), claims.os), (Some(p), Some(os)) if p != os)),
        );
        let mobile = header("sec-ch-ua-mobile").map(|m| m == "?1");
        set!(
            "client_hints_mobile_mismatch",
            flag(mobile.is_some_and(|m| m != claims.mobile)),
        );
        let versions = brand_major_versions(&lower);
        set!(
            "client_hints_version_mismatch",
            flag(
                claims
                    .chromium_major
                    .is_some_and(|major| !versions.contains(&major)),
            ),
        );
    }
    let fetch_metadata_expected = claims.chromium_major.is_some_and(|v| v >= 80)
        || claims.firefox_major.is_some_and(|v| v >= 90)
        || claims.safari_version.is_some_and(|v| v >= 17);
    set!(
        "fetch_metadata_expected_missing",
        flag(fetch_metadata_expected && fetch_mode.is_none()),
    );

    let method = facts.method.to_ascii_uppercase();
    set!("method_get", flag(method == "GET"));
    set!("method_head", flag(method == "HEAD"));
    set!("method_post", flag(method == "POST"));
    set!(
        "method_other",
        flag(!matches!(method.as_str(), "GET" | "HEAD" | "POST")),
    );
    let path = facts.path().to_ascii_lowercase();
    let depth = path.split('/').filter(|s| !s.is_empty()).count();
    set!("path_root", flag(depth == 0));
    set!("path_depth", (depth as f32 / 8.0).min(1.0));
    set!("path_query", flag(facts.url.contains('?')));
    set!("path_probe", flag(contains_any(&path, PROBE_PATHS)));
    set!("path_stellwerk", flag(path.starts_with("/_stellwerk/")));

    let tls = facts.platform.tls_version.as_deref();
    set!("tls_known", flag(tls.is_some()));
    set!("tls_1_3", flag(tls == Some("TLSv1.3")));
    set!("asn_known", flag(facts.platform.asn.is_some()));
    set!(
        "asn_hosting",
        flag(
            facts
                .platform
                .asn
                .is_some_and(|a| HOSTING_ASNS.contains(&a)),
        ),
    );

    for token in tokens {
        out[NAMED.len() + token_bucket(token)] = 1.0;
    }
    out
}

/// The user agent's words: lowercase alphanumeric runs of two or more characters, numbers
/// dropped (versions change every month; the product names are what identify a client).
fn ua_tokens(ua: &str) -> Vec<&str> {
    ua.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| t.len() >= 2 && !t.bytes().all(|b| b.is_ascii_digit()))
        .collect()
}

/// FNV-1a: stable across releases and platforms, and cheap enough for every request.
fn token_bucket(token: &str) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in token.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % UA_TOKEN_BUCKETS as u64) as usize
}

fn contains_any(haystack: &str, needles: &[&str]) -> bool {
    needles.iter().any(|n| haystack.contains(n))
}

/// What a user agent claims to be, as far as the header checks need it.
struct BrowserClaim {
    chromium_major: Option<u32>,
    firefox_major: Option<u32>,
    safari_version: Option<u32>,
    mobile: bool,
    ios: bool,
    /// The OS as `sec-ch-ua-platform` spells it, lowercased.
    os: Option<&'static str>,
}

impl BrowserClaim {
    fn of(ua: &str) -> BrowserClaim {
        let ios = ua.contains("iphone") || ua.contains("ipad") || ua.contains("ipod");
        let os = if ua.contains("windows") {
            Some("windows")
        } else if ua.contains("android") {
            Some("android")
        } else if ua.contains("cros") {
            Some("chrome os")
        } else if ios {
            Some("ios")
        } else if ua.contains("mac os x") || ua.contains("macintosh") {
            Some("macos")
        } else if ua.contains("linux") {
            Some("linux")
        } else {
            None
        };
        let chromium_major = major_after(ua, "chrome/");
        let firefox_major = major_after(ua, "firefox/");
        let safari_version = (ua.contains("safari/") && chromium_major.is_none())
            .then(|| major_after(ua, "version/"))
            .flatten();
        BrowserClaim {
            chromium_major,
            firefox_major,
            safari_version,
            mobile: ua.contains("mobile"),
            ios,
            os,
        }
    }
}

fn major_after(ua: &str, marker: &str) -> Option<u32> {
    let start = ua.find(marker)? + marker.len();
    let digits: String = ua[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The major versions in a `sec-ch-ua` brand list (`"Chromium";v="131", …`).
fn brand_major_versions(hints: &str) -> Vec<u32> {
    hints
        .split("v=\"")
        .skip(1)
        .filter_map(|rest| rest.split(['"', '.']).next().and_then(|v| v.parse().ok()))
        .collect()
}

/// Whether a model's manifest declares exactly this build's feature vector.
pub fn is_fraud_model(model: &Model) -> bool {
    static SPEC: OnceLock<Vec<FeatureSpec>> = OnceLock::new();
    model.manifest().features == *SPEC.get_or_init(feature_spec)
}

/// The model's probability that the request is automated (the last output value).
pub fn model_score(model: &Model, features: &[f32]) -> Result<f64, ModelError> {
    let outputs = model.run(features)?;
    let score = outputs.last().copied().ok_or(ModelError::InputLength {
        expected: 1,
        actual: 0,
    })?;
    Ok(f64::from(score).clamp(0.0, 1.0))
}

/// Each non-zero feature's contribution to the score, in log-odds: the score's logit minus the
/// logit with that feature set to 0. For a logistic regression this is exactly weight × value;
/// for other models it is the local effect of removing the feature. Largest magnitude first.
pub fn contributions(model: &Model, features: &[f32]) -> Result<Vec<(String, f64)>, ModelError> {
    let logit = |p: f64| {
        let p = p.clamp(1e-9, 1.0 - 1e-9);
        (p / (1.0 - p)).ln()
    };
    let base = logit(model_score(model, features)?);
    let mut ablated = features.to_vec();
    let mut out = Vec::new();
    for (i, name) in feature_names().iter().enumerate() {
        if features[i] == 0.0 {
            continue;
        }
        ablated[i] = 0.0;
        let without = logit(model_score(model, &ablated)?);
        ablated[i] = features[i];
        out.push((name.clone(), base - without));
    }
    out.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::build_features;
    use crate::request::PlatformFacts;

    fn facts(headers: &[(&str, &str)]) -> RequestFacts {
        RequestFacts {
            method: "GET".into(),
            url: "https://shop.example/products/42?x=1".into(),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            platform: PlatformFacts::default(),
        }
    }

    fn value(features: &[f32], name: &str) -> f32 {
        let i = feature_names()
            .iter()
            .position(|n| n == name)
            .expect("a feature name");
        features[i]
    }

    const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

    #[test]
    fn names_spec_and_vector_agree_in_width() {
        assert_eq!(feature_names().len(), FRAUD_FEATURE_WIDTH);
        assert_eq!(feature_spec().len(), FRAUD_FEATURE_WIDTH);
        assert_eq!(request_features(&facts(&[])).len(), FRAUD_FEATURE_WIDTH);
    }

    #[test]
    fn the_context_form_builds_the_same_vector_through_the_manifest_spec() {
        let f = request_features(&facts(&[("user-agent", CHROME), ("accept", "*/*")]));
        assert_eq!(build_features(&feature_spec(), &feature_context(&f)), f);
    }

    #[test]
    fn a_chrome_ua_without_client_hints_is_inconsistent() {
        let f = request_features(&facts(&[("user-agent", CHROME)]));
        assert_eq!(value(&f, "ua_claims_chromium"), 1.0);
        assert_eq!(value(&f, "client_hints_expected_missing"), 1.0);
        assert_eq!(value(&f, "fetch_metadata_expected_missing"), 1.0);
    }

    #[test]
    fn client_hints_are_checked_against_the_user_agent() {
        let f = request_features(&facts(&[
            ("user-agent", CHROME),
            (
                "sec-ch-ua",
                "\"HeadlessChrome\";v=\"131\", \"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\"",
            ),
            ("sec-ch-ua-platform", "\"Linux\""),
            ("sec-ch-ua-mobile", "?0"),
        ]));
        assert_eq!(value(&f, "client_hints_expected_missing"), 0.0);
        assert_eq!(value(&f, "client_hints_headless_brand"), 1.0);
        assert_eq!(value(&f, "client_hints_platform_mismatch"), 1.0);
        assert_eq!(value(&f, "client_hints_mobile_mismatch"), 0.0);
        assert_eq!(value(&f, "client_hints_version_mismatch"), 0.0);
        let honest = request_features(&facts(&[
            ("user-agent", CHROME),
            (
                "sec-ch-ua",
                "\"Google Chrome\";v=\"131\", \"Chromium\";v=\"131\"",
            ),
            ("sec-ch-ua-platform", "\"Windows\""),
        ]));
        assert_eq!(value(&honest, "client_hints_platform_mismatch"), 0.0);
        assert_eq!(value(&honest, "client_hints_headless_brand"), 0.0);
    }

    #[test]
    fn libraries_and_platform_facts_are_recognised() {
        let mut f = facts(&[("user-agent", "python-requests/2.32.3"), ("accept", "*/*")]);
        f.platform.asn = Some(16509);
        f.platform.tls_version = Some("TLSv1.3".into());
        let v = request_features(&f);
        assert_eq!(value(&v, "ua_http_library"), 1.0);
        assert_eq!(value(&v, "accept_wildcard_only"), 1.0);
        assert_eq!(value(&v, "asn_hosting"), 1.0);
        assert_eq!(value(&v, "tls_1_3"), 1.0);
        assert_eq!(value(&v, "ua_mozilla"), 0.0);
        assert_eq!(value(&v, "path_depth"), 0.25);
        assert_eq!(value(&v, "path_query"), 1.0);
    }

    #[test]
    fn ua_tokens_drop_numbers_and_land_in_fixed_buckets() {
        assert_eq!(
            ua_tokens("curl/8.5.0 (x86_64) go"),
            vec!["curl", "x86", "go"]
        );
        // Pinned: a changed hash would silently invalidate every trained model.
        assert_eq!(
            token_bucket("curl"),
            (0x4c96_8a90_ace3_649bu64 % 128) as usize
        );
    }
}
