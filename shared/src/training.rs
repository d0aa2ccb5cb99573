//! Training rows: every exposure joined with the reward its decision earned, for reward models,
//! linear Thompson and off-policy evaluation.
//!
//! An exposure waits `window` seconds for feedback carrying its decision id; then it leaves as one
//! [`TrainingRow`] with the highest reward that came within the window (0 without feedback), in
//! whatever order the exposure and its feedback reached the queue.
//!
//! The join is stored so that a batch costs what it carries, not what the window holds:
//! - [`join_batch`] returns the batch's exposures as **segments**, one per bucket of decision time
//!   ([`join_bucket_seconds`]), which the adapter stores beside the ones before and never rewrites;
//! - rewards go into the small [`JoinState`], by decision id;
//! - once buckets' windows have ended ([`first_open_bucket`]), the adapter reads their segments and
//!   [`close_buckets`] turns them into rows, each decision once, and moves
//!   [`JoinState::open_from`] past them. A redelivered exposure lands in its own bucket and joins
//!   once; one that arrives after its bucket closed is dropped.
//!
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

/// How long a reward is remembered beyond the window, for an exposure that reaches the queue
/// late (queue retries come seconds to minutes apart).
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

/// What the join keeps between batches besides the exposure segments (JSON in the adapter's
/// store): small, since it holds rewards only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinState {
    /// Rewards by decision id, as they came: (reward, unix seconds).
    #[serde(default)]
    pub rewards: BTreeMap<String, Vec<(f64, u64)>>,
    /// Buckets starting before this (unix seconds) are closed: exposures for them are dropped.
    #[serde(default)]
    pub open_from: u64,
}

/// An exposure waiting in a segment for its window to close.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PendingRow {
    /// Unix seconds of the exposure.
    pub time: u64,
    pub row: TrainingRow,
}

impl JoinState {
    /// Reads a stored join state; an unreadable one is reported so the adapter can decide.
    pub fn parse(bytes: &[u8]) -> Result<JoinState, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("not a training join state: {e}"))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Whether buckets have closed since the last close: then the start of the first bucket
    /// still open ([`first_open_bucket`]), for the adapter to read the segments of the buckets
    /// before it and hand them to [`close_buckets`]; `None` when nothing is due.
    pub fn closing_before(&self, now: u64, window: u64) -> Option<u64> {
        let open = first_open_bucket(now, window);
        (self.open_from < open).then_some(open)
    }
}

/// Seconds of decision time per bucket: a thirtieth of the window, from 1 to 60.
pub fn join_bucket_seconds(window: u64) -> u64 {
    (window / 30).clamp(1, 60)
}

/// The start (unix seconds) of the bucket holding decision time `time`.
pub fn join_bucket(time: u64, window: u64) -> u64 {
    time - time % join_bucket_seconds(window)
}

/// The start of the first bucket whose window has not ended by `now`: every bucket before it can
/// close (its last second's exposures have had their whole window).
pub fn first_open_bucket(now: u64, window: u64) -> u64 {
    let seconds = join_bucket_seconds(window);
    // Closed when start + seconds - 1 + window <= now.
    match now.checked_sub(window + seconds - 1) {
        Some(last_closed) => join_bucket(last_closed, window) + seconds,
        None => 0,
    }
}

/// Folds a batch into the join: rewards into `state`, exposures returned as segments by bucket
/// start, for the adapter to store. Quarantined events and events not meant for a bandit never
/// join; exposures of closed buckets, or older than the window plus [`JOIN_MEMORY_SECONDS`], are
/// dropped, and so are rewards older than that.
pub fn join_batch(
    state: &mut JoinState,
    events: &[Event],
    snapshot: &Snapshot,
    now: u64,
    window: u64,
) -> BTreeMap<u64, Vec<PendingRow>> {
    let horizon = now.saturating_sub(window.saturating_add(JOIN_MEMORY_SECONDS));
    let mut segments: BTreeMap<u64, Vec<PendingRow>> = BTreeMap::new();
    for event in events {
        let counted = event.destinations.contains(&Destination::Bandit)
            && !event.destinations.contains(&Destination::Quarantine);
        let Some(decision) = event.decision_id.as_deref().filter(|_| counted) else {
            continue;
        };
        if event.time < horizon {
            continue;
        }
        match event.kind {
            EventKind::Exposure => {
                let bucket = join_bucket(event.time, window);
                if bucket < state.open_from {
                    continue;
                }
                if let Some(row) = exposure_row(event, decision, snapshot) {
                    segments.entry(bucket).or_default().push(PendingRow {
                        time: event.time,
                        row,
                    });
                }
            }
            kind if kind.is_feedback() => {
                let Some(reward) = event.reward.filter(|r| r.is_finite() && *r > 0.0) else {
                    continue;
                };
                let reward = (reward.min(1.0), event.time);
                let rewards = state.rewards.entry(decision.to_owned()).or_default();
                if !rewards.contains(&reward) {
                    rewards.push(reward);
                }
            }
            _ => {}
        }
    }
    state.rewards.retain(|_, rewards| {
        rewards.retain(|(_, time)| *time >= horizon);
        !rewards.is_empty()
    });
    segments
}

/// Closes every bucket whose window has ended by `now`: the exposures of `segments` in such a
/// bucket (and not closed before), each decision once, become rows with the highest reward that
/// came within the window after them; [`JoinState::open_from`] moves to [`first_open_bucket`].
/// Rows come oldest first. Closing the same segments again gives the same rows.
pub fn close_buckets(
    state: &mut JoinState,
    segments: &[Vec<PendingRow>],
    now: u64,
    window: u64,
) -> Vec<TrainingRow> {
    let open = first_open_bucket(now, window);
    let mut exposures: BTreeMap<&str, &PendingRow> = BTreeMap::new();
    for pending in segments.iter().flatten() {
        let bucket = join_bucket(pending.time, window);
        if bucket >= state.open_from && bucket < open {
            exposures.entry(&pending.row.decision).or_insert(pending);
        }
    }
    let mut rows: Vec<TrainingRow> = exposures
        .into_values()
        .map(|pending| {
            let mut row = pending.row.clone();
            row.reward = state
                .rewards
                .get(&row.decision)
                .into_iter()
                .flatten()
                .filter(|(_, time)| *time <= pending.time.saturating_add(window))
                .fold(0.0, |best, (reward, _)| reward.max(best));
            row
        })
        .collect();
    state.open_from = state.open_from.max(open);
    rows.sort_by(|a, b| (a.ts, &a.decision).cmp(&(b.ts, &b.decision)));
    rows
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

    /// What an adapter does with a batch: stores its segments beside the earlier ones, then
    /// closes what has closed (handing over every stored segment; the core picks).
    fn batch(
        join: &mut JoinState,
        stored: &mut Vec<Vec<PendingRow>>,
        events: &[Event],
        now: u64,
        window: u64,
    ) -> Vec<TrainingRow> {
        stored.extend(join_batch(join, events, &snapshot(), now, window).into_values());
        close_buckets(join, stored, now, window)
    }

    #[test]
    fn exposures_wait_for_their_window_and_join_rewards_in_any_order() {
        let (mut join, mut stored) = (JoinState::default(), Vec::new());
        let events = vec![
            click("d2", NOW + 3),
            exposure("d1", "hero", "a", NOW, "softmax"),
            exposure("d2", "hero", "a", NOW + 1, "thompson"),
            exposure("d3", "hero", "b", NOW + 2, "softmax"),
            click("d1", NOW + 20),
            click("d3", NOW + 500),
        ];
        let rows = batch(&mut join, &mut stored, &events, NOW + 10, 60);
        assert!(rows.is_empty());
        // Buckets of 2 s for a 60 s window: d3's (NOW + 2 and + 3) closes at NOW + 63.
        let rows = batch(&mut join, &mut stored, &[], NOW + 62, 60);
        let got: Vec<&str> = rows.iter().map(|r| r.decision.as_str()).collect();
        assert_eq!(got, vec!["d1", "d2"]);
        let rows = [rows, batch(&mut join, &mut stored, &[], NOW + 63, 60)].concat();
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
        let again = batch(&mut join, &mut stored, &events, NOW + 120, 60);
        assert!(again.is_empty(), "{again:?}");
    }

    #[test]
    fn a_batch_stores_only_its_own_exposures_and_the_state_only_rewards() {
        let (mut join, mut stored) = (JoinState::default(), Vec::new());
        for round in 0..20u64 {
            let events: Vec<Event> = (0..50)
                .map(|i| {
                    let decision = format!("d{round:02}-{i:02}");
                    exposure(&decision, "hero", "a", NOW + round * 10, "softmax")
                })
                .chain([click(&format!("d{round:02}-00"), NOW + round * 10 + 1)])
                .collect();
            let segments = join_batch(&mut join, &events, &snapshot(), NOW + round * 10, 1800);
            let exposures: usize = segments.values().map(Vec::len).sum();
            assert_eq!(exposures, 50, "round {round}");
            stored.extend(segments.into_values());
        }
        // Twenty batches later the state holds the twenty rewards, not the thousand exposures.
        assert_eq!(join.rewards.len(), 20);
        assert!(
            join.to_json().len() < 2_000,
            "{} bytes",
            join.to_json().len()
        );
        // Nothing closes before the window; everything after it, each decision once.
        assert!(close_buckets(&mut join, &stored, NOW + 1800, 1800).is_empty());
        let rows = close_buckets(&mut join, &stored, NOW + 190 + 1800 + 59, 1800);
        assert_eq!(rows.len(), 1000);
        assert_eq!(rows.iter().filter(|r| r.reward == 1.0).count(), 20);
    }

    #[test]
    fn a_redelivered_exposure_joins_once_and_a_late_one_is_dropped() {
        let (mut join, mut stored) = (JoinState::default(), Vec::new());
        let first = vec![exposure("d1", "hero", "a", NOW, "softmax")];
        batch(&mut join, &mut stored, &first, NOW + 1, 10);
        // The same exposure again, in another segment of the same bucket.
        batch(&mut join, &mut stored, &first, NOW + 2, 10);
        assert_eq!(stored.len(), 2);
        let snapshot_of_join = join.clone();
        let rows = batch(&mut join, &mut stored, &[], NOW + 10, 10);
        assert_eq!(rows.len(), 1);
        // Nothing more is due until the next bucket's window has ended.
        assert_eq!(join.closing_before(NOW + 10, 10), None);
        assert_eq!(join.closing_before(NOW + 11, 10), Some(NOW + 2));
        // Closing the same segments from the same state again (a retried batch) gives the same rows.
        let mut retried = snapshot_of_join;
        assert_eq!(close_buckets(&mut retried, &stored, NOW + 10, 10), rows);
        // Its bucket is closed: a redelivery after that is dropped, not a second row.
        assert!(join_batch(&mut join, &first, &snapshot(), NOW + 30, 10).is_empty());
    }

    #[test]
    fn a_bucket_closes_when_its_last_second_has_had_its_window() {
        for window in [0, 3, 60, 1800] {
            let seconds = join_bucket_seconds(window);
            let start = join_bucket(NOW + 7, window);
            let last = start + seconds - 1;
            assert!(
                first_open_bucket(last + window - 1, window) <= start,
                "{window}"
            );
            assert_eq!(
                first_open_bucket(last + window, window),
                start + seconds,
                "{window}"
            );
        }
        assert_eq!(join_bucket_seconds(1800), 60);
        assert_eq!(join_bucket_seconds(0), 1);
    }

    #[test]
    fn quarantined_and_unknown_events_never_join() {
        let mut join = JoinState::default();
        let mut bot = exposure("d1", "hero", "a", NOW, "softmax");
        bot.quarantine();
        let mut bot_click = click("d1", NOW + 1);
        bot_click.quarantine();
        let segments = join_batch(
            &mut join,
            &[bot, bot_click, exposure("d2", "gone", "a", NOW, "thompson")],
            &snapshot(),
            NOW + 100,
            10,
        );
        assert!(segments.is_empty());
        assert_eq!(join, JoinState::default());
    }

    #[test]
    fn batches_are_partitioned_by_hour_and_named_by_their_rows() {
        let (mut join, mut stored) = (JoinState::default(), Vec::new());
        let events = vec![
            exposure("d1", "hero", "a", NOW - 1, "softmax"),
            exposure("d2", "hero", "b", NOW + 5, "softmax"),
        ];
        let rows = batch(&mut join, &mut stored, &events, NOW + 100, 10);
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
