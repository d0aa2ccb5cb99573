//! Spin variables, read through `wasi:config/store` (what `spin_sdk::variables` reads too).

use spin_sdk::wit::wasi::config::store;
use stellwerk_core::s3::{ObjectStore, S3Credentials};

/// The component's settings, from the variables of `spin.toml`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Base URL of the site Stellwerk fronts (`origin_url`).
    pub origin_url: String,
    /// Signs decision tokens (`hmac_key`, secret).
    pub hmac_key: Vec<u8>,
    /// Keys the pseudonymous unit ids (`unit_id_key`, secret).
    pub unit_id_key: Vec<u8>,
    /// The Redis holding the event stream (`redis_url`, secret: it may carry a password).
    pub redis_url: Option<String>,
    /// How long an instance serves what it read from the key-value store (`cache_ttl_ms`).
    pub cache_ttl_ms: u64,
    /// Bearer token of the admin routes (`admin_token`, secret); empty disables them.
    pub admin_token: String,
    /// Where models (and the sync's objects) are read: `object_store_url` (`scheme://host[:port]`,
    /// also the entry of `allowed_outbound_hosts`) and `object_store_prefix`, signed with SigV4
    /// when `object_store_access_key_id` and `object_store_secret_access_key` are set.
    pub object_store: Result<ObjectStore, String>,
}

/// Used when `cache_ttl_ms` is unset or not a number.
pub const DEFAULT_CACHE_TTL_MS: u64 = 5_000;

impl Settings {
    /// Reads every variable; an unset or unreadable one is empty (callers then fail open).
    pub fn read() -> Settings {
        Settings {
            origin_url: get("origin_url").unwrap_or_default(),
            hmac_key: get("hmac_key").unwrap_or_default().into_bytes(),
            unit_id_key: get("unit_id_key").unwrap_or_default().into_bytes(),
            redis_url: get("redis_url"),
            cache_ttl_ms: get("cache_ttl_ms")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(DEFAULT_CACHE_TTL_MS),
            admin_token: get("admin_token").unwrap_or_default(),
            object_store: object_store(),
        }
    }

    /// Whether decisions can be signed and units pseudonymised.
    pub fn has_keys(&self) -> bool {
        !self.hmac_key.is_empty() && !self.unit_id_key.is_empty()
    }
}

fn object_store() -> Result<ObjectStore, String> {
    let url = get("object_store_url").ok_or("object_store_url is not set")?;
    let prefix = get("object_store_prefix").unwrap_or_default();
    let credentials = match (
        get("object_store_access_key_id"),
        get("object_store_secret_access_key"),
    ) {
        (Some(access_key_id), Some(secret_access_key)) => Some(S3Credentials {
            access_key_id,
            secret_access_key,
            region: get("object_store_region").unwrap_or_else(|| "us-east-1".into()),
            session_token: None,
        }),
        (None, None) => None,
        _ => return Err("set both object store access keys, or neither".into()),
    };
    let base = format!(
        "{}/{}",
        url.trim_end_matches('/'),
        prefix.trim_start_matches('/')
    );
    ObjectStore::new(&base, credentials)
}

fn get(name: &str) -> Option<String> {
    store::get(name)
        .ok()
        .flatten()
        .filter(|v| !v.trim().is_empty())
}
