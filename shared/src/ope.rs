//! Off-policy evaluation: how a candidate policy would have done on traffic another policy
//! served, from the logged decisions alone.
//!
//! Every logged row carries the arm shown, the probability it was shown with (the propensity)
//! and the reward it earned. Reweighting each row by `w = π(arm | x) / propensity`, where `π` is
//! the candidate's probability of the logged arm, gives unbiased estimates of the candidate's
//! mean reward as long as the logging policy gave every arm the candidate plays a positive
//! probability:
//!
//! - **IPS** (inverse propensity scoring): `mean(w · r)`.
//! - **SNIPS** (self-normalised IPS): `Σ w · r / Σ w`; slightly biased, much less variance.
//! - **DR** (doubly robust): `mean(Σ_a π(a | x) q̂(x, a) + w · (r − q̂(x, arm)))` with a reward
//!   model `q̂`; unbiased if either the propensities or `q̂` are right.
//!
//! Intervals are either the normal approximation from the per-row terms (SNIPS by the delta
//! method) or a percentile bootstrap over rows whose seed is an argument. Everything here is a
//! pure function of its inputs.

use std::cell::RefCell;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::aggregate::PosteriorSnapshot;
use crate::contextual::{contextual_choice, reward_scores};
use crate::decide::{LoadedModel, probabilities_for};
use crate::model::Model;
use crate::snapshot::{ExperimentStatus, Snapshot};
use crate::training::TrainingRow;

/// How far a candidate's probabilities over a row's arms may sum away from 1.
const SUM_TOLERANCE: f64 = 1e-6;

/// A candidate policy: its probability of each of a row's arms (`row.arms` order), or why it
/// has none for this row. Contextual policies (an ONNX reward model plus exploration) plug in
/// here by reading `row.context`.
pub trait TargetPolicy {
    fn distribution(&self, row: &TrainingRow) -> Result<Vec<f64>, String>;
}

/// Every arm equally likely.
pub struct UniformPolicy;

impl TargetPolicy for UniformPolicy {
    fn distribution(&self, row: &TrainingRow) -> Result<Vec<f64>, String> {
        if row.arms.is_empty() {
            return Err("row has no arms".into());
        }
        Ok(vec![1.0 / row.arms.len() as f64; row.arms.len()])
    }
}

/// A snapshot's experiments as they would draw with the given posteriors (fixed weights,
/// Thompson P(best), UCB1, ε-greedy; a stopped experiment's winner with probability 1), for
/// visitors the experiment enrols. These policies ignore the context, so each experiment's
/// distribution is computed once. A paused experiment serves no arm and has no distribution.
pub struct SnapshotPolicy {
    by_experiment: BTreeMap<String, BTreeMap<String, f64>>,
}

impl SnapshotPolicy {
    pub fn new(snapshot: &Snapshot, posteriors: &PosteriorSnapshot) -> Self {
        let by_experiment = snapshot
            .experiments
            .iter()
            .filter_map(|experiment| {
                let distribution = match (&experiment.status, &experiment.winner) {
                    (ExperimentStatus::Running, _) => {
                        let arms = experiment.arms.iter().map(|a| a.key.clone());
                        arms.zip(probabilities_for(experiment, posteriors))
                            .collect()
                    }
                    (ExperimentStatus::Stopped, Some(winner)) => {
                        BTreeMap::from([(winner.clone(), 1.0)])
                    }
                    _ => return None,
                };
                Some((experiment.key.clone(), distribution))
            })
            .collect();
        Self { by_experiment }
    }
}

impl TargetPolicy for SnapshotPolicy {
    fn distribution(&self, row: &TrainingRow) -> Result<Vec<f64>, String> {
        let by_arm = self.by_experiment.get(&row.experiment).ok_or_else(|| {
            format!(
                "experiment {} is not running (nor stopped with a winner) in the snapshot",
                row.experiment
            )
        })?;
        on_row_arms(by_arm, row)
    }
}

/// A snapshot whose experiments may be contextual, as `decide` would draw for each row's logged
/// context: the contextual policy's distribution (a reward model with its exploration, or
/// linear Thompson's P(best) with the posteriors' linear arms) or, wherever that policy would
/// fall back (a feature missing from the row, no such model given, …), the plain policy's.
/// Fallbacks are counted by code. Models are given as loaded; the canary split does not apply
/// (rows carry no unit), so each model's `stable` version scores.
pub struct ContextualSnapshotPolicy<'a> {
    snapshot: &'a Snapshot,
    posteriors: &'a PosteriorSnapshot,
    models: &'a [LoadedModel<'a>],
    plain: SnapshotPolicy,
    fallbacks: RefCell<BTreeMap<String, usize>>,
}

impl<'a> ContextualSnapshotPolicy<'a> {
    pub fn new(
        snapshot: &'a Snapshot,
        posteriors: &'a PosteriorSnapshot,
        models: &'a [LoadedModel<'a>],
    ) -> Self {
        Self {
            snapshot,
            posteriors,
            models,
            plain: SnapshotPolicy::new(snapshot, posteriors),
            fallbacks: RefCell::default(),
        }
    }

    /// Rows the plain policy answered for, by fallback code.
    pub fn fallbacks(&self) -> BTreeMap<String, usize> {
        self.fallbacks.borrow().clone()
    }
}

impl TargetPolicy for ContextualSnapshotPolicy<'_> {
    fn distribution(&self, row: &TrainingRow) -> Result<Vec<f64>, String> {
        let contextual = self
            .snapshot
            .experiment(&row.experiment)
            .filter(|e| matches!(e.status, ExperimentStatus::Running))
            .and_then(|e| e.contextual.as_ref().map(|policy| (e, policy)));
        if let Some((experiment, policy)) = contextual {
            let context = Value::Object(row.context.clone().into_iter().collect());
            let choice = contextual_choice(
                policy,
                experiment,
                self.snapshot,
                self.posteriors,
                self.models,
                "",
                &context,
            );
            match choice {
                Ok(choice) => {
                    let by_arm: BTreeMap<String, f64> = experiment
                        .arms
                        .iter()
                        .map(|a| a.key.clone())
                        .zip(choice.draw.probabilities())
                        .collect();
                    return on_row_arms(&by_arm, row);
                }
                Err(fallback) => {
                    *self
                        .fallbacks
                        .borrow_mut()
                        .entry(fallback.code.to_owned())
                        .or_default() += 1;
                }
            }
        }
        self.plain.distribution(row)
    }
}

/// A reward model's estimate of every arm's reward for each row's logged context (`row.arms`
/// order), for doubly robust. A row the model cannot score (a feature missing from its context,
/// an arm without an output) gets no estimates, so `score_rows` skips it with the reason.
pub fn model_estimates(model: &Model, rows: &[TrainingRow]) -> Vec<Vec<f64>> {
    rows.iter()
        .map(|row| {
            let context = Value::Object(row.context.clone().into_iter().collect());
            let arms: Vec<&str> = row.arms.iter().map(String::as_str).collect();
            reward_scores(model, &arms, &context).unwrap_or_default()
        })
        .collect()
}

/// An explicit distribution over arms, one for all rows or one per value of a context feature.
///
/// JSON: `{"arms": {"a": 0.2, "b": 0.8}}`, or `{"by": "position", "cells": {"0": {...}, ...}}`
/// where a cell's key is the feature's value (strings as they are, other values as JSON text).
/// Arms a distribution leaves out get probability 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArmDistribution {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arms: Option<BTreeMap<String, f64>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cells: BTreeMap<String, BTreeMap<String, f64>>,
}

impl ArmDistribution {
    /// Parses and checks that it is one of the two shapes, with probabilities in [0, 1].
    pub fn parse(json: &str) -> Result<Self, String> {
        let parsed: Self = serde_json::from_str(json).map_err(|e| e.to_string())?;
        match (&parsed.by, &parsed.arms, parsed.cells.is_empty()) {
            (None, Some(_), true) | (Some(_), None, false) => {}
            _ => return Err("give either `arms`, or `by` with `cells`".into()),
        }
        let all = parsed.arms.iter().chain(parsed.cells.values());
        for distribution in all {
            if let Some((arm, p)) = distribution
                .iter()
                .find(|(_, p)| !(p.is_finite() && (0.0..=1.0).contains(*p)))
            {
                return Err(format!("arm {arm}: probability {p} is not in [0, 1]"));
            }
        }
        Ok(parsed)
    }
}

impl TargetPolicy for ArmDistribution {
    fn distribution(&self, row: &TrainingRow) -> Result<Vec<f64>, String> {
        let table = match (&self.by, &self.arms) {
            (Some(feature), _) => {
                let cell = cell_key(&row.context, feature)
                    .ok_or_else(|| format!("context has no feature {feature}"))?;
                self.cells
                    .get(&cell)
                    .ok_or_else(|| format!("no distribution for {feature} = {cell}"))?
            }
            (None, Some(arms)) => arms,
            (None, None) => return Err("empty distribution".into()),
        };
        on_row_arms(table, row)
    }
}

/// The value of a context feature as a cell key: strings as they are, anything else as JSON.
pub fn cell_key(context: &BTreeMap<String, Value>, feature: &str) -> Option<String> {
    match context.get(feature)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Puts a per-arm table in the row's arm order; the candidate must spend all of its mass on the
/// arms the row was chosen from.
fn on_row_arms(by_arm: &BTreeMap<String, f64>, row: &TrainingRow) -> Result<Vec<f64>, String> {
    let probabilities: Vec<f64> = row
        .arms
        .iter()
        .map(|arm| by_arm.get(arm.as_str()).copied().unwrap_or(0.0))
        .collect();
    let sum: f64 = probabilities.iter().sum();
    if (sum - 1.0).abs() > SUM_TOLERANCE {
        return Err(format!(
            "candidate puts mass {sum:.6} (not 1) on the logged arms"
        ));
    }
    Ok(probabilities)
}

/// A row ready for the estimators: everything is checked and in the row's arm order.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredRow {
    pub reward: f64,
    /// Logging policy's probability of the logged arm, in (0, 1].
    pub propensity: f64,
    /// Index of the logged arm.
    pub logged_arm: usize,
    /// The candidate's probability of every arm.
    pub target: Vec<f64>,
    /// Reward-model estimate for every arm, when doubly robust is wanted.
    pub q_hat: Option<Vec<f64>>,
}

impl ScoredRow {
    /// Importance weight π(logged arm) / propensity.
    pub fn weight(&self) -> f64 {
        self.target[self.logged_arm] / self.propensity
    }
}

/// Rows ready for estimation, and how many were left out for which reason.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScoredRows {
    pub rows: Vec<ScoredRow>,
    pub skipped: BTreeMap<String, usize>,
}

/// Checks each logged row and asks the candidate for its distribution. `q_hat`, when given,
/// holds the reward model's per-arm estimates for each row (same order as `rows`).
///
/// A row is skipped, counted by reason, when its propensity is 0 (the logging policy could
/// not have shown the arm: such rows carry no information about other arms' weights and would
/// divide by zero), its propensity or reward is not a finite number in range, its arm is not
/// among its arms, or the candidate has no distribution for it.
pub fn score_rows(
    rows: &[TrainingRow],
    policy: &dyn TargetPolicy,
    q_hat: Option<&[Vec<f64>]>,
) -> ScoredRows {
    let mut scored = ScoredRows::default();
    for (i, row) in rows.iter().enumerate() {
        let outcome = score_row(row, policy, q_hat.map(|q| q.get(i)));
        match outcome {
            Ok(row) => scored.rows.push(row),
            Err(reason) => *scored.skipped.entry(reason).or_default() += 1,
        }
    }
    scored
}

fn score_row(
    row: &TrainingRow,
    policy: &dyn TargetPolicy,
    q_hat: Option<Option<&Vec<f64>>>,
) -> Result<ScoredRow, String> {
    if row.propensity == 0.0 {
        return Err("propensity is 0".into());
    }
    if !(row.propensity.is_finite() && row.propensity > 0.0 && row.propensity <= 1.0) {
        return Err("propensity is not in (0, 1]".into());
    }
    if !row.reward.is_finite() {
        return Err("reward is not a finite number".into());
    }
    let logged_arm = row
        .arms
        .iter()
        .position(|a| *a == row.arm)
        .ok_or("arm is not among the row's arms")?;
    let target = policy
        .distribution(row)
        .map_err(|e| format!("candidate: {e}"))?;
    let q_hat = match q_hat {
        None => None,
        Some(Some(q)) if q.len() == row.arms.len() && q.iter().all(|v| v.is_finite()) => {
            Some(q.clone())
        }
        Some(_) => return Err("reward model: no finite estimate for every arm".into()),
    };
    Ok(ScoredRow {
        reward: row.reward,
        propensity: row.propensity,
        logged_arm,
        target,
        q_hat,
    })
}

/// The documented default reward model for DR: the mean reward of each arm (per value of the
/// `by` feature when given), cross-fitted over `folds` folds. Row `i` belongs to fold
/// `i % folds` (file order), and its estimates come only from the other folds' rows, so no row
/// scores itself. A cell with no rows in the other folds falls back to that arm's mean over all
/// cells, then to the other folds' overall mean (0 when they are empty). `folds < 2` fits on
/// all rows (no cross-fitting).
pub fn cross_fitted_means(rows: &[TrainingRow], folds: usize, by: Option<&str>) -> Vec<Vec<f64>> {
    let folds = folds.max(1);
    let cell_of = |row: &TrainingRow| by.and_then(|f| cell_key(&row.context, f));
    // (sum, count) per fold for every (arm, cell), every arm, and overall.
    let mut per_cell: BTreeMap<(&str, Option<String>), Vec<SumCount>> = BTreeMap::new();
    let mut per_arm: BTreeMap<&str, Vec<SumCount>> = BTreeMap::new();
    let mut overall = vec![(0.0, 0.0); folds];
    for (i, row) in rows.iter().enumerate() {
        if !usable_for_fit(row) {
            continue;
        }
        let fold = i % folds;
        for slot in [
            &mut per_cell
                .entry((row.arm.as_str(), cell_of(row)))
                .or_insert_with(|| vec![(0.0, 0.0); folds])[fold],
            &mut per_arm
                .entry(row.arm.as_str())
                .or_insert_with(|| vec![(0.0, 0.0); folds])[fold],
            &mut overall[fold],
        ] {
            slot.0 += row.reward;
            slot.1 += 1.0;
        }
    }
    let outside = |sums: &[SumCount], fold: usize| -> Option<f64> {
        let (sum, count) = sums
            .iter()
            .enumerate()
            .filter(|&(f, _)| folds < 2 || f != fold)
            .fold((0.0, 0.0), |acc, (_, s)| (acc.0 + s.0, acc.1 + s.1));
        (count > 0.0).then(|| sum / count)
    };
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let fold = i % folds;
            let cell = cell_of(row);
            let fallback = outside(&overall, fold).unwrap_or(0.0);
            row.arms
                .iter()
                .map(|arm| {
                    per_cell
                        .get(&(arm.as_str(), cell.clone()))
                        .and_then(|s| outside(s, fold))
                        .or_else(|| per_arm.get(arm.as_str()).and_then(|s| outside(s, fold)))
                        .unwrap_or(fallback)
                })
                .collect()
        })
        .collect()
}

/// A sum of rewards and how many rows it adds up.
type SumCount = (f64, f64);

fn usable_for_fit(row: &TrainingRow) -> bool {
    row.reward.is_finite() && row.arms.contains(&row.arm)
}

/// How to put an interval around each estimate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum IntervalMethod {
    /// Estimate ± z · standard error, the standard error from the per-row terms' sample
    /// variance (SNIPS: delta method).
    Normal { level: f64 },
    /// Percentile bootstrap: `resamples` resamplings of the rows with replacement, drawn from a
    /// generator seeded with `seed`.
    Bootstrap {
        level: f64,
        resamples: usize,
        seed: u64,
    },
}

/// A value with its interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Estimate {
    pub value: f64,
    pub std_error: f64,
    pub low: f64,
    pub high: f64,
}

/// How trustworthy the reweighting is.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Diagnostics {
    pub rows: usize,
    /// `(Σ w)² / Σ w²`: how many rows the weighted estimate is worth.
    pub effective_sample_size: f64,
    pub max_weight: f64,
    /// Close to 1 when the propensities are right and the candidate stays on the logged support.
    pub mean_weight: f64,
    /// Reason → number of rows left out.
    pub skipped: BTreeMap<String, usize>,
}

/// The estimates for one candidate on one set of logs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OpeReport {
    pub interval: IntervalMethod,
    /// The logging policy's own value: the mean logged reward.
    pub on_policy: Estimate,
    pub ips: Estimate,
    pub snips: Estimate,
    /// Present when every row has reward-model estimates.
    pub dr: Option<Estimate>,
    pub diagnostics: Diagnostics,
}

/// Estimates the candidate's value from scored rows; `None` when there are none.
pub fn evaluate(scored: &ScoredRows, interval: IntervalMethod) -> Option<OpeReport> {
    let rows = &scored.rows;
    if rows.is_empty() {
        return None;
    }
    let n = rows.len() as f64;
    let weights: Vec<f64> = rows.iter().map(ScoredRow::weight).collect();
    let rewards: Vec<f64> = rows.iter().map(|r| r.reward).collect();
    let ips_terms: Vec<f64> = rows
        .iter()
        .zip(&weights)
        .map(|(r, w)| w * r.reward)
        .collect();
    let dr_terms: Option<Vec<f64>> = rows.iter().zip(&weights).map(dr_term).collect();
    let sum_w: f64 = weights.iter().sum();
    let sum_w2: f64 = weights.iter().map(|w| w * w).sum();
    let diagnostics = Diagnostics {
        rows: rows.len(),
        effective_sample_size: if sum_w2 > 0.0 {
            sum_w * sum_w / sum_w2
        } else {
            0.0
        },
        max_weight: weights.iter().copied().fold(0.0, f64::max),
        mean_weight: sum_w / n,
        skipped: scored.skipped.clone(),
    };
    let snips_value = snips(&ips_terms, &weights);
    let report = match interval {
        IntervalMethod::Normal { level } => {
            let z = normal_quantile(0.5 + level / 2.0);
            let snips_influence: Vec<f64> = weights
                .iter()
                .zip(&rewards)
                .map(|(w, r)| w * (r - snips_value) / (sum_w / n))
                .collect();
            let snips_se = if sum_w > 0.0 {
                standard_error(&snips_influence)
            } else {
                f64::NAN
            };
            OpeReport {
                interval,
                on_policy: normal(mean(&rewards), standard_error(&rewards), z),
                ips: normal(mean(&ips_terms), standard_error(&ips_terms), z),
                snips: normal(snips_value, snips_se, z),
                dr: dr_terms
                    .as_ref()
                    .map(|t| normal(mean(t), standard_error(t), z)),
                diagnostics,
            }
        }
        IntervalMethod::Bootstrap {
            level,
            resamples,
            seed,
        } => {
            let mut rng = SplitMix64(seed);
            let mut draws: [Vec<f64>; 4] = Default::default();
            for _ in 0..resamples.max(1) {
                let mut sums = [0.0; 4];
                for _ in 0..rows.len() {
                    let i = rng.below(rows.len());
                    sums[0] += rewards[i];
                    sums[1] += ips_terms[i];
                    sums[2] += weights[i];
                    sums[3] += dr_terms.as_ref().map_or(0.0, |t| t[i]);
                }
                draws[0].push(sums[0] / n);
                draws[1].push(sums[1] / n);
                draws[2].push(if sums[2] > 0.0 {
                    sums[1] / sums[2]
                } else {
                    0.0
                });
                draws[3].push(sums[3] / n);
            }
            let [on_policy, ips, snips_draws, dr] = draws;
            OpeReport {
                interval,
                on_policy: percentile(mean(&rewards), on_policy, level),
                ips: percentile(mean(&ips_terms), ips, level),
                snips: percentile(snips_value, snips_draws, level),
                dr: dr_terms.as_ref().map(|t| percentile(mean(t), dr, level)),
                diagnostics,
            }
        }
    };
    Some(report)
}

/// DR's per-row term: the model's value of the candidate plus the weighted residual.
fn dr_term((row, w): (&ScoredRow, &f64)) -> Option<f64> {
    let q = row.q_hat.as_ref()?;
    let direct: f64 = row.target.iter().zip(q).map(|(p, q)| p * q).sum();
    Some(direct + w * (row.reward - q[row.logged_arm]))
}

fn snips(ips_terms: &[f64], weights: &[f64]) -> f64 {
    let sum_w: f64 = weights.iter().sum();
    if sum_w > 0.0 {
        ips_terms.iter().sum::<f64>() / sum_w
    } else {
        0.0
    }
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Standard error of the mean from the sample standard deviation (n − 1); 0 for one value.
fn standard_error(values: &[f64]) -> f64 {
    let n = values.len() as f64;
    if values.len() < 2 {
        return 0.0;
    }
    let m = mean(values);
    let variance = values.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (n - 1.0);
    libm::sqrt(variance / n)
}

fn normal(value: f64, std_error: f64, z: f64) -> Estimate {
    Estimate {
        value,
        std_error,
        low: value - z * std_error,
        high: value + z * std_error,
    }
}

fn percentile(value: f64, mut draws: Vec<f64>, level: f64) -> Estimate {
    draws.sort_by(f64::total_cmp);
    let m = mean(&draws);
    let spread = draws.iter().map(|d| (d - m) * (d - m)).sum::<f64>()
        / (draws.len().saturating_sub(1).max(1)) as f64;
    let tail = (1.0 - level) / 2.0;
    Estimate {
        value,
        std_error: libm::sqrt(spread),
        low: quantile(&draws, tail),
        high: quantile(&draws, 1.0 - tail),
    }
}

/// Linear interpolation between order statistics (numpy's default), on sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let position = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = (below + 1).min(sorted.len() - 1);
    let fraction = position - below as f64;
    sorted[below] + (sorted[above] - sorted[below]) * fraction
}

/// Standard normal quantile by bisection on the CDF, `0.5 · erfc(−z / √2)`.
pub fn normal_quantile(p: f64) -> f64 {
    let cdf = |z: f64| 0.5 * libm::erfc(-z / core::f64::consts::SQRT_2);
    let (mut low, mut high) = (-40.0, 40.0);
    for _ in 0..200 {
        let mid = 0.5 * (low + high);
        if cdf(mid) < p {
            low = mid;
        } else {
            high = mid;
        }
    }
    0.5 * (low + high)
}

/// SplitMix64 (Steele, Lea and Flood 2014): a tiny, fully specified seeded generator, for the
/// bootstrap here and the CLI's simulations (the same seed gives the same run everywhere).
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform index below `n` by multiply-shift (bias below 2⁻³² for any realistic `n`).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform in [0, 1) from the top 53 bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn row(arms: &[&str], arm: &str, propensity: f64, reward: f64) -> TrainingRow {
        TrainingRow {
            decision: "d".into(),
            ts: 0,
            experiment: "hero".into(),
            context: BTreeMap::new(),
            arms: arms.iter().map(|a| (*a).to_owned()).collect(),
            arm: arm.into(),
            propensity,
            reward,
            policy: "fixed".into(),
            snapshot: "v1".into(),
            model: None,
        }
    }

    fn fixed(pairs: &[(&str, f64)]) -> ArmDistribution {
        ArmDistribution {
            by: None,
            arms: Some(pairs.iter().map(|&(a, p)| ((*a).to_owned(), p)).collect()),
            cells: BTreeMap::new(),
        }
    }

    const NORMAL_95: IntervalMethod = IntervalMethod::Normal { level: 0.95 };

    #[test]
    fn normal_quantile_matches_tables() {
        assert!((normal_quantile(0.975) - 1.959_963_984_540_054).abs() < 1e-9);
        assert!((normal_quantile(0.95) - 1.644_853_626_951_472_2).abs() < 1e-9);
        assert!(normal_quantile(0.5).abs() < 1e-12);
    }

    #[test]
    fn closed_form_two_arms_uniform_logging() {
        // Arm a always pays 1, b never; logging is 50/50; the candidate always plays a.
        let ab = ["a", "b"];
        let logs = [
            row(&ab, "a", 0.5, 1.0),
            row(&ab, "a", 0.5, 1.0),
            row(&ab, "b", 0.5, 0.0),
            row(&ab, "b", 0.5, 0.0),
        ];
        let perfect = vec![vec![1.0, 0.0]; logs.len()];
        let scored = score_rows(&logs, &fixed(&[("a", 1.0)]), Some(&perfect));
        let report = evaluate(&scored, NORMAL_95).unwrap();
        assert_eq!(report.on_policy.value, 0.5);
        // IPS terms 2, 2, 0, 0: mean 1, sample variance 4/3, standard error √(1/3).
        assert_eq!(report.ips.value, 1.0);
        assert!((report.ips.std_error - (1.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!((report.ips.high - 1.0 - 1.959_963_984_54 * (1.0f64 / 3.0).sqrt()).abs() < 1e-9);
        assert_eq!(report.snips.value, 1.0);
        // A perfect reward model leaves no residual: DR is exact with zero variance.
        let dr = report.dr.unwrap();
        assert_eq!((dr.value, dr.std_error), (1.0, 0.0));
        assert_eq!(report.diagnostics.max_weight, 2.0);
        assert_eq!(report.diagnostics.mean_weight, 1.0);
        assert_eq!(report.diagnostics.effective_sample_size, 2.0);
    }

    #[test]
    fn snips_differs_from_ips_when_weights_do_not_average_one() {
        let ab = ["a", "b"];
        // Only arm-a rows were logged: Σw = 2·3 over 3 rows.
        let logs = [
            row(&ab, "a", 0.5, 1.0),
            row(&ab, "a", 0.5, 0.0),
            row(&ab, "a", 0.5, 0.0),
        ];
        let report = evaluate(&score_rows(&logs, &fixed(&[("a", 1.0)]), None), NORMAL_95).unwrap();
        assert!((report.ips.value - 2.0 / 3.0).abs() < 1e-12);
        assert!((report.snips.value - 1.0 / 3.0).abs() < 1e-12);
        assert!(report.dr.is_none());
    }

    #[test]
    fn rows_without_information_are_skipped_and_counted_by_reason() {
        let ab = ["a", "b"];
        let mut other = row(&ab, "a", 0.5, 1.0);
        other.experiment = "other".into();
        let logs = [
            row(&ab, "a", 0.0, 1.0),
            row(&ab, "a", 0.0, 0.0),
            row(&ab, "a", 1.5, 0.0),
            row(&ab, "c", 0.5, 0.0),
            row(&ab, "a", 0.5, f64::NAN),
            row(&ab, "b", 0.5, 1.0),
            other,
        ];
        let snapshot = Snapshot::parse(
            json!({"schema": 1, "version": "v2", "experiments": [
                {"key": "hero", "arms": [{"key": "a", "weight": 1}, {"key": "b", "weight": 3}]}
            ]})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let posteriors = PosteriorSnapshot::default();
        let scored = score_rows(&logs, &SnapshotPolicy::new(&snapshot, &posteriors), None);
        assert_eq!(scored.rows.len(), 1);
        assert_eq!(scored.rows[0].target, vec![0.25, 0.75]);
        let skipped: Vec<(&str, usize)> = scored
            .skipped
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        assert_eq!(
            skipped,
            vec![
                ("arm is not among the row's arms", 1),
                (
                    "candidate: experiment other is not running (nor stopped with a winner) in the snapshot",
                    1
                ),
                ("propensity is 0", 2),
                ("propensity is not in (0, 1]", 1),
                ("reward is not a finite number", 1),
            ]
        );
        assert!(evaluate(&ScoredRows::default(), NORMAL_95).is_none());
    }

    #[test]
    fn a_stopped_experiment_is_its_winner_and_a_paused_one_has_no_distribution() {
        let snapshot = Snapshot::parse(
            json!({"schema": 1, "version": "v3", "experiments": [
                {"key": "hero", "status": "stopped", "winner": "b", "arms": [{"key": "a"}, {"key": "b"}]},
                {"key": "cta", "status": "paused", "arms": [{"key": "a"}, {"key": "b"}]}
            ]})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let policy = SnapshotPolicy::new(&snapshot, &PosteriorSnapshot::default());
        let mut logged = row(&["a", "b"], "b", 0.5, 1.0);
        assert_eq!(policy.distribution(&logged), Ok(vec![0.0, 1.0]));
        logged.experiment = "cta".into();
        assert!(policy.distribution(&logged).is_err());
    }

    #[test]
    fn a_candidate_must_spend_its_mass_on_the_logged_arms() {
        let logs = [row(&["a", "b"], "a", 0.5, 1.0)];
        let scored = score_rows(&logs, &fixed(&[("a", 0.5), ("z", 0.5)]), None);
        assert!(scored.rows.is_empty());
        assert_eq!(scored.skipped.len(), 1);
        assert!(scored.skipped.keys().next().unwrap().contains("mass 0.5"));
    }

    #[test]
    fn distributions_per_context_cell() {
        let policy = ArmDistribution::parse(
            r#"{"by": "position", "cells": {"0": {"a": 1}, "1": {"b": 1}, "top": {"a": 0.5, "b": 0.5}}}"#,
        )
        .unwrap();
        let mut logged = row(&["a", "b"], "a", 0.5, 1.0);
        let mut at = |v: Value| {
            logged.context.insert("position".into(), v);
            policy.distribution(&logged)
        };
        assert_eq!(at(json!(0)), Ok(vec![1.0, 0.0]));
        assert_eq!(at(json!(1)), Ok(vec![0.0, 1.0]));
        assert_eq!(at(json!("top")), Ok(vec![0.5, 0.5]));
        assert!(at(json!(2)).unwrap_err().contains("position = 2"));
        assert!(ArmDistribution::parse(r#"{"arms": {"a": 1.5}}"#).is_err());
        assert!(ArmDistribution::parse(r#"{"by": "x", "arms": {"a": 1}}"#).is_err());
        assert!(ArmDistribution::parse(r#"{"arms": {"a": 1}, "extra": 1}"#).is_err());
    }

    #[test]
    fn cross_fitted_means_never_use_a_rows_own_fold() {
        let ab = ["a", "b"];
        let logs = [
            row(&ab, "a", 0.5, 1.0), // fold 0
            row(&ab, "a", 0.5, 0.0), // fold 1
            row(&ab, "b", 0.5, 1.0), // fold 0
            row(&ab, "a", 0.5, 1.0), // fold 1
        ];
        let q = cross_fitted_means(&logs, 2, None);
        // Fold 0 sees fold 1 only: a = (0 + 1) / 2, b has no rows there → overall mean 1/2.
        assert_eq!(q[0], vec![0.5, 0.5]);
        // Fold 1 sees fold 0 only: a = 1, b = 1.
        assert_eq!(q[1], vec![1.0, 1.0]);
        assert_eq!(q[2], q[0]);
        // One fold: plain means over all rows.
        assert_eq!(cross_fitted_means(&logs, 1, None)[0], vec![2.0 / 3.0, 1.0]);
    }

    #[test]
    fn cross_fitted_means_per_cell_fall_back_to_the_arm() {
        let ab = ["a", "b"];
        let mut logs = vec![
            row(&ab, "a", 0.5, 1.0),
            row(&ab, "a", 0.5, 0.0),
            row(&ab, "b", 0.5, 0.0),
        ];
        logs[0].context.insert("device".into(), json!("mobile"));
        logs[1].context.insert("device".into(), json!("desktop"));
        logs[2].context.insert("device".into(), json!("mobile"));
        let q = cross_fitted_means(&logs, 1, Some("device"));
        assert_eq!(q[0], vec![1.0, 0.0]);
        // No desktop row for b: b's mean over every cell.
        assert_eq!(q[1], vec![0.0, 0.0]);
    }

    #[test]
    fn bootstrap_is_seeded_and_brackets_the_estimate() {
        let ab = ["a", "b"];
        let logs: Vec<TrainingRow> = (0..200)
            .map(|i| row(&ab, ["a", "b"][i % 2], 0.5, f64::from(i % 3 == 0)))
            .collect();
        let scored = score_rows(&logs, &fixed(&[("a", 0.8), ("b", 0.2)]), None);
        let boot = |seed| {
            evaluate(
                &scored,
                IntervalMethod::Bootstrap {
                    level: 0.9,
                    resamples: 300,
                    seed,
                },
            )
            .unwrap()
        };
        assert_eq!(boot(7), boot(7));
        assert_ne!(boot(7).ips, boot(8).ips);
        let normal = evaluate(&scored, IntervalMethod::Normal { level: 0.9 }).unwrap();
        for (b, n) in [
            (boot(7).ips, normal.ips),
            (boot(7).snips, normal.snips),
            (boot(7).on_policy, normal.on_policy),
        ] {
            assert_eq!(b.value, n.value);
            assert!(b.low < b.value && b.value < b.high, "{b:?}");
            // Two ways to the same sampling spread: within a fifth of each other.
            assert!(
                (b.std_error / n.std_error - 1.0).abs() < 0.2,
                "{b:?} vs {n:?}"
            );
        }
    }

    fn arb_logs() -> impl Strategy<Value = (Vec<f64>, Vec<(usize, f64)>)> {
        (2usize..6).prop_flat_map(|k| {
            (
                prop::collection::vec(0.05f64..1.0, k),
                prop::collection::vec((0..k, 0.0f64..10.0), 1..60),
            )
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn evaluating_the_logging_policy_gives_the_on_policy_mean((weights, draws) in arb_logs()) {
            let total: f64 = weights.iter().sum();
            let p: Vec<f64> = weights.iter().map(|w| w / total).collect();
            let names: Vec<String> = (0..p.len()).map(|i| format!("arm{i}")).collect();
            let arms: Vec<&str> = names.iter().map(String::as_str).collect();
            let logs: Vec<TrainingRow> = draws
                .iter()
                .map(|&(a, r)| row(&arms, arms[a], p[a], r))
                .collect();
            let pairs: Vec<(&str, f64)> = arms.iter().copied().zip(p.iter().copied()).collect();
            let report = evaluate(&score_rows(&logs, &fixed(&pairs), None), NORMAL_95).unwrap();
            let tolerance = 1e-9 * (1.0 + report.on_policy.value.abs());
            prop_assert!((report.ips.value - report.on_policy.value).abs() < tolerance);
            prop_assert!((report.snips.value - report.on_policy.value).abs() < tolerance);
            prop_assert!((report.ips.std_error - report.on_policy.std_error).abs() < tolerance);
            prop_assert!((report.diagnostics.effective_sample_size - logs.len() as f64).abs() < 1e-6);
        }

        #[test]
        fn ips_is_exact_on_logs_in_exact_proportion(
            counts in prop::collection::vec(1usize..8, 2..5),
            rewards in prop::collection::vec(0.0f64..1.0, 5),
            target_weights in prop::collection::vec(0.0f64..1.0, 5),
        ) {
            // Arm i appears counts[i] times out of n with propensity counts[i] / n and a fixed
            // reward: IPS must equal the candidate's true value Σ π(a) r(a) exactly.
            let k = counts.len();
            let n: usize = counts.iter().sum();
            let names: Vec<String> = (0..k).map(|i| format!("arm{i}")).collect();
            let arms: Vec<&str> = names.iter().map(String::as_str).collect();
            let logs: Vec<TrainingRow> = (0..k)
                .flat_map(|i| std::iter::repeat_n(i, counts[i]))
                .map(|i| row(&arms, arms[i], counts[i] as f64 / n as f64, rewards[i]))
                .collect();
            let total: f64 = target_weights[..k].iter().sum::<f64>() + 1e-9;
            let pi: Vec<f64> = target_weights[..k].iter().map(|w| (w + 1e-9 / k as f64) / total).collect();
            let pairs: Vec<(&str, f64)> = arms.iter().copied().zip(pi.iter().copied()).collect();
            let truth: f64 = (0..k).map(|i| pi[i] * rewards[i]).sum();
            let report = evaluate(&score_rows(&logs, &fixed(&pairs), None), NORMAL_95).unwrap();
            prop_assert!((report.ips.value - truth).abs() < 1e-9, "{} vs {}", report.ips.value, truth);
            prop_assert!((report.snips.value - truth).abs() < 1e-9);
            // Any reward model: DR stays exact, the residuals average out in exact proportion.
            let q: Vec<Vec<f64>> = logs.iter().map(|_| (0..k).map(|i| i as f64 * 0.1).collect()).collect();
            let dr = evaluate(&score_rows(&logs, &fixed(&pairs), Some(&q)), NORMAL_95).unwrap().dr.unwrap();
            prop_assert!((dr.value - truth).abs() < 1e-9, "{} vs {}", dr.value, truth);
        }
    }
}
