//! Stellwerk on Cloudflare Workers: the I/O around the decision core.
//!
//! This crate reads the request, loads the snapshot (through a per-isolate cache), fetches the
//! origin and streams its HTML through the core's rewriter, sends events to the queue, consumes
//! them, and syncs snapshots and models from R2 on a schedule. It makes no decision itself:
//! every decision is a call into `stellwerk-core`, marked `CORE:` where it is still to be wired.
//!
//! The modules outside `edge` are platform-free and tested natively; `edge` holds the
//! `#[event]` handlers and compiles only for `wasm32`.

pub mod admin;
pub mod bindings;
pub mod body;
pub mod cache;
pub mod status;

#[cfg(target_arch = "wasm32")]
mod edge;
