//! What the core knows about a request: the facts an adapter read, never the request itself.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use crate::client_rate::ClientRate;
use crate::event::ConsentState;
use crate::snapshot::PrivacyPolicy;

/// Cookie that carries the visitor's unit id (random, set by the edge when missing).
pub const UNIT_COOKIE: &str = "stellwerk_id";

/// The facts of one request an adapter hands to the core.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestFacts {
    pub method: String,
    /// Absolute URL as the visitor asked for it.
    pub url: String,
    /// Header names lower-cased, in the order received.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// What the platform knows beyond the headers (Cloudflare's `request.cf`).
    #[serde(default)]
    pub platform: PlatformFacts,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlatformFacts {
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub asn: Option<u32>,
    #[serde(default)]
    pub tls_version: Option<String>,
    /// Bot management score (1 = automated … 99 = human) where the zone has it.
    #[serde(default)]
    pub bot_score: Option<u8>,
    /// The client's forward-confirmed reverse-DNS name, where the platform resolved it; the
    /// gate verifies good bots by it.
    #[serde(default)]
    pub reverse_dns: Option<String>,
    /// This client's requests in the current short window, where the platform counted them
    /// (only for requests [`crate::client_rate::rate_limit_for`] names).
    #[serde(default)]
    pub client_rate: Option<ClientRate>,
}

impl RequestFacts {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("cookie"))
            .flat_map(|(_, v)| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.trim())
    }

    /// The path part of the URL (`/` when absent).
    pub fn path(&self) -> &str {
        let after_scheme = self
            .url
            .split_once("://")
            .map_or(self.url.as_str(), |(_, r)| r);
        let path_and_query = after_scheme.find('/').map_or("/", |i| &after_scheme[i..]);
        let end = path_and_query
            .find(['?', '#'])
            .unwrap_or(path_and_query.len());
        &path_and_query[..end]
    }

    fn query_pairs(&self) -> Map<String, Value> {
        let query = self
            .url
            .split_once('?')
            .map(|(_, q)| q.split('#').next().unwrap_or(""))
            .unwrap_or("");
        query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_owned(), Value::String(v.to_owned()))
            })
            .collect()
    }

    fn host(&self) -> &str {
        let after_scheme = self
            .url
            .split_once("://")
            .map_or(self.url.as_str(), |(_, r)| r);
        let end = after_scheme
            .find(['/', '?', '#'])
            .unwrap_or(after_scheme.len());
        &after_scheme[..end]
    }

    /// The visitor's unit id from the cookie, if it has a sane shape.
    pub fn unit_cookie(&self) -> Option<&str> {
        self.cookie(UNIT_COOKIE).filter(|id| is_valid_unit_id(id))
    }

    /// What the visitor allowed: GPC and the consent cookie, under the snapshot's privacy policy.
    pub fn consent(&self, privacy: &PrivacyPolicy) -> ConsentState {
        if privacy.respect_gpc && self.header("sec-gpc").is_some_and(|v| v.trim() == "1") {
            return ConsentState::Denied;
        }
        match self.cookie(&privacy.consent_cookie) {
            Some("granted") => ConsentState::Granted,
            Some("denied") => ConsentState::Denied,
            _ if privacy.require_consent => ConsentState::Denied,
            _ => ConsentState::Unknown,
        }
    }

    /// The evaluation context for flags, targeting and model features. Holds no raw IP and no
    /// raw unit id: `targetingKey` is the pseudonymous unit.
    pub fn context(&self, pseudonymous_unit: Option<&str>, returning: bool, now: u64) -> Value {
        let user_agent = self.header("user-agent").unwrap_or("");
        let referrer = self.header("referer").unwrap_or("");
        let mut context = json!({
            "path": self.path(),
            "host": self.host(),
            "method": self.method,
            "query": Value::Object(self.query_pairs()),
            "userAgent": user_agent,
            "device": device_class(user_agent),
            "language": primary_language(self.header("accept-language").unwrap_or("")),
            "referrerClass": referrer_class(referrer, self.host()),
            "returning": returning,
            "hourOfWeek": hour_of_week(now),
        });
        if let Some(object) = context.as_object_mut() {
            if let Some(unit) = pseudonymous_unit {
                object.insert("targetingKey".into(), Value::String(unit.to_owned()));
            }
            if let Some(country) = &self.platform.country {
                object.insert("country".into(), Value::String(country.clone()));
            }
        }
        context
    }
}

/// Unit ids the edge mints are 32 lowercase hex characters; anything else is replaced.
pub fn is_valid_unit_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A new unit id from 16 random bytes the adapter drew.
pub fn new_unit_id(random: [u8; 16]) -> String {
    hex(&random)
}

/// Keyed hash of the unit id, so logs and tokens never carry the cookie's value.
pub fn pseudonymise(unit_id: &str, key: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(unit_id.as_bytes());
    hex(&mac.finalize().into_bytes()[..16])
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// `mobile`, `tablet`, `desktop` or `bot`, from the user agent alone.
pub fn device_class(user_agent: &str) -> &'static str {
    let ua = user_agent.to_ascii_lowercase();
    if ua.is_empty()
        || ["bot", "crawler", "spider", "headless"]
            .iter()
            .any(|m| ua.contains(m))
    {
        "bot"
    } else if ua.contains("ipad") || ua.contains("tablet") {
        "tablet"
    } else if ua.contains("mobi") || ua.contains("iphone") || ua.contains("android") {
        "mobile"
    } else {
        "desktop"
    }
}

fn primary_language(accept_language: &str) -> String {
    accept_language
        .split(',')
        .next()
        .and_then(|tag| tag.split(';').next())
        .and_then(|tag| tag.trim().split('-').next())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// `direct`, `internal`, `search`, `social` or `other`.
pub fn referrer_class(referrer: &str, own_host: &str) -> &'static str {
    let host = referrer
        .split_once("://")
        .map_or("", |(_, rest)| {
            rest.split(['/', '?', '#']).next().unwrap_or("")
        })
        .to_ascii_lowercase();
    if host.is_empty() {
        "direct"
    } else if host == own_host.to_ascii_lowercase() {
        "internal"
    } else if [
        "google.",
        "bing.",
        "duckduckgo.",
        "yahoo.",
        "ecosia.",
        "baidu.",
    ]
    .iter()
    .any(|s| host.contains(s))
    {
        "search"
    } else if [
        "facebook.",
        "instagram.",
        "t.co",
        "twitter.",
        "x.com",
        "linkedin.",
        "reddit.",
        "tiktok.",
    ]
    .iter()
    .any(|s| host.contains(s))
    {
        "social"
    } else {
        "other"
    }
}

/// Hours since Monday 00:00 UTC (0..168).
pub fn hour_of_week(now: u64) -> u64 {
    // 1970-01-01 was a Thursday: shift so that Monday starts the week.
    ((now / 3600) + 3 * 24) % 168
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(url: &str, headers: &[(&str, &str)]) -> RequestFacts {
        RequestFacts {
            method: "GET".into(),
            url: url.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            platform: PlatformFacts::default(),
        }
    }

    #[test]
    fn path_and_query_are_split_from_the_url() {
        let f = facts("https://shop.example/products/42?utm=x&b#top", &[]);
        assert_eq!(f.path(), "/products/42");
        assert_eq!(f.host(), "shop.example");
        assert_eq!(f.query_pairs().get("utm"), Some(&json!("x")));
        assert_eq!(facts("https://shop.example", &[]).path(), "/");
    }

    #[test]
    fn cookies_are_found_among_several_headers() {
        let f = facts(
            "https://a/",
            &[
                (
                    "cookie",
                    "a=1; stellwerk_id=0123456789abcdef0123456789abcdef",
                ),
                ("cookie", "b=2"),
            ],
        );
        assert_eq!(f.cookie("b"), Some("2"));
        assert_eq!(f.unit_cookie(), Some("0123456789abcdef0123456789abcdef"));
        let bad = facts("https://a/", &[("cookie", "stellwerk_id=<script>")]);
        assert_eq!(bad.unit_cookie(), None);
    }

    #[test]
    fn gpc_denies_even_with_a_granted_cookie() {
        let privacy = PrivacyPolicy::default();
        let f = facts(
            "https://a/",
            &[("sec-gpc", "1"), ("cookie", "stellwerk_consent=granted")],
        );
        assert_eq!(f.consent(&privacy), ConsentState::Denied);
        let f = facts("https://a/", &[("cookie", "stellwerk_consent=granted")]);
        assert_eq!(f.consent(&privacy), ConsentState::Granted);
        let strict = PrivacyPolicy {
            require_consent: true,
            ..PrivacyPolicy::default()
        };
        assert_eq!(
            facts("https://a/", &[]).consent(&strict),
            ConsentState::Denied
        );
        assert_eq!(
            facts("https://a/", &[]).consent(&privacy),
            ConsentState::Unknown
        );
    }

    #[test]
    fn pseudonyms_depend_on_the_key_and_hide_the_id() {
        let id = "0123456789abcdef0123456789abcdef";
        let a = pseudonymise(id, b"key-a");
        assert_eq!(a.len(), 32);
        assert_ne!(a, pseudonymise(id, b"key-b"));
        assert_ne!(a, id);
        assert_eq!(a, pseudonymise(id, b"key-a"));
    }

    #[test]
    fn context_has_no_raw_unit_id() {
        let id = "0123456789abcdef0123456789abcdef";
        let f = facts(
            "https://a/",
            &[
                ("cookie", &format!("stellwerk_id={id}")),
                ("user-agent", "Mozilla/5.0 (iPhone) Mobile"),
            ],
        );
        let context = f.context(Some("pseudo"), true, 0);
        assert!(!context.to_string().contains(id));
        assert_eq!(context["device"], "mobile");
        assert_eq!(context["targetingKey"], "pseudo");
    }

    #[test]
    fn hour_of_week_starts_on_monday() {
        // 2024-01-01 00:00 UTC was a Monday.
        assert_eq!(hour_of_week(1_704_067_200), 0);
        assert_eq!(hour_of_week(1_704_067_200 + 25 * 3600), 25);
    }
}
