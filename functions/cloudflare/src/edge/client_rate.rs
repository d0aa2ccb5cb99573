//! The short-window request rate per client on Workers: the Rate Limiting binding.
//!
//! The binding counts per Cloudflare location, in memory there, and syncs asynchronously: it is
//! fast (no round trip to a central store on the page path) but approximate — a client spread
//! over several locations gets a counter in each, and a burst may pass a little over the limit
//! before the locations agree. It answers only over/under, with the `limit` and `period` set on
//! the binding in `wrangler.toml` (workers-rs passes no per-call limit): keep them equal to the
//! snapshot's `fraud.rateLimit`. A missing binding or a failing call leaves the rate unknown,
//! counted as a fallback, and the gate goes on without it.

use super::isolate;
use crate::bindings::RATE_LIMITER;
use stellwerk_core::{ClientRate, FraudPolicy, client_rate_key, rate_limit_for};
use worker::{Env, Request, console_error};

/// The header Cloudflare puts the client's IP address in.
const CLIENT_ADDRESS_HEADER: &str = "cf-connecting-ip";

/// Asks the binding about this request's client when the snapshot's rate limit covers `path`.
pub async fn count(
    req: &Request,
    env: &Env,
    policy: &FraudPolicy,
    path: &str,
    unit_key: &[u8],
) -> Option<ClientRate> {
    rate_limit_for(policy, path)?;
    let address = req.headers().get(CLIENT_ADDRESS_HEADER).ok().flatten()?;
    let outcome = match env.rate_limiter(RATE_LIMITER) {
        Ok(limiter) => limiter.limit(client_rate_key(&address, unit_key)).await,
        Err(error) => Err(error),
    };
    match outcome {
        Ok(outcome) => Some(ClientRate::OverLimit(!outcome.success)),
        Err(error) => {
            console_error!("stellwerk: client rate not counted: {error}");
            isolate::count_fallback("client_rate");
            None
        }
    }
}
