//! What every edge adapter does the same way, so Workers and Spin answer byte for byte alike:
//! the reserved routes, the response headers of a page, the unit cookie, the gate's pages, the
//! beacon script, the feedback flow and the health document. Adapters move bytes; these
//! functions say which bytes.

use serde::Serialize;
use serde_json::{Value, json};

use crate::aggregate::PosteriorSnapshot;
use crate::decide::LoadedModel;
use crate::decide::PageDecision;
use crate::event::Event;
use crate::event::EventKind;
use crate::feedback::{AcceptedFeedback, FeedbackRejection, accept_feedback};
use crate::gate::{GateAction, GateVerdict, fraud_model, gate};
use crate::request::{RequestFacts, UNIT_COOKIE};
use crate::snapshot::{ChallengePage, Destination, Snapshot};
use crate::sync::ActivePointers;

/// Every path under this prefix belongs to Stellwerk, never to the origin.
pub const RESERVED_PREFIX: &str = "/_stellwerk/";

/// Where the injected beacon script is served.
pub const BEACON_PATH: &str = "/_stellwerk/beacon.js";

/// The beacon script pages load: it reads the decisions the edge injected and reports clicks,
/// conversions and custom events for each of them.
pub const BEACON_JS: &str = include_str!("beacon.js");

/// How long the unit cookie lives.
pub const UNIT_COOKIE_MAX_AGE_SECONDS: u64 = 365 * 24 * 3600;

/// What a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A page (or any origin resource): gate, decide, fetch, rewrite.
    Page,
    /// `POST /_stellwerk/feedback`.
    Feedback,
    /// `GET /_stellwerk/beacon.js`.
    BeaconScript,
    /// `GET /_stellwerk/health`.
    Health,
    /// `POST /_stellwerk/conformance` (admin only): runs a conformance vector through the core.
    Conformance,
    /// `GET /_stellwerk/status` (admin only): the background parts' progress records.
    Status,
    /// `PUT /_stellwerk/admin/snapshot` (admin only): validate and activate a snapshot now.
    PushSnapshot,
    /// `PUT /_stellwerk/admin/objects/{key}` (admin only): publish an object (model, manifest,
    /// snapshot) to the store the sync reads.
    PutObject,
    /// `POST /_stellwerk/admin/sync` (admin only): run the sync now instead of at the next tick.
    SyncNow,
    /// The marketers' console and its JSON API under `/_stellwerk/admin/` (own authentication:
    /// the login page must be reachable; see `admin_api` and `console`).
    Console,
    /// A reserved path with the wrong method.
    MethodNotAllowed,
    /// Any other reserved path.
    NotFound,
}

/// Prefix of the object-publishing route; the rest of the path is the object key.
pub const OBJECTS_PREFIX: &str = "/_stellwerk/admin/objects/";

pub fn route(method: &str, path: &str) -> Route {
    if !path.starts_with(RESERVED_PREFIX) {
        return Route::Page;
    }
    let wanted = match path {
        _ if object_key(path).is_some() => ("PUT", Route::PutObject),
        "/_stellwerk/admin/snapshot" => ("PUT", Route::PushSnapshot),
        "/_stellwerk/admin/sync" => ("POST", Route::SyncNow),
        "/_stellwerk/feedback" => ("POST", Route::Feedback),
        BEACON_PATH => ("GET", Route::BeaconScript),
        "/_stellwerk/health" => ("GET", Route::Health),
        "/_stellwerk/conformance" => ("POST", Route::Conformance),
        "/_stellwerk/status" => ("GET", Route::Status),
        _ if crate::console::is_console_path(path) => return Route::Console,
        _ => return Route::NotFound,
    };
    if method.eq_ignore_ascii_case(wanted.0)
        || (wanted.0 == "GET" && method.eq_ignore_ascii_case("HEAD"))
    {
        wanted.1
    } else {
        Route::MethodNotAllowed
    }
}

/// The object key of a `PutObject` path: non-empty, no `..` segment, no leading slash.
pub fn object_key(path: &str) -> Option<&str> {
    let key = path.strip_prefix(OBJECTS_PREFIX)?;
    let safe = !key.is_empty()
        && !key.starts_with('/')
        && key.split('/').all(|s| !s.is_empty() && s != "..");
    safe.then_some(key)
}

impl Route {
    /// Routes that need the admin bearer token.
    pub fn is_admin(self) -> bool {
        matches!(
            self,
            Route::Status
                | Route::Conformance
                | Route::PushSnapshot
                | Route::PutObject
                | Route::SyncNow
        )
    }
}

/// A complete response the edge produces itself (not the origin's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl EdgeResponse {
    /// A JSON response that no cache keeps.
    pub fn json(status: u16, body: String) -> Self {
        EdgeResponse {
            status,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("cache-control".into(), "no-store".into()),
            ],
            body: body.into_bytes(),
        }
    }

    pub fn error(status: u16, code: &str, reason: &str) -> Self {
        Self::json(
            status,
            json!({ "error": code, "reason": reason }).to_string(),
        )
    }

    pub fn beacon_script() -> Self {
        EdgeResponse {
            status: 200,
            headers: vec![
                (
                    "content-type".into(),
                    "text/javascript; charset=utf-8".into(),
                ),
                ("cache-control".into(), "public, max-age=300".into()),
            ],
            body: BEACON_JS.as_bytes().to_vec(),
        }
    }
}

/// The response for a request the gate stopped, or `None` when the page may be served.
pub fn gate_response(verdict: &GateVerdict) -> Option<EdgeResponse> {
    let (status, title, text) = match verdict.action {
        GateAction::Allow | GateAction::Tag => return None,
        GateAction::Block => (
            403,
            "Access denied",
            "This request looks automated and was blocked.",
        ),
        GateAction::Challenge => (
            429,
            "Checking your browser",
            "Please confirm you are human to continue.",
        ),
    };
    // The challenge page is a hook: a Turnstile-compatible widget renders into the element
    // with id `stellwerk-challenge`, from the script and site key the snapshot configures.
    let widget = match &verdict.challenge {
        Some(page) if verdict.action == GateAction::Challenge => challenge_widget(page),
        _ if verdict.action == GateAction::Challenge => challenge_widget(&ChallengePage::default()),
        _ => String::new(),
    };
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><h1>{title}</h1><p>{text}</p>{widget}</body></html>\n"
    );
    Some(EdgeResponse {
        status,
        headers: vec![
            ("content-type".into(), "text/html; charset=utf-8".into()),
            ("cache-control".into(), "no-store".into()),
            ("x-stellwerk-gate".into(), gate_header(verdict)),
        ],
        body: body.into_bytes(),
    })
}

fn challenge_widget(page: &ChallengePage) -> String {
    // Validation keeps both values free of quotes and markup.
    let site_key = page
        .site_key
        .as_deref()
        .map(|key| format!(" data-sitekey=\"{key}\""))
        .unwrap_or_default();
    let script = page
        .script_url
        .as_deref()
        .map(|url| format!("<script src=\"{url}\" async defer></script>"))
        .unwrap_or_default();
    format!(
        "<div id=\"stellwerk-challenge\" class=\"cf-turnstile\" data-stellwerk-challenge=\"turnstile\"{site_key}></div>{script}"
    )
}

fn gate_header(verdict: &GateVerdict) -> String {
    let action = match verdict.action {
        GateAction::Allow => "allow",
        GateAction::Tag => "tag",
        GateAction::Block => "block",
        GateAction::Challenge => "challenge",
    };
    format!("{action}; score={:.3}", verdict.score)
}

/// The headers of a page response: the origin's, adjusted for what the edge did to the body.
///
/// A rewritten body loses `content-length` and validators (they described the origin's bytes);
/// a personalised response is never cached publicly; a new visitor gets the unit cookie.
pub fn page_headers(
    origin: &[(String, String)],
    decision: &PageDecision,
    rewritten: bool,
    secure: bool,
) -> Vec<(String, String)> {
    let personalised = decision.is_personalised() || decision.new_unit_id.is_some();
    let mut headers: Vec<(String, String)> = origin
        .iter()
        .filter(|(name, _)| {
            let name = name.to_ascii_lowercase();
            let body_bound = matches!(name.as_str(), "content-length" | "etag" | "content-md5");
            let replaced = personalised && name == "cache-control";
            !((rewritten && body_bound) || replaced)
        })
        .cloned()
        .collect();
    if personalised {
        headers.push(("cache-control".into(), "private, no-store".into()));
        let vary = headers
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case("vary"));
        match vary {
            Some((_, value)) if !value.to_ascii_lowercase().contains("cookie") => {
                value.push_str(", Cookie")
            }
            Some(_) => {}
            None => headers.push(("vary".into(), "Cookie".into())),
        }
    }
    if let Some(id) = &decision.new_unit_id {
        headers.push(("set-cookie".into(), unit_cookie(id, secure)));
    }
    headers.push(("x-stellwerk".into(), decision_header(decision)));
    headers
}

/// `Set-Cookie` value for a unit id.
pub fn unit_cookie(unit_id: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{UNIT_COOKIE}={unit_id}; Path=/; Max-Age={UNIT_COOKIE_MAX_AGE_SECONDS}; SameSite=Lax; HttpOnly{secure}"
    )
}

/// A short, public summary of the decision for debugging: `experiment=arm` pairs and the
/// `model:name=version` that scored the request.
fn decision_header(decision: &PageDecision) -> String {
    if decision.kill_switch {
        return "kill-switch".into();
    }
    let parts: Vec<String> = decision
        .assignments
        .iter()
        .map(|a| format!("{}={}", a.experiment, a.arm))
        .chain(
            decision
                .models
                .iter()
                .map(|(name, version)| format!("model:{name}={version}")),
        )
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// The result of a feedback request, before the adapter's duplicate check.
pub enum FeedbackOutcome {
    /// Enqueue `accepted.event`, unless the adapter has already seen `accepted.dedupe_key`.
    Accepted(Box<AcceptedFeedback>),
    Rejected(EdgeResponse),
}

/// Verifies and routes a beacon. The beacon's own request is gated too: feedback from a request
/// that looks automated is quarantined, never counted by a bandit.
pub fn feedback(
    body: &[u8],
    snapshot: &Snapshot,
    facts: &RequestFacts,
    token_key: &[u8],
    now: u64,
) -> FeedbackOutcome {
    feedback_scored(body, snapshot, facts, token_key, now, &[])
}

/// [`feedback`] with the loaded models, so the beacon's request is scored by the fraud model as
/// pages are. A click sooner after its decision than `fraud.minClickSeconds` is quarantined too
/// (its event's context says `tooFast`): no human reads and clicks a page that fast.
pub fn feedback_scored(
    body: &[u8],
    snapshot: &Snapshot,
    facts: &RequestFacts,
    token_key: &[u8],
    now: u64,
    models: &[LoadedModel<'_>],
) -> FeedbackOutcome {
    let consent = facts.consent(&snapshot.privacy);
    match accept_feedback(
        body,
        &snapshot.feedback,
        &snapshot.experiments,
        token_key,
        now,
        consent,
    ) {
        Ok(mut accepted) => {
            let verdict = gate(&snapshot.fraud, facts, fraud_model(&snapshot.fraud, models));
            accepted.event.fraud_score = Some(verdict.score);
            let too_fast = accepted.event.kind == EventKind::Click
                && accepted
                    .event
                    .context
                    .get("sinceDecision")
                    .and_then(Value::as_u64)
                    .is_some_and(|since| since < snapshot.fraud.min_click_seconds);
            if too_fast {
                accepted
                    .event
                    .context
                    .insert("tooFast".to_owned(), Value::Bool(true));
            }
            if verdict.is_suspect() || too_fast {
                accepted.event.quarantine();
                accepted.destinations = vec![Destination::Quarantine];
            }
            FeedbackOutcome::Accepted(Box::new(accepted))
        }
        Err(rejection) => FeedbackOutcome::Rejected(rejection_response(&rejection)),
    }
}

fn rejection_response(rejection: &FeedbackRejection) -> EdgeResponse {
    EdgeResponse::json(rejection.status, rejection.to_json())
}

/// The answer to a beacon whose dedupe key was seen before.
pub fn duplicate_feedback() -> EdgeResponse {
    EdgeResponse::error(409, "duplicate", "this feedback was already received")
}

/// The answer to an accepted beacon.
pub fn feedback_accepted(accepted: &AcceptedFeedback) -> EdgeResponse {
    EdgeResponse::json(
        202,
        json!({ "accepted": true, "id": accepted.event.id, "destinations": accepted.destinations })
            .to_string(),
    )
}

/// The answer to a pushed snapshot: activated, or refused with every `path: reason`.
pub fn snapshot_pushed(result: &Result<Snapshot, crate::validate::Invalid>) -> EdgeResponse {
    match result {
        Ok(snapshot) => {
            EdgeResponse::json(200, json!({ "activated": snapshot.version }).to_string())
        }
        Err(invalid) => {
            let issues: Vec<String> = invalid.0.iter().map(ToString::to_string).collect();
            EdgeResponse::json(
                422,
                json!({ "error": "invalid_snapshot", "issues": issues }).to_string(),
            )
        }
    }
}

/// The answer when feedback arrives before any snapshot is active.
pub fn feedback_unavailable() -> EdgeResponse {
    EdgeResponse::error(503, "no_snapshot", "no valid snapshot is active yet")
}

/// Counters an edge instance keeps about itself, reported by `health`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EdgeCounters {
    pub requests: u64,
    /// Pages served untouched because the engine failed (by reason).
    pub fallbacks: std::collections::BTreeMap<String, u64>,
}

impl EdgeCounters {
    pub fn fallback(&mut self, reason: &str) {
        *self.fallbacks.entry(reason.to_owned()).or_default() += 1;
    }
}

/// Serialises events for the queue: one JSON document per event.
pub fn queue_messages(events: &[Event]) -> Vec<String> {
    events.iter().map(Event::to_json).collect()
}

/// The `health` document: what is active, what the last sync refused, and how this instance
/// has fared.
pub fn health_json(
    platform: &str,
    snapshot: Option<&Snapshot>,
    posteriors: &PosteriorSnapshot,
    pointers: &ActivePointers,
    counters: &EdgeCounters,
) -> String {
    let models: serde_json::Map<String, Value> = pointers
        .models
        .iter()
        .map(|(name, p)| {
            let candidate = p.candidate.as_ref().map(|c| {
                json!({ "version": c.manifest.version, "canaryPercent": c.manifest.canary_percent })
            });
            (
                name.clone(),
                json!({ "stable": p.stable.manifest.version, "candidate": candidate }),
            )
        })
        .collect();
    let experiments: serde_json::Map<String, Value> = posteriors
        .experiments
        .iter()
        .map(|(key, posterior)| {
            let arms: serde_json::Map<String, Value> = posterior
                .arms
                .iter()
                .map(|(arm, stats)| {
                    let probability = posterior.probabilities.get(arm);
                    (arm.clone(), json!({ "exposures": stats.exposures, "rewards": stats.rewards, "pBest": probability }))
                })
                .collect();
            (key.clone(), json!({ "arms": arms, "quarantined": posterior.quarantined }))
        })
        .collect();
    json!({
        "status": if snapshot.is_some() { "ok" } else { "no_snapshot" },
        "platform": platform,
        "snapshot": snapshot.map(|s| s.version.as_str()),
        "killSwitch": snapshot.map(|s| s.kill_switch),
        "models": models,
        "lastSync": pointers.last_sync,
        "refusals": pointers.refusals,
        "posteriors": { "version": posteriors.version, "updatedAt": posteriors.updated_at, "experiments": experiments },
        "instance": counters,
    })
    .to_string()
}

/// The answer for a reserved path Stellwerk does not serve, or serves with another method.
pub fn reserved_route_error(route: Route) -> Option<EdgeResponse> {
    match route {
        Route::NotFound => Some(EdgeResponse::error(
            404,
            "not_found",
            "no such Stellwerk route",
        )),
        Route::MethodNotAllowed => Some(EdgeResponse::error(
            405,
            "method_not_allowed",
            "this Stellwerk route does not take that method",
        )),
        _ => None,
    }
}

/// Request headers an edge passes on to the origin. The visitor's address and platform headers
/// stay at the edge.
pub const ORIGIN_REQUEST_HEADERS: &[&str] = &[
    "accept",
    "accept-encoding",
    "accept-language",
    "cache-control",
    "content-type",
    "cookie",
    "if-modified-since",
    "if-none-match",
    "pragma",
    "range",
    "referer",
    "user-agent",
];

/// The visitor's headers that go to the origin, in their order.
pub fn origin_request_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| {
            ORIGIN_REQUEST_HEADERS
                .iter()
                .any(|kept| name.eq_ignore_ascii_case(kept))
        })
        .cloned()
        .collect()
}

/// The origin URL for a visitor's path and query: `origin` (`http(s)://host[/prefix]`) + path
/// + query. `None` when `origin` is not an http(s) URL with a host or the path is not absolute.
pub fn origin_url(origin: &str, path_and_query: &str) -> Option<String> {
    let base = origin.trim().trim_end_matches('/');
    let (scheme, rest) = base.split_once("://")?;
    let host = rest.split('/').next().unwrap_or("");
    if !matches!(scheme, "http" | "https") || host.is_empty() || !path_and_query.starts_with('/') {
        return None;
    }
    Some(format!("{base}{path_and_query}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ConsentState;
    use crate::snapshot::GateMode;

    fn decision(new_unit: Option<&str>) -> PageDecision {
        PageDecision {
            gate: GateVerdict {
                score: 0.0,
                mode: GateMode::Monitor,
                action: GateAction::Allow,
                reasons: vec![],
                challenge: None,
            },
            consent: ConsentState::Unknown,
            new_unit_id: new_unit.map(str::to_owned),
            unit: None,
            kill_switch: false,
            flags: vec![],
            assignments: vec![],
            mutations: vec![],
            events: vec![],
            models: Default::default(),
            fallbacks: vec![],
        }
    }

    #[test]
    fn reserved_routes_and_methods() {
        assert_eq!(route("GET", "/"), Route::Page);
        assert_eq!(route("POST", "/checkout"), Route::Page);
        assert_eq!(route("POST", "/_stellwerk/feedback"), Route::Feedback);
        assert_eq!(
            route("GET", "/_stellwerk/feedback"),
            Route::MethodNotAllowed
        );
        assert_eq!(route("HEAD", "/_stellwerk/health"), Route::Health);
        assert_eq!(route("GET", "/_stellwerk/beacon.js"), Route::BeaconScript);
        assert_eq!(route("GET", "/_stellwerk/secret"), Route::NotFound);
        assert_eq!(
            route("PUT", "/_stellwerk/admin/objects/models/ctr/2.onnx"),
            Route::PutObject
        );
        assert_eq!(
            object_key("/_stellwerk/admin/objects/models/ctr/2.onnx"),
            Some("models/ctr/2.onnx")
        );
        assert_eq!(
            route("PUT", "/_stellwerk/admin/objects/../etc"),
            Route::NotFound
        );
        assert_eq!(route("PUT", "/_stellwerk/admin/objects/"), Route::NotFound);
        assert!(route("POST", "/_stellwerk/admin/sync").is_admin());
        assert!(!route("GET", "/_stellwerk/health").is_admin());
    }

    #[test]
    fn untouched_pages_keep_the_origin_headers() {
        let origin = vec![
            (
                "content-type".to_owned(),
                "text/html; charset=iso-8859-1".to_owned(),
            ),
            ("cache-control".to_owned(), "public, max-age=60".to_owned()),
            ("content-length".to_owned(), "1234".to_owned()),
        ];
        let headers = page_headers(&origin, &decision(None), false, true);
        assert_eq!(&headers[..3], &origin[..]);
        assert_eq!(headers[3], ("x-stellwerk".to_owned(), "none".to_owned()));
    }

    #[test]
    fn personalised_pages_are_private_and_rewritten_ones_lose_their_length() {
        let origin = vec![
            (
                "content-type".to_owned(),
                "text/html; charset=utf-8".to_owned(),
            ),
            ("cache-control".to_owned(), "public, max-age=60".to_owned()),
            ("content-length".to_owned(), "1234".to_owned()),
            ("etag".to_owned(), "\"abc\"".to_owned()),
            ("vary".to_owned(), "Accept-Encoding".to_owned()),
        ];
        let id = "0123456789abcdef0123456789abcdef";
        let headers = page_headers(&origin, &decision(Some(id)), true, true);
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("content-type"), Some("text/html; charset=utf-8"));
        assert_eq!(get("content-length"), None);
        assert_eq!(get("etag"), None);
        assert_eq!(get("cache-control"), Some("private, no-store"));
        assert_eq!(get("vary"), Some("Accept-Encoding, Cookie"));
        let cookie = get("set-cookie").unwrap();
        assert!(
            cookie.starts_with(&format!("stellwerk_id={id};"))
                && cookie.contains("HttpOnly")
                && cookie.ends_with("Secure")
        );
    }

    #[test]
    fn blocked_and_challenged_requests_get_their_pages() {
        let mut verdict = GateVerdict {
            score: 0.95,
            mode: GateMode::Block,
            action: GateAction::Block,
            reasons: vec![],
            challenge: None,
        };
        let blocked = gate_response(&verdict).unwrap();
        assert_eq!(blocked.status, 403);
        assert!(
            blocked
                .headers
                .contains(&("x-stellwerk-gate".into(), "block; score=0.950".into()))
        );
        verdict.action = GateAction::Challenge;
        let challenge = gate_response(&verdict).unwrap();
        assert!(
            String::from_utf8(challenge.body)
                .unwrap()
                .contains("stellwerk-challenge")
        );
        verdict.challenge = Some(ChallengePage {
            script_url: Some("https://challenges.example/api.js".into()),
            site_key: Some("0x4AAA-site_key".into()),
        });
        let configured = String::from_utf8(gate_response(&verdict).unwrap().body).unwrap();
        assert!(configured.contains(r#"data-sitekey="0x4AAA-site_key""#));
        assert!(
            configured.contains(r#"<script src="https://challenges.example/api.js" async defer>"#)
        );
        verdict.action = GateAction::Tag;
        assert!(gate_response(&verdict).is_none());
    }
    #[test]
    fn unknown_reserved_paths_and_wrong_methods_get_json_errors() {
        let missing = reserved_route_error(route("GET", "/_stellwerk/secret")).unwrap();
        assert_eq!(missing.status, 404);
        let wrong = reserved_route_error(route("GET", "/_stellwerk/feedback")).unwrap();
        assert_eq!(wrong.status, 405);
        assert!(
            String::from_utf8(wrong.body)
                .unwrap()
                .contains("method_not_allowed")
        );
        assert!(reserved_route_error(Route::Page).is_none());
    }

    #[test]
    fn the_origin_gets_the_path_and_only_the_listed_headers() {
        assert_eq!(
            origin_url("https://o.example/shop/", "/cart?x=1").as_deref(),
            Some("https://o.example/shop/cart?x=1")
        );
        for bad in ["", "o.example", "ftp://o.example", "https://"] {
            assert_eq!(origin_url(bad, "/"), None, "{bad:?}");
        }
        assert_eq!(origin_url("https://o.example", "cart"), None);
        let headers = vec![
            ("User-Agent".to_owned(), "ua".to_owned()),
            ("x-forwarded-for".to_owned(), "203.0.113.9".to_owned()),
            ("cookie".to_owned(), "a=b".to_owned()),
        ];
        let kept = origin_request_headers(&headers);
        assert_eq!(kept.len(), 2);
        assert!(kept.iter().all(|(n, _)| n != "x-forwarded-for"));
    }
}
