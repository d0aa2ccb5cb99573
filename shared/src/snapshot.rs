//! The snapshot: the one JSON document an edge node decides from.
//!
//! Parsing is validation: [`Snapshot::parse`] either returns a document in which every
//! experiment, mutation, flag and route is usable, or every problem as `path: reason`.
//! Nothing half-valid is ever handed to the decision code.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client_rate::{RateLimit, check_rate_limit};
use crate::flags::FlagSet;
use crate::validate::{Invalid, Issues, field, index};
pub use stellwerk_rewrite::{Mutation, MutationAction};

/// The snapshot format this core reads.
pub const SNAPSHOT_SCHEMA: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// Always [`SNAPSHOT_SCHEMA`].
    pub schema: u32,
    /// Opaque version chosen by the publisher; logged with every decision as the policy version.
    pub version: String,
    /// Global kill switch: when on, no experiment or flag effect touches any page.
    #[serde(default)]
    pub kill_switch: bool,
    /// Feature flags in the flagd flag-definition format (`{"flags": {...}, "$evaluators": {...}}`).
    #[serde(default = "empty_flags")]
    pub flags: Value,
    /// Page changes driven by a flag's resolved variant.
    #[serde(default)]
    pub flag_effects: Vec<FlagEffect>,
    #[serde(default)]
    pub experiments: Vec<Experiment>,
    #[serde(default)]
    pub fraud: FraudPolicy,
    #[serde(default)]
    pub feedback: FeedbackPolicy,
    #[serde(default)]
    pub privacy: PrivacyPolicy,
    /// Models this snapshot needs, by name, with the oldest version it accepts.
    #[serde(default)]
    pub models: Vec<ModelRequirement>,
    /// Parsed `flags`, kept beside the raw document so evaluation never re-parses.
    #[serde(skip)]
    pub flag_set: FlagSet,
    /// Every string in the document that may name a model score in the context (`model`,
    /// `model.<name>…`): a page runs only the models some rule can read.
    #[serde(skip)]
    pub model_reads: Vec<String>,
}

fn empty_flags() -> Value {
    serde_json::json!({ "flags": {} })
}

/// DOM mutations applied when a flag resolves to one of the listed variants.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FlagEffect {
    pub flag: String,
    /// Variant name → mutations.
    pub variants: std::collections::BTreeMap<String, Vec<Mutation>>,
    /// Only on these paths (`*` at the end matches a prefix); all paths when empty.
    #[serde(default)]
    pub paths: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Experiment {
    pub key: String,
    #[serde(default)]
    pub status: ExperimentStatus,
    /// With `status: stopped`, the arm everyone now gets.
    #[serde(default)]
    pub winner: Option<String>,
    /// Only on these paths (`*` at the end matches a prefix); all paths when empty.
    #[serde(default)]
    pub paths: Vec<String>,
    /// JsonLogic over the evaluation context (same operators as flag targeting); truthy = eligible.
    #[serde(default)]
    pub targeting: Option<Value>,
    /// Share of eligible units enrolled, 0..=1; the rest see the page untouched.
    #[serde(default = "one")]
    pub traffic: f64,
    #[serde(default)]
    pub policy: Policy,
    /// A per-visitor policy (reward model or linear Thompson); `policy` decides whenever it
    /// cannot (see `contextual.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contextual: Option<crate::contextual::ContextualPolicy>,
    /// Bandits: a unit keeps its arm for this long before it may be re-drawn (0 = every request).
    #[serde(default)]
    pub sticky_seconds: u64,
    /// Feedback types that count as reward for the bandit (default: `click`).
    #[serde(default = "default_goals")]
    pub goals: Vec<String>,
    pub arms: Vec<Arm>,
}

fn one() -> f64 {
    1.0
}

fn default_goals() -> Vec<String> {
    vec!["click".to_owned()]
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExperimentStatus {
    #[default]
    Running,
    Paused,
    Stopped,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Arm {
    pub key: String,
    /// Relative weight for `fixed` allocation; ignored by bandit policies.
    #[serde(default = "one")]
    pub weight: f64,
    #[serde(default)]
    pub mutations: Vec<Mutation>,
}

/// How an experiment picks an arm.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Policy {
    /// Classic A/B: arm by a hash of the unit id, in proportion to the arms' weights.
    #[default]
    Fixed,
    /// Beta-Bernoulli Thompson sampling.
    Thompson,
    /// UCB1 (deterministic given the posteriors).
    Ucb1,
    /// Best arm with probability 1 − ε, uniform otherwise.
    EpsilonGreedy { epsilon: f64 },
}

impl Policy {
    pub fn is_bandit(&self) -> bool {
        !matches!(self, Policy::Fixed)
    }
}

/// What the fraud gate does with a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateMode {
    Off,
    /// Score and tag only.
    #[default]
    Monitor,
    /// 403 above the threshold.
    Block,
    /// An interstitial above the threshold.
    Challenge,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FraudPolicy {
    #[serde(default)]
    pub mode: GateMode,
    /// Score at or above which a request counts as a bot (0..=1).
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// Case-insensitive substrings of the user agent that mark automation.
    #[serde(default)]
    pub deny_user_agents: Vec<String>,
    /// Case-insensitive substrings of the user agent always let through (verified good bots).
    #[serde(default)]
    pub allow_user_agents: Vec<String>,
    /// Per-path modes; the first matching rule wins over `mode`.
    #[serde(default)]
    pub routes: Vec<GateRoute>,
    /// Good bots let through when the user agent matches and the platform's reverse-DNS name of
    /// the client confirms it (a bare user agent is trivially forged).
    #[serde(default)]
    pub good_bots: Vec<GoodBot>,
    /// Path patterns no visitor has business on (`/wp-login.php`, `/.env`): score 1.
    #[serde(default)]
    pub deny_paths: Vec<String>,
    /// Name of the fraud model (listed in `models`); without it, or while it is not loaded, the
    /// gate scores with its header heuristics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The interstitial's hook in `challenge` mode.
    #[serde(default)]
    pub challenge: ChallengePage,
    /// A click sooner than this after its decision was issued is flagged as not human.
    #[serde(default = "default_min_click_seconds")]
    pub min_click_seconds: u64,
    /// Requests per client and short window above which a request scores 1 (before the model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

fn default_min_click_seconds() -> u64 {
    1
}

/// A verified good bot: user-agent substring plus the reverse-DNS domains its operator publishes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GoodBot {
    pub user_agent: String,
    /// Domain suffixes (`googlebot.com`) the client's reverse-DNS name must end with.
    pub reverse_dns: Vec<String>,
}

/// A Turnstile-compatible challenge widget: the page loads `scriptUrl` and renders the widget
/// with `siteKey` into `#stellwerk-challenge`; without them the element is an empty hook.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChallengePage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_key: Option<String>,
}

fn default_threshold() -> f64 {
    0.8
}

impl Default for FraudPolicy {
    fn default() -> Self {
        Self {
            mode: GateMode::default(),
            threshold: default_threshold(),
            deny_user_agents: Vec::new(),
            allow_user_agents: Vec::new(),
            routes: Vec::new(),
            good_bots: Vec::new(),
            deny_paths: Vec::new(),
            model: None,
            challenge: ChallengePage::default(),
            min_click_seconds: default_min_click_seconds(),
            rate_limit: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GateRoute {
    /// Path pattern (`*` at the end matches a prefix).
    pub path: String,
    pub mode: GateMode,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FeedbackPolicy {
    /// How long after the decision a beacon may still count.
    #[serde(default = "default_attribution_window")]
    pub attribution_window_seconds: u64,
    /// Largest accepted beacon body.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Where accepted feedback goes; every matching route adds its destinations.
    #[serde(default = "default_feedback_routes")]
    pub routes: Vec<FeedbackRoute>,
}

fn default_attribution_window() -> u64 {
    7 * 24 * 3600
}

fn default_max_body() -> usize {
    4096
}

fn default_feedback_routes() -> Vec<FeedbackRoute> {
    vec![FeedbackRoute {
        types: Vec::new(),
        experiments: Vec::new(),
        destinations: vec![Destination::Bandit],
    }]
}

impl Default for FeedbackPolicy {
    fn default() -> Self {
        Self {
            attribution_window_seconds: default_attribution_window(),
            max_body_bytes: default_max_body(),
            routes: default_feedback_routes(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FeedbackRoute {
    /// Feedback types this route takes (`click`, `conversion`, `custom`); all when empty.
    #[serde(default)]
    pub types: Vec<String>,
    /// Experiments this route takes; all when empty.
    #[serde(default)]
    pub experiments: Vec<String>,
    pub destinations: Vec<Destination>,
}

/// Where an event is delivered after the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Destination {
    /// Updates the experiment's posteriors.
    Bandit,
    /// Kept for reporting only.
    Analytics,
    /// Held apart and never counted (suspected fraud).
    Quarantine,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrivacyPolicy {
    /// Honour `Sec-GPC: 1` as an opt-out of personalisation and logging.
    #[serde(default = "yes")]
    pub respect_gpc: bool,
    /// Cookie holding the visitor's consent (`granted` / `denied`).
    #[serde(default = "default_consent_cookie")]
    pub consent_cookie: String,
    /// When true, only visitors whose consent cookie says `granted` are personalised and logged.
    #[serde(default)]
    pub require_consent: bool,
}

fn yes() -> bool {
    true
}

fn default_consent_cookie() -> String {
    "stellwerk_consent".to_owned()
}

impl Default for PrivacyPolicy {
    fn default() -> Self {
        Self {
            respect_gpc: true,
            consent_cookie: default_consent_cookie(),
            require_consent: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelRequirement {
    pub name: String,
    /// The oldest model version this snapshot accepts; older ones are not used.
    #[serde(default)]
    pub min_version: Option<String>,
}

impl Snapshot {
    /// Whether any rule may read model `name`'s score. Conservative: a rule that builds the
    /// variable name (`{"cat": ["model.", …]}`) or reads all of `model` counts as reading it.
    pub fn reads_model(&self, name: &str) -> bool {
        self.model_reads.iter().any(|read| {
            let rest = read.strip_prefix("model").unwrap_or_default();
            let Some(rest) = rest.strip_prefix('.') else {
                return rest.is_empty();
            };
            name.starts_with(rest)
                || rest
                    .strip_prefix(name)
                    .is_some_and(|tail| tail.starts_with('.'))
        })
    }

    /// Parses and validates a snapshot; on refusal lists every problem found.
    pub fn parse(bytes: &[u8]) -> Result<Snapshot, Invalid> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            Invalid(vec![crate::validate::Issue {
                path: String::new(),
                reason: format!("not JSON: {e}"),
            }])
        })?;
        Self::from_value(value)
    }

    pub fn from_value(value: Value) -> Result<Snapshot, Invalid> {
        let mut issues = Issues::new();
        let mut model_reads = Vec::new();
        collect_model_reads(&value, &mut model_reads);
        let mut snapshot: Snapshot = match serde_json::from_value(value) {
            Ok(s) => s,
            Err(e) => {
                issues.push("", format!("does not match the snapshot format: {e}"));
                return Err(Invalid(issues.into_vec()));
            }
        };
        snapshot.model_reads = model_reads;
        if snapshot.schema != SNAPSHOT_SCHEMA {
            issues.push(
                "schema",
                format!(
                    "unsupported schema {}, this core reads {SNAPSHOT_SCHEMA}",
                    snapshot.schema
                ),
            );
        }
        if snapshot.version.trim().is_empty() {
            issues.push("version", "must not be empty");
        }
        match FlagSet::parse(&snapshot.flags) {
            Ok(set) => snapshot.flag_set = set,
            Err(flag_issues) => issues.extend(flag_issues.0.into_iter().map(|mut i| {
                i.path = field("flags", &i.path);
                i
            })),
        }
        // Against the document, not the parsed set: one invalid flag must not make every effect
        // report its flag missing.
        let declared = |flag: &str| {
            snapshot
                .flags
                .get("flags")
                .is_some_and(|flags| flags.get(flag).is_some())
        };
        for (i, effect) in snapshot.flag_effects.iter().enumerate() {
            let path = index("flagEffects", i);
            if !declared(&effect.flag) {
                issues.push(
                    field(&path, "flag"),
                    format!("no flag named {:?}", effect.flag),
                );
            }
            for (variant, mutations) in &effect.variants {
                let vpath = field(&field(&path, "variants"), variant);
                check_mutations(&vpath, mutations, &mut issues);
            }
            check_paths(&path, &effect.paths, &mut issues);
        }
        let mut keys = BTreeSet::new();
        for (i, experiment) in snapshot.experiments.iter().enumerate() {
            let path = index("experiments", i);
            if !keys.insert(experiment.key.as_str()) {
                issues.push(
                    field(&path, "key"),
                    format!("duplicate experiment key {:?}", experiment.key),
                );
            }
            check_experiment(&path, experiment, &mut issues);
            if let Some(contextual) = &experiment.contextual {
                crate::contextual::check(
                    &field(&path, "contextual"),
                    contextual,
                    experiment,
                    &snapshot.models,
                    &mut issues,
                );
            }
        }
        check_fraud(&snapshot.fraud, &snapshot.models, &mut issues);
        check_feedback(&snapshot.feedback, &mut issues);
        issues.finish(snapshot)
    }

    pub fn experiment(&self, key: &str) -> Option<&Experiment> {
        self.experiments.iter().find(|e| e.key == key)
    }
}

fn check_key(path: &str, key: &str, issues: &mut Issues) {
    let ok = !key.is_empty()
        && key.len() <= 64
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        issues.push(path, "must be 1-64 characters of A-Z a-z 0-9 - _ .");
    }
}

fn check_paths(path: &str, paths: &[String], issues: &mut Issues) {
    for (i, p) in paths.iter().enumerate() {
        if !p.starts_with('/') {
            issues.push(index(&field(path, "paths"), i), "must start with /");
        }
    }
}

fn check_experiment(path: &str, experiment: &Experiment, issues: &mut Issues) {
    check_key(&field(path, "key"), &experiment.key, issues);
    check_paths(path, &experiment.paths, issues);
    if !(0.0..=1.0).contains(&experiment.traffic) {
        issues.push(field(path, "traffic"), "must be between 0 and 1");
    }
    if experiment.arms.is_empty() {
        issues.push(field(path, "arms"), "needs at least one arm");
    }
    let mut arm_keys = BTreeSet::new();
    for (i, arm) in experiment.arms.iter().enumerate() {
        let arm_path = index(&field(path, "arms"), i);
        check_key(&field(&arm_path, "key"), &arm.key, issues);
        if !arm_keys.insert(arm.key.as_str()) {
            issues.push(
                field(&arm_path, "key"),
                format!("duplicate arm key {:?}", arm.key),
            );
        }
        if !(arm.weight.is_finite() && arm.weight >= 0.0) {
            issues.push(field(&arm_path, "weight"), "must be a finite number >= 0");
        }
        check_mutations(&field(&arm_path, "mutations"), &arm.mutations, issues);
    }
    if experiment.policy == Policy::Fixed
        && !experiment.arms.is_empty()
        && experiment.arms.iter().map(|a| a.weight).sum::<f64>() <= 0.0
    {
        issues.push(field(path, "arms"), "weights must not all be 0");
    }
    if let Policy::EpsilonGreedy { epsilon } = experiment.policy
        && !(0.0..=1.0).contains(&epsilon)
    {
        issues.push(
            field(&field(path, "policy"), "epsilon"),
            "must be between 0 and 1",
        );
    }
    match (&experiment.status, &experiment.winner) {
        (ExperimentStatus::Stopped, None) => issues.push(
            field(path, "winner"),
            "a stopped experiment needs a winner arm",
        ),
        (_, Some(winner)) if !arm_keys.contains(winner.as_str()) => {
            issues.push(field(path, "winner"), format!("no arm named {winner:?}"))
        }
        _ => {}
    }
    if let Some(targeting) = &experiment.targeting
        && let Err(reason) = crate::flags::check_rule(targeting)
    {
        issues.push(field(path, "targeting"), reason);
    }
}

fn check_mutations(path: &str, mutations: &[Mutation], issues: &mut Issues) {
    for (i, mutation) in mutations.iter().enumerate() {
        let mpath = index(path, i);
        if let Err(reason) = stellwerk_rewrite::check_selector(&mutation.selector) {
            issues.push(field(&mpath, "selector"), reason);
        }
        let needs_attribute = matches!(
            mutation.action,
            MutationAction::SetAttr | MutationAction::RemoveAttr
        );
        match (&mutation.attribute, needs_attribute) {
            (None, true) => issues.push(field(&mpath, "attribute"), "required for this action"),
            (Some(a), true)
                if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '=') =>
            {
                issues.push(field(&mpath, "attribute"), "not a valid attribute name")
            }
            _ => {}
        }
        let needs_class = matches!(
            mutation.action,
            MutationAction::AddClass | MutationAction::RemoveClass
        );
        if needs_class
            && (mutation.value.is_empty() || mutation.value.contains(char::is_whitespace))
        {
            issues.push(field(&mpath, "value"), "must be one class name");
        }
    }
}

fn check_fraud(fraud: &FraudPolicy, models: &[ModelRequirement], issues: &mut Issues) {
    if !(0.0..=1.0).contains(&fraud.threshold) {
        issues.push("fraud.threshold", "must be between 0 and 1");
    }
    for (i, route) in fraud.routes.iter().enumerate() {
        if !route.path.starts_with('/') {
            issues.push(
                field(&index("fraud.routes", i), "path"),
                "must start with /",
            );
        }
    }
    for (i, path) in fraud.deny_paths.iter().enumerate() {
        if !path.starts_with('/') {
            issues.push(index("fraud.denyPaths", i), "must start with /");
        }
    }
    for (list, needles) in [
        ("fraud.denyUserAgents", &fraud.deny_user_agents),
        ("fraud.allowUserAgents", &fraud.allow_user_agents),
    ] {
        for (i, needle) in needles.iter().enumerate() {
            if needle.trim().is_empty() {
                issues.push(index(list, i), "must not be empty");
            }
        }
    }
    for (i, bot) in fraud.good_bots.iter().enumerate() {
        let path = index("fraud.goodBots", i);
        if bot.user_agent.trim().is_empty() {
            issues.push(field(&path, "userAgent"), "must not be empty");
        }
        if bot.reverse_dns.is_empty() {
            issues.push(
                field(&path, "reverseDns"),
                "needs at least one domain (use allowUserAgents to trust the user agent alone)",
            );
        }
        for (j, domain) in bot.reverse_dns.iter().enumerate() {
            let valid = !domain.is_empty()
                && domain.contains('.')
                && domain
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
            if !valid {
                issues.push(
                    index(&field(&path, "reverseDns"), j),
                    "must be a domain name such as googlebot.com",
                );
            }
        }
    }
    if let Some(limit) = &fraud.rate_limit {
        check_rate_limit(limit, issues);
    }
    if let Some(model) = &fraud.model
        && !models.iter().any(|m| &m.name == model)
    {
        issues.push("fraud.model", format!("{model:?} is not listed in models"));
    }
    if let Some(url) = &fraud.challenge.script_url
        && !url.starts_with("https://")
    {
        issues.push("fraud.challenge.scriptUrl", "must be an https:// URL");
    }
    if let Some(key) = &fraud.challenge.site_key
        && (key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
    {
        issues.push("fraud.challenge.siteKey", "must be letters, digits, - or _");
    }
}

fn check_feedback(feedback: &FeedbackPolicy, issues: &mut Issues) {
    if feedback.max_body_bytes == 0 || feedback.max_body_bytes > 64 * 1024 {
        issues.push("feedback.maxBodyBytes", "must be between 1 and 65536");
    }
    if feedback.attribution_window_seconds == 0 {
        issues.push("feedback.attributionWindowSeconds", "must be positive");
    }
    for (i, route) in feedback.routes.iter().enumerate() {
        if route.destinations.is_empty() {
            issues.push(
                field(&index("feedback.routes", i), "destinations"),
                "needs at least one destination",
            );
        }
    }
}

/// `pattern` matches `path` exactly, or as a prefix when it ends with `*`.
pub fn path_matches(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => pattern == path,
    }
}

/// An empty pattern list matches every path.
pub fn paths_match(patterns: &[String], path: &str) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| path_matches(p, path))
}

/// Collects the string values (not keys) that start with `model`: the only way a JsonLogic rule
/// or a feature spec can name a model's score. Mutation text may match too, which only means a
/// model runs that need not have.
fn collect_model_reads(value: &Value, reads: &mut Vec<String>) {
    match value {
        Value::String(s) if s.starts_with("model") => reads.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| collect_model_reads(v, reads)),
        Value::Object(fields) => fields.values().for_each(|v| collect_model_reads(v, reads)),
        _ => {}
    }
}
