//! Stellwerk's decision core.
//!
//! It decides, per request, what an edge node does: whether the request looks automated, which
//! flag variants and experiment arms the visitor gets (with the probability each was chosen),
//! how the origin's HTML is rewritten for them, whether a feedback beacon is genuine, and how a
//! batch of events moves the bandits' posteriors.
//!
//! It is sans-IO: no networking, no clock, no random source and no platform API. Time,
//! randomness, request facts, the snapshot and model bytes come in as arguments; decisions,
//! rewritten bytes and the events to emit go out as values, and the platform crates in
//! `functions/` perform the effects. Given the same inputs it returns the same outputs on every
//! edge.

mod access;
mod admin_api;
mod admin_auth;
mod aggregate;
mod bandit;
mod client_rate;
pub mod conformance;
mod console;
mod contextual;
mod decide;
mod edge;
mod event;
mod feedback;
mod flags;
mod fraud;
mod gate;
mod history;
pub mod jsonlogic;
mod model;
mod onnx_ops;
mod ope;
mod request;
pub mod s3;
mod snapshot;
mod sync;
mod token;
mod training;
mod validate;

pub use access::{
    ACCESS_JWT_HEADER, AccessAssertion, AccessConfig, check_access_token, signing_key,
};
pub use admin_api::{
    ADMIN_API_PREFIX, AUDIT_PREFIX, AdminCall, AuditEntry, CREDIBLE_LEVEL, Change, EditOutcome,
    ExperimentChange, FlagChange, MODELS_PREFIX, RollbackOutcome, SnapshotEdit, admin_call,
    apply_edit, credible_interval, etag, expected_version, experiment_report, experiments_view,
    flags_view, models_view, next_version, rollback_model, stale_version, view, write_accepted,
};
pub use admin_auth::{
    CONSOLE_PATH, SESSION_COOKIE, SESSION_SECONDS, admin_identity, login_accepted, session_cookie,
    session_cookie_cleared, valid_login_name,
};
pub use aggregate::{
    ApplyReport, DEDUPE_HORIZON_SECONDS, ExperimentPosterior, MAX_APPLIED, PosteriorSnapshot,
    apply_events,
};
pub use bandit::{ArmStats, THOMPSON_DRAWS, arm_probabilities, choose_arm};
pub use client_rate::{
    ClientRate, RATE_WINDOWS_SECONDS, RateLimit, client_rate_key, rate_limit_for,
};
pub use console::{
    ChartLibrary, ConsoleAsset, ConsoleRoute, console_page, console_route, login, login_page,
    logout, unauthorized, whoami,
};
pub use contextual::{
    ARM_OUTPUT_PREFIX, ArmDraw, ContextualChoice, ContextualPolicy, DEFAULT_CONTEXT_PRECISION,
    Exploration, Fallback, LinearArm, contextual_choice, linear_features, linear_thompson_choice,
    normal_best_probabilities, normal_best_probability, reward_model_choice,
};
pub use decide::{Assignment, DecideInput, Keys, LoadedModel, PageDecision, decide};
pub use edge::{
    BEACON_JS, BEACON_PATH, EdgeCounters, EdgeResponse, FeedbackOutcome, OBJECTS_PREFIX,
    ORIGIN_REQUEST_HEADERS, RESERVED_PREFIX, Route, duplicate_feedback, feedback,
    feedback_accepted, feedback_scored, feedback_unavailable, gate_response, health_json,
    object_key, origin_request_headers, origin_url, page_headers, queue_messages,
    reserved_route_error, route, snapshot_pushed, unit_cookie,
};
pub use event::{ConsentState, Event, EventKind, contains_ip_address};
pub use feedback::{AcceptedFeedback, FeedbackRejection, accept_feedback, dedupe_key};
pub use flags::{ErrorCode, FlagResolution, FlagSet, Reason, ValueType};
pub use fraud::{
    FRAUD_FEATURE_WIDTH, contributions, feature_context, feature_names, feature_spec,
    is_fraud_model, model_score, request_features,
};
pub use gate::{GateAction, GateVerdict, fraud_model, gate};
pub use history::{HistoryPoint, MAX_HISTORY_POINTS, traffic_shares};
pub use model::{
    FeatureSpec, Golden, Model, ModelError, ModelManifest, TensorSpec, build_features,
    canary_serves_candidate,
};
pub use onnx_ops::supported_onnx_operators;
pub use ope::{
    ArmDistribution, ContextualSnapshotPolicy, Diagnostics, Estimate, IntervalMethod, OpeReport,
    ScoredRow, ScoredRows, SnapshotPolicy, SplitMix64, TargetPolicy, UniformPolicy,
    cross_fitted_means, evaluate, model_estimates, normal_quantile, score_rows,
};
pub use request::{
    PlatformFacts, RequestFacts, UNIT_COOKIE, device_class, hour_of_week, is_valid_unit_id,
    new_unit_id, pseudonymise, referrer_class,
};
pub use snapshot::{
    Arm, ChallengePage, Destination, Experiment, ExperimentStatus, FeedbackPolicy, FeedbackRoute,
    FlagEffect, FraudPolicy, GateMode, GateRoute, GoodBot, Mutation, MutationAction, Policy,
    PrivacyPolicy, SNAPSHOT_SCHEMA, Snapshot,
};
pub use stellwerk_rewrite::{
    MAX_REWRITER_MEMORY, PageInjection, PageRewriter, RewriteError, RewriteSummary, charset_of,
    csp_nonce, is_html,
};
pub use sync::{
    ActivePointers, MANIFEST_KEY, ModelObjects, ModelPointer, ModelPointers, ModelRelease,
    ObjectRef, Refusal, SnapshotPointer, SyncManifest, SyncOutcome, SyncStep, sha256_hex,
    sync_step, verify_model, verify_snapshot,
};
pub use token::{CLOCK_SKEW_SECONDS, DecisionToken, MAX_TOKEN_BYTES, TokenError};
pub use training::{
    JOIN_MEMORY_SECONDS, JoinState, PendingRow, TRAINING_PREFIX, TrainingBatch, TrainingRow,
    close_buckets, first_open_bucket, hour_partition, join_batch, join_bucket, join_bucket_seconds,
    learn_linear, training_batches,
};
pub use validate::{Invalid, Issue};
