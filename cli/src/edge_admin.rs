//! `stellwerk flags`, `stellwerk experiment` and `stellwerk push`: the console's actions from a
//! terminal, through the edge's admin API (`/_stellwerk/admin/api/`). Each write reads the active
//! version first and sends it as `If-Match`, so a change made meanwhile is refused (409), never
//! overwritten.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use ureq::Agent;

/// Where the edge is and how to authenticate.
#[derive(Args)]
pub struct EdgeArgs {
    /// Base URL of the edge (a deployed Worker or `wrangler dev`).
    #[arg(long, env = "STELLWERK_EDGE", default_value = "http://127.0.0.1:8787")]
    edge: String,
    /// The edge's admin token.
    #[arg(long, env = "STELLWERK_ADMIN_TOKEN", hide_env_values = true)]
    token: String,
}

#[derive(Subcommand)]
pub enum FlagsAction {
    /// List the flags with their state and rollout.
    List,
    /// Turn a flag on (ENABLED) or off (DISABLED: no variant, no page change).
    Set { key: String, state: OnOff },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Subcommand)]
pub enum ExperimentAction {
    /// Enrol visitors again (a stopped experiment forgets its winner).
    Start { key: String },
    /// Enrol nobody and leave pages untouched until started again.
    Pause { key: String },
    /// End the experiment: everyone gets the winner arm.
    Stop {
        key: String,
        #[arg(long)]
        winner: String,
    },
}

/// Outcome of one API call: the answer body, or a refusal to print.
fn call(
    agent: &Agent,
    edge: &EdgeArgs,
    method: &str,
    path: &str,
    if_match: Option<&str>,
    body: Option<Vec<u8>>,
) -> Result<(u16, Value, Option<String>), String> {
    let url = format!(
        "{}/_stellwerk/admin/api/{path}",
        edge.edge.trim_end_matches('/')
    );
    let authorization = format!("Bearer {}", edge.token);
    let result = match (method, body) {
        ("GET", _) => agent
            .get(&url)
            .header("authorization", &authorization)
            .call(),
        (_, body) => {
            let request = match method {
                "PUT" => agent.put(&url),
                _ => agent.post(&url),
            }
            .header("authorization", &authorization)
            .header("content-type", "application/json");
            let request = match if_match {
                Some(version) => request.header("if-match", &format!("\"{version}\"")),
                None => request,
            };
            request.send(body.unwrap_or_default())
        }
    };
    let mut response = result.map_err(|e| format!("{method} {url}: {e}"))?;
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim_matches('"').to_owned());
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, body, etag))
}

fn agent() -> Agent {
    Agent::new_with_config(Agent::config_builder().http_status_as_error(false).build())
}

/// Prints the answer to a write; `Ok(true)` when it was accepted.
fn report(status: u16, body: &Value) -> Result<bool, String> {
    match status {
        200 => {
            println!(
                "ok: {} (version {})",
                body["audit"]["what"].as_str().unwrap_or_default(),
                body["version"].as_str().unwrap_or_default()
            );
            Ok(true)
        }
        422 => {
            for issue in body["issues"].as_array().into_iter().flatten() {
                println!("{}", issue.as_str().unwrap_or_default());
            }
            Ok(false)
        }
        401 => Err("the edge refused the admin token (401)".into()),
        _ => {
            println!(
                "refused ({status}): {}",
                body["reason"].as_str().unwrap_or(&body.to_string())
            );
            Ok(false)
        }
    }
}

/// Reads the active version, then sends the write with it.
fn edit(edge: &EdgeArgs, path: &str, method: &str, change: Vec<u8>) -> Result<bool, String> {
    let agent = agent();
    let (status, body, version) = call(&agent, edge, "GET", "snapshot", None, None)?;
    // An edge with no snapshot yet takes a whole document without a version.
    let first_push = status == 503 && method == "PUT";
    if status != 200 && !first_push {
        return report(status, &body);
    }
    let (status, body, _) = call(&agent, edge, method, path, version.as_deref(), Some(change))?;
    report(status, &body)
}

pub fn flags(edge: &EdgeArgs, action: FlagsAction) -> Result<bool, String> {
    match action {
        FlagsAction::List => {
            let (status, body, _) = call(&agent(), edge, "GET", "flags", None, None)?;
            if status != 200 {
                return report(status, &body);
            }
            for flag in body["flags"].as_array().into_iter().flatten() {
                println!(
                    "{}\t{}\tdefault={}\trollout={}",
                    flag["key"].as_str().unwrap_or_default(),
                    flag["state"].as_str().unwrap_or_default(),
                    flag["defaultVariant"],
                    flag["rollout"]
                );
            }
            Ok(true)
        }
        FlagsAction::Set { key, state } => {
            let state = match state {
                OnOff::On => "ENABLED",
                OnOff::Off => "DISABLED",
            };
            edit(
                edge,
                &format!("flags/{key}"),
                "POST",
                json!({ "state": state }).to_string().into_bytes(),
            )
        }
    }
}

pub fn experiment(edge: &EdgeArgs, action: ExperimentAction) -> Result<bool, String> {
    let (key, change) = match action {
        ExperimentAction::Start { key } => (key, json!({ "status": "running" })),
        ExperimentAction::Pause { key } => (key, json!({ "status": "paused" })),
        ExperimentAction::Stop { key, winner } => {
            (key, json!({ "status": "stopped", "winner": winner }))
        }
    };
    edit(
        edge,
        &format!("experiments/{key}"),
        "POST",
        change.to_string().into_bytes(),
    )
}

/// `stellwerk push SNAPSHOT`: replaces the active snapshot (validated by the edge, like
/// `stellwerk validate`).
pub fn push(edge: &EdgeArgs, snapshot: &PathBuf) -> Result<bool, String> {
    let bytes = std::fs::read(snapshot).map_err(|e| format!("{}: {e}", snapshot.display()))?;
    edit(edge, "snapshot", "PUT", bytes)
}
