//! Per request: gate, then flags and experiments, then the page's mutations and the events to log.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::aggregate::PosteriorSnapshot;
use crate::bandit::{ArmStats, arm_probabilities};
use crate::contextual::{ArmDraw, LOGGED_CONTEXT_KEYS, contextual_choice, reward_model_names};
use crate::event::{ConsentState, Event, EventKind};
use crate::flags::{FlagResolution, evaluate_rule};
use crate::gate::{GateAction, GateVerdict, fraud_model, gate};
use crate::jsonlogic::is_truthy;
use crate::model::{Model, canary_serves_candidate};
use crate::request::{RequestFacts, hex, new_unit_id, pseudonymise};
use crate::snapshot::{
    Destination, Experiment, ExperimentStatus, Mutation, Policy, Snapshot, paths_match,
};
use crate::token::DecisionToken;
use stellwerk_rewrite::PageInjection;

/// The secrets a decision needs, held by the platform.
#[derive(Clone, Copy)]
pub struct Keys<'a> {
    /// Signs decision tokens (HMAC-SHA256).
    pub token: &'a [u8],
    /// Pseudonymises unit ids (keyed hash).
    pub unit: &'a [u8],
}

/// Everything `decide` reads. The platform supplies time and randomness.
pub struct DecideInput<'a> {
    pub snapshot: &'a Snapshot,
    pub posteriors: &'a PosteriorSnapshot,
    pub facts: &'a RequestFacts,
    pub keys: Keys<'a>,
    /// Fresh random bytes: mint the unit and decision ids and draw non-sticky bandit arms.
    pub random: [u8; 16],
    /// Unix seconds.
    pub now: u64,
    /// The models the platform has loaded; their scores join the context as `model.<name>`.
    pub models: &'a [LoadedModel<'a>],
}

/// One model as the platform loaded it: the stable version and, during a canary, the candidate.
#[derive(Clone, Copy)]
pub struct LoadedModel<'a> {
    pub name: &'a str,
    pub stable: &'a Model,
    pub candidate: Option<&'a Model>,
}

impl<'a> LoadedModel<'a> {
    /// The version this unit is served: the candidate for its canary share, else the stable one.
    pub fn for_unit(&self, unit: &str) -> &'a Model {
        match self.candidate {
            Some(candidate)
                if canary_serves_candidate(
                    unit,
                    self.name,
                    candidate.version(),
                    candidate.manifest().canary_percent,
                ) =>
            {
                candidate
            }
            _ => self.stable,
        }
    }
}

/// What was decided for one page request, and what to log about it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PageDecision {
    pub gate: GateVerdict,
    pub consent: ConsentState,
    /// A unit id to store in the visitor's cookie (only when they had none and consent allows).
    pub new_unit_id: Option<String>,
    /// The pseudonymous unit every decision and event refers to.
    pub unit: Option<String>,
    pub kill_switch: bool,
    pub flags: Vec<FlagResolution>,
    pub assignments: Vec<Assignment>,
    /// Every DOM change to apply, in order: experiments first, then flag effects.
    pub mutations: Vec<Mutation>,
    /// Exposures and fraud verdicts, for the queue.
    pub events: Vec<Event>,
    /// Model name → the version that scored this request.
    pub models: BTreeMap<String, String>,
    /// What failed and was left out (a model that would not run); the page is still served.
    pub fallbacks: Vec<String>,
}

/// One experiment's outcome for this request.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Assignment {
    pub experiment: String,
    pub arm: String,
    /// The probability with which `arm` was chosen (1 for a stopped experiment's winner).
    pub propensity: f64,
    pub policy: &'static str,
    /// `name@version` of the reward model that scored the arms (contextual policies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Why the experiment's contextual policy did not decide (its plain policy did).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    pub decision_id: String,
    /// Signed token the page sends back with feedback; absent for a stopped experiment.
    pub token: Option<String>,
}

impl PageDecision {
    /// Whether the response differs from the origin's for this visitor (then it must not be
    /// cached publicly).
    pub fn is_personalised(&self) -> bool {
        !self.mutations.is_empty() || !self.assignments.is_empty()
    }

    /// What to inject into the page: the beacon script and the page's decisions, when there are
    /// any to report back.
    pub fn page_injection(&self, beacon_src: &str, nonce: Option<String>) -> Option<PageInjection> {
        let has_tokens = self.assignments.iter().any(|a| a.token.is_some());
        (has_tokens || !self.flags.is_empty()).then(|| PageInjection {
            beacon_src: beacon_src.to_owned(),
            decisions_json: self.page_json(),
            nonce,
        })
    }

    /// The JSON the page's beacon script reads: each experiment's arm and token, and the flags.
    pub fn page_json(&self) -> String {
        let experiments: Vec<Value> = self
            .assignments
            .iter()
            .filter_map(|a| {
                a.token
                    .as_ref()
                    .map(|t| json!({ "experiment": a.experiment, "arm": a.arm, "token": t }))
            })
            .collect();
        let flags: serde_json::Map<String, Value> = self
            .flags
            .iter()
            .map(|f| (f.key.clone(), f.value.clone()))
            .collect();
        json!({ "experiments": experiments, "flags": flags }).to_string()
    }
}

/// Decides everything for one page request.
pub fn decide(input: &DecideInput<'_>) -> PageDecision {
    let snapshot = input.snapshot;
    let facts = input.facts;
    let fraud_model = fraud_model(&snapshot.fraud, input.models);
    let verdict = gate(&snapshot.fraud, facts, fraud_model);
    let consent = facts.consent(&snapshot.privacy);
    let mut decision = PageDecision {
        gate: verdict.clone(),
        consent,
        new_unit_id: None,
        unit: None,
        kill_switch: snapshot.kill_switch,
        flags: Vec::new(),
        assignments: Vec::new(),
        mutations: Vec::new(),
        events: Vec::new(),
        models: fraud_model
            .map(|m| (m.manifest().name.clone(), m.version().to_owned()))
            .into_iter()
            .collect(),
        fallbacks: Vec::new(),
    };
    if matches!(verdict.action, GateAction::Block | GateAction::Challenge) {
        decision
            .events
            .push(fraud_event(input, &verdict, consent, None));
        return decision;
    }

    // Without consent nothing is tied to the visitor: no cookie, no unit, no experiments.
    let may_track = consent != ConsentState::Denied;
    let existing = facts.unit_cookie();
    let unit_id = match (may_track, existing) {
        (false, _) => None,
        (true, Some(id)) => Some(id.to_owned()),
        (true, None) => {
            let id = new_unit_id(input.random);
            decision.new_unit_id = Some(id.clone());
            Some(id)
        }
    };
    let unit = unit_id
        .as_deref()
        .map(|id| pseudonymise(id, input.keys.unit));
    decision.unit = unit.clone();
    let mut context = facts.context(unit.as_deref(), existing.is_some(), input.now);
    score_models(input, unit.as_deref(), &mut context, &mut decision);
    if verdict.action == GateAction::Tag {
        decision
            .events
            .push(fraud_event(input, &verdict, consent, unit.as_deref()));
    }
    if snapshot.kill_switch {
        return decision;
    }

    let path = facts.path();
    if let Some(unit) = unit.as_deref() {
        for experiment in &snapshot.experiments {
            if let Some(assignment) = assign(input, experiment, unit, path, &context) {
                if let Some((name, version)) =
                    assignment.model.as_deref().and_then(|m| m.rsplit_once('@'))
                {
                    decision.models.insert(name.to_owned(), version.to_owned());
                }
                let arm = experiment.arms.iter().find(|a| a.key == assignment.arm);
                decision
                    .mutations
                    .extend(arm.into_iter().flat_map(|a| a.mutations.iter().cloned()));
                if assignment.token.is_some() {
                    decision.events.push(exposure_event(
                        input,
                        &assignment,
                        &decision.models,
                        &verdict,
                        consent,
                        unit,
                        &context,
                    ));
                }
                decision.assignments.push(assignment);
            }
        }
    }

    for effect in &snapshot.flag_effects {
        if !paths_match(&effect.paths, path) {
            continue;
        }
        let resolution = snapshot
            .flag_set
            .evaluate(&effect.flag, &context, input.now);
        if let Some(mutations) = resolution
            .variant
            .as_ref()
            .and_then(|v| effect.variants.get(v))
        {
            decision.mutations.extend(mutations.iter().cloned());
        }
        decision.flags.push(resolution);
    }
    decision
}

/// Runs every loaded model some rule reads on the context; each score joins it as `model.<name>` (the last value
/// of the model's outputs: the positive class of a binary classifier, or a regressor's value).
fn score_models(
    input: &DecideInput<'_>,
    unit: Option<&str>,
    context: &mut Value,
    decision: &mut PageDecision,
) {
    let mut scores = serde_json::Map::new();
    // The fraud model reads request features, not this context; the gate has run it. Reward
    // models score arms inside the contextual policy.
    let fraud_model = input.snapshot.fraud.model.as_deref();
    let reward_models: Vec<&str> = reward_model_names(input.snapshot).collect();
    for loaded in input.models.iter().filter(|m| Some(m.name) != fraud_model) {
        // A score no rule reads would cost a model run on every page for nothing.
        if reward_models.contains(&loaded.name) || !input.snapshot.reads_model(loaded.name) {
            continue;
        }
        let model = unit.map_or(loaded.stable, |u| loaded.for_unit(u));
        match model.score(context) {
            Ok(outputs) => match outputs.last() {
                Some(score) if score.is_finite() => {
                    scores.insert(loaded.name.to_owned(), json!(score));
                    decision
                        .models
                        .insert(loaded.name.to_owned(), model.version().to_owned());
                }
                _ => decision
                    .fallbacks
                    .push(format!("model {}: no finite output", loaded.name)),
            },
            Err(error) => decision
                .fallbacks
                .push(format!("model {}: {error}", loaded.name)),
        }
    }
    if let Some(object) = context.as_object_mut()
        && !scores.is_empty()
    {
        object.insert("model".into(), Value::Object(scores));
    }
}

fn assign(
    input: &DecideInput<'_>,
    experiment: &Experiment,
    unit: &str,
    path: &str,
    context: &Value,
) -> Option<Assignment> {
    if !paths_match(&experiment.paths, path) {
        return None;
    }
    match experiment.status {
        ExperimentStatus::Paused => return None,
        ExperimentStatus::Stopped => {
            let winner = experiment.winner.clone()?;
            return Some(Assignment {
                experiment: experiment.key.clone(),
                arm: winner,
                propensity: 1.0,
                policy: "winner",
                model: None,
                fallback: None,
                decision_id: decision_id(input, &experiment.key),
                token: None,
            });
        }
        ExperimentStatus::Running => {}
    }
    if let Some(rule) = &experiment.targeting {
        // A rule that fails to evaluate excludes the visitor rather than guessing.
        let eligible =
            evaluate_rule(rule, context, &experiment.key, input.now).is_ok_and(|v| is_truthy(&v));
        if !eligible {
            return None;
        }
    }
    let fingerprint = arms_fingerprint(experiment);
    if unit_uniform(&[&experiment.key, &fingerprint, "traffic", unit]) >= experiment.traffic {
        return None;
    }
    let contextual = experiment.contextual.as_ref().map(|policy| {
        contextual_choice(
            policy,
            experiment,
            input.snapshot,
            input.posteriors,
            input.models,
            unit,
            context,
        )
    });
    let (draw, policy, model, fallback) = match contextual {
        Some(Ok(choice)) => (choice.draw, choice.policy, choice.model, None),
        other => (
            ArmDraw::Probabilities(probabilities_for(experiment, input.posteriors)),
            policy_name(&experiment.policy),
            None,
            other.and_then(Result::err).map(|f| f.to_string()),
        ),
    };
    let u = match (&experiment.policy, experiment.sticky_seconds) {
        (Policy::Fixed, _) => unit_uniform(&[&experiment.key, &fingerprint, "arm", unit]),
        (_, 0) => request_uniform(input, &experiment.key),
        (_, window) => {
            let epoch = (input.now / window).to_string();
            unit_uniform(&[&experiment.key, &fingerprint, "arm", unit, &epoch])
        }
    };
    let (index, propensity) = draw.draw(u);
    let arm = &experiment.arms[index];
    let decision_id = decision_id(input, &experiment.key);
    let token = DecisionToken {
        decision_id: decision_id.clone(),
        experiment: experiment.key.clone(),
        arm: arm.key.clone(),
        propensity,
        policy_version: input.snapshot.version.clone(),
        issued_at: input.now,
        unit: unit.to_owned(),
    };
    Some(Assignment {
        experiment: experiment.key.clone(),
        arm: arm.key.clone(),
        propensity,
        policy,
        model,
        fallback,
        decision_id,
        token: Some(token.sign(input.keys.token)),
    })
}

/// The distribution the experiment's policy draws from, one probability per arm.
pub fn probabilities_for(experiment: &Experiment, posteriors: &PosteriorSnapshot) -> Vec<f64> {
    let posterior = posteriors.experiments.get(&experiment.key);
    if experiment.policy == Policy::Thompson
        && let Some(precomputed) =
            posterior.and_then(|p| precomputed_thompson(experiment, &p.probabilities))
    {
        return precomputed;
    }
    let stats: Vec<ArmStats> = experiment
        .arms
        .iter()
        .map(|arm| {
            posterior
                .and_then(|p| p.arms.get(&arm.key))
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    arm_probabilities(&experiment.policy, &experiment.arms, &stats)
}

/// The aggregator's P(best) per arm, when it covers exactly this experiment's arms.
fn precomputed_thompson(
    experiment: &Experiment,
    probabilities: &BTreeMap<String, f64>,
) -> Option<Vec<f64>> {
    let values: Option<Vec<f64>> = experiment
        .arms
        .iter()
        .map(|a| probabilities.get(&a.key).copied())
        .collect();
    values.filter(|v| {
        let sum: f64 = v.iter().sum();
        v.iter().all(|p| p.is_finite() && *p >= 0.0) && (sum - 1.0).abs() < 1e-6
    })
}

fn policy_name(policy: &Policy) -> &'static str {
    match policy {
        Policy::Fixed => "fixed",
        Policy::Thompson => "thompson",
        Policy::Ucb1 => "ucb1",
        Policy::EpsilonGreedy { .. } => "epsilon_greedy",
    }
}

/// Changes when the set of arms changes, so reshuffling is explicit and nothing else reshuffles.
fn arms_fingerprint(experiment: &Experiment) -> String {
    experiment
        .arms
        .iter()
        .map(|a| a.key.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// A stable uniform number in [0, 1) from hashed parts.
pub fn unit_uniform(parts: &[&str]) -> f64 {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    uniform_from(&hasher.finalize())
}

fn uniform_from(bytes: &[u8]) -> f64 {
    let mut top = [0u8; 8];
    top.copy_from_slice(&bytes[..8]);
    // 53 bits: every value is exactly representable and strictly below 1.
    (u64::from_be_bytes(top) >> 11) as f64 / (1u64 << 53) as f64
}

fn request_uniform(input: &DecideInput<'_>, salt: &str) -> f64 {
    let mut hasher = Sha256::new();
    hasher.update(input.random);
    hasher.update(b"draw");
    hasher.update(salt.as_bytes());
    uniform_from(&hasher.finalize())
}

fn decision_id(input: &DecideInput<'_>, experiment: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(input.random);
    hasher.update(b"decision");
    hasher.update(experiment.as_bytes());
    hex(&hasher.finalize()[..12])
}

/// The context features an event may carry: coarse, and never an IP or a raw id.
fn logged_context(context: &Value) -> BTreeMap<String, Value> {
    LOGGED_CONTEXT_KEYS
        .iter()
        .filter_map(|k| context.get(*k).map(|v| ((*k).to_owned(), v.clone())))
        .collect()
}

fn exposure_event(
    input: &DecideInput<'_>,
    assignment: &Assignment,
    model_versions: &BTreeMap<String, String>,
    verdict: &GateVerdict,
    consent: ConsentState,
    unit: &str,
    context: &Value,
) -> Event {
    let destination = if verdict.is_suspect() {
        Destination::Quarantine
    } else {
        Destination::Bandit
    };
    Event {
        id: assignment.decision_id.clone(),
        kind: EventKind::Exposure,
        time: input.now,
        experiment: Some(assignment.experiment.clone()),
        arm: Some(assignment.arm.clone()),
        decision_id: Some(assignment.decision_id.clone()),
        propensity: Some(assignment.propensity),
        policy_version: input.snapshot.version.clone(),
        policy: Some(assignment.policy.to_owned()),
        model_versions: model_versions.clone(),
        context: logged_context(context),
        reward: None,
        value: None,
        name: None,
        fraud_score: Some(verdict.score),
        consent,
        unit: unit.to_owned(),
        destinations: vec![destination],
    }
}

fn fraud_event(
    input: &DecideInput<'_>,
    verdict: &GateVerdict,
    consent: ConsentState,
    unit: Option<&str>,
) -> Event {
    let mut hasher = Sha256::new();
    hasher.update(input.random);
    hasher.update(b"fraud");
    Event {
        id: hex(&hasher.finalize()[..12]),
        kind: EventKind::FraudVerdict,
        time: input.now,
        experiment: None,
        arm: None,
        decision_id: None,
        propensity: None,
        policy_version: input.snapshot.version.clone(),
        policy: None,
        model_versions: BTreeMap::new(),
        context: logged_context(&input.facts.context(None, false, input.now)),
        reward: None,
        value: None,
        name: Some(format!("{:?}", verdict.action).to_ascii_lowercase()),
        fraud_score: Some(verdict.score),
        consent,
        unit: unit.unwrap_or("").to_owned(),
        destinations: vec![Destination::Analytics],
    }
}
