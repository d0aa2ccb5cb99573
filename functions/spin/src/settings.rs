//! Spin variables, read through `wasi:config/store` (what `spin_sdk::variables` reads too).

use spin_sdk::wit::wasi::config::store;

/// The component's settings, from the variables of `spin.toml`.
#[derive(Debug, Clone, Default)]
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
        }
    }

    /// Whether decisions can be signed and units pseudonymised.
    pub fn has_keys(&self) -> bool {
        !self.hmac_key.is_empty() && !self.unit_id_key.is_empty()
    }
}

fn get(name: &str) -> Option<String> {
    store::get(name)
        .ok()
        .flatten()
        .filter(|v| !v.trim().is_empty())
}
