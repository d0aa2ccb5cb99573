//! Decision tokens: what a page carries back in a feedback beacon to prove that a decision was
//! really made, for whom, and with which probability.
//!
//! Wire format: `base64url(JSON) "." base64url(HMAC-SHA256(key, base64url(JSON)))`, both parts
//! without padding. The MAC covers the encoded payload exactly as sent (as in JWS), so no byte of
//! the token can change without the MAC failing, and nothing is parsed before it is verified.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Longest token accepted; checked before any decoding so a hostile beacon costs nothing.
pub const MAX_TOKEN_BYTES: usize = 1024;

/// Tolerated difference between the clocks of the edge that issued and the edge that verifies.
pub const CLOCK_SKEW_SECONDS: u64 = 60;

const MAC_BYTES: usize = 32;

/// One decision, signed so that a beacon can be attributed to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionToken {
    /// Unique per decision; the exposure event's id.
    #[serde(rename = "d")]
    pub decision_id: String,
    #[serde(rename = "e")]
    pub experiment: String,
    #[serde(rename = "a")]
    pub arm: String,
    /// Probability with which `arm` was chosen, for off-policy evaluation.
    #[serde(rename = "p")]
    pub propensity: f64,
    #[serde(rename = "v")]
    pub policy_version: String,
    /// Unix seconds.
    #[serde(rename = "t")]
    pub issued_at: u64,
    /// Pseudonymous unit id (never a raw user id or IP).
    #[serde(rename = "u")]
    pub unit: String,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Not a token at all (length, shape, base64 or JSON).
    Malformed(String),
    /// Well formed, but the MAC does not match: not issued with this key, or altered.
    Forged,
    /// Genuine, but older than the attribution window.
    Expired { age: u64 },
    /// Genuine, but issued later than the clock skew allows.
    FromTheFuture,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Malformed(reason) => write!(f, "malformed token: {reason}"),
            TokenError::Forged => write!(f, "token signature does not match"),
            TokenError::Expired { age } => {
                write!(
                    f,
                    "token expired: issued {age} s ago, past the attribution window"
                )
            }
            TokenError::FromTheFuture => write!(f, "token issued in the future"),
        }
    }
}

impl std::error::Error for TokenError {}

fn mac(key: &[u8], payload: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(payload);
    mac
}

impl DecisionToken {
    /// Signs the token with `key` (the platform secret).
    pub fn sign(&self, key: &[u8]) -> String {
        // Serialising a struct of strings and numbers cannot fail; a non-finite propensity
        // becomes `null` and is then refused by `verify`, never silently accepted.
        let json = serde_json::to_vec(self).unwrap_or_default();
        let payload = URL_SAFE_NO_PAD.encode(json);
        let tag = mac(key, payload.as_bytes()).finalize().into_bytes();
        let mut token = payload;
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(tag));
        token
    }

    /// Checks length, shape, MAC (in constant time) and age, in that order; returns the decision.
    pub fn verify(
        token: &str,
        key: &[u8],
        now: u64,
        attribution_window_seconds: u64,
    ) -> Result<DecisionToken, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed(format!(
                "longer than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        let (payload, signature) = token
            .split_once('.')
            .ok_or_else(|| TokenError::Malformed("no '.' separator".to_owned()))?;
        if payload.is_empty() || signature.contains('.') {
            return Err(TokenError::Malformed(
                "expected two non-empty parts".to_owned(),
            ));
        }
        let tag = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|e| TokenError::Malformed(format!("signature is not base64url: {e}")))?;
        if tag.len() != MAC_BYTES {
            return Err(TokenError::Malformed(format!(
                "signature is {} bytes, expected {MAC_BYTES}",
                tag.len()
            )));
        }
        mac(key, payload.as_bytes())
            .verify_slice(&tag)
            .map_err(|_| TokenError::Forged)?;
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|e| TokenError::Malformed(format!("payload is not base64url: {e}")))?;
        let decision: DecisionToken = serde_json::from_slice(&json)
            .map_err(|e| TokenError::Malformed(format!("payload: {e}")))?;
        if !(decision.propensity > 0.0 && decision.propensity <= 1.0) {
            return Err(TokenError::Malformed(
                "propensity must be in (0, 1]".to_owned(),
            ));
        }
        if decision.issued_at > now.saturating_add(CLOCK_SKEW_SECONDS) {
            return Err(TokenError::FromTheFuture);
        }
        let age = now.saturating_sub(decision.issued_at);
        if age > attribution_window_seconds {
            return Err(TokenError::Expired { age });
        }
        Ok(decision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: &[u8] = b"test-key-0123456789abcdef0123456789";
    const NOW: u64 = 1_700_000_000;
    const WINDOW: u64 = 7 * 24 * 3600;

    fn token() -> DecisionToken {
        DecisionToken {
            decision_id: "d-1".to_owned(),
            experiment: "hero".to_owned(),
            arm: "b".to_owned(),
            propensity: 0.25,
            policy_version: "v7".to_owned(),
            issued_at: NOW - 10,
            unit: "u_abc".to_owned(),
        }
    }

    #[test]
    fn round_trip() {
        let signed = token().sign(KEY);
        assert_eq!(
            DecisionToken::verify(&signed, KEY, NOW, WINDOW),
            Ok(token())
        );
    }

    #[test]
    fn wire_uses_short_names() {
        let json = serde_json::to_string(&token()).unwrap();
        assert_eq!(
            json,
            r#"{"d":"d-1","e":"hero","a":"b","p":0.25,"v":"v7","t":1699999990,"u":"u_abc"}"#
        );
    }

    #[test]
    fn other_key_is_forged() {
        let signed = token().sign(KEY);
        assert_eq!(
            DecisionToken::verify(&signed, b"another key", NOW, WINDOW),
            Err(TokenError::Forged)
        );
    }

    #[test]
    fn swapped_payload_is_forged() {
        let a = token().sign(KEY);
        let mut other = token();
        other.arm = "a".to_owned();
        let b = other.sign(KEY);
        let spliced = format!(
            "{}.{}",
            b.split('.').next().unwrap(),
            a.split('.').nth(1).unwrap()
        );
        assert_eq!(
            DecisionToken::verify(&spliced, KEY, NOW, WINDOW),
            Err(TokenError::Forged)
        );
    }

    #[test]
    fn expiry_and_skew_edges() {
        let mut t = token();
        t.issued_at = NOW - WINDOW;
        assert!(DecisionToken::verify(&t.sign(KEY), KEY, NOW, WINDOW).is_ok());
        t.issued_at = NOW - WINDOW - 1;
        assert_eq!(
            DecisionToken::verify(&t.sign(KEY), KEY, NOW, WINDOW),
            Err(TokenError::Expired { age: WINDOW + 1 })
        );
        t.issued_at = NOW + CLOCK_SKEW_SECONDS;
        assert!(DecisionToken::verify(&t.sign(KEY), KEY, NOW, WINDOW).is_ok());
        t.issued_at = NOW + CLOCK_SKEW_SECONDS + 1;
        assert_eq!(
            DecisionToken::verify(&t.sign(KEY), KEY, NOW, WINDOW),
            Err(TokenError::FromTheFuture)
        );
    }

    #[test]
    fn malformed_shapes() {
        for bad in [
            "",
            "abc",
            "a.b.c",
            ".AAAA",
            "!!!.AAAA",
            &"A".repeat(MAX_TOKEN_BYTES + 1),
        ] {
            assert!(
                matches!(
                    DecisionToken::verify(bad, KEY, NOW, WINDOW),
                    Err(TokenError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn signed_garbage_payload_is_malformed_not_accepted() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"d":"x"}"#);
        let tag = URL_SAFE_NO_PAD.encode(mac(KEY, payload.as_bytes()).finalize().into_bytes());
        assert!(matches!(
            DecisionToken::verify(&format!("{payload}.{tag}"), KEY, NOW, WINDOW),
            Err(TokenError::Malformed(_))
        ));
    }

    #[test]
    fn non_finite_propensity_never_verifies() {
        let mut t = token();
        t.propensity = f64::NAN;
        assert!(DecisionToken::verify(&t.sign(KEY), KEY, NOW, WINDOW).is_err());
    }

    fn arb_token() -> impl Strategy<Value = DecisionToken> {
        (
            "[a-zA-Z0-9_-]{1,24}",
            "[a-z0-9_.-]{1,16}",
            "[a-z0-9_.-]{1,16}",
            1u32..=1_000_000u32,
            "[ -~]{0,12}",
            0u64..(7 * 24 * 3600),
            "\\PC{0,20}",
        )
            .prop_map(|(d, e, a, p, v, age, u)| DecisionToken {
                decision_id: d,
                experiment: e,
                arm: a,
                propensity: f64::from(p) / 1_000_000.0,
                policy_version: v,
                issued_at: NOW - age,
                unit: u,
            })
    }

    proptest! {
        #[test]
        fn any_token_round_trips(t in arb_token()) {
            let signed = t.sign(KEY);
            prop_assert_eq!(DecisionToken::verify(&signed, KEY, NOW, WINDOW), Ok(t));
        }

        #[test]
        fn any_single_bit_flip_is_rejected(t in arb_token(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let mut bytes = t.sign(KEY).into_bytes();
            let i = at.index(bytes.len());
            bytes[i] ^= 1 << bit;
            // A flip into invalid UTF-8 cannot even reach `verify` as a `&str`.
            if let Ok(flipped) = String::from_utf8(bytes) {
                prop_assert!(DecisionToken::verify(&flipped, KEY, NOW, WINDOW).is_err());
            }
        }

        #[test]
        fn arbitrary_strings_never_panic(s in "\\PC{0,200}") {
            let _ = DecisionToken::verify(&s, KEY, NOW, WINDOW);
        }
    }
}
