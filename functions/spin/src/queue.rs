//! The event stream and the feedback dedupe, on Redis through Spin's outbound Redis.
//!
//! Every event is one stream entry (`XADD stellwerk:events MAXLEN ~ 100000 * event <json>`),
//! read by `stellwerk aggregate` with a consumer group. `MAXLEN ~` bounds the stream's memory:
//! Redis trims whole nodes once the stream holds about [`EVENTS_MAXLEN`] entries, so an
//! aggregator that falls that far behind loses the oldest unread events (its lag is visible in
//! `XINFO GROUPS`).

use spin_sdk::redis::{Connection, RedisParameter, RedisResult};
use stellwerk_core::DEDUPE_HORIZON_SECONDS;

/// The stream every edge adds its events to.
pub const EVENTS_STREAM: &str = "stellwerk:events";
/// About how many entries the stream keeps (`MAXLEN ~`).
pub const EVENTS_MAXLEN: i64 = 100_000;
/// Where `stellwerk aggregate` moves entries that are not events.
pub const DEAD_LETTER_STREAM: &str = "stellwerk:events:dead";
/// The field of a stream entry that holds the event's JSON.
pub const EVENT_FIELD: &str = "event";

/// The Redis key that marks a feedback dedupe key as seen.
pub fn dedupe_redis_key(dedupe_key: &str) -> String {
    format!("stellwerk:feedback:{dedupe_key}")
}

/// An open connection to the events Redis.
pub struct Queue(Connection);

fn text(s: &str) -> RedisParameter {
    RedisParameter::Binary(s.as_bytes().to_vec())
}

impl Queue {
    pub fn open(url: &str) -> Result<Queue, String> {
        Connection::open(url)
            .map(Queue)
            .map_err(|e| format!("redis: {e}"))
    }

    /// Adds each message to the stream, in order.
    pub fn send(&self, messages: &[String]) -> Result<(), String> {
        for message in messages {
            self.0
                .execute(
                    "XADD",
                    &[
                        text(EVENTS_STREAM),
                        text("MAXLEN"),
                        text("~"),
                        RedisParameter::Int64(EVENTS_MAXLEN),
                        text("*"),
                        text(EVENT_FIELD),
                        text(message),
                    ],
                )
                .map_err(|e| format!("XADD: {e}"))?;
        }
        Ok(())
    }

    /// Marks a feedback as seen; `false` when it was seen before. `SET NX EX` is atomic, so two
    /// edges receiving the same beacon at once cannot both count it.
    pub fn first_feedback(&self, dedupe_key: &str) -> Result<bool, String> {
        let reply = self
            .0
            .execute(
                "SET",
                &[
                    text(&dedupe_redis_key(dedupe_key)),
                    text("1"),
                    text("NX"),
                    text("EX"),
                    RedisParameter::Int64(DEDUPE_HORIZON_SECONDS as i64),
                ],
            )
            .map_err(|e| format!("SET: {e}"))?;
        Ok(!matches!(reply.as_slice(), [] | [RedisResult::Nil]))
    }

    /// How many entries a stream holds (`XLEN`).
    pub fn length(&self, stream: &str) -> Result<i64, String> {
        match self.0.execute("XLEN", &[text(stream)]) {
            Ok(reply) => match reply.as_slice() {
                [RedisResult::Int64(n)] => Ok(*n),
                other => Err(format!("XLEN: unexpected reply {other:?}")),
            },
            Err(e) => Err(format!("XLEN: {e}")),
        }
    }

    /// Forgets a feedback whose event could not be queued, so the beacon's retry counts.
    pub fn forget_feedback(&self, dedupe_key: &str) {
        let _ = self.0.del(&[dedupe_redis_key(dedupe_key)]);
    }
}
