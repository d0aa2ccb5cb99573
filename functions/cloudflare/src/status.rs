//! Progress records the queue consumers and the scheduled sync keep in KV, so an operator (and
//! the end-to-end tests) can see what the background parts of the Worker have done.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};

/// How many recent event ids (and dead letters) a record keeps.
pub const RECENT: usize = 50;

/// The fields the consumer needs from a queued event. Placeholder for the core's event
/// envelope, which lands with `stellwerk_core::aggregate`; unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct QueuedEvent {
    /// Idempotency key.
    pub id: String,
    /// exposure, click, conversion, fraud…
    #[serde(rename = "type")]
    pub kind: String,
}

/// What the events consumer has handled since the KV namespace was created.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ConsumerStatus {
    /// Batches that were processed and acknowledged.
    pub batches: u64,
    /// Events acknowledged.
    pub events: u64,
    /// Events per type.
    pub by_type: BTreeMap<String, u64>,
    /// Ids of the most recent events, oldest first.
    pub recent_ids: VecDeque<String>,
    /// Size of the last batch delivered (accepted and rejected).
    pub last_batch_size: usize,
    /// Time the last batch was recorded (ms since the epoch).
    pub last_batch_at_ms: f64,
    /// Messages marked for retry because they were not events.
    pub rejected: u64,
}

impl ConsumerStatus {
    /// Counts one delivered batch: `accepted` events were acknowledged, `rejected` messages
    /// were sent back for retry.
    pub fn record(&mut self, accepted: &[QueuedEvent], rejected: usize, now_ms: f64) {
        self.batches += 1;
        self.events += accepted.len() as u64;
        self.rejected += rejected as u64;
        self.last_batch_size = accepted.len() + rejected;
        self.last_batch_at_ms = now_ms;
        for event in accepted {
            *self.by_type.entry(event.kind.clone()).or_default() += 1;
            push_bounded(&mut self.recent_ids, event.id.clone());
        }
    }
}

/// Messages that exhausted their retries and arrived on the dead-letter queue.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct DeadLetterStatus {
    /// Dead letters received.
    pub messages: u64,
    /// The most recent dead letters' bodies, oldest first.
    pub recent: VecDeque<Value>,
    /// Time the last dead letter was recorded (ms since the epoch).
    pub last_at_ms: f64,
}

impl DeadLetterStatus {
    /// Records the bodies of one batch of dead letters.
    pub fn record(&mut self, bodies: Vec<Value>, now_ms: f64) {
        self.messages += bodies.len() as u64;
        self.last_at_ms = now_ms;
        for body in bodies {
            push_bounded(&mut self.recent, body);
        }
    }
}

/// What the last scheduled sync found and did.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct SyncStatus {
    /// The cron expression that fired.
    pub cron: String,
    /// The time the run was scheduled for (ms since the epoch).
    pub scheduled_time_ms: f64,
    /// The object key read from the bucket.
    pub object: String,
    /// `activated`, `missing` or `failed`.
    pub outcome: String,
    /// The object's etag, when it was found.
    pub etag: Option<String>,
    /// The object's size in bytes, when it was found.
    pub bytes: Option<u64>,
    /// Why the run failed, when it did.
    pub reason: Option<String>,
}

fn push_bounded<T>(queue: &mut VecDeque<T>, item: T) {
    if queue.len() == RECENT {
        queue.pop_front();
    }
    queue.push_back(item);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(id: &str, kind: &str) -> QueuedEvent {
        QueuedEvent {
            id: id.into(),
            kind: kind.into(),
        }
    }

    #[test]
    fn a_batch_adds_counts_per_type_and_recent_ids() {
        let mut status = ConsumerStatus::default();
        status.record(&[event("e1", "exposure"), event("e2", "click")], 1, 5.0);
        status.record(&[event("e3", "exposure")], 0, 9.0);
        assert_eq!(status.batches, 2);
        assert_eq!(status.events, 3);
        assert_eq!(status.rejected, 1);
        assert_eq!(status.by_type.get("exposure"), Some(&2));
        assert_eq!(status.by_type.get("click"), Some(&1));
        assert_eq!(status.recent_ids, ["e1", "e2", "e3"]);
        assert_eq!(status.last_batch_size, 1);
        assert_eq!(status.last_batch_at_ms, 9.0);
    }

    #[test]
    fn recent_ids_keep_only_the_newest() {
        let mut status = ConsumerStatus::default();
        let events: Vec<_> = (0..RECENT + 3)
            .map(|i| event(&format!("e{i}"), "exposure"))
            .collect();
        status.record(&events, 0, 0.0);
        assert_eq!(status.recent_ids.len(), RECENT);
        assert_eq!(status.recent_ids.front().map(String::as_str), Some("e3"));
        assert_eq!(
            status.recent_ids.back().map(String::as_str),
            Some(format!("e{}", RECENT + 2).as_str())
        );
    }

    #[test]
    fn an_event_needs_an_id_and_a_type_and_ignores_the_rest() {
        let parsed: QueuedEvent =
            serde_json::from_value(json!({"id": "e1", "type": "click", "arm": "b"}))
                .expect("valid");
        assert_eq!(parsed, event("e1", "click"));
        assert!(serde_json::from_value::<QueuedEvent>(json!({"type": "click"})).is_err());
        assert!(serde_json::from_value::<QueuedEvent>(json!("click")).is_err());
    }

    #[test]
    fn dead_letters_are_counted_and_kept() {
        let mut status = DeadLetterStatus::default();
        status.record(vec![json!({"type": "click"}), json!(42)], 3.0);
        assert_eq!(status.messages, 2);
        assert_eq!(status.recent, [json!({"type": "click"}), json!(42)]);
    }

    #[test]
    fn records_survive_a_json_round_trip() {
        let mut status = ConsumerStatus::default();
        status.record(&[event("e1", "exposure")], 0, 1.0);
        let text = serde_json::to_string(&status).expect("serialises");
        assert_eq!(
            serde_json::from_str::<ConsumerStatus>(&text).expect("parses"),
            status
        );
    }
}
