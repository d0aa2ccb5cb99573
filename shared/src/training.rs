//! Training rows: every exposure joined with the reward its decision earned, for reward models,
//! linear Thompson and off-policy evaluation.
//!
//! The aggregator feeds each queue batch to [`join_training`] with the current time. An exposure
//! waits `window` seconds for feedback carrying its decision id; then it leaves as one
//! [`TrainingRow`] with the highest reward seen (0 without feedback). Feedback that arrives
//! before its exposure is held until the exposure comes. The join state is a plain document the
//! adapter stores between batches; redelivered events change nothing (decision ids already
//! pending or written are remembered for [`JOIN_MEMORY_SECONDS`] beyond the window). An adapter
//! whose store caps a value's size serialises with [`join_state_within`], which closes the oldest
//! exposures early ([`close_oldest`]) until the state fits.
//! [`training_batches`] turns rows into NDJSON objects under time-partitioned keys whose names
//! hash the rows they hold, so rewriting a batch after a retry overwrites the same object.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::aggregate::PosteriorSnapshot;
use crate::contextual::{ContextualPolicy, LinearArm, check_context, linear_features};
use crate::event::{Event, EventKind};
use crate::request::hex;
use crate::snapshot::{Destination, Snapshot};

/// How long written decision ids are remembered after their window closed: queue retries come
/// seconds to minutes apart, and the ids held are most of the join state after the pending rows.
pub const JOIN_MEMORY_SECONDS: u64 = 3600;

/// Object-store prefix of the training logs.
pub const TRAINING_PREFIX: &str = "logs/training/";

/// One decision with its outcome: a line of the training logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingRow {
    pub decision: String,
    /// Unix milliseconds of the decision.
    pub ts: u64,
    pub experiment: String,
    /// The logged context features (never an IP or a raw id).
    pub context: BTreeMap<String, Value>,
    /// The experiment's arms, in the snapshot's order.
    pub arms: Vec<String>,
    pub arm: String,
    /// The probability `arm` was chosen with.
    pub propensity: f64,
    /// The highest reward the decision earned within the window; 0 without feedback.
    pub reward: f64,
    /// The policy that chose: `fixed`, `thompson`, `softmax`, `squarecb`, `epsilon-greedy`,
    /// `linear-thompson`, …
    pub policy: String,
    /// The snapshot version the decision was made with.
    pub snapshot: String,
    /// `name@version` of the reward model that scored the arms, else null.
    pub model: Option<String>,
}

/// What the join holds between batches (JSON in the adapter's store).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrainingJoin {
    /// Exposures waiting for their window to close, by decision id.
    #[serde(default)]
    pub pending: BTreeMap<String, PendingRow>,
    /// Rewards whose exposure has not arrived yet: decision id → (reward, unix seconds).
    #[serde(default)]
    pub early_rewards: BTreeMap<String, (f64, u64)>,
    /// Decision ids already written → decision time (unix seconds).
    #[serde(default)]
    pub written: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PendingRow {
    /// Unix seconds of the exposure.
    pub time: u64,
    pub row: TrainingRow,
}

impl TrainingJoin {
    /// Reads a stored join state; an unreadable one is reported so the adapter can decide.
    pub fn parse(bytes: &[u8]) -> Result<TrainingJoin, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("not a training join state: {e}"))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Folds a batch into the join and returns the rows whose window closed by `now` (unix seconds),
/// oldest first. Quarantined events and events not meant for a bandit never join.
pub fn join_training(
    join: &mut TrainingJoin,
    events: &[Event],
    snapshot: &Snapshot,
    now: u64,
    window: u64,
) -> Vec<TrainingRow> {
    let horizon = now.saturating_sub(window.saturating_add(JOIN_MEMORY_SECONDS));
    for event in events {
        let counted = event.destinations.contains(&Destination::Bandit)
            && !event.destinations.contains(&Destination::Quarantine);
        let Some(decision) = event.decision_id.as_deref().filter(|_| counted) else {
            continue;
        };
        if event.time < horizon || join.written.contains_key(decision) {
            continue;
        }
        match event.kind {
            EventKind::Exposure => {
                if join.pending.contains_key(decision) {
                    continue;
                }
                let Some(mut row) = exposure_row(event, decision, snapshot) else {
                    continue;
                };
                if let Some((reward, time)) = join.early_rewards.remove(decision)
                    && time <= event.time.saturating_add(window)
                {
                    row.reward = reward;
                }
                join.pending.insert(
                    decision.to_owned(),
                    PendingRow {
                        time: event.time,
                        row,
                    },
                );
            }
            kind if kind.is_feedback() => {
                let Some(reward) = event.reward.filter(|r| r.is_finite() && *r > 0.0) else {
                    continue;
                };
                let reward = reward.min(1.0);
                match join.pending.get_mut(decision) {
                    Some(pending) => {
                        if event.time <= pending.time.saturating_add(window) {
                            pending.row.reward = pending.row.reward.max(reward);
                        }
                    }
                    None => {
                        let entry = join
                            .early_rewards
                            .entry(decision.to_owned())
                            .or_insert((0.0, event.time));
                        entry.0 = entry.0.max(reward);
                    }
                }
            }
            _ => {}
        }
    }

    let closed: Vec<String> = join
        .pending
        .iter()
        .filter(|(_, p)| p.time.saturating_add(window) <= now)
        .map(|(id, _)| id.clone())
        .collect();
    let mut rows = Vec::with_capacity(closed.len());
    for id in closed {
        if let Some(pending) = join.pending.remove(&id) {
            join.written.insert(id, pending.time);
            rows.push(pending.row);
        }
    }
    join.written.retain(|_, time| *time >= horizon);
    join.early_rewards.retain(|_, (_, time)| *time >= horizon);
    rows.sort_by(|a, b| (a.ts, &a.decision).cmp(&(b.ts, &b.decision)));
    rows
}

/// Closes the `count` oldest pending exposures now, with the rewards they have so far, for an
/// adapter whose store cannot hold the whole join state: the rows still go out, a little early,
/// instead of the state outgrowing the store. They are remembered as written, like any row.
pub fn close_oldest(join: &mut TrainingJoin, count: usize) -> Vec<TrainingRow> {
    let mut oldest: Vec<(u64, String)> = join
        .pending
        .iter()
        .map(|(id, pending)| (pending.time, id.clone()))
        .collect();
    oldest.sort();
    let mut rows = Vec::with_capacity(count.min(oldest.len()));
    for (_, id) in oldest.into_iter().take(count) {
        if let Some(pending) = join.pending.remove(&id) {
            join.written.insert(id, pending.time);
            rows.push(pending.row);
        }
    }
    rows.sort_by(|a, b| (a.ts, &a.decision).cmp(&(b.ts, &b.decision)));
    rows
}

/// The join state as JSON of at most `max_bytes`, for a store that caps a value's size: while
/// it is larger, the oldest tenth of the pending exposures close early. Returns the JSON and the
/// rows closed early (empty when it fit).
pub fn join_state_within(join: &mut TrainingJoin, max_bytes: usize) -> (String, Vec<TrainingRow>) {
    let mut json = join.to_json();
    let mut early = Vec::new();
    while json.len() > max_bytes && !join.pending.is_empty() {
        early.extend(close_oldest(join, join.pending.len().div_ceil(10)));
        json = join.to_json();
    }
    (json, early)
}

fn exposure_row(event: &Event, decision: &str, snapshot: &Snapshot) -> Option<TrainingRow> {
    let experiment = snapshot.experiment(event.experiment.as_deref()?)?;
    let arm = event.arm.clone()?;
    let propensity = event.propensity.filter(|p| *p > 0.0 && *p <= 1.0)?;
    let policy = event.policy.clone().unwrap_or_else(|| "unknown".to_owned());
    // Only a decision the reward model made names it; a fallback decision has no model.
    let model = match &experiment.contextual {
        Some(ContextualPolicy::RewardModel { model, exploration })
            if exploration.name() == policy =>
        {
            event
                .model_versions
                .get(model)
                .map(|version| format!("{model}@{version}"))
        }
        _ => None,
    };
    Some(TrainingRow {
        decision: decision.to_owned(),
        ts: event.time.saturating_mul(1000),
        experiment: experiment.key.clone(),
        context: event.context.clone(),
        arms: experiment.arms.iter().map(|a| a.key.clone()).collect(),
        arm,
        propensity,
        reward: 0.0,
        policy,
        snapshot: event.policy_version.clone(),
        model,
    })
}

/// One NDJSON object of training rows and the key to store it under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainingBatch {
    /// `logs/training/dt=YYYY-MM-DD/hour=HH/<batch id>.ndjson`, by the rows' decision time (UTC).
    pub key: String,
    /// One JSON object per line.
    pub body: String,
}

/// Groups rows by the UTC hour of their decision into NDJSON objects. The batch id is a hash of
/// the rows' decision ids, so the same rows always land under the same key.
pub fn training_batches(rows: &[TrainingRow]) -> Vec<TrainingBatch> {
    let mut by_hour: BTreeMap<String, Vec<&TrainingRow>> = BTreeMap::new();
    for row in rows {
        by_hour
            .entry(hour_partition(row.ts / 1000))
            .or_default()
            .push(row);
    }
    by_hour
        .into_iter()
        .map(|(partition, rows)| {
            let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
            let mut body = String::new();
            for row in &rows {
                sha2::Digest::update(&mut hasher, row.decision.as_bytes());
                sha2::Digest::update(&mut hasher, b"\n");
                body.push_str(&serde_json::to_string(row).unwrap_or_default());
                body.push('\n');
            }
            let id = hex(&sha2::Digest::finalize(hasher)[..12]);
            TrainingBatch {
                key: format!("{TRAINING_PREFIX}{partition}/{id}.ndjson"),
                body,
            }
        })
        .collect()
}

/// `dt=YYYY-MM-DD/hour=HH` for unix seconds (UTC, proleptic Gregorian).
pub fn hour_partition(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let hour = (seconds % 86_400) / 3600;
    let (y, m, d) = civil_from_days(days);
    format!("dt={y:04}-{m:02}-{d:02}/hour={hour:02}")
}

/// Howard Hinnant's days-to-civil algorithm (days since 1970-01-01 → year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Teaches the linear Thompson posteriors the joined rows of their experiments. Each row counts
/// once (its id is remembered in `applied` as `linear:<decision>`); rows whose context lacks a
/// feature are skipped. Bumps the document's version when anything was learned; returns how
/// many rows were.
pub fn learn_linear(
    posteriors: &mut PosteriorSnapshot,
    rows: &[TrainingRow],
    snapshot: &Snapshot,
    now: u64,
) -> u64 {
    let mut learned = 0;
    for row in rows {
        let Some(experiment) = snapshot.experiment(&row.experiment) else {
            continue;
        };
        let Some(ContextualPolicy::LinearThompson {
            features,
            prior_precision,
            context_precision,
            ..
        }) = &experiment.contextual
        else {
            continue;
        };
        let key = format!("linear:{}", row.decision);
        let time = row.ts / 1000;
        if posteriors.applied.contains_key(&key)
            || time < posteriors.applied_since
            || !experiment.arms.iter().any(|a| a.key == row.arm)
        {
            continue;
        }
        let context = Value::Object(row.context.clone().into_iter().collect());
        if check_context(features, &context).is_err() {
            continue;
        }
        let x = linear_features(features, &context);
        let arm = posteriors
            .experiments
            .entry(experiment.key.clone())
            .or_default()
            .linear
            .entry(row.arm.clone())
            .or_insert_with(|| LinearArm::prior(x.len(), *prior_precision, *context_precision));
        if arm.width() != x.len() {
            // The feature spec changed: start this arm afresh.
            *arm = LinearArm::prior(x.len(), *prior_precision, *context_precision);
        }
        if arm.learn(&x, row.reward) {
            posteriors.applied.insert(key, time);
            learned += 1;
        }
    }
    if learned > 0 {
        posteriors.version = posteriors.version.saturating_add(1);
        posteriors.updated_at = now;
    }
    learned
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ConsentState;
    use crate::token::DecisionToken;
    use serde_json::json;

    const NOW: u64 = 1_767_225_600; // 2026-01-01 00:00 UTC

    fn snapshot() -> Snapshot {
        Snapshot::from_value(json!({
            "schema": 1, "version": "v7",
            "models": [{"name": "reward"}],
            "experiments": [
                {"key": "hero", "policy": {"type": "thompson"},
                 "contextual": {"type": "reward_model", "model": "reward",
                                "exploration": {"type": "softmax", "temperature": 0.1}},
                 "arms": [{"key": "a"}, {"key": "b"}]},
                {"key": "lin", "policy": {"type": "thompson"},
                 "contextual": {"type": "linear_thompson", "features": [
                     {"kind": "one_hot", "source": "device", "values": ["mobile", "desktop"]}]},
                 "arms": [{"key": "x"}, {"key": "y"}]}
            ]
        }))
        .unwrap()
    }

    fn exposure(decision: &str, experiment: &str, arm: &str, time: u64, policy: &str) -> Event {
        let mut e = Event::exposure(
            &DecisionToken {
                decision_id: decision.to_owned(),
                experiment: experiment.to_owned(),
                arm: arm.to_owned(),
                propensity: 0.25,
                policy_version: "v7".to_owned(),
                issued_at: time,
                unit: "u".to_owned(),
            },
            ConsentState::Granted,
        );
        e.policy = Some(policy.to_owned());
        e.model_versions.insert("reward".into(), "2.0.0".into());
        e.context.insert("device".into(), json!("mobile"));
        e
    }

    fn click(decision: &str, time: u64) -> Event {
        let mut e = exposure(decision, "hero", "a", time, "softmax");
        e.kind = EventKind::Click;
        e.id = format!("{decision}:click");
        e.reward = Some(1.0);
        e.destinations = vec![Destination::Bandit];
        e
    }

    #[test]
    fn exposures_wait_for_their_window_and_join_rewards_in_any_order() {
        let mut join = TrainingJoin::default();
        let events = vec![
            click("d2", NOW + 3),
            exposure("d1", "hero", "a", NOW, "softmax"),
            exposure("d2", "hero", "a", NOW + 1, "thompson"),
            exposure("d3", "hero", "b", NOW + 2, "softmax"),
            click("d1", NOW + 20),
            click("d3", NOW + 500),
        ];
        let rows = join_training(&mut join, &events, &snapshot(), NOW + 10, 60);
        assert!(rows.is_empty());
        assert_eq!(join.pending.len(), 3);
        let rows = join_training(&mut join, &[], &snapshot(), NOW + 62, 60);
        let got: Vec<(&str, f64, Option<&str>, &str)> = rows
            .iter()
            .map(|r| {
                (
                    r.decision.as_str(),
                    r.reward,
                    r.model.as_deref(),
                    r.policy.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("d1", 1.0, Some("reward@2.0.0"), "softmax"),
                ("d2", 1.0, None, "thompson"),
                ("d3", 0.0, Some("reward@2.0.0"), "softmax"),
            ]
        );
        assert_eq!(rows[0].ts, NOW * 1000);
        assert_eq!(rows[0].arms, vec!["a", "b"]);
        assert_eq!(rows[0].snapshot, "v7");
        // Redelivery of the whole batch writes nothing again.
        let again = join_training(&mut join, &events, &snapshot(), NOW + 120, 60);
        assert!(again.is_empty(), "{again:?}");
        assert!(join.pending.is_empty());
    }

    #[test]
    fn the_oldest_exposures_close_early_with_the_rewards_they_have() {
        let mut join = TrainingJoin::default();
        let events = vec![
            exposure("d3", "hero", "b", NOW + 2, "softmax"),
            exposure("d1", "hero", "a", NOW, "softmax"),
            exposure("d2", "hero", "a", NOW + 1, "softmax"),
            click("d1", NOW + 3),
        ];
        assert!(join_training(&mut join, &events, &snapshot(), NOW + 5, 60).is_empty());
        let early = close_oldest(&mut join, 2);
        let got: Vec<(&str, f64)> = early
            .iter()
            .map(|r| (r.decision.as_str(), r.reward))
            .collect();
        assert_eq!(got, vec![("d1", 1.0), ("d2", 0.0)]);
        assert_eq!(join.pending.keys().collect::<Vec<_>>(), vec!["d3"]);
        // Closed early is closed: a redelivery or a late click does not bring them back.
        let later = join_training(&mut join, &events, &snapshot(), NOW + 70, 60);
        let got: Vec<&str> = later.iter().map(|r| r.decision.as_str()).collect();
        assert_eq!(got, vec!["d3"]);
        assert!(close_oldest(&mut join, 5).is_empty());
    }

    #[test]
    fn a_state_over_the_cap_closes_its_oldest_exposures_until_it_fits() {
        let mut join = TrainingJoin::default();
        let events: Vec<Event> = (0..40)
            .map(|i| exposure(&format!("d{i:02}"), "hero", "a", NOW + i, "softmax"))
            .collect();
        join_training(&mut join, &events, &snapshot(), NOW + 50, 600);
        let full = join.to_json();
        let (same, none) = join_state_within(&mut join, full.len());
        assert_eq!((same, none.len()), (full.clone(), 0));

        let (json, early) = join_state_within(&mut join, full.len() / 2);
        assert!(json.len() <= full.len() / 2, "{} bytes", json.len());
        assert_eq!(json, join.to_json());
        // The oldest went, in order; the rest are still waiting for their window.
        let closed: Vec<String> = early.iter().map(|r| r.decision.clone()).collect();
        let expected: Vec<String> = (0..closed.len()).map(|i| format!("d{i:02}")).collect();
        assert_eq!(closed, expected);
        assert_eq!(join.pending.len() + closed.len(), 40);
        assert!(closed.len() >= 20 && closed.len() < 40, "{}", closed.len());
    }

    #[test]
    fn quarantined_and_unknown_events_never_join() {
        let mut join = TrainingJoin::default();
        let mut bot = exposure("d1", "hero", "a", NOW, "softmax");
        bot.quarantine();
        let rows = join_training(
            &mut join,
            &[bot, exposure("d2", "gone", "a", NOW, "thompson")],
            &snapshot(),
            NOW + 100,
            10,
        );
        assert!(rows.is_empty());
        assert_eq!(join, TrainingJoin::default());
    }

    #[test]
    fn batches_are_partitioned_by_hour_and_named_by_their_rows() {
        let mut join = TrainingJoin::default();
        let events = vec![
            exposure("d1", "hero", "a", NOW - 1, "softmax"),
            exposure("d2", "hero", "b", NOW + 5, "softmax"),
        ];
        let rows = join_training(&mut join, &events, &snapshot(), NOW + 100, 10);
        let batches = training_batches(&rows);
        assert_eq!(batches.len(), 2);
        assert!(
            batches[0]
                .key
                .starts_with("logs/training/dt=2025-12-31/hour=23/")
        );
        assert!(
            batches[1]
                .key
                .starts_with("logs/training/dt=2026-01-01/hour=00/")
        );
        assert!(batches[0].key.ends_with(".ndjson"));
        assert_eq!(training_batches(&rows), batches);
        let line: Value = serde_json::from_str(batches[1].body.trim_end()).unwrap();
        assert_eq!(
            line,
            json!({"decision": "d2", "ts": (NOW + 5) * 1000, "experiment": "hero",
                   "context": {"device": "mobile"}, "arms": ["a", "b"], "arm": "b",
                   "propensity": 0.25, "reward": 0.0, "policy": "softmax", "snapshot": "v7",
                   "model": "reward@2.0.0"})
        );
    }

    #[test]
    fn civil_dates() {
        assert_eq!(hour_partition(0), "dt=1970-01-01/hour=00");
        assert_eq!(
            hour_partition(951_782_400 + 3600 * 13),
            "dt=2000-02-29/hour=13"
        );
        assert_eq!(hour_partition(NOW - 1), "dt=2025-12-31/hour=23");
    }

    #[test]
    fn linear_posteriors_learn_each_row_once() {
        let rows: Vec<TrainingRow> = (0..50)
            .map(|i| TrainingRow {
                decision: format!("d{i}"),
                ts: NOW * 1000,
                experiment: "lin".into(),
                context: [("device".to_owned(), json!("mobile"))].into(),
                arms: vec!["x".into(), "y".into()],
                arm: "x".into(),
                propensity: 0.5,
                reward: 1.0,
                policy: "linear-thompson".into(),
                snapshot: "v7".into(),
                model: None,
            })
            .collect();
        let mut p = PosteriorSnapshot::default();
        assert_eq!(learn_linear(&mut p, &rows, &snapshot(), NOW), 50);
        let once = p.clone();
        assert_eq!(learn_linear(&mut p, &rows, &snapshot(), NOW), 0);
        assert_eq!(p, once);
        let x = &p.experiments["lin"].linear["x"];
        assert_eq!(x.count, 50);
        // Intercept + mobile slot share the signal; a mobile visitor's predicted reward is ≈ 1.
        assert!((x.mean[0] + x.mean[1] - 1.0).abs() < 0.05, "{:?}", x.mean);
        assert!(PosteriorSnapshot::parse(p.to_json().as_bytes()).is_ok());
    }
}
