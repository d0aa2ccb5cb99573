//! Contextual policies: the best arm for *this* visitor, with the exact probability it was drawn.
//!
//! An experiment may carry a `contextual` policy next to its plain `policy`. Two kinds:
//!
//! - **`reward_model`**: an ONNX reward model (synced like any model, named in the snapshot's
//!   `models`) scores every arm for the request's context in one run. Its manifest declares one
//!   output per arm, named `arm:<arm key>`, shape `[1, 1]`: the model says which value is which
//!   arm, so reordering arms in the snapshot cannot silently swap scores. An exploration strategy
//!   turns the scores into a distribution: `epsilon_greedy`, `softmax` (temperature) or
//!   `squarecb` (inverse-gap weighting, Foster & Rakhlin 2020, with `gamma`).
//! - **`linear_thompson`**: Bayesian linear regression per arm over the snapshot's feature spec
//!   (plus an intercept); the aggregator publishes each arm's mean and the Cholesky factor of
//!   its precision in the posterior snapshot, no ONNX needed. The edge draws every arm's score
//!   from its normal posterior and serves the best (Thompson sampling), then computes P(arm is
//!   best) by quadrature for the drawn arm only — the logged propensity — so a request costs
//!   K − 1 normal CDFs per quadrature node, not K·(K − 1).
//!
//! Whatever keeps a contextual policy from deciding soundly — a feature the context lacks or a
//! value the spec does not list, no loaded model, a model older than the snapshot's
//! `minVersion`, a failing or non-finite model, posteriors of the wrong shape — makes the
//! experiment fall back to its plain `policy`, and the reason is reported in the assignment.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::aggregate::PosteriorSnapshot;
use crate::bandit::choose_arm;
use crate::decide::LoadedModel;
use crate::model::{FeatureSpec, Model, build_features, lookup};
use crate::ope::SplitMix64;
use crate::snapshot::{Experiment, ModelRequirement, Snapshot};
use crate::validate::{Issues, field, index};

/// Context keys an exposure logs (see `decide::logged_context`); linear Thompson learns from
/// logged rows, so its features may read only these.
pub const LOGGED_CONTEXT_KEYS: &[&str] = &[
    "path",
    "device",
    "country",
    "language",
    "referrerClass",
    "returning",
    "hourOfWeek",
];

/// Prefix of a reward model's per-arm output names (`arm:<arm key>`).
pub const ARM_OUTPUT_PREFIX: &str = "arm:";

/// Largest feature vector linear Thompson accepts (the posterior holds d×d numbers per arm).
const MAX_LINEAR_WIDTH: usize = 64;

/// A contextual policy as the snapshot states it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum ContextualPolicy {
    RewardModel {
        /// A model named in the snapshot's `models`; its feature spec reads the context.
        model: String,
        exploration: Exploration,
    },
    LinearThompson {
        /// The context features, in the model manifests' format; an intercept is added.
        features: Vec<FeatureSpec>,
        /// Scale of the posterior's spread (v in Agrawal & Goyal 2013), in units of the arm's
        /// reward standard deviation: more is more exploration.
        #[serde(default = "one")]
        exploration: f64,
        /// Prior precision λ of each arm's intercept (its overall reward).
        #[serde(default = "one")]
        prior_precision: f64,
        /// Prior precision of each context coefficient, in pseudo-observations of "no effect":
        /// larger than λ, so an arm is first judged on its overall reward, as plain Thompson
        /// does, and context effects count once the data show them.
        #[serde(default = "default_context_precision")]
        context_precision: f64,
    },
}

fn one() -> f64 {
    1.0
}

fn default_context_precision() -> f64 {
    DEFAULT_CONTEXT_PRECISION
}

/// Default prior precision of linear Thompson's context coefficients.
pub const DEFAULT_CONTEXT_PRECISION: f64 = 100.0;

/// How a reward model's scores become a distribution over arms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Exploration {
    /// The best-scoring arms share 1 − ε, every arm gets ε / K.
    EpsilonGreedy { epsilon: f64 },
    /// p ∝ exp(score / temperature).
    Softmax { temperature: f64 },
    /// Inverse-gap weighting: p_a = 1 / (K + γ (best − score_a)), the best arm takes the rest.
    Squarecb { gamma: f64 },
}

impl Exploration {
    /// The policy name logged with the decision.
    pub fn name(&self) -> &'static str {
        match self {
            Exploration::EpsilonGreedy { .. } => "epsilon-greedy",
            Exploration::Softmax { .. } => "softmax",
            Exploration::Squarecb { .. } => "squarecb",
        }
    }

    /// The exact distribution over arms for these scores (one per arm, same order).
    /// Finite, non-negative and summing to 1 for any finite scores; empty for no arms.
    pub fn probabilities(&self, scores: &[f64]) -> Vec<f64> {
        let k = scores.len();
        if k == 0 {
            return Vec::new();
        }
        let best = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let p = match *self {
            Exploration::EpsilonGreedy { epsilon } => {
                let epsilon = epsilon.clamp(0.0, 1.0);
                let winners: Vec<usize> = (0..k).filter(|&i| scores[i] == best).collect();
                let mut p = vec![epsilon / k as f64; k];
                for &i in &winners {
                    p[i] += (1.0 - epsilon) / winners.len() as f64;
                }
                p
            }
            Exploration::Softmax { temperature } => {
                let t = temperature.max(f64::MIN_POSITIVE);
                scores.iter().map(|s| libm::exp((s - best) / t)).collect()
            }
            Exploration::Squarecb { gamma } => {
                let gamma = gamma.max(0.0);
                // The first best arm takes the remainder, so ties resolve the same everywhere.
                let top = scores.iter().position(|&s| s == best).unwrap_or(0);
                let mut p: Vec<f64> = scores
                    .iter()
                    .map(|s| 1.0 / (k as f64 + gamma * (best - s)))
                    .collect();
                p[top] = 0.0;
                p[top] = (1.0 - p.iter().sum::<f64>()).max(0.0);
                p
            }
        };
        normalised(p)
    }
}

fn normalised(mut p: Vec<f64>) -> Vec<f64> {
    for x in p.iter_mut() {
        if !(x.is_finite() && *x > 0.0) {
            *x = 0.0;
        }
    }
    let sum: f64 = p.iter().sum();
    if !(sum.is_finite() && sum > 0.0) {
        return vec![1.0 / p.len() as f64; p.len()];
    }
    p.iter_mut().for_each(|x| *x /= sum);
    p
}

/// Why a contextual policy did not decide; the experiment's plain policy decided instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    /// A short, countable code: `missing_feature`, `unknown_feature`, `model_missing`,
    /// `model_outdated`, `model_failed`, `posterior_mismatch`.
    pub code: &'static str,
    pub detail: String,
}

impl Fallback {
    fn new(code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for Fallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

/// A contextual policy's distribution for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct ContextualChoice {
    pub draw: ArmDraw,
    pub policy: &'static str,
    /// `name@version` of the reward model that scored the arms.
    pub model: Option<String>,
}

/// What a policy draws its arm from.
#[derive(Debug, Clone, PartialEq)]
pub enum ArmDraw {
    /// One exact probability per arm, drawn by inverse CDF.
    Probabilities(Vec<f64>),
    /// Independent normal scores N(means[i], spreads[i]²) per arm (linear Thompson): one score
    /// per arm is drawn and the best is served, with its P(best) by quadrature as propensity.
    NormalScores { means: Vec<f64>, spreads: Vec<f64> },
}

impl ArmDraw {
    /// The arm index for the uniform `u` in [0, 1), and the probability it had.
    pub fn draw(&self, u: f64) -> (usize, f64) {
        match self {
            ArmDraw::Probabilities(p) => {
                let index = choose_arm(p, u);
                (index, p.get(index).copied().unwrap_or(0.0))
            }
            ArmDraw::NormalScores { means, spreads } => {
                // The scores are a function of `u` alone, so a sticky `u` keeps its arm.
                let mut rng = SplitMix64(u.to_bits());
                let index = (0..means.len())
                    .map(|i| means[i] + spreads[i] * standard_normal(&mut rng))
                    .enumerate()
                    .fold((0, f64::NEG_INFINITY), |best, (i, score)| {
                        if score > best.1 { (i, score) } else { best }
                    })
                    .0;
                let propensity = normal_best_probability(index, means, spreads);
                if propensity > 0.0 && propensity.is_finite() {
                    return (index, propensity);
                }
                // An arm too unlikely for the quadrature to resolve (P below ~1e-300): draw
                // from the resolved probabilities instead, so the propensity stays positive.
                ArmDraw::Probabilities(normal_best_probabilities(means, spreads)).draw(u)
            }
        }
    }

    /// Every arm's probability (offline use: evaluation, tests). For normal scores this is K
    /// quadratures, which is why a request draws instead.
    pub fn probabilities(&self) -> Vec<f64> {
        match self {
            ArmDraw::Probabilities(p) => p.clone(),
            ArmDraw::NormalScores { means, spreads } => normal_best_probabilities(means, spreads),
        }
    }
}

/// One N(0, 1) draw (Box–Muller, cosine branch).
fn standard_normal(rng: &mut SplitMix64) -> f64 {
    let radius = libm::sqrt(-2.0 * libm::log(1.0 - rng.uniform()));
    radius * libm::cos(2.0 * std::f64::consts::PI * rng.uniform())
}

/// Checks that every feature is present in the context with a usable value: a contextual
/// policy must not guess for a visitor it cannot describe.
pub fn check_context(features: &[FeatureSpec], context: &Value) -> Result<(), Fallback> {
    for feature in features {
        let source = feature.source();
        let value = match lookup(context, source) {
            None | Some(Value::Null) => {
                return Err(Fallback::new("missing_feature", source));
            }
            Some(value) => value,
        };
        let usable = match feature {
            FeatureSpec::Numeric { .. } => value.as_f64().is_some_and(f64::is_finite),
            FeatureSpec::Bool { .. } => value.is_boolean(),
            FeatureSpec::OneHot { values, .. } => match value.as_str() {
                Some(text) => {
                    if !values.iter().any(|v| v == text) {
                        return Err(Fallback::new(
                            "unknown_feature",
                            format!("{source} = {text:?}"),
                        ));
                    }
                    true
                }
                None => false,
            },
            FeatureSpec::Hashed { .. } | FeatureSpec::PathDepth { .. } => value.is_string(),
        };
        if !usable {
            return Err(Fallback::new(
                "unknown_feature",
                format!("{source} has an unusable value {value}"),
            ));
        }
    }
    Ok(())
}

/// Scores every arm with the reward model: one run, each arm's score read from the output
/// named `arm:<key>`.
pub fn reward_scores(model: &Model, arms: &[&str], context: &Value) -> Result<Vec<f64>, Fallback> {
    let manifest = model.manifest();
    check_context(&manifest.features, context)?;
    let slots = arm_slots(manifest, arms)?;
    let outputs = model
        .score(context)
        .map_err(|e| Fallback::new("model_failed", e.to_string()))?;
    let scores: Vec<f64> = slots
        .iter()
        .map(|&i| outputs.get(i).map_or(f64::NAN, |&v| f64::from(v)))
        .collect();
    if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
        return Err(Fallback::new(
            "model_failed",
            format!("no finite score for arm {:?}", arms[i]),
        ));
    }
    Ok(scores)
}

/// For each arm, the index of its value among the model's concatenated outputs.
fn arm_slots(
    manifest: &crate::model::ModelManifest,
    arms: &[&str],
) -> Result<Vec<usize>, Fallback> {
    let mut offset = 0;
    let mut by_name = BTreeMap::new();
    for output in &manifest.outputs {
        let width: usize = output.shape.iter().product();
        if let Some(arm) = output.name.strip_prefix(ARM_OUTPUT_PREFIX)
            && width == 1
        {
            by_name.insert(arm, offset);
        }
        offset += width;
    }
    arms.iter()
        .map(|arm| {
            by_name.get(arm).copied().ok_or_else(|| {
                Fallback::new(
                    "model_failed",
                    format!("model has no output {ARM_OUTPUT_PREFIX}{arm}"),
                )
            })
        })
        .collect()
}

/// Whether `version` is at least `min_version` (both semantic versions; an unparseable model
/// version is never assumed new enough).
pub fn meets_min_version(version: &str, min_version: Option<&str>) -> bool {
    let Some(min) = min_version else {
        return true;
    };
    match (semver::Version::parse(version), semver::Version::parse(min)) {
        (Ok(v), Ok(m)) => v >= m,
        _ => false,
    }
}

/// The reward-model policy for one request: the model as the platform loaded it for this unit
/// (`None` when it has none), the snapshot's requirement for it, the arms and the context.
pub fn reward_model_choice(
    model: Option<&Model>,
    requirement: Option<&ModelRequirement>,
    exploration: &Exploration,
    arms: &[&str],
    context: &Value,
) -> Result<ContextualChoice, Fallback> {
    let model = model.ok_or_else(|| Fallback::new("model_missing", "no such model is loaded"))?;
    let min_version = requirement.and_then(|r| r.min_version.as_deref());
    if !meets_min_version(model.version(), min_version) {
        return Err(Fallback::new(
            "model_outdated",
            format!(
                "{} {} is older than the required {}",
                model.manifest().name,
                model.version(),
                min_version.unwrap_or("")
            ),
        ));
    }
    let scores = reward_scores(model, arms, context)?;
    Ok(ContextualChoice {
        draw: ArmDraw::Probabilities(exploration.probabilities(&scores)),
        policy: exploration.name(),
        model: Some(format!("{}@{}", model.manifest().name, model.version())),
    })
}

/// The contextual distribution for one experiment and request, or why the plain policy must
/// decide instead. `unit` picks the canary side of the reward model.
pub fn contextual_choice(
    policy: &ContextualPolicy,
    experiment: &Experiment,
    snapshot: &Snapshot,
    posteriors: &PosteriorSnapshot,
    models: &[LoadedModel<'_>],
    unit: &str,
    context: &Value,
) -> Result<ContextualChoice, Fallback> {
    let arms: Vec<&str> = experiment.arms.iter().map(|a| a.key.as_str()).collect();
    match policy {
        ContextualPolicy::RewardModel { model, exploration } => reward_model_choice(
            models
                .iter()
                .find(|m| m.name == model)
                .map(|m| m.for_unit(unit)),
            snapshot.models.iter().find(|m| &m.name == model),
            exploration,
            &arms,
            context,
        ),
        ContextualPolicy::LinearThompson {
            features,
            exploration,
            prior_precision,
            context_precision,
        } => linear_thompson_choice(
            features,
            *exploration,
            (*prior_precision, *context_precision),
            &arms,
            posteriors
                .experiments
                .get(&experiment.key)
                .map(|p| &p.linear),
            context,
        ),
    }
}

/// Names of the models that only score arms for contextual experiments (not joined to the
/// context as `model.<name>`: a per-arm output has no single score).
pub fn reward_model_names(snapshot: &Snapshot) -> impl Iterator<Item = &str> {
    snapshot
        .experiments
        .iter()
        .filter_map(|e| match &e.contextual {
            Some(ContextualPolicy::RewardModel { model, .. }) => Some(model.as_str()),
            _ => None,
        })
}

/// One arm's linear Thompson posterior, as the aggregator publishes it.
///
/// With prior precision λ, the sufficient statistics are A = λI + Σ x xᵀ and b = Σ r x over
/// the arm's joined rows. The edge needs only the mean μ = A⁻¹b and the lower Cholesky factor L
/// of A (A = L Lᵀ): a context's score is normal with mean xᵀμ and variance v² ‖L⁻¹x‖².
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LinearArm {
    /// Rows learned from.
    pub count: u64,
    /// A, row-major d×d.
    pub precision: Vec<f64>,
    /// b, length d.
    pub reward_sum: Vec<f64>,
    /// μ = A⁻¹b, length d.
    pub mean: Vec<f64>,
    /// L with A = L Lᵀ, row-major d×d, lower triangular.
    pub precision_factor: Vec<f64>,
}

impl LinearArm {
    /// The prior: A = diag(λ, λ_c, …, λ_c) (λ for the intercept, λ_c for each context
    /// coefficient), b = 0.
    pub fn prior(width: usize, prior_precision: f64, context_precision: f64) -> LinearArm {
        let mut precision = vec![0.0; width * width];
        let mut factor = vec![0.0; width * width];
        for i in 0..width {
            let diagonal = if i == 0 {
                prior_precision
            } else {
                context_precision
            };
            precision[i * width + i] = diagonal;
            factor[i * width + i] = libm::sqrt(diagonal);
        }
        LinearArm {
            count: 0,
            precision,
            reward_sum: vec![0.0; width],
            mean: vec![0.0; width],
            precision_factor: factor,
        }
    }

    pub fn width(&self) -> usize {
        self.mean.len()
    }

    /// The arm's reward standard deviation, bounded from its mean reward: rewards lie in
    /// [0, 1], so their variance is at most m(1 − m), with m = (Σr + 1) / (n + 2) (a uniform
    /// prior on the rate; Σr is b's intercept slot). This is the spread plain Thompson's Beta
    /// posterior has, so with no context effects linear Thompson explores as much as it does.
    pub fn reward_spread(&self) -> f64 {
        let rewards = self.reward_sum.first().copied().unwrap_or(0.0);
        let rate = ((rewards + 1.0) / (self.count as f64 + 2.0)).clamp(0.0, 1.0);
        libm::sqrt(rate * (1.0 - rate))
    }

    /// Adds one observation and recomputes the mean and factor; `false` (and nothing changed)
    /// when the dimensions differ or the update is not finite.
    pub fn learn(&mut self, x: &[f64], reward: f64) -> bool {
        let d = self.width();
        if x.len() != d || !reward.is_finite() || x.iter().any(|v| !v.is_finite()) {
            return false;
        }
        let mut precision = self.precision.clone();
        let mut reward_sum = self.reward_sum.clone();
        for i in 0..d {
            reward_sum[i] += reward * x[i];
            for j in 0..d {
                precision[i * d + j] += x[i] * x[j];
            }
        }
        let Some(factor) = cholesky(&precision, d) else {
            return false;
        };
        let mean = cholesky_solve(&factor, d, &reward_sum);
        if mean.iter().any(|v| !v.is_finite()) {
            return false;
        }
        *self = LinearArm {
            count: self.count.saturating_add(1),
            precision,
            reward_sum,
            mean,
            precision_factor: factor,
        };
        true
    }

    /// Problems with the published numbers, as `(field, reason)` (`""` for the whole arm).
    pub fn problems(&self) -> Vec<(&'static str, &'static str)> {
        let d = self.mean.len();
        let mut out = Vec::new();
        if d == 0 || d > MAX_LINEAR_WIDTH {
            out.push(("mean", "must hold 1 to 64 numbers"));
        }
        if self.reward_sum.len() != d {
            out.push(("rewardSum", "must have as many numbers as mean"));
        }
        for (name, values) in [
            ("precision", &self.precision),
            ("precisionFactor", &self.precision_factor),
        ] {
            if values.len() != d * d {
                out.push((name, "must hold d×d numbers (d = length of mean)"));
            }
        }
        let all = [
            &self.mean,
            &self.reward_sum,
            &self.precision,
            &self.precision_factor,
        ];
        if all.iter().any(|v| v.iter().any(|x| !x.is_finite())) {
            out.push(("", "every number must be finite"));
        }
        if self.precision_factor.len() == d * d
            && (0..d).any(|i| self.precision_factor[i * d + i] <= 0.0)
        {
            out.push(("precisionFactor", "diagonal must be positive"));
        }
        out
    }
}

/// Lower Cholesky factor of a symmetric positive-definite row-major d×d matrix.
fn cholesky(a: &[f64], d: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let mut sum = a[i * d + j];
            for k in 0..j {
                sum -= l[i * d + k] * l[j * d + k];
            }
            if i == j {
                if !(sum > 0.0 && sum.is_finite()) {
                    return None;
                }
                l[i * d + i] = libm::sqrt(sum);
            } else {
                l[i * d + j] = sum / l[j * d + j];
            }
        }
    }
    Some(l)
}

/// y with L y = x (forward substitution).
fn forward(l: &[f64], d: usize, x: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; d];
    for i in 0..d {
        let mut sum = x[i];
        for k in 0..i {
            sum -= l[i * d + k] * y[k];
        }
        y[i] = sum / l[i * d + i];
    }
    y
}

/// z with L Lᵀ z = b.
fn cholesky_solve(l: &[f64], d: usize, b: &[f64]) -> Vec<f64> {
    let y = forward(l, d, b);
    let mut z = vec![0.0; d];
    for i in (0..d).rev() {
        let mut sum = y[i];
        for k in i + 1..d {
            sum -= l[k * d + i] * z[k];
        }
        z[i] = sum / l[i * d + i];
    }
    z
}

/// The linear Thompson input: an intercept, then the feature spec's values.
pub fn linear_features(features: &[FeatureSpec], context: &Value) -> Vec<f64> {
    std::iter::once(1.0)
        .chain(build_features(features, context).into_iter().map(f64::from))
        .collect()
}

/// Width of the linear Thompson input for a feature spec (intercept included).
pub fn linear_width(features: &[FeatureSpec]) -> usize {
    1 + features.iter().map(FeatureSpec::width).sum::<usize>()
}

/// Linear Thompson for one request: each arm's normal score distribution for this context.
/// `posteriors` maps arm keys to their published posterior; an arm without one has the prior.
pub fn linear_thompson_choice(
    features: &[FeatureSpec],
    exploration: f64,
    prior: (f64, f64),
    arms: &[&str],
    posteriors: Option<&BTreeMap<String, LinearArm>>,
    context: &Value,
) -> Result<ContextualChoice, Fallback> {
    check_context(features, context)?;
    let x = linear_features(features, context);
    let d = x.len();
    let prior = LinearArm::prior(d, prior.0, prior.1);
    let mut means = Vec::with_capacity(arms.len());
    let mut spreads = Vec::with_capacity(arms.len());
    for arm in arms {
        let posterior = posteriors.and_then(|p| p.get(*arm)).unwrap_or(&prior);
        if posterior.width() != d || !posterior.problems().is_empty() {
            return Err(Fallback::new(
                "posterior_mismatch",
                format!(
                    "arm {arm:?} has a {}-wide posterior, the features build {d}",
                    posterior.width()
                ),
            ));
        }
        means.push(dot(&x, &posterior.mean));
        let y = forward(&posterior.precision_factor, d, &x);
        spreads.push(exploration.abs() * posterior.reward_spread() * libm::sqrt(dot(&y, &y)));
    }
    Ok(ContextualChoice {
        draw: ArmDraw::NormalScores { means, spreads },
        policy: "linear-thompson",
        model: None,
    })
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Simpson intervals over ±8 standard deviations of each arm's own score density: the mass
/// outside is below 1e-15, and 128 intervals keep the rule's error far below a propensity's
/// meaningful digits.
const QUADRATURE_INTERVALS: usize = 128;
const QUADRATURE_HALF_WIDTH: f64 = 8.0;
/// Φ(x) for x above this is 1 in f64 (1 − Φ(8.5) ≈ 1e-17 is below half an ulp of 1).
const SATURATED: f64 = 8.5;
/// Below this Φ is computed exactly (erfc), so small probabilities keep their relative accuracy;
/// above it a table serves (Φ ≥ 1.3e-3 there, so the table's 1e-11 is a relative 1e-8).
const TABLE_FROM: f64 = -3.0;
/// Grid step of the Φ table.
const TABLE_STEP: f64 = 1.0 / 128.0;

/// Φ and φ on a grid over [TABLE_FROM, SATURATED], built once per process (about 1,500 erfc).
struct NormalTable {
    cdf: Vec<f64>,
    pdf: Vec<f64>,
}

fn normal_table() -> &'static NormalTable {
    static TABLE: std::sync::OnceLock<NormalTable> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let nodes = ((SATURATED - TABLE_FROM) / TABLE_STEP) as usize + 1;
        let x = |k: usize| TABLE_FROM + k as f64 * TABLE_STEP;
        NormalTable {
            cdf: (0..nodes).map(|k| exact_cdf(x(k))).collect(),
            pdf: (0..nodes)
                .map(|k| libm::exp(-0.5 * x(k) * x(k)) / libm::sqrt(2.0 * std::f64::consts::PI))
                .collect(),
        }
    })
}

fn exact_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

/// Φ(x): exact in the lower tail, 1 above `SATURATED`, and in between a cubic Hermite
/// interpolation of the table with the exact derivative φ at both ends (error below 2e-11 for
/// a step of 1/128: h⁴/384 · max|Φ⁗|). A quadrature evaluates Φ up to K·129 times per
/// request, and this costs a few multiplications where erfc costs a hundred.
fn standard_normal_cdf(x: f64) -> f64 {
    if x > SATURATED {
        return 1.0;
    }
    if x.is_nan() || x < TABLE_FROM {
        return exact_cdf(x);
    }
    let table = normal_table();
    let position = (x - TABLE_FROM) / TABLE_STEP;
    let k = (position as usize).min(table.cdf.len() - 2);
    let t = position - k as f64;
    let (t2, t3) = (t * t, t * t * t);
    (2.0 * t3 - 3.0 * t2 + 1.0) * table.cdf[k]
        + (t3 - 2.0 * t2 + t) * TABLE_STEP * table.pdf[k]
        + (-2.0 * t3 + 3.0 * t2) * table.cdf[k + 1]
        + (t3 - t2) * TABLE_STEP * table.pdf[k + 1]
}
/// A node whose product of the other arms' CDFs falls below this adds less than 1e-17 to the
/// integral (a node's weight h/3 · 4 · φ(z) is below 0.07), so the rest of its product is skipped.
const NEGLIGIBLE: f64 = 1e-16;

/// P(arm i has the highest score) for independent normal scores N(means[i], spreads[i]²),
/// normalised to sum to 1 (see [`normal_best_probability`]).
pub fn normal_best_probabilities(means: &[f64], spreads: &[f64]) -> Vec<f64> {
    normalised(
        (0..means.len())
            .map(|i| normal_best_probability(i, means, spreads))
            .collect(),
    )
}

/// P(arm `i` has the highest score) for independent normal scores N(means[j], spreads[j]²).
///
/// P_i = ∫ φ(z) Π_{j≠i} Φ((m_i + s_i z − m_j) / s_j) dz, by Simpson's rule in z. An arm with no
/// spread is a point mass (its Φ a step).
pub fn normal_best_probability(i: usize, means: &[f64], spreads: &[f64]) -> f64 {
    let cdf = |t: f64, j: usize| -> f64 {
        let s = spreads[j];
        if s > 0.0 {
            standard_normal_cdf((t - means[j]) / s)
        } else if t > means[j] {
            1.0
        } else if t < means[j] {
            0.0
        } else {
            0.5
        }
    };
    // The strongest competitors first, so a node where arm i is almost surely beaten stops
    // after a CDF or two.
    let mut competitors: Vec<usize> = (0..means.len()).filter(|&j| j != i).collect();
    competitors.sort_by(|&a, &b| means[b].total_cmp(&means[a]));
    let others_below = |t: f64| -> f64 {
        let mut product = 1.0;
        for &j in &competitors {
            product *= cdf(t, j);
            if product < NEGLIGIBLE {
                return 0.0;
            }
        }
        product
    };
    let point_mass = spreads[i].partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater);
    if point_mass {
        return others_below(means[i]);
    }
    quadrature_nodes()
        .iter()
        .map(|&(z, weight)| weight * others_below(means[i] + spreads[i] * z))
        .sum()
}

/// Simpson's nodes z over ±8 and their weights h/3 · (1, 4, 2, …, 4, 1) · φ(z), built once.
fn quadrature_nodes() -> &'static [(f64, f64)] {
    static NODES: std::sync::OnceLock<Vec<(f64, f64)>> = std::sync::OnceLock::new();
    NODES.get_or_init(|| {
        let h = 2.0 * QUADRATURE_HALF_WIDTH / QUADRATURE_INTERVALS as f64;
        (0..=QUADRATURE_INTERVALS)
            .map(|n| {
                let z = -QUADRATURE_HALF_WIDTH + n as f64 * h;
                let simpson = if n == 0 || n == QUADRATURE_INTERVALS {
                    1.0
                } else if n % 2 == 1 {
                    4.0
                } else {
                    2.0
                };
                let density = libm::exp(-0.5 * z * z) / libm::sqrt(2.0 * std::f64::consts::PI);
                (z, simpson * h / 3.0 * density)
            })
            .collect()
    })
}

/// Snapshot checks for one experiment's contextual policy, as `path: reason`.
pub fn check(
    path: &str,
    policy: &ContextualPolicy,
    experiment: &Experiment,
    models: &[ModelRequirement],
    issues: &mut Issues,
) {
    match policy {
        ContextualPolicy::RewardModel { model, exploration } => {
            match models.iter().find(|m| &m.name == model) {
                None => issues.push(
                    field(path, "model"),
                    format!("{model:?} is not listed in the snapshot's models"),
                ),
                Some(requirement) => {
                    if let Some(min) = &requirement.min_version
                        && semver::Version::parse(min).is_err()
                    {
                        issues.push(
                            field(path, "model"),
                            format!(
                                "the models entry's minVersion {min:?} is not a semantic version"
                            ),
                        );
                    }
                }
            }
            let epath = field(path, "exploration");
            match *exploration {
                Exploration::EpsilonGreedy { epsilon } if !(0.0..=1.0).contains(&epsilon) => {
                    issues.push(field(&epath, "epsilon"), "must be between 0 and 1")
                }
                Exploration::Softmax { temperature }
                    if !(temperature.is_finite() && temperature > 0.0) =>
                {
                    issues.push(field(&epath, "temperature"), "must be a finite number > 0")
                }
                Exploration::Squarecb { gamma } if !(gamma.is_finite() && gamma >= 0.0) => {
                    issues.push(field(&epath, "gamma"), "must be a finite number >= 0")
                }
                _ => {}
            }
        }
        ContextualPolicy::LinearThompson {
            features,
            exploration,
            prior_precision,
            context_precision,
        } => {
            if features.is_empty() {
                issues.push(field(path, "features"), "must list at least one feature");
            }
            let fpath = field(path, "features");
            for (i, feature) in features.iter().enumerate() {
                crate::model::check_feature(&index(&fpath, i), feature, issues);
                let root = feature.source().split('.').next().unwrap_or("");
                if !LOGGED_CONTEXT_KEYS.contains(&root) {
                    issues.push(
                        field(&index(&fpath, i), "source"),
                        format!(
                            "linear Thompson learns from logged rows, which carry only {}",
                            LOGGED_CONTEXT_KEYS.join(", ")
                        ),
                    );
                }
            }
            if linear_width(features) > MAX_LINEAR_WIDTH {
                issues.push(
                    fpath,
                    format!("build more than {} values", MAX_LINEAR_WIDTH - 1),
                );
            }
            if !(exploration.is_finite() && *exploration > 0.0) {
                issues.push(field(path, "exploration"), "must be a finite number > 0");
            }
            if !(prior_precision.is_finite() && *prior_precision > 0.0) {
                issues.push(field(path, "priorPrecision"), "must be a finite number > 0");
            }
            if !(context_precision.is_finite() && *context_precision > 0.0) {
                issues.push(
                    field(path, "contextPrecision"),
                    "must be a finite number > 0",
                );
            }
        }
    }
    if experiment.arms.len() < 2 {
        issues.push(path, "a contextual policy needs at least two arms");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn close(a: &[f64], b: &[f64], tolerance: f64) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tolerance)
    }

    #[test]
    fn epsilon_greedy_splits_the_bulk_over_ties() {
        let p = Exploration::EpsilonGreedy { epsilon: 0.3 }.probabilities(&[0.1, 0.5, 0.5]);
        assert!(close(&p, &[0.1, 0.45, 0.45], 1e-12), "{p:?}");
    }

    #[test]
    fn softmax_follows_the_closed_form() {
        let p = Exploration::Softmax { temperature: 0.5 }.probabilities(&[0.0, 1.0]);
        let e = (2.0f64).exp();
        assert!(close(&p, &[1.0 / (1.0 + e), e / (1.0 + e)], 1e-12), "{p:?}");
    }

    #[test]
    fn squarecb_weights_by_inverse_gap() {
        let p = Exploration::Squarecb { gamma: 10.0 }.probabilities(&[0.2, 0.5, 0.4]);
        let (a, c) = (1.0 / (3.0 + 3.0), 1.0 / (3.0 + 1.0));
        assert!(close(&p, &[a, 1.0 - a - c, c], 1e-12), "{p:?}");
        // γ = 0 is uniform.
        let p = Exploration::Squarecb { gamma: 0.0 }.probabilities(&[0.2, 0.9]);
        assert!(close(&p, &[0.5, 0.5], 1e-12), "{p:?}");
    }

    #[test]
    fn normal_best_matches_closed_forms() {
        // Two arms: P(X > Y) = Φ((m1 − m2) / sqrt(s1² + s2²)).
        let p = normal_best_probabilities(&[0.3, 0.0], &[0.2, 0.1]);
        let want = 0.5 * libm::erfc(-(0.3 / (0.05f64).sqrt()) / std::f64::consts::SQRT_2);
        assert!((p[0] - want).abs() < 1e-9, "{p:?} vs {want}");
        // Identical arms are exchangeable.
        let p = normal_best_probabilities(&[1.0; 4], &[0.5; 4]);
        assert!(close(&p, &[0.25; 4], 1e-9), "{p:?}");
        // A point mass far above the rest always wins.
        let p = normal_best_probabilities(&[10.0, 0.0], &[0.0, 1.0]);
        assert!(p[0] > 1.0 - 1e-12, "{p:?}");
    }

    #[test]
    fn a_draw_follows_p_best_and_logs_its_propensity() {
        let means = [0.10, 0.12, 0.05, 0.11];
        let spreads = [0.03, 0.05, 0.02, 0.01];
        let want = normal_best_probabilities(&means, &spreads);
        let draw = ArmDraw::NormalScores {
            means: means.to_vec(),
            spreads: spreads.to_vec(),
        };
        let n = 20_000;
        let mut counts = [0usize; 4];
        for j in 0..n {
            let u = (j as f64 + 0.5) / n as f64;
            let (index, propensity) = draw.draw(u);
            counts[index] += 1;
            // The drawn arm's own integral, against the normalised vector: they differ by the
            // quadrature's error (~1e-8 here, where one arm is five times narrower).
            assert!(
                (propensity - want[index]).abs() < 1e-6,
                "{propensity} vs {want:?}"
            );
            if j % 100 == 0 {
                // The same uniform (a sticky unit) draws the same arm.
                assert_eq!(draw.draw(u).0, index);
            }
        }
        for (i, &count) in counts.iter().enumerate() {
            let p = want[i];
            let sd = (p * (1.0 - p) / n as f64).sqrt();
            let seen = count as f64 / n as f64;
            assert!((seen - p).abs() < 4.5 * sd + 1e-4, "arm {i}: {seen} vs {p}");
        }
    }

    #[test]
    fn context_effects_are_shrunk_until_the_data_show_them() {
        // 20 mobile rows all rewarded, 20 desktop rows none: with λ_c = 1 each device gets its
        // own rate; with the default λ_c both stay near the arm's overall rate of 1/2.
        let mean_for = |context_precision: f64, device: [f64; 3]| {
            let mut arm = LinearArm::prior(3, 1.0, context_precision);
            for _ in 0..20 {
                arm.learn(&[1.0, 1.0, 0.0], 1.0);
                arm.learn(&[1.0, 0.0, 1.0], 0.0);
            }
            dot(&device, &arm.mean)
        };
        let (mobile, desktop) = ([1.0, 1.0, 0.0], [1.0, 0.0, 1.0]);
        assert!(mean_for(1.0, mobile) > 0.9 && mean_for(1.0, desktop) < 0.1);
        let shrunk = DEFAULT_CONTEXT_PRECISION;
        assert!((mean_for(shrunk, mobile) - 0.5).abs() < 0.1);
        assert!((mean_for(shrunk, desktop) - 0.5).abs() < 0.1);
    }

    #[test]
    fn the_spread_scales_with_the_arms_reward_deviation() {
        // 1000 rows at a 10 % reward: the score's spread is sqrt(m(1 − m)) ≈ 0.3 times the
        // unit-variance spread ‖L⁻¹x‖, as a Beta posterior's would be.
        let mut arm = LinearArm::prior(3, 1.0, 1.0);
        for i in 0..1000 {
            arm.learn(&[1.0, 1.0, 0.0], if i % 10 == 0 { 1.0 } else { 0.0 });
        }
        let rate = 101.0 / 1002.0;
        assert!((arm.reward_spread() - f64::sqrt(rate * (1.0 - rate))).abs() < 1e-12);
        assert_eq!(LinearArm::prior(3, 1.0, 1.0).reward_spread(), 0.5);
        let posteriors = BTreeMap::from([("a".to_owned(), arm.clone()), ("b".to_owned(), arm)]);
        let choice = linear_thompson_choice(
            &device_features(),
            2.0,
            (1.0, 1.0),
            &["a", "b"],
            Some(&posteriors),
            &json!({"device": "mobile"}),
        )
        .unwrap();
        let ArmDraw::NormalScores { spreads, .. } = choice.draw else {
            panic!("linear Thompson draws normal scores");
        };
        let y = forward(&posteriors["a"].precision_factor, 3, &[1.0, 1.0, 0.0]);
        let unit = dot(&y, &y).sqrt();
        assert!((spreads[0] - 2.0 * posteriors["a"].reward_spread() * unit).abs() < 1e-12);
    }

    #[test]
    fn the_cdf_table_matches_erfc() {
        let mut worst: f64 = 0.0;
        for i in 0..=40_000 {
            let x = -10.0 + i as f64 * 0.0005 + 1e-7;
            let (got, want) = (standard_normal_cdf(x), exact_cdf(x));
            worst = worst.max((got - want).abs() / want.max(1e-300));
        }
        assert!(worst < 1e-8, "relative error {worst}");
        assert_eq!(standard_normal_cdf(9.0), 1.0);
        assert!(standard_normal_cdf(f64::NAN).is_nan());
    }

    #[test]
    fn linear_arm_learns_a_known_line() {
        // Reward 0.2 + 0.6·x exactly: the posterior mean approaches (0.2, 0.6).
        let mut arm = LinearArm::prior(2, 1.0, 1.0);
        for i in 0..2000 {
            let x = f64::from(i % 2);
            assert!(arm.learn(&[1.0, x], 0.2 + 0.6 * x));
        }
        assert!(close(&arm.mean, &[0.2, 0.6], 1e-3), "{:?}", arm.mean);
        assert!(arm.problems().is_empty());
        assert!(!arm.learn(&[1.0], 1.0));
        assert!(!arm.learn(&[1.0, f64::NAN], 1.0));
        assert_eq!(arm.count, 2000);
    }

    fn device_features() -> Vec<FeatureSpec> {
        serde_json::from_value(json!([
            {"kind": "one_hot", "source": "device", "values": ["mobile", "desktop"]}
        ]))
        .unwrap()
    }

    #[test]
    fn linear_thompson_prefers_the_arm_that_wins_for_this_context() {
        let features = device_features();
        let mut posteriors = BTreeMap::new();
        let mut a = LinearArm::prior(3, 1.0, 1.0);
        let mut b = LinearArm::prior(3, 1.0, 1.0);
        for i in 0..400 {
            let mobile = i % 2 == 0;
            let x = [
                1.0,
                f64::from(u8::from(mobile)),
                f64::from(u8::from(!mobile)),
            ];
            a.learn(&x, if mobile { 0.8 } else { 0.1 });
            b.learn(&x, if mobile { 0.1 } else { 0.8 });
        }
        posteriors.insert("a".to_owned(), a);
        posteriors.insert("b".to_owned(), b);
        let choose = |device: &str| {
            linear_thompson_choice(
                &features,
                0.5,
                (1.0, 1.0),
                &["a", "b"],
                Some(&posteriors),
                &json!({"device": device}),
            )
            .unwrap()
            .draw
            .probabilities()
        };
        assert!(choose("mobile")[0] > 0.99);
        assert!(choose("desktop")[1] > 0.99);
    }

    #[test]
    fn missing_or_unlisted_features_fall_back() {
        let features = device_features();
        let run = |context: Value| {
            linear_thompson_choice(&features, 1.0, (1.0, 1.0), &["a", "b"], None, &context)
                .map(|c| c.draw.probabilities())
        };
        assert_eq!(run(json!({})).unwrap_err().code, "missing_feature");
        assert_eq!(
            run(json!({"device": "tablet"})).unwrap_err().code,
            "unknown_feature"
        );
        assert_eq!(
            run(json!({"device": 3})).unwrap_err().code,
            "unknown_feature"
        );
        // The prior: both arms alike.
        assert!(close(
            &run(json!({"device": "mobile"})).unwrap(),
            &[0.5, 0.5],
            1e-9
        ));
        let mut wrong = BTreeMap::new();
        wrong.insert("a".to_owned(), LinearArm::prior(2, 1.0, 1.0));
        let err = linear_thompson_choice(
            &features,
            1.0,
            (1.0, 1.0),
            &["a", "b"],
            Some(&wrong),
            &json!({"device": "mobile"}),
        )
        .unwrap_err();
        assert_eq!(err.code, "posterior_mismatch");
    }

    #[test]
    fn min_version_is_semantic() {
        assert!(meets_min_version("1.10.0", Some("1.9.0")));
        assert!(!meets_min_version("1.2.0", Some("1.10.0")));
        assert!(!meets_min_version("latest", Some("1.0.0")));
        assert!(meets_min_version("anything", None));
    }

    fn arb_exploration() -> impl Strategy<Value = Exploration> {
        prop_oneof![
            (0.0f64..=1.0).prop_map(|epsilon| Exploration::EpsilonGreedy { epsilon }),
            (1e-4f64..10.0).prop_map(|temperature| Exploration::Softmax { temperature }),
            (0.0f64..1e6).prop_map(|gamma| Exploration::Squarecb { gamma }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn explorations_are_distributions(e in arb_exploration(), scores in prop::collection::vec(-1e3f64..1e3, 1..12)) {
            let p = e.probabilities(&scores);
            prop_assert_eq!(p.len(), scores.len());
            prop_assert!(p.iter().all(|x| x.is_finite() && *x >= 0.0), "{:?}", p);
            prop_assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{:?}", p);
            // Every strategy gives the best score at least as much as any other arm.
            let best = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let top = scores.iter().position(|&s| s == best).unwrap();
            prop_assert!(p.iter().all(|&q| q <= p[top] + 1e-12), "{:?} {:?}", scores, p);
        }

        #[test]
        fn normal_best_is_a_distribution(
            arms in prop::collection::vec((-5.0f64..5.0, prop_oneof![Just(0.0), 1e-3f64..3.0]), 1..10)
        ) {
            let (means, spreads): (Vec<f64>, Vec<f64>) = arms.into_iter().unzip();
            let p = normal_best_probabilities(&means, &spreads);
            prop_assert!(p.iter().all(|x| x.is_finite() && *x >= 0.0), "{:?}", p);
            prop_assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{:?}", p);
        }
    }
}
