//! `stellwerk simulate`: visitors with known per-context click rates, served by the core's
//! policies, to show what a contextual policy learns that a plain bandit cannot.
//!
//! Every visitor goes through the same calls an edge makes: `decide` on a real snapshot (the
//! visitor's device comes from its user agent, "returning" from its cookie), a click beacon
//! through `accept_feedback` with the page's signed token, and every `batch` visitors the
//! aggregator's fold: `apply_events` (Beta posteriors and Thompson's P(best)), `join_batch` with
//! `close_buckets` (training rows) and `learn_linear` (linear Thompson). Only the visitors are
//! simulated: who arrives and whether they click, drawn from a seeded PRNG. Regret is expected
//! regret: the best arm's click rate for the visitor's context minus the served arm's, summed.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use stellwerk_core::{
    ConsentState, DecideInput, JoinState, Keys, LoadedModel, Model, ModelManifest, PendingRow,
    PlatformFacts, PosteriorSnapshot, RequestFacts, Snapshot, SplitMix64, accept_feedback,
    apply_events, close_buckets, decide, device_class, join_batch, join_bucket, learn_linear,
    training_batches,
};

#[derive(clap::Args)]
pub struct SimulateArgs {
    /// Visitors per policy and scenario.
    #[arg(long, default_value_t = 100_000)]
    visitors: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Runs with seeds SEED, SEED + 1, …: each cell then shows the mean ± standard deviation.
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// Visitors between two aggregator runs (the queue's batch).
    #[arg(long, default_value_t = 100)]
    batch: u64,
    /// Write the uniform-random run's training rows (NDJSON, partitioned as in R2) under DIR.
    #[arg(long)]
    logs: Option<PathBuf>,
    /// A reward model's manifest (the .onnx next to it): adds a SquareCB policy that scores arms with it.
    #[arg(long)]
    reward_model: Option<PathBuf>,
    /// SquareCB's γ for the reward-model policy.
    #[arg(long, default_value_t = 50.0)]
    gamma: f64,
}

const ARMS: [&str; 3] = ["a", "b", "c"];
const DEVICES: [(&str, &str, f64); 3] = [
    (
        "mobile",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
        0.5,
    ),
    (
        "desktop",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
        0.35,
    ),
    (
        "tablet",
        "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
        0.15,
    ),
];
/// Share of visitors who come back with a cookie; they click a bit more on every arm.
const RETURNING_SHARE: f64 = 0.3;
const RETURNING_LIFT: f64 = 0.02;
/// Simulated arrivals per second, and how long the join waits for a click.
const VISITORS_PER_SECOND: u64 = 10;
const JOIN_WINDOW_SECONDS: u64 = 5;
const START: u64 = 1_767_225_600;
const CHECKPOINTS: [u64; 5] = [1_000, 10_000, 25_000, 50_000, 100_000];

/// Click rates per device (rows, in `DEVICES` order) and arm (columns, in `ARMS` order).
struct Scenario {
    name: &'static str,
    rates: [[f64; 3]; 3],
}

const SCENARIOS: [Scenario; 2] = [
    Scenario {
        name: "contexts differ (each device has its own best arm)",
        rates: [[0.10, 0.04, 0.05], [0.04, 0.10, 0.05], [0.05, 0.04, 0.10]],
    },
    Scenario {
        name: "contexts alike (arm a is best everywhere)",
        rates: [[0.10, 0.06, 0.04], [0.10, 0.06, 0.04], [0.10, 0.06, 0.04]],
    },
];

/// 16 random bytes (unit ids, the decision's randomness) from the seeded generator.
fn random_bytes(rng: &mut SplitMix64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
    out[8..].copy_from_slice(&rng.next_u64().to_le_bytes());
    out
}

struct PolicyUnderTest {
    name: &'static str,
    policy: Value,
    contextual: Option<Value>,
}

pub fn run(args: SimulateArgs) -> Result<(), String> {
    for (device, user_agent, _) in DEVICES {
        if device_class(user_agent) != device {
            return Err(format!(
                "user agent for {device} reads as {}",
                device_class(user_agent)
            ));
        }
    }
    let reward_model = match &args.reward_model {
        Some(path) => Some(load_model(path)?),
        None => None,
    };
    let mut policies = vec![
        PolicyUnderTest {
            name: "uniform random",
            policy: json!({"type": "fixed"}),
            contextual: None,
        },
        PolicyUnderTest {
            name: "Thompson (Beta, no context)",
            policy: json!({"type": "thompson"}),
            contextual: None,
        },
        PolicyUnderTest {
            name: "linear Thompson (contextual)",
            policy: json!({"type": "thompson"}),
            contextual: Some(json!({"type": "linear_thompson", "features": [
                {"kind": "one_hot", "source": "device", "values": ["mobile", "desktop", "tablet"]},
                {"kind": "bool", "source": "returning"}
            ]})),
        },
    ];
    if let Some(model) = &reward_model {
        policies.push(PolicyUnderTest {
            name: "SquareCB on the reward model (contextual)",
            policy: json!({"type": "thompson"}),
            contextual: Some(
                json!({"type": "reward_model", "model": model.manifest().name,
                "exploration": {"type": "squarecb", "gamma": args.gamma}}),
            ),
        });
    }

    if args.seeds == 0 {
        return Err("--seeds must be at least 1".into());
    }
    let seeds = args.seed..args.seed + args.seeds;
    let seed_label = if args.seeds == 1 {
        format!("seed {}", args.seed)
    } else {
        format!(
            "seeds {}–{} (mean ± standard deviation over seeds)",
            seeds.start,
            seeds.end - 1
        )
    };
    println!(
        "Cumulative expected regret (clicks lost against the best arm for each visitor's context), \
         {} visitors, {seed_label}, aggregation every {} visitors.\n",
        args.visitors, args.batch
    );
    for (s, scenario) in SCENARIOS.iter().enumerate() {
        println!("### {}\n", scenario.name);
        let header: Vec<String> = CHECKPOINTS
            .iter()
            .filter(|&&c| c <= args.visitors)
            .map(|c| format!("after {c}"))
            .collect();
        println!("| policy | {} | contextual fallbacks |", header.join(" | "));
        println!("|---|{}---|", "---|".repeat(header.len()));
        for policy in &policies {
            let logs = args
                .logs
                .as_ref()
                .filter(|_| policy.name == "uniform random" && s == 0);
            let mut runs = Vec::new();
            for seed in seeds.clone() {
                // Only the first seed's uniform rows are written.
                let logs = logs.filter(|_| seed == args.seed);
                runs.push(simulate(
                    scenario,
                    policy,
                    reward_model.as_ref(),
                    &args,
                    seed,
                    logs,
                )?);
            }
            let cells: Vec<String> = (0..runs[0].regret_at.len())
                .map(|c| {
                    let at: Vec<f64> = runs.iter().map(|r| r.regret_at[c]).collect();
                    let mean = at.iter().sum::<f64>() / at.len() as f64;
                    if at.len() == 1 {
                        return format!("{mean:.0}");
                    }
                    let variance =
                        at.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (at.len() - 1) as f64;
                    format!("{mean:.0} ± {:.0}", variance.sqrt())
                })
                .collect();
            let fallbacks: u64 = runs.iter().map(|r| r.fallbacks).sum();
            println!("| {} | {} | {fallbacks} |", policy.name, cells.join(" | "));
        }
        println!();
    }
    Ok(())
}

struct Outcome {
    regret_at: Vec<f64>,
    fallbacks: u64,
}

fn simulate(
    scenario: &Scenario,
    policy: &PolicyUnderTest,
    reward_model: Option<&Model>,
    args: &SimulateArgs,
    seed: u64,
    logs: Option<&PathBuf>,
) -> Result<Outcome, String> {
    let mut experiment = json!({"key": "hero", "policy": policy.policy, "arms":
        ARMS.iter().map(|a| json!({"key": a})).collect::<Vec<_>>()});
    if let Some(contextual) = &policy.contextual {
        experiment["contextual"] = contextual.clone();
    }
    let models: Vec<Value> = reward_model
        .map(|m| json!({"name": m.manifest().name}))
        .into_iter()
        .collect();
    let snapshot = Snapshot::from_value(json!({
        "schema": 1, "version": "sim-1", "fraud": {"mode": "off"},
        "models": models, "experiments": [experiment]
    }))
    .map_err(|e| format!("simulation snapshot refused:\n{e}"))?;
    let loaded: Vec<LoadedModel<'_>> = reward_model
        .map(|m| LoadedModel {
            name: &m.manifest().name,
            stable: m,
            candidate: None,
        })
        .into_iter()
        .collect();

    let keys = Keys {
        token: b"simulation-token-key",
        unit: b"simulation-unit-key",
    };
    let mut rng = SplitMix64(seed);
    let mut posteriors = PosteriorSnapshot::default();
    let mut join = Join::default();
    let mut queue = Vec::new();
    let mut regret = 0.0;
    let mut regret_at = Vec::new();
    let mut fallbacks = 0;
    let mut now = START;
    for visitor in 1..=args.visitors {
        now = START + visitor / VISITORS_PER_SECOND;
        let pick = rng.uniform();
        let mut device = DEVICES.len() - 1;
        let mut cumulative = 0.0;
        for (i, (_, _, share)) in DEVICES.iter().enumerate() {
            cumulative += share;
            if pick < cumulative {
                device = i;
                break;
            }
        }
        let returning = rng.uniform() < RETURNING_SHARE;
        let mut headers = vec![
            ("user-agent".to_owned(), DEVICES[device].1.to_owned()),
            ("accept".to_owned(), "text/html".to_owned()),
        ];
        if returning {
            let cookie = hex(&random_bytes(&mut rng));
            headers.push(("cookie".to_owned(), format!("stellwerk_id={cookie}")));
        }
        let facts = RequestFacts {
            method: "GET".into(),
            url: "https://shop.example/".into(),
            headers,
            platform: PlatformFacts::default(),
        };
        let decision = decide(&DecideInput {
            snapshot: &snapshot,
            posteriors: &posteriors,
            facts: &facts,
            keys,
            random: random_bytes(&mut rng),
            now,
            models: &loaded,
        });
        let assignment = decision
            .assignments
            .first()
            .ok_or("the simulated visitor got no arm")?;
        if assignment.fallback.is_some() {
            fallbacks += 1;
        }
        let arm = ARMS
            .iter()
            .position(|a| *a == assignment.arm)
            .ok_or("unknown arm")?;
        let lift = if returning { RETURNING_LIFT } else { 0.0 };
        let rates = scenario.rates[device];
        let best = rates.iter().copied().fold(0.0, f64::max);
        regret += best - rates[arm];
        queue.extend(decision.events.iter().cloned());
        if rng.uniform() < rates[arm] + lift {
            let token = assignment.token.as_deref().ok_or("no token")?;
            let body = json!({"token": token, "type": "click"}).to_string();
            let accepted = accept_feedback(
                body.as_bytes(),
                &snapshot.feedback,
                &snapshot.experiments,
                keys.token,
                now,
                ConsentState::Unknown,
            )
            .map_err(|r| format!("beacon refused: {}", r.reason))?;
            queue.push(accepted.event);
        }
        if visitor % args.batch == 0 || visitor == args.visitors {
            aggregate(&mut posteriors, &mut join, &queue, &snapshot, now, logs)?;
            queue.clear();
        }
        if CHECKPOINTS.contains(&visitor) {
            regret_at.push(regret);
        }
    }
    // Let the last windows close so every row is written.
    aggregate(
        &mut posteriors,
        &mut join,
        &[],
        &snapshot,
        now + JOIN_WINDOW_SECONDS,
        logs,
    )?;
    Ok(Outcome {
        regret_at,
        fallbacks,
    })
}

/// The training join as an adapter keeps it: the core's state and the stored segments.
#[derive(Default)]
struct Join {
    state: JoinState,
    segments: Vec<Vec<PendingRow>>,
}

fn aggregate(
    posteriors: &mut PosteriorSnapshot,
    join: &mut Join,
    events: &[stellwerk_core::Event],
    snapshot: &Snapshot,
    now: u64,
    logs: Option<&PathBuf>,
) -> Result<(), String> {
    apply_events(posteriors, events, snapshot, now);
    let window = JOIN_WINDOW_SECONDS;
    let batch = join_batch(&mut join.state, events, snapshot, now, window);
    join.segments.extend(batch.into_values());
    let rows = close_buckets(&mut join.state, &join.segments, now, window);
    // A segment holds one bucket; the closed ones are done.
    let open_from = join.state.open_from;
    join.segments.retain(|segment| {
        segment
            .first()
            .is_some_and(|p| join_bucket(p.time, window) >= open_from)
    });
    learn_linear(posteriors, &rows, snapshot, now);
    if let Some(dir) = logs {
        for batch in training_batches(&rows) {
            let path = dir.join(&batch.key);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("{}: {e}", parent.display()))?;
            }
            std::fs::File::create(&path)
                .and_then(|mut f| f.write_all(batch.body.as_bytes()))
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(())
}

/// A model from its manifest, with the `.onnx` named after the model next to it.
pub fn load_model(manifest_path: &Path) -> Result<Model, String> {
    let manifest_bytes =
        std::fs::read(manifest_path).map_err(|e| format!("{}: {e}", manifest_path.display()))?;
    let manifest = ModelManifest::parse(&manifest_bytes)
        .map_err(|e| format!("{}: {e}", manifest_path.display()))?;
    let onnx = manifest_path.with_file_name(format!("{}.onnx", manifest.name));
    let bytes = std::fs::read(&onnx).map_err(|e| format!("{}: {e}", onnx.display()))?;
    Model::load(manifest, &bytes).map_err(|e| format!("{}: {e}", onnx.display()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
