//! The fraud gate: scores a request before anything is decided for it.
//!
//! The score is in 0..=1 (1 = surely automated). Rules from the snapshot run first, in order:
//! a denied path scores 1; a good bot whose user agent matches and whose reverse-DNS name the
//! platform confirmed scores 0; an allowed user agent scores 0, a denied one 1. Otherwise the
//! fraud model scores the request's features ([`crate::fraud`]); without a loaded model, simple
//! header heuristics do. Where the platform has its own bot score, the higher of the two counts.

use serde::Serialize;

use crate::client_rate::rate_limit_for;
use crate::decide::LoadedModel;
use crate::fraud::{is_fraud_model, model_score, request_features};
use crate::model::Model;
use crate::request::RequestFacts;
use crate::snapshot::{ChallengePage, FraudPolicy, GateMode, path_matches};

/// What the gate concluded for one request.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GateVerdict {
    pub score: f64,
    pub mode: GateMode,
    pub action: GateAction,
    /// Why the score is what it is, in the order the signals were found.
    pub reasons: Vec<String>,
    /// The interstitial's widget, for a challenged request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub challenge: Option<ChallengePage>,
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

/// Scores a request under the snapshot's fraud policy; `model` is the loaded fraud model (the
/// one `policy.model` names), if any.
pub fn gate(policy: &FraudPolicy, facts: &RequestFacts, model: Option<&Model>) -> GateVerdict {
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
            challenge: None,
        };
    }
    let (score, reasons) = score(policy, facts, model);
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
        challenge: (action == GateAction::Challenge).then(|| policy.challenge.clone()),
    }
}

/// The loaded model `policy.model` names, if it is loaded and built for this build's feature
/// vector (a model trained on other features is not used: the heuristics score instead). The
/// gate runs before the unit is known, so a fraud model's canary candidate is not served.
pub fn fraud_model<'a>(policy: &FraudPolicy, models: &[LoadedModel<'a>]) -> Option<&'a Model> {
    let name = policy.model.as_deref()?;
    models
        .iter()
        .find(|m| m.name == name)
        .map(|m| m.stable)
        .filter(|m| is_fraud_model(m))
}

fn score(policy: &FraudPolicy, facts: &RequestFacts, model: Option<&Model>) -> (f64, Vec<String>) {
    let path = facts.path();
    if let Some(denied) = policy.deny_paths.iter().find(|p| path_matches(p, path)) {
        return (1.0, vec![format!("path denied by rule {denied:?}")]);
    }
    let user_agent = facts
        .header("user-agent")
        .unwrap_or("")
        .to_ascii_lowercase();
    let ua_contains =
        |needle: &str| !needle.is_empty() && user_agent.contains(&needle.to_ascii_lowercase());
    let mut reasons = Vec::new();
    if let Some(bot) = policy.good_bots.iter().find(|b| ua_contains(&b.user_agent)) {
        let host = facts
            .platform
            .reverse_dns
            .as_deref()
            .unwrap_or("")
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let verified = bot.reverse_dns.iter().any(|domain| {
            let domain = domain.to_ascii_lowercase();
            host == domain || host.ends_with(&format!(".{domain}"))
        });
        if verified {
            return (
                0.0,
                vec![format!("verified good bot {:?} ({host})", bot.user_agent)],
            );
        }
        reasons.push(format!(
            "claims to be good bot {:?} but reverse DNS does not confirm it",
            bot.user_agent
        ));
    }
    if let Some(allowed) = policy.allow_user_agents.iter().find(|n| ua_contains(n)) {
        return (0.0, vec![format!("user agent allowed by rule {allowed:?}")]);
    }
    if let Some(denied) = policy.deny_user_agents.iter().find(|n| ua_contains(n)) {
        return (1.0, vec![format!("user agent denied by rule {denied:?}")]);
    }
    if let Some(limit) = rate_limit_for(policy, path)
        && let Some(rate) = facts.platform.client_rate
        && rate.exceeds(limit)
    {
        return (
            1.0,
            vec![format!(
                "client over the rate limit of {} requests per {} s",
                limit.limit, limit.window_seconds
            )],
        );
    }
    let (mut score, mut found) = match model.map(|m| (m, model_score(m, &request_features(facts))))
    {
        Some((model, Ok(score))) => (
            score,
            vec![format!(
                "model {} {}: {score:.3}",
                model.manifest().name,
                model.version()
            )],
        ),
        Some((model, Err(error))) => {
            let (score, mut found) = heuristic_score(&user_agent, facts);
            found.insert(
                0,
                format!(
                    "model {} failed ({error}); header heuristics",
                    model.version()
                ),
            );
            (score, found)
        }
        None => heuristic_score(&user_agent, facts),
    };
    reasons.append(&mut found);
    if let Some(bot_score) = facts.platform.bot_score {
        // The platform's own classifier sees network signals no header shows.
        let platform = f64::from(100u8.saturating_sub(bot_score.min(99))) / 100.0;
        reasons.push(format!("platform bot score {bot_score}"));
        score = score.max(platform);
    }
    (score, reasons)
}

/// The fallback while no fraud model is loaded: signals real browsers always send.
fn heuristic_score(user_agent: &str, facts: &RequestFacts) -> (f64, Vec<String>) {
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

    fn gate_of(policy: &FraudPolicy, facts: &RequestFacts) -> GateVerdict {
        gate(policy, facts, None)
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
            gate_of(&policy(GateMode::Block), &browser("/", CHROME)).action,
            GateAction::Allow
        );
        let headless = CHROME.replace("Chrome/", "HeadlessChrome/");
        let verdict = gate_of(&policy(GateMode::Block), &browser("/", &headless));
        assert_eq!(verdict.action, GateAction::Block);
        assert_eq!(
            gate_of(&policy(GateMode::Monitor), &browser("/", &headless)).action,
            GateAction::Tag
        );
    }

    #[test]
    fn rules_win_over_signals() {
        let verdict = gate_of(&policy(GateMode::Block), &browser("/", "curl/8.5.0"));
        assert_eq!((verdict.score, verdict.action), (1.0, GateAction::Block));
        let google = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
        assert_eq!(
            gate_of(&policy(GateMode::Block), &browser("/", google)).score,
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
            gate_of(&p, &browser("/checkout/pay", "curl/8")).action,
            GateAction::Block
        );
        assert_eq!(gate_of(&p, &browser("/", "curl/8")).action, GateAction::Tag);
        assert_eq!(
            gate_of(&p, &browser("/health", "curl/8")).action,
            GateAction::Allow
        );
    }

    #[test]
    fn denied_paths_score_one_and_good_bots_need_reverse_dns() {
        let mut p = policy(GateMode::Block);
        p.allow_user_agents.clear();
        // Anything claiming to be Googlebot without proof is denied.
        p.deny_user_agents.push("googlebot".into());
        p.deny_paths.push("/wp-login.php".into());
        p.good_bots.push(crate::snapshot::GoodBot {
            user_agent: "Googlebot".into(),
            reverse_dns: vec!["googlebot.com".into()],
        });
        let denied = gate_of(&p, &browser("/wp-login.php", CHROME));
        assert_eq!((denied.score, denied.action), (1.0, GateAction::Block));

        let google = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
        let mut claimed = browser("/", google);
        let unverified = gate_of(&p, &claimed);
        assert_eq!(
            (unverified.score, unverified.action),
            (1.0, GateAction::Block)
        );
        claimed.platform.reverse_dns = Some("evil-googlebot.com.attacker.net".into());
        assert_eq!(gate_of(&p, &claimed).action, GateAction::Block);
        claimed.platform.reverse_dns = Some("crawl-66-249-66-1.googlebot.com.".into());
        let verified = gate_of(&p, &claimed);
        assert_eq!((verified.score, verified.action), (0.0, GateAction::Allow));
    }

    #[test]
    fn a_client_over_the_rate_limit_scores_one_before_the_model() {
        use crate::client_rate::{ClientRate, RateLimit};
        let mut p = policy(GateMode::Block);
        p.rate_limit = Some(RateLimit {
            limit: 5,
            window_seconds: 10,
            paths: vec!["/checkout*".into()],
        });
        let mut facts = browser("/checkout/pay", CHROME);
        facts.platform.client_rate = Some(ClientRate::Counted(5));
        assert_eq!(gate_of(&p, &facts).action, GateAction::Allow);
        facts.platform.client_rate = Some(ClientRate::Counted(6));
        let over = gate_of(&p, &facts);
        assert_eq!((over.score, over.action), (1.0, GateAction::Block));
        assert!(over.reasons[0].contains("rate limit"), "{:?}", over.reasons);
        facts.platform.client_rate = Some(ClientRate::OverLimit(true));
        assert_eq!(gate_of(&p, &facts).action, GateAction::Block);
        // Off its paths the limit does not apply, whatever the platform passed.
        let mut elsewhere = browser("/", CHROME);
        elsewhere.platform.client_rate = Some(ClientRate::Counted(100));
        assert_eq!(gate_of(&p, &elsewhere).action, GateAction::Allow);
        // In monitor mode the client is tagged, not blocked.
        p.mode = GateMode::Monitor;
        assert_eq!(gate_of(&p, &facts).action, GateAction::Tag);
        // An allowed user agent is let through before the limit.
        let google = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
        let mut allowed = browser("/checkout/pay", google);
        allowed.platform.client_rate = Some(ClientRate::Counted(100));
        assert_eq!(gate_of(&p, &allowed).score, 0.0);
    }

    #[test]
    fn the_platform_bot_score_is_used_when_present() {
        let mut facts = browser("/", CHROME);
        facts.platform.bot_score = Some(2);
        assert_eq!(
            gate_of(&policy(GateMode::Block), &facts).action,
            GateAction::Block
        );
        facts.platform.bot_score = Some(95);
        assert_eq!(
            gate_of(&policy(GateMode::Block), &facts).action,
            GateAction::Allow
        );
    }
}
