//! The Worker's entry points: `fetch`, `queue` and `scheduled`.

mod access;
mod client_rate;
mod console;
mod constructors;
mod consumer;
mod control;
mod isolate;
mod ledger;
mod origin_body;
mod page;
mod sync;

use crate::bindings::DEAD_LETTER_QUEUE;
use stellwerk_core::{Route, route};
use wasm_bindgen::JsValue;
use worker::{
    Context, Env, MessageBatch, Request, Response, Result, ScheduleContext, ScheduledEvent,
    console_error, event,
};

/// Milliseconds since the epoch, from the runtime's clock.
fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// `N` random bytes from the runtime, as lowercase hex: ids and tags that only need to differ.
fn random_hex<const N: usize>() -> Result<String> {
    let mut random = [0u8; N];
    getrandom::fill(&mut random).map_err(|e| worker::Error::RustError(e.to_string()))?;
    Ok(random.iter().map(|b| format!("{b:02x}")).collect())
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    constructors::run_once();
    let now = now_ms();
    isolate::count_request();
    let path = req.path();
    let result = match route(req.method().as_ref(), &path) {
        Route::Page => page::handle(req, &env, &ctx, now).await,
        reserved => control::handle(reserved, req, &env, &ctx, now).await,
    };
    result.or_else(|error| {
        console_error!("stellwerk: {path}: {error}");
        Response::error("stellwerk: internal error", 500)
    })
}

/// Bodies are read raw (`JsValue`) and decoded per message by the consumers.
#[event(queue)]
async fn queue(batch: MessageBatch<JsValue>, env: Env, _ctx: Context) -> Result<()> {
    constructors::run_once();
    let now = now_ms();
    let queue = batch.queue();
    let result = if queue == DEAD_LETTER_QUEUE {
        consumer::dead_letters(&batch, &env, now).await
    } else {
        consumer::events(&batch, &env, now).await
    };
    // workers-rs turns an `Err` from this handler into a panic, which resets the wasm instance
    // (and this isolate's caches); ask for redelivery explicitly instead.
    if let Err(error) = result {
        console_error!("stellwerk: {queue}: batch failed, retrying: {error}");
        batch.retry_all();
    }
    Ok(())
}

#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    constructors::run_once();
    sync::run(&env, now_ms()).await;
}
