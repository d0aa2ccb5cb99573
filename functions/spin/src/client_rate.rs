//! The short-window request rate per client on Spin: a fixed-window counter in the events Redis.
//!
//! `INCR stellwerk:rate:<client key>:<window>` is atomic, so every Spin instance sharing the Redis
//! sees one exact count per client and window (a client can still send up to twice the limit
//! across a window boundary: the windows are fixed, not sliding). The first request of a window
//! sets the key to expire after two windows. Without Redis the rate is unknown and the gate goes
//! on without it.

use spin_sdk::http::IncomingRequest;
use spin_sdk::redis::{Connection, RedisParameter};
use stellwerk_core::{ClientRate, FraudPolicy, client_rate_key, rate_limit_for};

use crate::settings::Settings;
use crate::state;

/// The header Spin puts the client's socket address in (`ip:port`).
const CLIENT_ADDRESS_HEADER: &str = "spin-client-addr";

/// Counts this request for its client when the snapshot's rate limit covers `path`.
pub fn count(
    request: &IncomingRequest,
    policy: &FraudPolicy,
    path: &str,
    settings: &Settings,
    now: u64,
) -> Option<ClientRate> {
    let limit = rate_limit_for(policy, path)?;
    let address = client_address(request)?;
    let counted = settings
        .redis_url
        .as_deref()
        .ok_or_else(|| "redis_url is not set".to_owned())
        .and_then(|url| {
            let redis = Connection::open(url).map_err(|e| format!("redis: {e}"))?;
            let key = format!(
                "stellwerk:rate:{}:{}",
                client_rate_key(&address, &settings.unit_id_key),
                limit.window(now)
            );
            let requests = redis.incr(&key).map_err(|e| format!("INCR: {e}"))?;
            if requests == 1 {
                let seconds = i64::try_from(limit.window_seconds * 2).unwrap_or(i64::MAX);
                redis
                    .execute(
                        "EXPIRE",
                        &[
                            RedisParameter::Binary(key.into_bytes()),
                            RedisParameter::Int64(seconds),
                        ],
                    )
                    .map_err(|e| format!("EXPIRE: {e}"))?;
            }
            Ok(u64::try_from(requests).unwrap_or(0))
        });
    match counted {
        Ok(requests) => Some(ClientRate::Counted(requests)),
        Err(reason) => {
            eprintln!("stellwerk: client rate not counted: {reason}");
            state::fallback("client_rate");
            None
        }
    }
}

/// The client's IP address without the port (`[v6]:port` or `v4:port`).
fn client_address(request: &IncomingRequest) -> Option<String> {
    let (_, value) = request
        .headers()
        .entries()
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(CLIENT_ADDRESS_HEADER))?;
    let text = String::from_utf8(value).ok()?;
    let host = match text.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !host.is_empty() => host,
        _ => text.as_str(),
    };
    Some(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
    )
}
