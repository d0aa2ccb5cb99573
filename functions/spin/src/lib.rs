//! Stellwerk on Fermyon Spin: the I/O around the decision core.
//!
//! One HTTP component serves every path. It reads the request, loads the snapshot and the
//! posteriors from the key-value store (through an in-instance cache), calls the core, fetches
//! the origin and streams its HTML through the core's rewriter, and adds the events to a Redis
//! stream. It makes no decision of its own: every status, header and body byte it answers with
//! comes from `stellwerk-core`, exactly as on Cloudflare Workers.
//!
//! Models named by the active pointers are fetched from the object store (plain HTTP(S), or an
//! S3-compatible bucket with SigV4) and loaded once per instance; the admin routes (behind the
//! `admin_token` variable) push snapshots, publish objects, run the verified sync and the
//! conformance vectors, as on the Worker.
//!
//! Imports: `wasi:http` (incoming and outgoing), `wasi:keyvalue/store` (snapshot, posteriors,
//! pointers), `wasi:config/store` (Spin variables), `fermyon:spin/redis` (the event stream and
//! feedback dedupe; Spin has no standard interface for it), and `wasi:cli`/`wasi:random`/
//! `wasi:clocks` through the standard library.

mod admin;
mod client_rate;
mod handler;
mod models;
mod queue;
mod settings;
mod state;
mod store;
mod sync;

pub use queue::{EVENTS_MAXLEN, EVENTS_STREAM, dedupe_redis_key};
pub use settings::Settings;
pub use state::{MODEL_POINTERS_KEY, POSTERIORS_KEY, SNAPSHOT_KEY};
