//! `stellwerk`: the decision core from a terminal — validate snapshots, evaluate flags, see what a
//! visitor would get, rewrite a page, and debug beacon tokens.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

mod edge_admin;
mod fraud;
mod ope;
mod redis_aggregator;
mod simulate;
mod spin_sync;

use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use stellwerk_core::{
    DecideInput, DecisionToken, FlagSet, Keys, PageRewriter, PlatformFacts, PosteriorSnapshot,
    RequestFacts, Snapshot, UNIT_COOKIE, decide,
};

/// Key used when none is given: fine for a laptop, never for an edge (the edge reads secrets).
const DEV_KEY: &str = "stellwerk-dev-key";

#[derive(Parser)]
#[command(
    name = "stellwerk",
    version,
    about = "Drive Stellwerk's decision core from a terminal"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a snapshot; exit 1 with every `path: reason` when it is refused.
    Validate { file: PathBuf },
    /// Evaluate one flag of a snapshot or a plain flagd flag file.
    Flag {
        file: PathBuf,
        key: String,
        /// Evaluation context as JSON.
        #[arg(long, default_value = "{}")]
        context: String,
        /// Unix seconds for `$flagd.timestamp` (default: now).
        #[arg(long)]
        now: Option<u64>,
    },
    /// Print what a visitor gets: gate verdict, flags, arms with propensities, mutations, events.
    Decide {
        snapshot: PathBuf,
        #[command(flatten)]
        visit: Visit,
    },
    /// Stream a page from stdin to stdout through the rewriter the edge uses.
    Rewrite {
        snapshot: PathBuf,
        #[command(flatten)]
        visit: Visit,
        /// The page's Content-Type, as the origin would send it.
        #[arg(long, default_value = "text/html; charset=utf-8")]
        content_type: String,
    },
    /// Aggregate the Spin edges' events from a Redis stream into the posteriors.
    Aggregate(redis_aggregator::AggregateArgs),
    /// Verify what the object store publishes and move Spin's active pointers to it.
    Sync(spin_sync::SyncArgs),
    /// Off-policy evaluation: IPS, SNIPS and doubly robust estimates of a candidate policy's
    /// reward on logged training rows, with intervals, next to the logged policy's own value.
    Ope(ope::OpeArgs),
    /// Turn flags on or off on a running edge (through its admin API).
    Flags {
        #[command(flatten)]
        edge: edge_admin::EdgeArgs,
        #[command(subcommand)]
        action: edge_admin::FlagsAction,
    },
    /// Start, pause or stop an experiment on a running edge (through its admin API).
    Experiment {
        #[command(flatten)]
        edge: edge_admin::EdgeArgs,
        #[command(subcommand)]
        action: edge_admin::ExperimentAction,
    },
    /// Validate and activate a snapshot on a running edge (through its admin API); exit 1 with
    /// every `path: reason` when it is refused.
    Push {
        snapshot: PathBuf,
        #[command(flatten)]
        edge: edge_admin::EdgeArgs,
    },
    /// Read requests as JSON lines on stdin, print each one's fraud feature vector (the trainer
    /// in models/fraud uses this, so training and the edge build features the same way).
    FraudFeatures(fraud::FeaturesArgs),
    /// Score one request with the fraud gate: score, verdict, the features that weighed most.
    ScoreRequest(fraud::ScoreArgs),
    /// Simulate visitors with known per-context click rates and report each policy's regret.
    Simulate(simulate::SimulateArgs),
    /// Sign or verify a decision token.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Print the core's outputs for conformance vectors, the reference every edge must match:
    /// `{"<kind>/<file>": output, ...}` (one entry per line) for every vector under PATH, or one
    /// file's output with `--kind`.
    Conformance {
        /// Vector folder (default `tests/conformance`), or one vector file with `--kind`.
        path: Option<PathBuf>,
        /// The kind of the one vector file given as PATH (flags, token, decide, ...).
        #[arg(long)]
        kind: Option<String>,
    },
}

#[derive(clap::Args)]
struct Visit {
    /// The visitor's unit id (the `stellwerk_id` cookie; 32 hex characters).
    #[arg(long)]
    unit: Option<String>,
    #[arg(long, default_value = "https://demo.stellwerk.local/")]
    url: String,
    /// Request header `K: V` (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Posterior snapshot JSON (bandit state); empty when absent.
    #[arg(long)]
    posteriors: Option<PathBuf>,
    /// Unix seconds (default: now).
    #[arg(long)]
    now: Option<u64>,
    /// 32 hex characters of request randomness (default: fresh).
    #[arg(long)]
    random: Option<String>,
    #[arg(long, env = "STELLWERK_HMAC_KEY", default_value = DEV_KEY, hide_env_values = true)]
    hmac_key: String,
    #[arg(long, env = "STELLWERK_UNIT_KEY", default_value = DEV_KEY, hide_env_values = true)]
    unit_key: String,
    /// Country the platform would report.
    #[arg(long)]
    country: Option<String>,
}

#[derive(Subcommand)]
enum TokenAction {
    /// Sign a token given as JSON (`{"decisionId", "experiment", "arm", ...}`).
    Sign {
        json: String,
        #[arg(long, env = "STELLWERK_HMAC_KEY", default_value = DEV_KEY, hide_env_values = true)]
        hmac_key: String,
    },
    /// Verify a token; prints its contents or the reason it is refused.
    Verify {
        token: String,
        #[arg(long, env = "STELLWERK_HMAC_KEY", default_value = DEV_KEY, hide_env_values = true)]
        hmac_key: String,
        /// Attribution window in seconds.
        #[arg(long, default_value_t = 7 * 24 * 3600)]
        window: u64,
        #[arg(long)]
        now: Option<u64>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("stellwerk: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> Result<ExitCode, String> {
    match command {
        Command::Validate { file } => match Snapshot::parse(&read(&file)?) {
            Ok(snapshot) => {
                emit(&format!(
                    "ok: snapshot {} ({} experiments, {} flags)",
                    snapshot.version,
                    snapshot.experiments.len(),
                    snapshot.flag_set.keys().count()
                ));
                Ok(ExitCode::SUCCESS)
            }
            Err(invalid) => {
                for issue in &invalid.0 {
                    emit(&issue.to_string());
                }
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Flag {
            file,
            key,
            context,
            now,
        } => {
            let context: Value =
                serde_json::from_str(&context).map_err(|e| format!("--context: {e}"))?;
            let flags = load_flags(&file)?;
            let resolution = flags.evaluate(&key, &context, now.unwrap_or_else(unix_now));
            emit(&serde_json::to_string(&resolution).map_err(|e| e.to_string())?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Decide { snapshot, visit } => {
            let snapshot = load_snapshot(&snapshot)?;
            let posteriors = load_posteriors(visit.posteriors.as_deref())?;
            let facts = visit.facts()?;
            let decision = decide(&visit.input(&snapshot, &posteriors, &facts)?);
            emit(&serde_json::to_string_pretty(&decision).map_err(|e| e.to_string())?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Rewrite {
            snapshot,
            visit,
            content_type,
        } => {
            let snapshot = load_snapshot(&snapshot)?;
            let posteriors = load_posteriors(visit.posteriors.as_deref())?;
            let facts = visit.facts()?;
            let decision = decide(&visit.input(&snapshot, &posteriors, &facts)?);
            rewrite_stdin(&decision, &content_type)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::FraudFeatures(args) => fraud::features(&args).map(|()| ExitCode::SUCCESS),
        Command::ScoreRequest(args) => fraud::score(&args).map(|()| ExitCode::SUCCESS),
        Command::Token { action } => token(action),
        Command::Ope(args) => {
            emit(ope::run(&args)?.trim_end());
            Ok(ExitCode::SUCCESS)
        }
        Command::Aggregate(args) => redis_aggregator::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Sync(args) => spin_sync::run(&args).map(|ok| ExitCode::from(u8::from(!ok))),
        Command::Conformance { path, kind } => conformance(path, kind.as_deref()),
        Command::Simulate(args) => simulate::run(args).map(|()| ExitCode::SUCCESS),
        Command::Flags { edge, action } => edge_admin::flags(&edge, action).map(exit_code),
        Command::Experiment { edge, action } => {
            edge_admin::experiment(&edge, action).map(exit_code)
        }
        Command::Push { snapshot, edge } => edge_admin::push(&edge, &snapshot).map(exit_code),
    }
}

fn exit_code(accepted: bool) -> ExitCode {
    if accepted {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn conformance(path: Option<PathBuf>, kind: Option<&str>) -> Result<ExitCode, String> {
    use stellwerk_core::conformance::{KINDS, run};
    let output_of = |kind: &str, file: &Path| -> Result<String, String> {
        let vector: Value =
            serde_json::from_slice(&read(file)?).map_err(|e| format!("{}: {e}", file.display()))?;
        let output = run(kind, &vector).map_err(|e| format!("{}: {e}", file.display()))?;
        Ok(output.to_string())
    };
    if let Some(kind) = kind {
        let file = path.ok_or("--kind needs the vector FILE")?;
        emit(&output_of(kind, &file)?);
        return Ok(ExitCode::SUCCESS);
    }
    let dir = path.unwrap_or_else(|| PathBuf::from("tests/conformance"));
    // One entry per line, so a driver can also take each output's exact bytes from its line.
    let mut entries = Vec::new();
    for kind in KINDS {
        let Ok(listing) = std::fs::read_dir(dir.join(kind)) else {
            continue;
        };
        let mut files: Vec<PathBuf> = listing
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        for file in files {
            let name = file.file_name().unwrap_or_default().to_string_lossy();
            let key = Value::from(format!("{kind}/{name}"));
            entries.push(format!("{key}:{}", output_of(kind, &file)?));
        }
    }
    if entries.is_empty() {
        return Err(format!("{}: no conformance vectors", dir.display()));
    }
    emit(&format!("{{\n{}\n}}", entries.join(",\n")));
    Ok(ExitCode::SUCCESS)
}

fn rewrite_stdin(
    decision: &stellwerk_core::PageDecision,
    content_type: &str,
) -> Result<(), String> {
    let mut stdout = io::stdout().lock();
    let mut write_error = None;
    let injection = decision.page_injection("/_stellwerk/beacon.js", None);
    let mut rewriter = PageRewriter::new(
        &decision.mutations,
        injection.as_ref(),
        Some(content_type),
        |bytes: &[u8]| {
            if write_error.is_none()
                && let Err(e) = stdout.write_all(bytes)
            {
                write_error = Some(e);
            }
        },
    )
    .map_err(|e| e.to_string())?;
    let mut stdin = io::stdin().lock();
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let n = stdin.read(&mut buffer).map_err(|e| format!("stdin: {e}"))?;
        if n == 0 {
            break;
        }
        rewriter.write(&buffer[..n]).map_err(|e| e.to_string())?;
    }
    rewriter.end().map_err(|e| e.to_string())?;
    match write_error {
        Some(e) => Err(format!("stdout: {e}")),
        None => Ok(()),
    }
}

fn token(action: TokenAction) -> Result<ExitCode, String> {
    match action {
        TokenAction::Sign { json, hmac_key } => {
            let fields: TokenFields =
                serde_json::from_str(&json).map_err(|e| format!("token JSON: {e}"))?;
            emit(&DecisionToken::from(fields).sign(hmac_key.as_bytes()));
            Ok(ExitCode::SUCCESS)
        }
        TokenAction::Verify {
            token,
            hmac_key,
            window,
            now,
        } => {
            match DecisionToken::verify(
                &token,
                hmac_key.as_bytes(),
                now.unwrap_or_else(unix_now),
                window,
            ) {
                Ok(token) => {
                    emit(
                        &serde_json::to_string_pretty(&TokenFields::from(token))
                            .map_err(|e| e.to_string())?,
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    emit(&json!({ "valid": false, "reason": e.to_string() }).to_string());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

/// A token's fields under readable names (the wire format uses one letter each).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TokenFields {
    decision_id: String,
    experiment: String,
    arm: String,
    propensity: f64,
    policy_version: String,
    issued_at: u64,
    unit: String,
}

impl From<TokenFields> for DecisionToken {
    fn from(f: TokenFields) -> Self {
        DecisionToken {
            decision_id: f.decision_id,
            experiment: f.experiment,
            arm: f.arm,
            propensity: f.propensity,
            policy_version: f.policy_version,
            issued_at: f.issued_at,
            unit: f.unit,
        }
    }
}

impl From<DecisionToken> for TokenFields {
    fn from(t: DecisionToken) -> Self {
        TokenFields {
            decision_id: t.decision_id,
            experiment: t.experiment,
            arm: t.arm,
            propensity: t.propensity,
            policy_version: t.policy_version,
            issued_at: t.issued_at,
            unit: t.unit,
        }
    }
}

/// Prints a line; a closed pipe (`| head`) ends the output quietly instead of panicking.
fn emit(text: &str) {
    let _ = writeln!(io::stdout().lock(), "{text}");
}

impl Visit {
    fn facts(&self) -> Result<RequestFacts, String> {
        let mut headers = Vec::new();
        for header in &self.headers {
            let (name, value) = header
                .split_once(':')
                .ok_or_else(|| format!("--header {header:?}: expected 'Name: value'"))?;
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
        if !headers.iter().any(|(k, _)| k == "user-agent") {
            // What a desktop browser sends, so a plain `decide` is not scored as a bot.
            headers.push(("user-agent".into(), "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36".into()));
            headers.push(("accept".into(), "text/html".into()));
            headers.push(("accept-language".into(), "en-US,en;q=0.9".into()));
        }
        if let Some(unit) = &self.unit {
            headers.push(("cookie".into(), format!("{UNIT_COOKIE}={unit}")));
        }
        Ok(RequestFacts {
            method: "GET".into(),
            url: self.url.clone(),
            headers,
            platform: PlatformFacts {
                country: self.country.clone(),
                ..PlatformFacts::default()
            },
        })
    }

    fn input<'a>(
        &'a self,
        snapshot: &'a Snapshot,
        posteriors: &'a PosteriorSnapshot,
        facts: &'a RequestFacts,
    ) -> Result<DecideInput<'a>, String> {
        let random = match &self.random {
            Some(hex) => parse_random(hex)?,
            None => fresh_random()?,
        };
        Ok(DecideInput {
            snapshot,
            posteriors,
            facts,
            keys: Keys {
                token: self.hmac_key.as_bytes(),
                unit: self.unit_key.as_bytes(),
            },
            random,
            models: &[],
            now: self.now.unwrap_or_else(unix_now),
        })
    }
}

fn parse_random(hex: &str) -> Result<[u8; 16], String> {
    let bad = || format!("--random {hex:?}: expected 32 hex characters");
    if hex.len() != 32 {
        return Err(bad());
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

fn fresh_random() -> Result<[u8; 16], String> {
    let mut out = [0u8; 16];
    getrandom::fill(&mut out).map_err(|e| format!("no randomness: {e}"))?;
    Ok(out)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A file's bytes; `-` reads standard input.
fn read(path: &Path) -> Result<Vec<u8>, String> {
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| format!("stdin: {e}"))?;
        return Ok(bytes);
    }
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn load_snapshot(path: &Path) -> Result<Snapshot, String> {
    Snapshot::parse(&read(path)?)
        .map_err(|invalid| format!("{} is not a valid snapshot:\n{invalid}", path.display()))
}

fn load_posteriors(path: Option<&Path>) -> Result<PosteriorSnapshot, String> {
    match path {
        Some(path) => {
            PosteriorSnapshot::parse(&read(path)?).map_err(|e| format!("{}: {e}", path.display()))
        }
        None => Ok(PosteriorSnapshot::default()),
    }
}

/// A snapshot's flags, or a plain flagd file (anything with a top-level `flags` and no `schema`).
fn load_flags(path: &Path) -> Result<FlagSet, String> {
    let document: Value =
        serde_json::from_slice(&read(path)?).map_err(|e| format!("{}: {e}", path.display()))?;
    if document.get("schema").is_some() {
        Ok(Snapshot::from_value(document)
            .map_err(|e| format!("{}:\n{e}", path.display()))?
            .flag_set)
    } else {
        FlagSet::parse(&document).map_err(|e| format!("{}:\n{e}", path.display()))
    }
}
