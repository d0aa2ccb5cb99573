//! The fraud gate: scores a request before anything is decided for it.
//!
//! The score is in 0..=1 (1 = surely automated). Rules from the snapshot run first: an allowed
//! user agent (a verified good bot) scores 0, a denied one 1. Otherwise the score comes from
//! request-shape signals that real browsers always send and simple automation rarely does.

use serde::Serialize;

use crate::request::RequestFacts;
use crate::snapshot::{FraudPolicy, GateMode, path_matches};

/// What the gate concluded for one request.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GateVerdict {
    pub score: f64,
    pub mode: GateMode,
    pub action: GateAction,
    /// Why the score is what it is, in the order the signals were found.
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GateAction {
    /// Below the threshold, or the gate is off.
    Allow,
    /// At or above the threshold in `monitor` mode: served, but tagged and kept out of rewards.
    Tag,
    /// At or above the threshold in `block` mode: 403.
    Block,
    /// At or above the threshold in `challenge` mode: an interstitial.
    Challenge,
}

impl GateVerdict {
    /// Whether this request counts as automated (its feedback is quarantined).
    pub fn is_suspect(&self) -> bool {
        self.action != GateAction::Allow
    }
}

/// Scores a request under the snapshot's fraud policy.
pub fn gate(policy: &FraudPolicy, facts: &RequestFacts) -> GateVerdict {
    let path = facts.path();
    let mode = policy
        .routes
        .iter()
        .find(|r| path_matches(&r.path, path))
        .map_or(policy.mode, |r| r.mode);
    if mode == GateMode::Off {
        return GateVerdict {
            score: 0.0,
            mode,
            action: GateAction::Allow,
            reasons: Vec::new(),
        };
    }
    let (score, reasons) = score(policy, facts);
    let action = if score < policy.threshold {
        GateAction::Allow
    } else {
        match mode {
            GateMode::Off => GateAction::Allow,
            GateMode::Monitor => GateAction::Tag,
            GateMode::Block => GateAction::Block,
            GateMode::Challenge => GateAction::Challenge,
        }
    };
    GateVerdict {
        score,
        mode,
        action,
        reasons,
    }
}

fn score(policy: &FraudPolicy, facts: &RequestFacts) -> (f64, Vec<String>) {
    let user_agent = facts
        .header("user-agent")
        .unwrap_or("")
        .to_ascii_lowercase();
    let listed = |list: &[String]| {
        list.iter()
            .find(|needle| !needle.is_empty() && user_agent.contains(&needle.to_ascii_lowercase()))
            .cloned()
    };
    if let Some(allowed) = listed(&policy.allow_user_agents) {
        return (0.0, vec![format!("user agent allowed by rule {allowed:?}")]);
    }
    if let Some(denied) = listed(&policy.deny_user_agents) {
        return (1.0, vec![format!("user agent denied by rule {denied:?}")]);
    }
    if let Some(bot_score) = facts.platform.bot_score {
        // The platform's own classifier knows more than header shapes do.
        let score = f64::from(100u8.saturating_sub(bot_score.min(99))) / 100.0;
        return (score, vec![format!("platform bot score {bot_score}")]);
    }
    let mut reasons = Vec::new();
    let mut score: f64 = 0.0;
    let mut signal = |weight: f64, reason: &str| {
        score += weight;
        reasons.push(reason.to_owned());
    };
    if user_agent.is_empty() {
        signal(0.9, "no user agent");
    } else if !user_agent.starts_with("mozilla/") {
        signal(0.5, "user agent is not browser-shaped");
    }
    if [
        "headless",
        "phantomjs",
        "selenium",
        "puppeteer",
        "playwright",
    ]
    .iter()
    .any(|m| user_agent.contains(m))
    {
        signal(0.9, "automation marker in user agent");
    }
    if facts.header("accept-language").is_none() {
        signal(0.3, "no accept-language");
    }
    if facts.header("accept").is_none() {
        signal(0.2, "no accept");
    }
    (score.min(1.0), reasons)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::PlatformFacts;

    const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36";

    fn browser(path: &str, user_agent: &str) -> RequestFacts {
        RequestFacts {
            method: "GET".into(),
            url: format!("https://shop.example{path}"),
            headers: vec![
                ("user-agent".into(), user_agent.into()),
                ("accept".into(), "text/html".into()),
                ("accept-language".into(), "de-DE,de;q=0.9".into()),
            ],
            platform: PlatformFacts::default(),
        }
    }

    fn policy(mode: GateMode) -> FraudPolicy {
        FraudPolicy {
            mode,
            deny_user_agents: vec!["curl".into()],
            allow_user_agents: vec!["Googlebot".into()],
            ..FraudPolicy::default()
        }
    }

    #[test]
    fn a_browser_passes_and_headless_chrome_does_not() {
        assert_eq!(
            gate(&policy(GateMode::Block), &browser("/", CHROME)).action,
            GateAction::Allow
        );
        let headless = CHROME.replace("Chrome/", "HeadlessChrome/");
        let verdict = gate(&policy(GateMode::Block), &browser("/", &headless));
        assert_eq!(verdict.action, GateAction::Block);
        assert_eq!(
            gate(&policy(GateMode::Monitor), &browser("/", &headless)).action,
            GateAction::Tag
        );
    }

    #[test]
    fn rules_win_over_signals() {
        let verdict = gate(&policy(GateMode::Block), &browser("/", "curl/8.5.0"));
        assert_eq!((verdict.score, verdict.action), (1.0, GateAction::Block));
        let google = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
        assert_eq!(
            gate(&policy(GateMode::Block), &browser("/", google)).score,
            0.0
        );
    }

    #[test]
    fn route_modes_override_the_default_mode() {
        let mut p = policy(GateMode::Monitor);
        p.routes.push(crate::snapshot::GateRoute {
            path: "/checkout*".into(),
            mode: GateMode::Block,
        });
        p.routes.push(crate::snapshot::GateRoute {
            path: "/health".into(),
            mode: GateMode::Off,
        });
        assert_eq!(
            gate(&p, &browser("/checkout/pay", "curl/8")).action,
            GateAction::Block
        );
        assert_eq!(gate(&p, &browser("/", "curl/8")).action, GateAction::Tag);
        assert_eq!(
            gate(&p, &browser("/health", "curl/8")).action,
            GateAction::Allow
        );
    }

    #[test]
    fn the_platform_bot_score_is_used_when_present() {
        let mut facts = browser("/", CHROME);
        facts.platform.bot_score = Some(2);
        assert_eq!(
            gate(&policy(GateMode::Block), &facts).action,
            GateAction::Block
        );
        facts.platform.bot_score = Some(95);
        assert_eq!(
            gate(&policy(GateMode::Block), &facts).action,
            GateAction::Allow
        );
    }
}
