//! `stellwerk ope`: off-policy evaluation of a candidate policy on logged training rows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use stellwerk_core::{
    ArmDistribution, ContextualPolicy, ContextualSnapshotPolicy, Estimate, IntervalMethod,
    LoadedModel, Model, OpeReport, PosteriorSnapshot, ScoredRows, Snapshot, TrainingRow,
    UniformPolicy, cross_fitted_means, evaluate, model_estimates, score_rows,
};

use crate::simulate::load_model;

#[derive(clap::Args)]
pub struct OpeArgs {
    /// Training rows as NDJSON: a file, or a folder read recursively (`*.ndjson`, `*.jsonl`).
    #[arg(long)]
    logs: PathBuf,
    /// The candidate: `uniform`, a snapshot file (its experiments' policies, contextual ones
    /// included, with `--posteriors` and `--model`), or a distribution file (`{"arms": {...}}`
    /// or `{"by", "cells"}`).
    #[arg(long)]
    policy: String,
    /// Posterior snapshot for a snapshot candidate's bandits and linear Thompson arms (default:
    /// no data yet).
    #[arg(long)]
    posteriors: Option<PathBuf>,
    /// A reward model a snapshot candidate's contextual experiment scores with: its manifest,
    /// the `.onnx` named after the model next to it. Repeat for several.
    #[arg(long = "model")]
    models: Vec<PathBuf>,
    /// Evaluate only this experiment's rows (needed when the logs hold several).
    #[arg(long)]
    experiment: Option<String>,
    /// Reward model for doubly robust: `means` (cross-fitted per-arm mean reward), `none`, or
    /// an ONNX reward model's manifest (one output `arm:<key>` per arm; the `.onnx` next to it).
    #[arg(long, default_value = "means")]
    reward_model: String,
    /// With `means`: one mean per arm and value of this context feature.
    #[arg(long)]
    by: Option<String>,
    /// Cross-fitting folds for `means` (row i in fold i mod FOLDS; 1 = no cross-fitting).
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// Confidence level of the intervals.
    #[arg(long, default_value_t = 0.95)]
    level: f64,
    /// Percentile bootstrap with this many resamples instead of the normal approximation.
    #[arg(long)]
    bootstrap: Option<usize>,
    /// Seed of the bootstrap's resampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &OpeArgs) -> Result<String, String> {
    if !(args.level > 0.0 && args.level < 1.0) {
        return Err(format!("--level {}: must be between 0 and 1", args.level));
    }
    let mut rows = read_rows(&args.logs)?;
    let experiment = match &args.experiment {
        Some(key) => key.clone(),
        None => only_experiment(&rows)?,
    };
    rows.retain(|r| r.experiment == experiment);
    if rows.is_empty() {
        return Err(format!("no rows for experiment {experiment}"));
    }
    let (q_hat, reward_model) = match args.reward_model.as_str() {
        "means" => (
            Some(cross_fitted_means(&rows, args.folds, args.by.as_deref())),
            reward_model_label(args),
        ),
        "none" => (None, "none".to_owned()),
        path => {
            let model = load_model(Path::new(path)).map_err(|e| format!("--reward-model {e}"))?;
            let label = format!(
                "ONNX reward model {}@{}",
                model.manifest().name,
                model.version()
            );
            (Some(model_estimates(&model, &rows)), label)
        }
    };
    let models = args
        .models
        .iter()
        .map(|path| load_model(path).map_err(|e| format!("--model {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let candidate = Candidate::load(&args.policy, args.posteriors.as_deref())?;
    candidate.check_models(&experiment, &models)?;
    let (scored, fallbacks) = candidate.score(&rows, q_hat.as_deref(), &models);
    let interval = match args.bootstrap {
        Some(resamples) => IntervalMethod::Bootstrap {
            level: args.level,
            resamples,
            seed: args.seed,
        },
        None => IntervalMethod::Normal { level: args.level },
    };
    let report = evaluate(&scored, interval).ok_or_else(|| {
        let reasons: Vec<String> = scored
            .skipped
            .iter()
            .map(|(reason, n)| format!("{n} × {reason}"))
            .collect();
        format!("no usable rows: {}", reasons.join("; "))
    })?;
    if args.json {
        let mut value = serde_json::to_value(&report).map_err(|e| e.to_string())?;
        value["experiment"] = json!(experiment);
        value["rewardModel"] = json!(reward_model);
        value["contextualFallbacks"] = json!(fallbacks);
        serde_json::to_string_pretty(&value).map_err(|e| e.to_string())
    } else {
        let mut out = table(&experiment, &report, &reward_model);
        for (code, n) in &fallbacks {
            out.push_str(&format!(
                "{n} rows: the candidate's contextual policy fell back to its plain policy ({code})\n"
            ));
        }
        Ok(out)
    }
}

/// The candidate, owned, so the policy can borrow from it.
enum Candidate {
    Uniform,
    Distribution(ArmDistribution),
    Snapshot(Box<(Snapshot, PosteriorSnapshot)>),
}

impl Candidate {
    fn load(spec: &str, posteriors: Option<&Path>) -> Result<Self, String> {
        if spec == "uniform" {
            return Ok(Self::Uniform);
        }
        let bytes = std::fs::read(spec).map_err(|e| format!("{spec}: {e}"))?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| format!("{spec}: {e}"))?;
        if value.get("schema").is_some() {
            let snapshot = Snapshot::parse(&bytes).map_err(|invalid| {
                let issues: Vec<String> = invalid.0.iter().map(ToString::to_string).collect();
                format!("{spec}: {}", issues.join("; "))
            })?;
            let posteriors = match posteriors {
                Some(path) => {
                    let bytes =
                        std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
                    PosteriorSnapshot::parse(&bytes).map_err(|invalid| {
                        let issues: Vec<String> =
                            invalid.0.iter().map(ToString::to_string).collect();
                        format!("{}: {}", path.display(), issues.join("; "))
                    })?
                }
                None => PosteriorSnapshot::default(),
            };
            return Ok(Self::Snapshot(Box::new((snapshot, posteriors))));
        }
        let text = String::from_utf8_lossy(&bytes);
        ArmDistribution::parse(&text)
            .map(Self::Distribution)
            .map_err(|e| format!("{spec}: not a snapshot, and not a distribution: {e}"))
    }

    /// A snapshot candidate whose experiment scores with a reward model needs that model:
    /// without it every row would silently be the plain policy's.
    fn check_models(&self, experiment: &str, models: &[Model]) -> Result<(), String> {
        let Self::Snapshot(candidate) = self else {
            return Ok(());
        };
        let contextual = candidate
            .0
            .experiment(experiment)
            .and_then(|e| e.contextual.as_ref());
        if let Some(ContextualPolicy::RewardModel { model, .. }) = contextual
            && !models.iter().any(|m| &m.manifest().name == model)
        {
            return Err(format!(
                "the candidate's experiment {experiment} scores arms with the reward model \
                 {model:?}: give its manifest with --model"
            ));
        }
        Ok(())
    }

    /// The scored rows, and how often a contextual candidate fell back, by code.
    fn score(
        &self,
        rows: &[TrainingRow],
        q_hat: Option<&[Vec<f64>]>,
        models: &[Model],
    ) -> (ScoredRows, BTreeMap<String, usize>) {
        match self {
            Self::Uniform => (score_rows(rows, &UniformPolicy, q_hat), BTreeMap::new()),
            Self::Distribution(distribution) => {
                (score_rows(rows, distribution, q_hat), BTreeMap::new())
            }
            Self::Snapshot(candidate) => {
                let (snapshot, posteriors) = candidate.as_ref();
                let loaded: Vec<LoadedModel<'_>> = models
                    .iter()
                    .map(|m| LoadedModel {
                        name: &m.manifest().name,
                        stable: m,
                        candidate: None,
                    })
                    .collect();
                let policy = ContextualSnapshotPolicy::new(snapshot, posteriors, &loaded);
                let scored = score_rows(rows, &policy, q_hat);
                (scored, policy.fallbacks())
            }
        }
    }
}

fn reward_model_label(args: &OpeArgs) -> String {
    match &args.by {
        Some(by) => format!("per-arm mean by {by}, {} folds", args.folds),
        None => format!("per-arm mean, {} folds", args.folds),
    }
}

fn only_experiment(rows: &[TrainingRow]) -> Result<String, String> {
    let mut keys: Vec<&str> = rows.iter().map(|r| r.experiment.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    match keys.as_slice() {
        [one] => Ok((*one).to_owned()),
        [] => Err("the logs hold no rows".into()),
        many => Err(format!(
            "the logs hold several experiments ({}): pick one with --experiment",
            many.join(", ")
        )),
    }
}

/// Every row of a file, or of every `*.ndjson`/`*.jsonl` file under a folder (sorted by path);
/// a malformed line is an error naming its file and line.
fn read_rows(path: &Path) -> Result<Vec<TrainingRow>, String> {
    let mut files = Vec::new();
    collect_files(path, &mut files)?;
    files.sort();
    let mut rows = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let row: TrainingRow = serde_json::from_str(line)
                .map_err(|e| format!("{}:{}: {e}", file.display(), i + 1))?;
            rows.push(row);
        }
    }
    Ok(rows)
}

fn collect_files(path: &Path, files: &mut Vec<PathBuf>) -> Result<(), String> {
    if !path.is_dir() {
        files.push(path.to_owned());
        return Ok(());
    }
    let entries = std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
    for entry in entries {
        let entry = entry
            .map_err(|e| format!("{}: {e}", path.display()))?
            .path();
        if entry.is_dir() {
            collect_files(&entry, files)?;
        } else if entry
            .extension()
            .is_some_and(|x| x == "ndjson" || x == "jsonl")
        {
            files.push(entry);
        }
    }
    Ok(())
}

fn table(experiment: &str, report: &OpeReport, reward_model: &str) -> String {
    let (method, level) = match report.interval {
        IntervalMethod::Normal { level } => ("normal approximation".to_owned(), level),
        IntervalMethod::Bootstrap {
            level,
            resamples,
            seed,
        } => (
            format!("percentile bootstrap, {resamples} resamples, seed {seed}"),
            level,
        ),
    };
    let mut out = format!(
        "experiment {experiment}: {} rows; {}% intervals by {method}\n\n",
        report.diagnostics.rows,
        level * 100.0
    );
    out.push_str(&format!(
        "{:<28} {:>10} {:>10} {:>10} {:>10}\n",
        "estimator", "value", "low", "high", "std err"
    ));
    let mut line = |name: &str, e: &Estimate| {
        out.push_str(&format!(
            "{name:<28} {:>10.6} {:>10.6} {:>10.6} {:>10.6}\n",
            e.value, e.low, e.high, e.std_error
        ));
    };
    line("logged policy (on-policy)", &report.on_policy);
    line("candidate: IPS", &report.ips);
    line("candidate: SNIPS", &report.snips);
    if let Some(dr) = &report.dr {
        line("candidate: DR", dr);
    }
    let d = &report.diagnostics;
    out.push_str(&format!(
        "\nreward model: {reward_model}\neffective sample size {:.1} of {}, max weight {:.3}, mean weight {:.4}\n",
        d.effective_sample_size, d.rows, d.max_weight, d.mean_weight
    ));
    for (reason, n) in &d.skipped {
        out.push_str(&format!("skipped {n} rows: {reason}\n"));
    }
    out
}
