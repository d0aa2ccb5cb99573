//! The aggregator's fold: a batch of queued events moves the bandits' posteriors.
//!
//! Applying is idempotent and order-independent. Every counted event's id is remembered in
//! `applied` with its time, so a redelivered batch changes nothing; ids are forgotten after
//! [`DEDUPE_HORIZON_SECONDS`] (or earlier when more than [`MAX_APPLIED`] are held), and
//! `appliedSince` records the oldest time still covered: an event older than that may already
//! have been counted and is ignored rather than counted twice. The aggregator stores the whole
//! document as its state and publishes it to the edge without the ids
//! ([`PosteriorSnapshot::published`]).
//!
//! Counts are stored raw (rewards are not capped at exposures, since feedback can reach the
//! queue before its exposure and capping would make the result depend on arrival order); the
//! Beta parameters clamp at use ([`ArmStats::beta`]). A decision earns at most one reward,
//! however many of its goals fire, which keeps the Bernoulli model honest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::bandit::{ArmStats, arm_probabilities};
use crate::event::{Event, EventKind};
use crate::snapshot::{Destination, Policy, Snapshot};
use crate::validate::{Invalid, Issue, Issues, field};

/// How long an applied id is remembered: the 7-day default attribution window, one day of queue
/// retries and clock skew on top.
pub const DEDUPE_HORIZON_SECONDS: u64 = 8 * 24 * 3600;

/// Most ids remembered, to keep the KV document small (about 50 bytes each in JSON). Beyond
/// this the oldest are forgotten and `appliedSince` moves up.
pub const MAX_APPLIED: usize = 100_000;

/// The posteriors the aggregator publishes to the edge (JSON in KV).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PosteriorSnapshot {
    /// Bumped by every batch that changed the document.
    pub version: u64,
    /// Unix seconds of the last change.
    pub updated_at: u64,
    pub experiments: BTreeMap<String, ExperimentPosterior>,
    /// Recently applied event ids → event time. Only the aggregator needs them; the document
    /// the edge reads leaves them out ([`PosteriorSnapshot::published`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub applied: BTreeMap<String, u64>,
    /// Events older than this (unix seconds) are ignored: their ids may have been forgotten.
    #[serde(default)]
    pub applied_since: u64,
}

/// One experiment's posteriors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExperimentPosterior {
    pub arms: BTreeMap<String, ArmStats>,
    /// Thompson P(best) per arm, precomputed so the edge runs no Monte Carlo per request.
    #[serde(default)]
    pub probabilities: BTreeMap<String, f64>,
    /// Events held in quarantine, never counted.
    #[serde(default)]
    pub quarantined: u64,
    /// Cumulative counts over time, bounded ([`crate::history`]), for the console's charts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<crate::history::HistoryPoint>,
    /// Linear Thompson posteriors per arm (contextual experiments only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub linear: BTreeMap<String, crate::contextual::LinearArm>,
}

/// What one batch did: every event lands in exactly one of these.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyReport {
    /// Counted as an exposure or a reward.
    pub applied: u64,
    /// Already counted (same id, or the decision already earned its reward).
    pub duplicates: u64,
    /// Not for a bandit: unknown experiment or arm, no reward, not routed to the bandit,
    /// a fraud verdict, or older than `appliedSince`.
    pub ignored: u64,
    /// Routed to quarantine.
    pub quarantined: u64,
}

impl PosteriorSnapshot {
    /// Parses and validates a posteriors document read from KV.
    pub fn parse(bytes: &[u8]) -> Result<PosteriorSnapshot, Invalid> {
        let posteriors: PosteriorSnapshot = serde_json::from_slice(bytes).map_err(|e| {
            Invalid(vec![Issue {
                path: String::new(),
                reason: format!("not a posteriors document: {e}"),
            }])
        })?;
        let mut issues = Issues::new();
        for (key, experiment) in &posteriors.experiments {
            let path = field("experiments", key);
            for (arm, stats) in &experiment.arms {
                if !(stats.rewards.is_finite() && stats.rewards >= 0.0) {
                    issues.push(
                        field(&field(&field(&path, "arms"), arm), "rewards"),
                        "must be a finite number >= 0",
                    );
                }
            }
            for (arm, linear) in &experiment.linear {
                let at = field(&field(&path, "linear"), arm);
                for (name, reason) in linear.problems() {
                    let path = if name.is_empty() {
                        at.clone()
                    } else {
                        field(&at, name)
                    };
                    issues.push(path, reason);
                }
            }
            for (arm, p) in &experiment.probabilities {
                if !(p.is_finite() && (0.0..=1.0).contains(p)) {
                    issues.push(
                        field(&field(&path, "probabilities"), arm),
                        "must be between 0 and 1",
                    );
                }
            }
        }
        issues.finish(posteriors)
    }

    /// The document the edge reads: this one without the applied ids. They are most of its
    /// size (up to [`MAX_APPLIED`], about 5 MB), and an edge that parsed them would pay for it
    /// on every refresh (the Worker) or every request (Spin). The aggregator keeps the whole
    /// document as its own state and publishes this beside it.
    pub fn published(&self) -> PosteriorSnapshot {
        PosteriorSnapshot {
            version: self.version,
            updated_at: self.updated_at,
            experiments: self.experiments.clone(),
            applied: BTreeMap::new(),
            applied_since: self.applied_since,
        }
    }

    /// The document as JSON for KV.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Statistics for `experiment`'s arms in the snapshot's arm order (zeros when unseen), as
    /// [`arm_probabilities`] takes them.
    pub fn arm_stats(&self, snapshot: &Snapshot, experiment: &str) -> Vec<ArmStats> {
        let Some(e) = snapshot.experiment(experiment) else {
            return Vec::new();
        };
        let posterior = self.experiments.get(experiment);
        e.arms
            .iter()
            .map(|arm| {
                posterior
                    .and_then(|p| p.arms.get(&arm.key))
                    .copied()
                    .unwrap_or_default()
            })
            .collect()
    }
}

/// Folds a batch into the posteriors. `now` (unix seconds) drives forgetting old ids.
pub fn apply_events(
    posteriors: &mut PosteriorSnapshot,
    events: &[Event],
    snapshot: &Snapshot,
    now: u64,
) -> ApplyReport {
    let mut report = ApplyReport::default();
    let mut touched: Vec<String> = Vec::new();
    let since = posteriors
        .applied_since
        .max(now.saturating_sub(DEDUPE_HORIZON_SECONDS));
    for event in events {
        let outcome = apply_one(posteriors, event, snapshot, since);
        if matches!(outcome, Outcome::Applied | Outcome::Quarantined)
            && let Some(key) = &event.experiment
            && posteriors.experiments.contains_key(key)
            && !touched.contains(key)
        {
            touched.push(key.clone());
        }
        match outcome {
            Outcome::Applied => report.applied += 1,
            Outcome::Duplicate => report.duplicates += 1,
            Outcome::Ignored => report.ignored += 1,
            Outcome::Quarantined => report.quarantined += 1,
        }
    }
    let counted = report.applied + report.quarantined > 0;
    crate::history::record(posteriors, &touched, now);
    let forgot = forget(posteriors, since);
    let republished = publish_probabilities(posteriors, snapshot);
    if counted || forgot || republished {
        posteriors.version = posteriors.version.saturating_add(1);
        posteriors.updated_at = now;
    }
    report
}

/// Recomputes P(best) for every Thompson experiment of the snapshot (deterministic, so an
/// unchanged posterior gives identical numbers) and drops it elsewhere, so the edge never reads
/// probabilities that no longer match the policy. True when anything changed.
fn publish_probabilities(posteriors: &mut PosteriorSnapshot, snapshot: &Snapshot) -> bool {
    let mut changed = false;
    for experiment in &snapshot.experiments {
        let probabilities: BTreeMap<String, f64> = if experiment.policy == Policy::Thompson {
            let stats = posteriors.arm_stats(snapshot, &experiment.key);
            experiment
                .arms
                .iter()
                .map(|a| a.key.clone())
                .zip(arm_probabilities(
                    &experiment.policy,
                    &experiment.arms,
                    &stats,
                ))
                .collect()
        } else {
            BTreeMap::new()
        };
        match posteriors.experiments.get_mut(&experiment.key) {
            Some(entry) if entry.probabilities != probabilities => {
                entry.probabilities = probabilities;
                changed = true;
            }
            Some(_) => {}
            None if !probabilities.is_empty() => {
                posteriors.experiments.insert(
                    experiment.key.clone(),
                    ExperimentPosterior {
                        probabilities,
                        ..ExperimentPosterior::default()
                    },
                );
                changed = true;
            }
            None => {}
        }
    }
    changed
}

enum Outcome {
    Applied,
    Duplicate,
    Ignored,
    Quarantined,
}

fn apply_one(
    posteriors: &mut PosteriorSnapshot,
    event: &Event,
    snapshot: &Snapshot,
    since: u64,
) -> Outcome {
    if event.id.is_empty() || event.time < since {
        return Outcome::Ignored;
    }
    if posteriors.applied.contains_key(&event.id) {
        return Outcome::Duplicate;
    }
    let known = event
        .experiment
        .as_deref()
        .and_then(|key| snapshot.experiment(key))
        .filter(|e| {
            event
                .arm
                .as_deref()
                .is_some_and(|arm| e.arms.iter().any(|a| a.key == arm))
        });
    if event.destinations.contains(&Destination::Quarantine) {
        if let Some(experiment) = known {
            posteriors
                .experiments
                .entry(experiment.key.clone())
                .or_default()
                .quarantined += 1;
        }
        posteriors.applied.insert(event.id.clone(), event.time);
        return Outcome::Quarantined;
    }
    let (Some(experiment), Some(arm)) = (known, event.arm.as_deref()) else {
        return Outcome::Ignored;
    };
    if !event.destinations.contains(&Destination::Bandit) {
        return Outcome::Ignored;
    }
    let reward = match event.kind {
        EventKind::Exposure => None,
        kind if kind.is_feedback() => match event.reward {
            Some(r) if r.is_finite() && r > 0.0 => Some(r.min(1.0)),
            _ => return Outcome::Ignored,
        },
        _ => return Outcome::Ignored,
    };
    if reward.is_some()
        && let Some(decision) = &event.decision_id
    {
        let reward_key = format!("reward:{decision}");
        if posteriors.applied.contains_key(&reward_key) {
            posteriors.applied.insert(event.id.clone(), event.time);
            return Outcome::Duplicate;
        }
        posteriors.applied.insert(reward_key, event.time);
    }
    let stats = posteriors
        .experiments
        .entry(experiment.key.clone())
        .or_default()
        .arms
        .entry(arm.to_owned())
        .or_default();
    match reward {
        None => stats.exposures = stats.exposures.saturating_add(1),
        Some(r) => stats.rewards += r,
    }
    posteriors.applied.insert(event.id.clone(), event.time);
    Outcome::Applied
}

/// Forgets ids older than `since`, then the oldest beyond [`MAX_APPLIED`]; moves
/// `applied_since` so that every id at or after it is still remembered.
fn forget(posteriors: &mut PosteriorSnapshot, since: u64) -> bool {
    let before = posteriors.applied.len();
    let mut since = since;
    if posteriors.applied.len() > MAX_APPLIED {
        let mut times: Vec<u64> = posteriors.applied.values().copied().collect();
        times.sort_unstable();
        // Forget whole seconds, so no id of a forgotten second stays half-remembered.
        let cut = times[posteriors.applied.len() - MAX_APPLIED - 1];
        since = since.max(cut.saturating_add(1));
    }
    posteriors.applied.retain(|_, &mut time| time >= since);
    let moved = since != posteriors.applied_since;
    posteriors.applied_since = since;
    moved || posteriors.applied.len() != before
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ConsentState;
    use crate::token::DecisionToken;
    use proptest::prelude::*;

    const NOW: u64 = 1_700_000_000;

    fn snapshot() -> Snapshot {
        Snapshot::parse(
            serde_json::json!({
                "schema": 1,
                "version": "v1",
                "experiments": [
                    {"key": "hero", "policy": {"type": "thompson"}, "arms": [{"key": "a"}, {"key": "b"}]},
                    {"key": "cta", "policy": {"type": "ucb1"}, "arms": [{"key": "x"}, {"key": "y"}]}
                ]
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap()
    }

    fn exposure(decision: &str, experiment: &str, arm: &str, time: u64) -> Event {
        let mut e = Event::exposure(
            &DecisionToken {
                decision_id: decision.to_owned(),
                experiment: experiment.to_owned(),
                arm: arm.to_owned(),
                propensity: 0.5,
                policy_version: "v1".to_owned(),
                issued_at: time,
                unit: "u".to_owned(),
            },
            ConsentState::Granted,
        );
        e.time = time;
        e
    }

    fn click(decision: &str, experiment: &str, arm: &str, time: u64) -> Event {
        let mut e = exposure(decision, experiment, arm, time);
        e.kind = EventKind::Click;
        e.id = crate::feedback::dedupe_key(decision, "click", None);
        e.reward = Some(1.0);
        e.destinations = vec![Destination::Bandit];
        e
    }

    fn stats(p: &PosteriorSnapshot, e: &str, a: &str) -> ArmStats {
        p.experiments[e].arms[a]
    }

    #[test]
    fn exposures_and_rewards_are_counted_and_thompson_probabilities_published() {
        let mut p = PosteriorSnapshot::default();
        let events = vec![
            exposure("d1", "hero", "a", NOW),
            exposure("d2", "hero", "b", NOW),
            click("d2", "hero", "b", NOW + 5),
            exposure("d3", "cta", "x", NOW),
        ];
        let report = apply_events(&mut p, &events, &snapshot(), NOW + 10);
        assert_eq!(
            report,
            ApplyReport {
                applied: 4,
                duplicates: 0,
                ignored: 0,
                quarantined: 0
            }
        );
        assert_eq!(
            stats(&p, "hero", "a"),
            ArmStats {
                exposures: 1,
                rewards: 0.0
            }
        );
        assert_eq!(
            stats(&p, "hero", "b"),
            ArmStats {
                exposures: 1,
                rewards: 1.0
            }
        );
        let probs = &p.experiments["hero"].probabilities;
        assert_eq!(probs.len(), 2);
        assert!(probs["b"] > probs["a"], "{probs:?}");
        assert!((probs.values().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(p.experiments["cta"].probabilities.is_empty());
        assert_eq!(p.version, 1);
        assert_eq!(p.updated_at, NOW + 10);
    }

    #[test]
    fn redelivery_changes_nothing() {
        let mut p = PosteriorSnapshot::default();
        let events = vec![
            exposure("d1", "hero", "a", NOW),
            click("d1", "hero", "a", NOW),
        ];
        apply_events(&mut p, &events, &snapshot(), NOW);
        let once = p.clone();
        let report = apply_events(&mut p, &events, &snapshot(), NOW);
        assert_eq!(report.duplicates, 2);
        assert_eq!(p, once);
    }

    #[test]
    fn the_published_document_leaves_the_applied_ids_to_the_aggregator() {
        let mut p = PosteriorSnapshot::default();
        let events = vec![
            exposure("d1", "hero", "a", NOW),
            click("d1", "hero", "a", NOW),
        ];
        apply_events(&mut p, &events, &snapshot(), NOW);
        assert_eq!(
            p.applied.len(),
            3,
            "two events and the decision's reward key"
        );

        let published = p.published();
        let json = published.to_json();
        assert!(!json.contains("\"applied\""), "{json}");
        assert!(json.contains("\"appliedSince\""), "{json}");
        let read = PosteriorSnapshot::parse(json.as_bytes()).unwrap();
        assert_eq!(read.experiments, p.experiments);
        assert_eq!(
            (read.version, read.updated_at, read.applied_since),
            (p.version, p.updated_at, p.applied_since)
        );
        assert!(read.applied.is_empty());
        // The aggregator's own copy keeps them: a redelivery is still recognised.
        let state = PosteriorSnapshot::parse(p.to_json().as_bytes()).unwrap();
        assert_eq!(state, p);
    }

    #[test]
    fn a_decision_earns_one_reward_however_many_goals_fire() {
        let mut p = PosteriorSnapshot::default();
        let mut conversion = click("d1", "hero", "a", NOW);
        conversion.kind = EventKind::Conversion;
        conversion.id = crate::feedback::dedupe_key("d1", "conversion", None);
        let events = vec![
            exposure("d1", "hero", "a", NOW),
            click("d1", "hero", "a", NOW),
            conversion,
        ];
        let report = apply_events(&mut p, &events, &snapshot(), NOW);
        assert_eq!((report.applied, report.duplicates), (2, 1));
        assert_eq!(stats(&p, "hero", "a").rewards, 1.0);
    }

    #[test]
    fn quarantine_unknown_and_unrouted_are_not_counted() {
        let mut p = PosteriorSnapshot::default();
        let mut bot = click("d1", "hero", "a", NOW);
        bot.quarantine();
        let mut analytics_only = click("d2", "hero", "a", NOW);
        analytics_only.destinations = vec![Destination::Analytics];
        let mut no_reward = click("d3", "hero", "a", NOW);
        no_reward.reward = None;
        let events = vec![
            bot,
            analytics_only,
            no_reward,
            exposure("d4", "gone", "a", NOW),
            exposure("d5", "hero", "zz", NOW),
            exposure("d6", "hero", "a", NOW - DEDUPE_HORIZON_SECONDS - 1),
            Event::fraud_verdict(
                "f1".into(),
                NOW,
                0.9,
                "u".into(),
                "v1".into(),
                ConsentState::Unknown,
            ),
        ];
        let report = apply_events(&mut p, &events, &snapshot(), NOW);
        assert_eq!(
            report,
            ApplyReport {
                applied: 0,
                duplicates: 0,
                ignored: 6,
                quarantined: 1
            }
        );
        assert_eq!(p.experiments["hero"].quarantined, 1);
        assert!(p.experiments["hero"].arms.is_empty());
    }

    #[test]
    fn old_ids_are_forgotten_and_older_events_then_ignored() {
        let mut p = PosteriorSnapshot::default();
        apply_events(
            &mut p,
            &[exposure("d1", "hero", "a", NOW)],
            &snapshot(),
            NOW,
        );
        let later = NOW + DEDUPE_HORIZON_SECONDS + 1;
        apply_events(
            &mut p,
            &[exposure("d2", "hero", "a", later)],
            &snapshot(),
            later,
        );
        assert!(!p.applied.contains_key("d1"));
        assert_eq!(p.applied_since, NOW + 1);
        // d1 redelivered after it was forgotten: ignored, not counted twice.
        let report = apply_events(
            &mut p,
            &[exposure("d1", "hero", "a", NOW)],
            &snapshot(),
            later,
        );
        assert_eq!(report.ignored, 1);
        assert_eq!(stats(&p, "hero", "a").exposures, 2);
    }

    #[test]
    fn probabilities_follow_the_snapshot_policy_without_new_events() {
        let mut p = PosteriorSnapshot::default();
        apply_events(&mut p, &[exposure("d1", "cta", "x", NOW)], &snapshot(), NOW);
        assert!(p.experiments["cta"].probabilities.is_empty());
        let version = p.version;
        let mut switched = snapshot();
        switched.experiments[1].policy = Policy::Thompson;
        let report = apply_events(&mut p, &[], &switched, NOW);
        assert_eq!(report, ApplyReport::default());
        assert_eq!(p.experiments["cta"].probabilities.len(), 2);
        assert_eq!(p.version, version + 1);
        // Nothing new: same numbers, same version.
        apply_events(&mut p, &[], &switched, NOW);
        assert_eq!(p.version, version + 1);
        apply_events(&mut p, &[], &snapshot(), NOW);
        assert!(p.experiments["cta"].probabilities.is_empty());
    }

    #[test]
    fn parse_round_trips_and_refuses_bad_numbers() {
        let mut p = PosteriorSnapshot::default();
        apply_events(
            &mut p,
            &[exposure("d1", "hero", "a", NOW)],
            &snapshot(),
            NOW,
        );
        assert_eq!(PosteriorSnapshot::parse(p.to_json().as_bytes()), Ok(p));
        let bad = br#"{"version":1,"updatedAt":0,"experiments":{"hero":{"arms":{"a":{"exposures":1,"rewards":-1}},"probabilities":{"a":2}}}}"#;
        let issues = PosteriorSnapshot::parse(bad).unwrap_err().0;
        assert_eq!(issues.len(), 2, "{issues:?}");
        assert!(PosteriorSnapshot::parse(b"[]").is_err());
    }

    /// A batch drawn with repetition from a pool of distinct events: a redelivered event is an
    /// identical copy, as the queue delivers it.
    fn arb_batch() -> impl Strategy<Value = Vec<Event>> {
        let decision = (
            prop::sample::select(vec!["hero", "cta", "gone"]),
            prop::sample::select(vec!["a", "b", "x", "y"]),
            0u64..100,
            any::<bool>(),
        );
        prop::collection::vec(decision, 1..8).prop_flat_map(|decisions| {
            let pool: Vec<Event> = decisions
                .iter()
                .enumerate()
                .flat_map(|(i, &(experiment, arm, dt, quarantined))| {
                    let d = format!("d{i}");
                    let mut c = click(&d, experiment, arm, NOW + dt + 1);
                    if quarantined {
                        c.quarantine();
                    }
                    [exposure(&d, experiment, arm, NOW + dt), c]
                })
                .collect();
            prop::collection::vec(0..pool.len(), 0..40)
                .prop_map(move |picks| picks.into_iter().map(|i| pool[i].clone()).collect())
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn applying_twice_equals_applying_once(events in arb_batch()) {
            let mut once = PosteriorSnapshot::default();
            apply_events(&mut once, &events, &snapshot(), NOW + 200);
            let mut twice = once.clone();
            let report = apply_events(&mut twice, &events, &snapshot(), NOW + 200);
            prop_assert_eq!(report.applied, 0);
            prop_assert_eq!(twice, once);
        }

        #[test]
        fn counts_do_not_depend_on_order_or_batching(events in arb_batch(), split in any::<prop::sample::Index>(), seed in any::<u64>()) {
            let mut whole = PosteriorSnapshot::default();
            apply_events(&mut whole, &events, &snapshot(), NOW + 200);

            let mut shuffled = events.clone();
            // Deterministic shuffle from the seed.
            let mut s = seed | 1;
            for i in (1..shuffled.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                shuffled.swap(i, (s % (i as u64 + 1)) as usize);
            }
            let cut = split.index(shuffled.len() + 1);
            let mut parts = PosteriorSnapshot::default();
            apply_events(&mut parts, &shuffled[..cut], &snapshot(), NOW + 200);
            apply_events(&mut parts, &shuffled[cut..], &snapshot(), NOW + 200);

            let arms = |p: &PosteriorSnapshot| p.experiments.iter().map(|(k, e)| (k.clone(), e.arms.clone(), e.quarantined)).collect::<Vec<_>>();
            prop_assert_eq!(arms(&parts), arms(&whole));
            prop_assert_eq!(&parts.applied.keys().collect::<Vec<_>>(), &whole.applied.keys().collect::<Vec<_>>());
        }
    }
}
