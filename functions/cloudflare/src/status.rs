//! Progress records the queue consumers and the scheduled sync keep in KV, so an operator (and
//! the end-to-end tests) can see what the background parts of the Worker have done.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use stellwerk_core::{ApplyReport, Event};

/// How many recent event ids (and dead letters) a record keeps.
pub const RECENT: usize = 50;

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
    /// Events that changed the posteriors.
    pub applied: u64,
    /// Events already applied before (redeliveries).
    pub duplicates: u64,
    /// Events held apart as suspected fraud.
    pub quarantined: u64,
}

impl ConsumerStatus {
    /// Counts one delivered batch: `accepted` events were acknowledged, `rejected` messages
    /// were sent back for retry.
    pub fn record(
        &mut self,
        accepted: &[Event],
        rejected: usize,
        report: &ApplyReport,
        now_ms: f64,
    ) {
        self.batches += 1;
        self.applied += report.applied;
        self.duplicates += report.duplicates;
        self.quarantined += report.quarantined;
        self.events += accepted.len() as u64;
        self.rejected += rejected as u64;
        self.last_batch_size = accepted.len() + rejected;
        self.last_batch_at_ms = now_ms;
        for event in accepted {
            *self
                .by_type
                .entry(event.kind.as_str().to_owned())
                .or_default() += 1;
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

    fn event(id: &str, kind: &str) -> Event {
        serde_json::from_value(json!({
            "id": id, "type": kind, "time": 1, "policyVersion": "v1", "consent": "unknown", "unit": "u",
            "destinations": ["bandit"]
        }))
        .expect("a valid event")
    }

    fn report(applied: u64) -> ApplyReport {
        ApplyReport {
            applied,
            ..ApplyReport::default()
        }
    }

    #[test]
    fn a_batch_adds_counts_per_type_and_recent_ids() {
        let mut status = ConsumerStatus::default();
        status.record(
            &[event("e1", "exposure"), event("e2", "click")],
            1,
            &report(2),
            5.0,
        );
        status.record(&[event("e3", "exposure")], 0, &report(0), 9.0);
        assert_eq!(status.applied, 2);
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
        status.record(&events, 0, &report(0), 0.0);
        assert_eq!(status.recent_ids.len(), RECENT);
        assert_eq!(status.recent_ids.front().map(String::as_str), Some("e3"));
        assert_eq!(
            status.recent_ids.back().map(String::as_str),
            Some(format!("e{}", RECENT + 2).as_str())
        );
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
        status.record(&[event("e1", "exposure")], 0, &report(1), 1.0);
        let text = serde_json::to_string(&status).expect("serialises");
        assert_eq!(
            serde_json::from_str::<ConsumerStatus>(&text).expect("parses"),
            status
        );
    }
}
