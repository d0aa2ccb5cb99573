//! `stellwerk fraud-features` (the trainer's only way to turn requests into vectors) and
//! `stellwerk score-request` (why the gate would block a request).

use std::io::{self, BufRead};
use std::path::{Path, PathBuf};

use serde_json::json;
use stellwerk_core::{
    FraudPolicy, GateMode, LoadedModel, Model, ModelManifest, PlatformFacts, RequestFacts,
    Snapshot, contributions, feature_names, fraud_model, gate, request_features,
};

use crate::{emit, read};

/// Manifest of the shipped fraud model, relative to the repository root.
const DEFAULT_MANIFEST: &str = "models/fraud/fraud-gate.manifest.json";

#[derive(clap::Args)]
pub struct FeaturesArgs {
    /// Print the feature names (a JSON array) instead of reading requests.
    #[arg(long)]
    names: bool,
}

/// Reads one request (`{"method","url","headers":[[k,v]...],"platform"}`) per stdin line and
/// prints its feature vector as a JSON array, one per line.
pub fn features(args: &FeaturesArgs) -> Result<(), String> {
    if args.names {
        emit(&serde_json::to_string(feature_names()).map_err(|e| e.to_string())?);
        return Ok(());
    }
    for (number, line) in io::stdin().lock().lines().enumerate() {
        let line = line.map_err(|e| format!("stdin: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let facts: RequestFacts =
            serde_json::from_str(&line).map_err(|e| format!("line {}: {e}", number + 1))?;
        emit(&serde_json::to_string(&request_features(&facts)).map_err(|e| e.to_string())?);
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct ScoreArgs {
    /// The request's User-Agent.
    #[arg(long, default_value = "")]
    ua: String,
    /// Request header `K: V` (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    #[arg(long, default_value = "GET")]
    method: String,
    #[arg(long, default_value = "https://demo.stellwerk.local/")]
    url: String,
    /// Autonomous system number the platform would report.
    #[arg(long)]
    asn: Option<u32>,
    /// TLS version the platform would report (`TLSv1.3`).
    #[arg(long)]
    tls: Option<String>,
    /// The fraud model's manifest; its `.onnx` lies beside it.
    #[arg(long, default_value = DEFAULT_MANIFEST)]
    model: PathBuf,
    /// A snapshot whose fraud rules and threshold apply (default: block mode, no rules, the
    /// threshold shipped beside the model).
    #[arg(long)]
    snapshot: Option<PathBuf>,
    /// How many feature contributions to print.
    #[arg(long, default_value_t = 8)]
    top: usize,
}

/// Scores one request: the gate's verdict (rules, then the model) and the features that moved
/// the model's score most.
pub fn score(args: &ScoreArgs) -> Result<(), String> {
    let model = load_model(&args.model)?;
    let policy = match &args.snapshot {
        Some(path) => {
            Snapshot::parse(&read(path)?)
                .map_err(|e| format!("{}:\n{e}", path.display()))?
                .fraud
        }
        None => FraudPolicy {
            mode: GateMode::Block,
            threshold: shipped_threshold(&args.model)?,
            model: Some(model.manifest().name.clone()),
            ..FraudPolicy::default()
        },
    };
    let facts = args.facts()?;
    let loaded = [LoadedModel {
        name: &model.manifest().name,
        stable: &model,
        candidate: None,
    }];
    let scoring_model = fraud_model(&policy, &loaded);
    if policy.model.is_some() && scoring_model.is_none() {
        return Err(format!(
            "{} is not a fraud model for this build (its feature spec differs) or not the one the snapshot names",
            args.model.display()
        ));
    }
    let verdict = gate(&policy, &facts, scoring_model);
    let features = request_features(&facts);
    let top: Vec<_> = contributions(&model, &features)
        .map_err(|e| e.to_string())?
        .into_iter()
        .take(args.top)
        .map(|(feature, logit)| json!({ "feature": feature, "logOdds": round(logit) }))
        .collect();
    let report = json!({
        "score": round(verdict.score),
        "threshold": policy.threshold,
        "verdict": verdict.action,
        "mode": verdict.mode,
        "reasons": verdict.reasons,
        "model": format!("{} {}", model.manifest().name, model.version()),
        "contributions": top,
    });
    emit(&serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
    Ok(())
}

impl ScoreArgs {
    fn facts(&self) -> Result<RequestFacts, String> {
        let mut headers = Vec::new();
        if !self.ua.is_empty() {
            headers.push(("user-agent".to_owned(), self.ua.clone()));
        }
        for header in &self.headers {
            let (name, value) = header
                .split_once(':')
                .ok_or_else(|| format!("--header {header:?}: expected 'Name: value'"))?;
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
        Ok(RequestFacts {
            method: self.method.to_ascii_uppercase(),
            url: self.url.clone(),
            headers,
            platform: PlatformFacts {
                asn: self.asn,
                tls_version: self.tls.clone(),
                ..PlatformFacts::default()
            },
        })
    }
}

fn round(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// Loads a model as the edge does: manifest, sha256, tract, golden example.
pub fn load_model(manifest_path: &Path) -> Result<Model, String> {
    let manifest = ModelManifest::parse(&read(manifest_path)?)
        .map_err(|e| format!("{}:\n{e}", manifest_path.display()))?;
    let onnx = manifest_path.with_file_name(format!("{}.onnx", manifest.name));
    Model::load(manifest, &read(&onnx)?).map_err(|e| format!("{}: {e}", onnx.display()))
}

/// The threshold the trainer chose, from `threshold.json` beside the manifest.
fn shipped_threshold(manifest_path: &Path) -> Result<f64, String> {
    let path = manifest_path.with_file_name("threshold.json");
    let value: serde_json::Value =
        serde_json::from_slice(&read(&path)?).map_err(|e| format!("{}: {e}", path.display()))?;
    value["threshold"]
        .as_f64()
        .ok_or_else(|| format!("{}: no numeric \"threshold\"", path.display()))
}
