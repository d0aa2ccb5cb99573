//! Runs the module's static constructors once per instance instead of on every call into wasm.
//!
//! tract registers its matmul kernels and model transforms with `inventory`, i.e. wasm
//! constructors. When nothing in the module calls `__wasm_call_ctors`, the linker treats it as a
//! run-once command and calls every constructor at the top of *every* exported function: each
//! `fetch`, each body-stream pull, each promise callback. That was ~5 ms of a page's CPU
//! (bench/RESULTS.md). Referencing `__wasm_call_ctors` here makes the linker leave the exports
//! alone; the handlers call [`run_once`] before doing anything else.

use std::cell::Cell;

unsafe extern "C" {
    /// Synthesised by the wasm linker: calls every constructor (`inventory::submit!` et al.).
    fn __wasm_call_ctors();
}

thread_local! {
    static DONE: Cell<bool> = const { Cell::new(false) };
}

/// Calls the constructors the first time a handler runs in this instance.
pub fn run_once() {
    if !DONE.with(|done| done.replace(true)) {
        // SAFETY: called once per instance, before any code that reads what they register; the
        // inventory constructors are idempotent in any case.
        unsafe { __wasm_call_ctors() }
    }
}
