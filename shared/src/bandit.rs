//! Bandit policies as exact distributions over arms.
//!
//! Every policy is expressed as the probability of each arm, and the edge draws the arm from
//! that distribution with [`choose_arm`]. The propensity logged with a decision is therefore
//! exactly the probability the arm was drawn with, which is what off-policy evaluation needs.
//!
//! Thompson sampling is done by probability matching: P(arm is best) under the Beta posteriors
//! is estimated by Monte Carlo ([`THOMPSON_DRAWS`] joint draws) and the edge samples from those
//! probabilities. That is Thompson sampling in distribution, with a Monte-Carlo estimate of
//! P(best). The draws come from a PRNG seeded from the statistics themselves and use the
//! pure-Rust `libm`, so every edge and the aggregator compute bit-identical numbers; the core
//! reads no randomness of its own.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::snapshot::{Arm, Policy};

/// Joint posterior draws behind one Thompson estimate: the standard error of a probability is
/// at most 0.8 percentage points, and the cost is a few hundred microseconds for a few arms.
pub const THOMPSON_DRAWS: usize = 4000;

/// What an arm has seen: Beta-Bernoulli sufficient statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArmStats {
    pub exposures: u64,
    /// Sum of rewards (each in 0..=1).
    pub rewards: f64,
}

impl ArmStats {
    /// Rewards as used by the policies: non-finite or negative counts read as zero.
    fn clean_rewards(&self) -> f64 {
        if self.rewards.is_finite() && self.rewards > 0.0 {
            self.rewards
        } else {
            0.0
        }
    }

    /// Beta posterior α = 1 + rewards (uniform prior).
    pub fn alpha(&self) -> f64 {
        1.0 + self.clean_rewards()
    }

    /// Beta posterior β = 1 + exposures − rewards, at least 1: feedback can reach the
    /// aggregator before its exposure, so rewards may briefly exceed exposures.
    pub fn beta(&self) -> f64 {
        (1.0 + self.exposures as f64 - self.clean_rewards()).max(1.0)
    }

    /// Posterior mean α / (α + β).
    pub fn posterior_mean(&self) -> f64 {
        let (a, b) = (self.alpha(), self.beta());
        a / (a + b)
    }

    /// Observed reward rate, in 0..=1 (0 for an untried arm).
    pub fn empirical_mean(&self) -> f64 {
        if self.exposures == 0 {
            0.0
        } else {
            (self.clean_rewards() / self.exposures as f64).min(1.0)
        }
    }
}

/// The exact distribution over `arms` that `policy` draws from, given each arm's statistics
/// (`stats[i]` belongs to `arms[i]`; missing statistics count as an untried arm).
///
/// Always finite, non-negative and summing to 1 (empty only when `arms` is).
pub fn arm_probabilities(policy: &Policy, arms: &[Arm], stats: &[ArmStats]) -> Vec<f64> {
    let k = arms.len();
    if k == 0 {
        return Vec::new();
    }
    let stats: Vec<ArmStats> = (0..k)
        .map(|i| stats.get(i).copied().unwrap_or_default())
        .collect();
    let probabilities = match policy {
        Policy::Fixed => fixed(arms),
        Policy::EpsilonGreedy { epsilon } => epsilon_greedy(*epsilon, &stats),
        Policy::Ucb1 => ucb1(&stats),
        Policy::Thompson => thompson(&stats),
    };
    normalised(probabilities)
}

fn fixed(arms: &[Arm]) -> Vec<f64> {
    arms.iter()
        .map(|a| {
            if a.weight.is_finite() && a.weight > 0.0 {
                a.weight
            } else {
                0.0
            }
        })
        .collect()
}

/// Indices of the maximal scores (exact comparison: scores are computed identically everywhere).
fn argmax_set(scores: &[f64]) -> Vec<usize> {
    let best = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (0..scores.len()).filter(|&i| scores[i] == best).collect()
}

fn split_evenly(k: usize, winners: &[usize], mass: f64, base: f64) -> Vec<f64> {
    let mut p = vec![base; k];
    let share = mass / winners.len().max(1) as f64;
    for &i in winners {
        p[i] += share;
    }
    p
}

fn epsilon_greedy(epsilon: f64, stats: &[ArmStats]) -> Vec<f64> {
    let epsilon = if epsilon.is_finite() {
        epsilon.clamp(0.0, 1.0)
    } else {
        1.0
    };
    let k = stats.len();
    // The posterior mean ranks untried arms at 1/2 instead of leaving them undefined.
    let means: Vec<f64> = stats.iter().map(ArmStats::posterior_mean).collect();
    split_evenly(k, &argmax_set(&means), 1.0 - epsilon, epsilon / k as f64)
}

fn ucb1(stats: &[ArmStats]) -> Vec<f64> {
    let k = stats.len();
    let untried: Vec<usize> = (0..k).filter(|&i| stats[i].exposures == 0).collect();
    if !untried.is_empty() {
        return split_evenly(k, &untried, 1.0, 0.0);
    }
    let total: f64 = stats.iter().map(|s| s.exposures as f64).sum();
    let log_total = libm::log(total);
    let scores: Vec<f64> = stats
        .iter()
        .map(|s| s.empirical_mean() + libm::sqrt(2.0 * log_total / s.exposures as f64))
        .collect();
    split_evenly(k, &argmax_set(&scores), 1.0, 0.0)
}

fn thompson(stats: &[ArmStats]) -> Vec<f64> {
    let k = stats.len();
    // Identical posteriors are exchangeable: each arm is best with probability exactly 1/k, and
    // new experiments (no data yet) skip the Monte-Carlo estimate entirely.
    if stats
        .windows(2)
        .all(|w| w[0].alpha() == w[1].alpha() && w[0].beta() == w[1].beta())
    {
        return vec![1.0 / k as f64; k];
    }
    let mut rng = Xoshiro256::from_stats(stats);
    let mut wins = vec![0u32; k];
    for _ in 0..THOMPSON_DRAWS {
        let mut best = 0;
        let mut best_draw = f64::NEG_INFINITY;
        for (i, s) in stats.iter().enumerate() {
            let draw = rng.beta(s.alpha(), s.beta());
            if draw > best_draw {
                best = i;
                best_draw = draw;
            }
        }
        wins[best] += 1;
    }
    wins.iter()
        .map(|&w| f64::from(w) / THOMPSON_DRAWS as f64)
        .collect()
}

/// Scales to sum 1; falls back to uniform when nothing has positive mass.
fn normalised(mut p: Vec<f64>) -> Vec<f64> {
    for x in p.iter_mut() {
        if !(x.is_finite() && *x > 0.0) {
            *x = 0.0;
        }
    }
    let sum: f64 = p.iter().sum();
    if !(sum.is_finite() && sum > 0.0) {
        let k = p.len() as f64;
        return vec![1.0 / k; p.len()];
    }
    for x in p.iter_mut() {
        *x /= sum;
    }
    p
}

/// The arm for a uniform draw `u` in [0, 1) by inverse CDF.
///
/// Never returns an arm of zero probability unless all are zero, and never an index out of
/// bounds for a non-empty slice (rounding that leaves the cumulative sum below `u` falls to the
/// last arm with positive probability). Returns 0 for an empty slice.
pub fn choose_arm(probabilities: &[f64], u: f64) -> usize {
    let positive = |p: f64| p.is_finite() && p > 0.0;
    let Some(last) = probabilities.iter().rposition(|&p| positive(p)) else {
        return 0;
    };
    let u = if u.is_finite() { u.max(0.0) } else { 0.0 };
    let mut cumulative = 0.0;
    for (i, &p) in probabilities.iter().enumerate().take(last) {
        if positive(p) {
            cumulative += p;
            if u < cumulative {
                return i;
            }
        }
    }
    last
}

/// xoshiro256**: small, fast, and fully specified, so every platform draws the same numbers.
struct Xoshiro256 {
    s: [u64; 4],
}

impl Xoshiro256 {
    /// Seeds from a hash of the statistics: the same posteriors give the same estimate.
    fn from_stats(stats: &[ArmStats]) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"stellwerk-thompson-v1");
        hash.update((stats.len() as u64).to_le_bytes());
        for s in stats {
            hash.update(s.exposures.to_le_bytes());
            hash.update(s.clean_rewards().to_bits().to_le_bytes());
        }
        let digest = hash.finalize();
        let mut s = [0u64; 4];
        for (i, word) in s.iter_mut().enumerate() {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&digest[i * 8..i * 8 + 8]);
            *word = u64::from_le_bytes(bytes);
        }
        if s == [0; 4] {
            s[0] = 1;
        }
        Self { s }
    }

    fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 53 random bits.
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal by Marsaglia's polar method (needs only log and sqrt).
    fn normal(&mut self) -> f64 {
        loop {
            let x = 2.0 * self.uniform() - 1.0;
            let y = 2.0 * self.uniform() - 1.0;
            let s = x * x + y * y;
            if s > 0.0 && s < 1.0 {
                return x * libm::sqrt(-2.0 * libm::log(s) / s);
            }
        }
    }

    /// Gamma(shape, 1) for shape ≥ 1 by Marsaglia and Tsang (2000).
    fn gamma(&mut self, shape: f64) -> f64 {
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / libm::sqrt(9.0 * d);
        loop {
            let x = self.normal();
            let v = 1.0 + c * x;
            if v <= 0.0 {
                continue;
            }
            let v = v * v * v;
            let u = self.uniform();
            if u < 1.0 - 0.0331 * x * x * x * x
                || libm::log(u) < 0.5 * x * x + d * (1.0 - v + libm::log(v))
            {
                return d * v;
            }
        }
    }

    /// Beta(a, b) for a, b ≥ 1 as X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b).
    fn beta(&mut self, a: f64, b: f64) -> f64 {
        let x = self.gamma(a);
        let y = self.gamma(b);
        x / (x + y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arms(weights: &[f64]) -> Vec<Arm> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| Arm {
                key: format!("arm{i}"),
                weight,
                mutations: Vec::new(),
            })
            .collect()
    }

    fn stats(pairs: &[(u64, f64)]) -> Vec<ArmStats> {
        pairs
            .iter()
            .map(|&(exposures, rewards)| ArmStats { exposures, rewards })
            .collect()
    }

    fn close(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12)
    }

    #[test]
    fn fixed_normalises_weights() {
        let p = arm_probabilities(&Policy::Fixed, &arms(&[1.0, 3.0, 0.0]), &[]);
        assert!(close(&p, &[0.25, 0.75, 0.0]), "{p:?}");
    }

    #[test]
    fn epsilon_greedy_gives_the_best_mean_the_bulk_and_splits_ties() {
        let policy = Policy::EpsilonGreedy { epsilon: 0.2 };
        let p = arm_probabilities(
            &policy,
            &arms(&[1.0; 3]),
            &stats(&[(10, 1.0), (10, 5.0), (10, 2.0)]),
        );
        assert!(close(&p, &[0.2 / 3.0, 0.8 + 0.2 / 3.0, 0.2 / 3.0]), "{p:?}");
        let p = arm_probabilities(
            &policy,
            &arms(&[1.0; 3]),
            &stats(&[(10, 5.0), (10, 5.0), (10, 2.0)]),
        );
        assert!(
            close(&p, &[0.4 + 0.2 / 3.0, 0.4 + 0.2 / 3.0, 0.2 / 3.0]),
            "{p:?}"
        );
    }

    #[test]
    fn ucb1_tries_untried_arms_first_then_the_upper_bound() {
        let p = arm_probabilities(
            &Policy::Ucb1,
            &arms(&[1.0; 3]),
            &stats(&[(5, 5.0), (0, 0.0)]),
        );
        assert!(close(&p, &[0.0, 0.5, 0.5]), "{p:?}");
        // Arm 1 has the lower mean but far fewer trials: its bonus wins.
        let p = arm_probabilities(
            &Policy::Ucb1,
            &arms(&[1.0; 2]),
            &stats(&[(1000, 600.0), (2, 1.0)]),
        );
        assert_eq!(p, vec![0.0, 1.0]);
        let p = arm_probabilities(
            &Policy::Ucb1,
            &arms(&[1.0; 2]),
            &stats(&[(1000, 600.0), (1000, 500.0)]),
        );
        assert_eq!(p, vec![1.0, 0.0]);
    }

    #[test]
    fn thompson_is_deterministic_and_favours_the_better_arm() {
        let s = stats(&[(100, 10.0), (100, 30.0)]);
        let a = arm_probabilities(&Policy::Thompson, &arms(&[1.0; 2]), &s);
        let b = arm_probabilities(&Policy::Thompson, &arms(&[1.0; 2]), &s);
        assert_eq!(a, b);
        assert!(a[1] > 0.99, "{a:?}");
        // Identical posteriors: each arm is best exactly a third of the time.
        let even = arm_probabilities(&Policy::Thompson, &arms(&[1.0; 3]), &[]);
        assert_eq!(even, vec![1.0 / 3.0; 3]);
    }

    #[test]
    fn thompson_matches_the_closed_form_for_two_arms() {
        // P(X > Y) for X ~ Beta(3, 2), Y ~ Beta(2, 3) is 53/70 = 0.757142... (exact for integer
        // shapes: the integral of a polynomial).
        let p = arm_probabilities(
            &Policy::Thompson,
            &arms(&[1.0; 2]),
            &stats(&[(3, 2.0), (3, 1.0)]),
        );
        assert!((p[0] - 53.0 / 70.0).abs() < 0.02, "{p:?}");
    }

    #[test]
    fn beta_sampler_has_the_right_mean_and_variance() {
        let mut rng = Xoshiro256 { s: [1, 2, 3, 4] };
        let (a, b) = (2.0, 5.0);
        let n = 200_000;
        let draws: Vec<f64> = (0..n).map(|_| rng.beta(a, b)).collect();
        let mean = draws.iter().sum::<f64>() / n as f64;
        let var = draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        let (m, v) = (a / (a + b), a * b / ((a + b).powi(2) * (a + b + 1.0)));
        assert!((mean - m).abs() < 0.002, "mean {mean} vs {m}");
        assert!((var - v).abs() < 0.001, "variance {var} vs {v}");
    }

    #[test]
    fn choose_arm_is_robust() {
        assert_eq!(choose_arm(&[0.5, 0.5], 0.0), 0);
        assert_eq!(choose_arm(&[0.5, 0.5], 0.5), 1);
        assert_eq!(choose_arm(&[0.0, 1.0], 0.0), 1);
        assert_eq!(choose_arm(&[0.3, 0.3, 0.3], 0.999_999), 2);
        assert_eq!(choose_arm(&[0.5, 0.5, 0.0], 1.0), 1);
        assert_eq!(choose_arm(&[0.5, f64::NAN, 0.5], 0.7), 2);
        assert_eq!(choose_arm(&[0.5, 0.5], f64::NAN), 0);
        assert_eq!(choose_arm(&[], 0.3), 0);
        assert_eq!(choose_arm(&[0.0, 0.0], 0.3), 0);
    }

    fn arb_policy() -> impl Strategy<Value = Policy> {
        prop_oneof![
            Just(Policy::Fixed),
            Just(Policy::Thompson),
            Just(Policy::Ucb1),
            (0.0f64..=1.0).prop_map(|epsilon| Policy::EpsilonGreedy { epsilon }),
        ]
    }

    fn arb_case() -> impl Strategy<Value = (Vec<f64>, Vec<ArmStats>)> {
        (1usize..6).prop_flat_map(|k| {
            (
                prop::collection::vec(prop_oneof![Just(0.0), 0.0f64..100.0], k),
                prop::collection::vec(
                    (0u64..1_000_000, 0.0f64..1.0).prop_map(|(n, rate)| ArmStats {
                        exposures: n,
                        rewards: (n as f64 * rate).floor(),
                    }),
                    0..=k,
                ),
            )
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn probabilities_sum_to_one_and_are_finite(policy in arb_policy(), (weights, stats) in arb_case()) {
            let p = arm_probabilities(&policy, &arms(&weights), &stats);
            prop_assert_eq!(p.len(), weights.len());
            prop_assert!(p.iter().all(|x| x.is_finite() && *x >= 0.0 && *x <= 1.0), "{:?}", p);
            prop_assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{:?}", p);
        }

        #[test]
        fn hostile_stats_never_give_nan(policy in arb_policy(), rewards in prop::num::f64::ANY, n in any::<u64>()) {
            let s = [ArmStats { exposures: n, rewards }, ArmStats::default()];
            let p = arm_probabilities(&policy, &arms(&[1.0, 1.0]), &s);
            prop_assert!(p.iter().all(|x| x.is_finite()));
            prop_assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        }

        #[test]
        fn choose_arm_stays_in_bounds_on_positive_arms(p in prop::collection::vec(prop_oneof![Just(0.0), 0.0f64..1.0], 1..8), u in 0.0f64..1.0) {
            let i = choose_arm(&p, u);
            prop_assert!(i < p.len());
            if p.iter().any(|&x| x > 0.0) {
                prop_assert!(p[i] > 0.0);
            }
        }

        #[test]
        fn choose_arm_frequencies_match_probabilities(weights in prop::collection::vec(0.0f64..10.0, 1..6)) {
            let p = arm_probabilities(&Policy::Fixed, &arms(&weights), &[]);
            let n = 20_000;
            let mut counts = vec![0usize; p.len()];
            // A stratified sweep of u: frequencies must match to within one step per arm.
            for j in 0..n {
                counts[choose_arm(&p, (j as f64 + 0.5) / n as f64)] += 1;
            }
            for (c, q) in counts.iter().zip(&p) {
                prop_assert!((*c as f64 / n as f64 - q).abs() <= 2.0 / n as f64, "{:?} vs {:?}", counts, p);
            }
        }
    }
}
