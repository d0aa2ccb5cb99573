//! A bounded history of each experiment's cumulative counts, so the console can chart how the
//! traffic share moved over time without a time-series store.
//!
//! The aggregator records one point per experiment per batch that counted something (at most one
//! per second). When [`MAX_HISTORY_POINTS`] are held, every other interior point is dropped: the
//! history always spans the whole experiment, ever more coarsely, in bounded space.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::aggregate::PosteriorSnapshot;

/// Most points kept per experiment (each ~40 bytes per arm in JSON).
pub const MAX_HISTORY_POINTS: usize = 96;

/// Cumulative counts of one experiment's arms at one instant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HistoryPoint {
    /// Unix seconds.
    pub at: u64,
    pub exposures: BTreeMap<String, u64>,
    pub rewards: BTreeMap<String, f64>,
}

/// Appends the current counts of every experiment in `touched` at `now`.
pub(crate) fn record(posteriors: &mut PosteriorSnapshot, touched: &[String], now: u64) {
    for key in touched {
        let Some(experiment) = posteriors.experiments.get_mut(key) else {
            continue;
        };
        let point = HistoryPoint {
            at: now,
            exposures: experiment
                .arms
                .iter()
                .map(|(arm, s)| (arm.clone(), s.exposures))
                .collect(),
            rewards: experiment
                .arms
                .iter()
                .map(|(arm, s)| (arm.clone(), s.rewards))
                .collect(),
        };
        let history = &mut experiment.history;
        match history.last_mut() {
            Some(last) if last.at >= now => *last = point,
            _ => history.push(point),
        }
        if history.len() > MAX_HISTORY_POINTS {
            thin(history);
        }
    }
}

/// Drops every other interior point, keeping the first and the last.
fn thin(history: &mut Vec<HistoryPoint>) {
    let last = history.len() - 1;
    let mut index = 0;
    history.retain(|_| {
        let keep = index == 0 || index == last || index % 2 == 0;
        index += 1;
        keep
    });
}

/// Each arm's share of the exposures between consecutive points: `(at, arm → share)`, one entry
/// per interval that saw any exposure.
pub fn traffic_shares(history: &[HistoryPoint]) -> Vec<(u64, BTreeMap<String, f64>)> {
    history
        .windows(2)
        .filter_map(|pair| {
            let (before, after) = (&pair[0], &pair[1]);
            let deltas: BTreeMap<&String, u64> = after
                .exposures
                .iter()
                .map(|(arm, n)| {
                    let old = before.exposures.get(arm).copied().unwrap_or(0);
                    (arm, n.saturating_sub(old))
                })
                .collect();
            let total: u64 = deltas.values().sum();
            (total > 0).then(|| {
                let shares = deltas
                    .into_iter()
                    .map(|(arm, n)| (arm.clone(), n as f64 / total as f64))
                    .collect();
                (after.at, shares)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::ExperimentPosterior;
    use crate::bandit::ArmStats;

    fn posteriors(a: u64, b: u64) -> PosteriorSnapshot {
        let mut p = PosteriorSnapshot::default();
        let e = p
            .experiments
            .entry("hero".into())
            .or_insert_with(ExperimentPosterior::default);
        e.arms.insert(
            "a".into(),
            ArmStats {
                exposures: a,
                rewards: 0.0,
            },
        );
        e.arms.insert(
            "b".into(),
            ArmStats {
                exposures: b,
                rewards: 1.0,
            },
        );
        p
    }

    #[test]
    fn a_point_per_second_and_shares_between_points() {
        let mut p = posteriors(0, 0);
        let touched = vec!["hero".to_owned()];
        record(&mut p, &touched, 10);
        p.experiments
            .get_mut("hero")
            .unwrap()
            .arms
            .get_mut("a")
            .unwrap()
            .exposures = 3;
        p.experiments
            .get_mut("hero")
            .unwrap()
            .arms
            .get_mut("b")
            .unwrap()
            .exposures = 1;
        record(&mut p, &touched, 20);
        p.experiments
            .get_mut("hero")
            .unwrap()
            .arms
            .get_mut("b")
            .unwrap()
            .exposures = 4;
        // Same second: replaces the last point.
        record(&mut p, &touched, 20);
        let history = &p.experiments["hero"].history;
        assert_eq!(history.len(), 2);
        assert_eq!(history[1].exposures["b"], 4);
        let shares = traffic_shares(history);
        assert_eq!(shares.len(), 1);
        assert_eq!(shares[0].0, 20);
        assert!((shares[0].1["a"] - 3.0 / 7.0).abs() < 1e-12);
        assert!((shares[0].1["b"] - 4.0 / 7.0).abs() < 1e-12);
    }

    #[test]
    fn the_history_stays_bounded_and_spans_everything() {
        let mut p = posteriors(0, 0);
        let touched = vec!["hero".to_owned()];
        for t in 1..=1000u64 {
            p.experiments
                .get_mut("hero")
                .unwrap()
                .arms
                .get_mut("a")
                .unwrap()
                .exposures = t;
            record(&mut p, &touched, t);
            assert!(p.experiments["hero"].history.len() <= MAX_HISTORY_POINTS);
        }
        let history = &p.experiments["hero"].history;
        assert_eq!(history.first().unwrap().at, 1);
        assert_eq!(history.last().unwrap().at, 1000);
        assert!(history.windows(2).all(|w| w[0].at < w[1].at));
        assert!(history.len() > MAX_HISTORY_POINTS / 2);
    }
}
