//! The short-window request rate per pseudonymous client: a gate rule that runs before the model.
//!
//! Counting needs state shared between requests and edge instances, which the core does not
//! keep. The adapter counts where its platform offers shared state (Spin: Redis `INCR` on a fixed
//! window; Workers: the Rate Limiting binding) and hands the result in as
//! [`crate::PlatformFacts::client_rate`]. The core says which requests are counted
//! ([`rate_limit_for`]), under which key ([`client_rate_key`]) and window
//! ([`RateLimit::window`]), and how the answer scores ([`ClientRate::exceeds`]).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::request::pseudonymise;
use crate::snapshot::{FraudPolicy, path_matches};
use crate::validate::{Issues, field, index};

/// Window lengths both platforms can count: the Workers Rate Limiting binding offers 10 and 60 s.
pub const RATE_WINDOWS_SECONDS: [u64; 2] = [10, 60];

/// At most `limit` requests per client in each fixed window of `windowSeconds`, on `paths`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    pub limit: u64,
    pub window_seconds: u64,
    /// Path patterns the limit counts and applies on; empty = every request the gate sees.
    #[serde(default)]
    pub paths: Vec<String>,
}

impl RateLimit {
    /// The fixed window `now` (Unix seconds) falls in; a counter per window and client.
    pub fn window(&self, now: u64) -> u64 {
        now / self.window_seconds.max(1)
    }
}

/// What the platform's shared counter said about this request's client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ClientRate {
    /// Requests this client made in the current window, this one included (Spin: Redis).
    Counted(u64),
    /// The platform's own limiter, configured with the same limit and window, answered whether
    /// this request is over it (Workers: the Rate Limiting binding gives no count).
    OverLimit(bool),
}

impl ClientRate {
    pub fn exceeds(self, limit: &RateLimit) -> bool {
        match self {
            ClientRate::Counted(requests) => requests > limit.limit,
            ClientRate::OverLimit(over) => over,
        }
    }
}

/// The rate limit that applies to a request on `path`, if any: the adapter counts only then.
pub fn rate_limit_for<'a>(policy: &'a FraudPolicy, path: &str) -> Option<&'a RateLimit> {
    policy
        .rate_limit
        .as_ref()
        .filter(|limit| limit.paths.is_empty() || limit.paths.iter().any(|p| path_matches(p, path)))
}

/// The pseudonymous key a client is counted under: an HMAC of its address (an IPv6 address by its
/// /64, which one subscriber usually holds whole), so no raw IP reaches the counter's store.
pub fn client_rate_key(address: &str, key: &[u8]) -> String {
    let address = address.trim();
    let normalised = match address.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Err(_) => address.to_ascii_lowercase(),
    };
    pseudonymise(&format!("client-rate:{normalised}"), key)
}

pub(crate) fn check_rate_limit(limit: &RateLimit, issues: &mut Issues) {
    let path = "fraud.rateLimit";
    if limit.limit == 0 {
        issues.push(field(path, "limit"), "must be at least 1");
    }
    if !RATE_WINDOWS_SECONDS.contains(&limit.window_seconds) {
        issues.push(
            field(path, "windowSeconds"),
            "must be 10 or 60 (the windows the Workers Rate Limiting binding offers)",
        );
    }
    for (i, pattern) in limit.paths.iter().enumerate() {
        if !pattern.starts_with('/') {
            issues.push(index(&field(path, "paths"), i), "must start with /");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(paths: &[&str]) -> RateLimit {
        RateLimit {
            limit: 3,
            window_seconds: 10,
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    #[test]
    fn counts_above_the_limit_exceed_it() {
        let l = limit(&[]);
        assert!(!ClientRate::Counted(3).exceeds(&l));
        assert!(ClientRate::Counted(4).exceeds(&l));
        assert!(ClientRate::OverLimit(true).exceeds(&l));
        assert!(!ClientRate::OverLimit(false).exceeds(&l));
    }

    #[test]
    fn windows_are_fixed_and_aligned() {
        let l = limit(&[]);
        assert_eq!(l.window(1_700_000_009), l.window(1_700_000_000));
        assert_ne!(l.window(1_700_000_010), l.window(1_700_000_009));
    }

    #[test]
    fn the_limit_applies_on_its_paths_only() {
        let mut policy = FraudPolicy::default();
        assert!(rate_limit_for(&policy, "/").is_none());
        policy.rate_limit = Some(limit(&["/login", "/checkout*"]));
        assert!(rate_limit_for(&policy, "/checkout/pay").is_some());
        assert!(rate_limit_for(&policy, "/login").is_some());
        assert!(rate_limit_for(&policy, "/").is_none());
        policy.rate_limit = Some(limit(&[]));
        assert!(rate_limit_for(&policy, "/anything").is_some());
    }

    #[test]
    fn keys_are_pseudonymous_and_group_an_ipv6_slash_64() {
        let k = b"unit-key";
        let a = client_rate_key("203.0.113.7", k);
        assert_eq!(a.len(), 32);
        assert!(!a.contains("203"));
        assert_ne!(a, client_rate_key("203.0.113.8", k));
        assert_ne!(a, client_rate_key("203.0.113.7", b"other-key"));
        assert_eq!(
            client_rate_key("2001:db8:1:2::1", k),
            client_rate_key("2001:db8:1:2:ffff::9", k)
        );
        assert_ne!(
            client_rate_key("2001:db8:1:2::1", k),
            client_rate_key("2001:db8:1:3::1", k)
        );
    }

    #[test]
    fn validation_names_each_problem() {
        let mut issues = Issues::new();
        check_rate_limit(
            &RateLimit {
                limit: 0,
                window_seconds: 30,
                paths: vec!["login".into()],
            },
            &mut issues,
        );
        let text = issues.finish(()).unwrap_err().to_string();
        assert!(text.contains("fraud.rateLimit.limit"), "{text}");
        assert!(text.contains("fraud.rateLimit.windowSeconds"), "{text}");
        assert!(text.contains("fraud.rateLimit.paths[0]"), "{text}");
    }
}
