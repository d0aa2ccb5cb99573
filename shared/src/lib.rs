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

mod aggregate;
mod bandit;
mod event;
mod feedback;
mod flags;
mod model;
mod rewrite;
mod snapshot;
mod token;
mod validate;

pub use flags::{ErrorCode, FlagResolution, FlagSet, Reason};
pub use model::{
    FeatureSpec, Golden, Model, ModelError, ModelManifest, TensorSpec, build_features,
    canary_serves_candidate,
};
pub use snapshot::{
    Arm, Destination, Experiment, ExperimentStatus, FeedbackPolicy, FeedbackRoute, FlagEffect,
    FraudPolicy, GateMode, GateRoute, Mutation, MutationAction, Policy, PrivacyPolicy,
    SNAPSHOT_SCHEMA, Snapshot,
};
pub use validate::{Invalid, Issue};
