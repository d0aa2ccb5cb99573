//! Cloudflare Access as a way into the console: the core checks the token's header and claims;
//! this module fetches Access's signing keys (cached per isolate) and verifies the RSA signature
//! with the runtime's WebCrypto, so no RSA code ships in the wasm.

use std::cell::RefCell;

use crate::bindings::vars;
use serde_json::Value;
use stellwerk_core::{ACCESS_JWT_HEADER, AccessConfig, check_access_token, signing_key};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use worker::{Env, Fetch, Request, Url, console_warn, web_sys};

/// How long fetched keys are used before they are fetched again.
const KEYS_TTL_MS: f64 = 600_000.0;
/// A token naming a key we do not have refetches the keys (Access rotates them), but at most
/// this often, so made-up key ids cannot turn every request into a fetch.
const REFETCH_FLOOR_MS: f64 = 5_000.0;
const RSA_PKCS1: &str = "RSASSA-PKCS1-v1_5";

struct CachedKeys {
    url: String,
    jwks: Value,
    fetched_ms: f64,
}

thread_local! {
    static KEYS: RefCell<Option<CachedKeys>> = const { RefCell::new(None) };
}

/// `access:<email>` when Access is configured (`ACCESS_TEAM_DOMAIN`, `ACCESS_AUD`) and the
/// request carries a valid Access token; `None` otherwise, with the reason logged.
pub async fn identity(req: &Request, env: &Env, now_ms: f64) -> Option<String> {
    let var = |name| env.var(name).map(|v| v.to_string()).unwrap_or_default();
    let (team_domain, audience) = (var(vars::ACCESS_TEAM_DOMAIN), var(vars::ACCESS_AUD));
    let config = AccessConfig {
        team_domain: &team_domain,
        audience: &audience,
    };
    if !config.is_configured() {
        return None;
    }
    let token = req.headers().get(ACCESS_JWT_HEADER).ok()??;
    let verified = async {
        let assertion = check_access_token(&token, &config, (now_ms / 1000.0) as u64)?;
        let key = key(config.certs_url(), &assertion.kid, now_ms).await?;
        if verify(
            &key,
            &assertion.signature,
            assertion.signing_input.as_bytes(),
        )
        .await?
        {
            Ok(assertion.identity)
        } else {
            Err("signature does not verify".to_owned())
        }
    };
    verified
        .await
        .inspect_err(|reason| console_warn!("stellwerk: Access token refused: {reason}"))
        .ok()
}

/// The JWK named `kid`, from the isolate's cache or freshly fetched. When the fetch fails, keys
/// fetched earlier keep serving: Access overlaps its key rotations by weeks.
async fn key(url: String, kid: &str, now_ms: f64) -> Result<Value, String> {
    let cached = KEYS.with_borrow(|cache| {
        cache
            .as_ref()
            .filter(|c| c.url == url)
            .map(|c| (signing_key(&c.jwks, kid).cloned(), now_ms - c.fetched_ms))
    });
    match &cached {
        Some((Some(key), age)) if *age < KEYS_TTL_MS => return Ok(key.clone()),
        Some((None, age)) if *age < REFETCH_FLOOR_MS => return Err(format!("no key {kid:?}")),
        _ => {}
    }
    match fetch_keys(&url).await {
        Ok(jwks) => {
            let key = signing_key(&jwks, kid).cloned();
            KEYS.set(Some(CachedKeys {
                url,
                jwks,
                fetched_ms: now_ms,
            }));
            key.ok_or_else(|| format!("no key {kid:?} at the team domain"))
        }
        Err(error) => cached
            .and_then(|(key, _)| key)
            .ok_or_else(|| format!("keys unavailable: {error}")),
    }
}

async fn fetch_keys(url: &str) -> Result<Value, String> {
    let url = Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
    let mut response = Fetch::Url(url).send().await.map_err(|e| e.to_string())?;
    if response.status_code() != 200 {
        return Err(format!("keys answered {}", response.status_code()));
    }
    response.json().await.map_err(|e| e.to_string())
}

/// RS256 verification with WebCrypto.
async fn verify(jwk: &Value, signature: &[u8], signed: &[u8]) -> Result<bool, String> {
    let js = |e: JsValue| format!("WebCrypto: {e:?}");
    let crypto = js_sys::Reflect::get(&js_sys::global(), &"crypto".into()).map_err(js)?;
    let subtle: web_sys::SubtleCrypto = js_sys::Reflect::get(&crypto, &"subtle".into())
        .map_err(js)?
        .unchecked_into();
    let key_data: js_sys::Object = js_sys::JSON::parse(&jwk.to_string())
        .map_err(js)?
        .unchecked_into();
    let algorithm = js_sys::Object::new();
    js_sys::Reflect::set(&algorithm, &"name".into(), &RSA_PKCS1.into()).map_err(js)?;
    js_sys::Reflect::set(&algorithm, &"hash".into(), &"SHA-256".into()).map_err(js)?;
    let usages = js_sys::Array::of1(&"verify".into());
    let import = subtle
        .import_key_with_object("jwk", &key_data, &algorithm, false, &usages)
        .map_err(js)?;
    let key: web_sys::CryptoKey = JsFuture::from(import).await.map_err(js)?.unchecked_into();
    let check = subtle
        .verify_with_str_and_u8_array_and_u8_array(RSA_PKCS1, &key, signature, signed)
        .map_err(js)?;
    Ok(JsFuture::from(check).await.map_err(js)?.as_bool() == Some(true))
}
