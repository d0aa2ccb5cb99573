//! Names shared with `wrangler.toml`: bindings, variables, secrets and KV keys. A rename here
//! needs the same rename there.

/// Workers KV: the active snapshot, posteriors, model pointers and progress records.
pub const KV: &str = "STELLWERK_KV";
/// R2: model files and published snapshots.
pub const MODELS: &str = "STELLWERK_MODELS";
/// Queue producer for exposures, feedback and fraud verdicts.
pub const EVENTS: &str = "STELLWERK_EVENTS";
/// Rate Limiting: the short-window request count per client (`fraud.rateLimit`).
pub const RATE_LIMITER: &str = "STELLWERK_RATE";
/// The queue where events land after `max_retries` failed deliveries.
pub const DEAD_LETTER_QUEUE: &str = "stellwerk-events-dlq";

/// Plain-text variables (`[vars]`).
pub mod vars {
    /// Base URL of the site the Worker fronts.
    pub const ORIGIN_URL: &str = "ORIGIN_URL";
    /// How long an isolate serves a snapshot before reading KV again, in milliseconds.
    pub const SNAPSHOT_TTL_MS: &str = "SNAPSHOT_TTL_MS";
    /// How long an exposure waits for feedback before it is written as a training row, in seconds.
    pub const TRAINING_JOIN_SECONDS: &str = "TRAINING_JOIN_SECONDS";
    /// Cloudflare Access team domain (`https://<team>.cloudflareaccess.com`); with
    /// [`ACCESS_AUD`] set too, a valid Access token opens the console.
    pub const ACCESS_TEAM_DOMAIN: &str = "ACCESS_TEAM_DOMAIN";
    /// The Access application's audience tag.
    pub const ACCESS_AUD: &str = "ACCESS_AUD";
}

/// Secrets (`wrangler secret put`; `.dev.vars` locally).
pub mod secrets {
    /// Signs decision tokens.
    pub const HMAC_KEY: &str = "HMAC_KEY";
    /// Bearer token of the control routes.
    pub const ADMIN_TOKEN: &str = "ADMIN_TOKEN";
    /// Keys the pseudonymous unit id derived for each visitor.
    pub const UNIT_ID_KEY: &str = "UNIT_ID_KEY";
}

/// Keys in the KV namespace.
pub mod keys {
    /// The snapshot every edge decides with.
    pub const SNAPSHOT: &str = "snapshot:active";
    /// The bandits' posteriors as the edge reads them, published by the events consumer.
    pub const POSTERIORS: &str = "posteriors:active";
    /// The events consumer's own copy of the posteriors, with the ids it applied (most of its
    /// size, which no page needs to parse).
    pub const POSTERIORS_STATE: &str = "posteriors:state";
    /// Which model versions are active, written by the sync.
    pub const MODEL_POINTERS: &str = "models:active";
    /// [`crate::status::ConsumerStatus`].
    pub const CONSUMER_STATUS: &str = "status:events";
    /// [`crate::status::DeadLetterStatus`].
    pub const DEAD_LETTER_STATUS: &str = "status:dead-letters";
    /// The training-row join's rewards between batches (`stellwerk_core::JoinState`).
    pub const TRAINING_JOIN: &str = "training:join";
    /// Prefix of the join's exposure segments: `training:exposures:<bucket start>:<tag>`, one
    /// per batch and bucket, deleted once the bucket closed.
    pub const JOIN_SEGMENT_PREFIX: &str = "training:exposures:";
    /// A random tag the events consumer writes before its state (posteriors state and join): an
    /// isolate holding the state it wrote under the tag KV still carries need not read and parse
    /// that (large) state again.
    pub const CONSUMER_STATE_TAG: &str = "consumer:state:tag";
    /// Prefix of the feedback dedupe keys (expire after the attribution window).
    pub const DEDUPE_PREFIX: &str = "dedupe:";
}

/// Used when `TRAINING_JOIN_SECONDS` is unset or not a number.
pub const DEFAULT_TRAINING_JOIN_SECONDS: u64 = 1800;

/// Used when `SNAPSHOT_TTL_MS` is unset or not a number.
pub const DEFAULT_SNAPSHOT_TTL_MS: f64 = 30_000.0;
