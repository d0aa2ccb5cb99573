//! Cloudflare Access in front of the console: Access signs a JWT (RS256) for every request it lets
//! through and sends it in `Cf-Access-Jwt-Assertion`; its public keys are a JWKS at
//! `<team domain>/cdn-cgi/access/certs`. The core checks the token's header and claims and picks
//! the key by `kid`; the platform verifies the RSA signature with its own crypto (WebCrypto on
//! Workers), so no RSA code ships in the wasm. Time comes in as an argument.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::Value;

/// The request header Access puts its token in.
pub const ACCESS_JWT_HEADER: &str = "cf-access-jwt-assertion";

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_SECONDS: u64 = 60;

/// Which Access application the edge sits behind.
#[derive(Debug, Clone, Copy)]
pub struct AccessConfig<'a> {
    /// `https://<team>.cloudflareaccess.com`: the tokens' issuer and where the keys are.
    pub team_domain: &'a str,
    /// The application's audience tag (AUD).
    pub audience: &'a str,
}

impl AccessConfig<'_> {
    /// Configured only when both values are set.
    pub fn is_configured(&self) -> bool {
        !self.team_domain.trim().is_empty() && !self.audience.trim().is_empty()
    }

    fn issuer(&self) -> &str {
        self.team_domain.trim().trim_end_matches('/')
    }

    /// Where Access publishes its signing keys (JWKS).
    pub fn certs_url(&self) -> String {
        format!("{}/cdn-cgi/access/certs", self.issuer())
    }
}

/// A token whose header and claims passed; it authenticates only once the platform has verified
/// `signature` over `signing_input` (RSASSA-PKCS1-v1_5, SHA-256) with the key named `kid`.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessAssertion {
    pub kid: String,
    pub signing_input: String,
    pub signature: Vec<u8>,
    /// For the audit log: `access:<email>`, or `access:<client id>` for a service token.
    pub identity: String,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    aud: Audience,
    iss: Option<String>,
    exp: Option<u64>,
    nbf: Option<u64>,
    email: Option<String>,
    common_name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
    #[default]
    Missing,
}

impl Audience {
    fn contains(&self, audience: &str) -> bool {
        match self {
            Audience::One(a) => a == audience,
            Audience::Many(all) => all.iter().any(|a| a == audience),
            Audience::Missing => false,
        }
    }
}

/// Checks everything about an Access token but its signature; `Err` says why it is refused.
pub fn check_access_token(
    token: &str,
    config: &AccessConfig<'_>,
    now: u64,
) -> Result<AccessAssertion, String> {
    let mut parts = token.trim().split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a JWT (header.payload.signature)".into());
    };
    let decode = |part: &str, what: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|e| format!("{what}: not base64url: {e}"))
    };
    let parsed: Header =
        serde_json::from_slice(&decode(header, "header")?).map_err(|e| format!("header: {e}"))?;
    // Only what Access signs with: `none` or an HMAC algorithm would let anyone mint tokens.
    if parsed.alg != "RS256" {
        return Err(format!("alg {:?} is not RS256", parsed.alg));
    }
    let kid = parsed.kid.ok_or("header: no kid")?;
    let claims: Claims =
        serde_json::from_slice(&decode(payload, "payload")?).map_err(|e| format!("claims: {e}"))?;
    if !claims.aud.contains(config.audience.trim()) {
        return Err("aud does not name this application".into());
    }
    if claims.iss.as_deref().map(|i| i.trim_end_matches('/')) != Some(config.issuer()) {
        return Err(format!("iss {:?} is not the team domain", claims.iss));
    }
    match claims.exp {
        Some(exp) if exp + LEEWAY_SECONDS > now => {}
        Some(_) => return Err("expired".into()),
        None => return Err("no exp".into()),
    }
    if claims.nbf.is_some_and(|nbf| nbf > now + LEEWAY_SECONDS) {
        return Err("not valid yet (nbf)".into());
    }
    let who = claims
        .email
        .or(claims.common_name)
        .filter(|w| !w.is_empty() && w.len() <= 256)
        .ok_or("neither email nor common_name")?;
    Ok(AccessAssertion {
        kid,
        signing_input: format!("{header}.{payload}"),
        signature: decode(signature, "signature")?,
        identity: format!("access:{who}"),
    })
}

/// The RSA signing key named `kid` in an Access JWKS (`{"keys": [...]}`), as a JWK to import.
pub fn signing_key<'j>(jwks: &'j Value, kid: &str) -> Option<&'j Value> {
    jwks.get("keys")?.as_array()?.iter().find(|key| {
        key.get("kid").and_then(Value::as_str) == Some(kid)
            && key.get("kty").and_then(Value::as_str) == Some("RSA")
            && key.get("n").is_some_and(Value::is_string)
            && key.get("e").is_some_and(Value::is_string)
            && key.get("use").and_then(Value::as_str).unwrap_or("sig") == "sig"
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TEAM: &str = "https://acme.cloudflareaccess.com";
    const AUD: &str = "4714c1358e65fe4b408ad6d432a5f878f08194bdb4752441fd56faefa9b2b6f2";
    const NOW: u64 = 1_800_000_000;

    fn config() -> AccessConfig<'static> {
        AccessConfig {
            team_domain: TEAM,
            audience: AUD,
        }
    }

    fn token(header: Value, claims: Value) -> String {
        let part = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.{}",
            part(header),
            part(claims),
            URL_SAFE_NO_PAD.encode(b"sig")
        )
    }

    fn claims() -> Value {
        json!({ "aud": [AUD], "iss": TEAM, "exp": NOW + 600, "nbf": NOW - 10, "email": "ada@example.com" })
    }

    fn rs256() -> Value {
        json!({ "alg": "RS256", "kid": "k1" })
    }

    #[test]
    fn a_well_formed_token_names_its_key_user_and_signed_bytes() {
        let jwt = token(rs256(), claims());
        let assertion = check_access_token(&jwt, &config(), NOW).unwrap();
        assert_eq!(assertion.kid, "k1");
        assert_eq!(assertion.identity, "access:ada@example.com");
        assert_eq!(assertion.signature, b"sig");
        assert_eq!(
            assertion.signing_input,
            jwt.rsplit_once('.').unwrap().0,
            "the signature covers header.payload as sent"
        );
        // A service token has a common_name instead of an email; a trailing slash is the same issuer.
        let mut service = claims();
        service["email"] = Value::Null;
        service["common_name"] = json!("abc.access");
        service["iss"] = json!(format!("{TEAM}/"));
        let assertion = check_access_token(&token(rs256(), service), &config(), NOW).unwrap();
        assert_eq!(assertion.identity, "access:abc.access");
    }

    #[test]
    fn refuses_wrong_algorithm_audience_issuer_or_time() {
        let refused = |header: Value, claims: Value| {
            check_access_token(&token(header, claims), &config(), NOW).unwrap_err()
        };
        assert!(refused(json!({ "alg": "none", "kid": "k1" }), claims()).contains("RS256"));
        assert!(refused(json!({ "alg": "HS256", "kid": "k1" }), claims()).contains("RS256"));
        assert!(refused(json!({ "alg": "RS256" }), claims()).contains("kid"));
        let with = |key: &str, value: Value| {
            let mut c = claims();
            c[key] = value;
            c
        };
        assert!(refused(rs256(), with("aud", json!(["other"]))).contains("aud"));
        assert!(refused(rs256(), with("aud", json!(AUD.to_uppercase()))).contains("aud"));
        assert!(
            refused(
                rs256(),
                with("iss", json!("https://evil.cloudflareaccess.com"))
            )
            .contains("iss")
        );
        assert!(refused(rs256(), with("exp", json!(NOW - LEEWAY_SECONDS))).contains("expired"));
        assert!(refused(rs256(), with("exp", Value::Null)).contains("exp"));
        assert!(refused(rs256(), with("nbf", json!(NOW + 3600))).contains("nbf"));
        assert!(refused(rs256(), with("email", Value::Null)).contains("email"));
        // A single audience string is accepted too.
        assert!(
            check_access_token(&token(rs256(), with("aud", json!(AUD))), &config(), NOW).is_ok()
        );
        for garbage in ["", "a.b", "a.b.c.d", "!!.!!.!!"] {
            assert!(
                check_access_token(garbage, &config(), NOW).is_err(),
                "{garbage}"
            );
        }
    }

    #[test]
    fn the_key_is_found_by_kid_among_rsa_signing_keys() {
        let jwks = json!({ "keys": [
            { "kid": "k0", "kty": "RSA", "n": "AQAB", "e": "AQAB" },
            { "kid": "k1", "kty": "EC", "x": "..", "y": ".." },
            { "kid": "k1", "kty": "RSA", "n": "AQAB", "e": "AQAB", "use": "enc" },
            { "kid": "k1", "kty": "RSA", "n": "AQAB", "e": "AQAB", "alg": "RS256" }
        ]});
        let key = signing_key(&jwks, "k1").unwrap();
        assert_eq!(key["alg"], "RS256");
        assert!(signing_key(&jwks, "k2").is_none());
        assert!(signing_key(&json!({}), "k1").is_none());
    }

    #[test]
    fn configured_only_with_both_values() {
        assert!(config().is_configured());
        assert_eq!(config().certs_url(), format!("{TEAM}/cdn-cgi/access/certs"));
        let without_aud = AccessConfig {
            team_domain: TEAM,
            audience: " ",
        };
        assert!(!without_aud.is_configured());
    }
}
