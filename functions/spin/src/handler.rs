//! The HTTP entry point: route, then move bytes between the visitor, the origin, the store and
//! the queue as the core says.

use std::cell::RefCell;
use std::pin::pin;
use std::rc::Rc;

use futures::{SinkExt, StreamExt};
use spin_sdk::http::{
    Fields, IncomingRequest, IncomingResponse, OutgoingResponse, ResponseOutparam,
};
use spin_sdk::http_component;
use stellwerk_core::{
    BEACON_PATH, DecideInput, EdgeResponse, FeedbackOutcome, Keys, PageDecision, PageRewriter,
    RequestFacts, Route, csp_nonce, decide, duplicate_feedback, feedback, feedback_accepted,
    feedback_unavailable, gate_response, health_json, origin_request_headers, origin_url,
    page_headers, queue_messages, reserved_route_error, route,
};

use crate::admin;
use crate::client_rate;
use crate::models;
use crate::queue::Queue;
use crate::settings::Settings;
use crate::state::{self, EdgeState};

/// Connection-level headers a `wasi:http` host refuses in a response it did not frame itself.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
    "host",
];

#[http_component]
async fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
    state::count_request();
    let now_ms = now_ms();
    let settings = Settings::read();
    let method = request.method().to_string();
    let path_and_query = request.path_with_query().unwrap_or_else(|| "/".into());
    let path = path_and_query.split(['?', '#']).next().unwrap_or("/");
    let head = method.eq_ignore_ascii_case("HEAD");
    match route(&method, path) {
        Route::BeaconScript => respond(response_out, EdgeResponse::beacon_script(), head).await,
        Route::Health => {
            let state = state::load(now_ms, settings.cache_ttl_ms);
            respond(response_out, health(&state), head).await
        }
        Route::Feedback => {
            let state = state::load(now_ms, settings.cache_ttl_ms);
            let facts = request_facts(&request, &method);
            let body = request.into_body().await.unwrap_or_default();
            let answer = accept_feedback(&body, &state, &facts, &settings, now_ms / 1000);
            respond(response_out, answer, false).await
        }
        Route::Page => {
            let state = state::load(now_ms, settings.cache_ttl_ms);
            let mut facts = request_facts(&request, &method);
            if let Some(snapshot) = state.snapshot.as_deref() {
                facts.platform.client_rate =
                    client_rate::count(&request, &snapshot.fraud, path, &settings, now_ms / 1000);
            }
            let body = if matches!(method.as_str(), "GET" | "HEAD") {
                Vec::new()
            } else {
                request.into_body().await.unwrap_or_default()
            };
            page(
                &state,
                &settings,
                facts,
                &path_and_query,
                body,
                response_out,
                now_ms,
            )
            .await
        }
        admin_route if admin_route.is_admin() => {
            let authorization = request
                .headers()
                .entries()
                .into_iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
                .map(|(_, value)| String::from_utf8_lossy(&value).into_owned());
            if !admin::authorized(authorization.as_deref(), &settings.admin_token) {
                return respond(response_out, admin::unauthorized(), head).await;
            }
            let body = request.into_body().await.unwrap_or_default();
            let answer = admin::handle(admin_route, path, body, &settings, now_ms).await;
            respond(response_out, answer, head).await
        }
        other => {
            let answer = reserved_route_error(other)
                .or_else(|| reserved_route_error(Route::NotFound))
                .unwrap_or_else(|| {
                    EdgeResponse::error(404, "not_found", "no such Stellwerk route")
                });
            respond(response_out, answer, head).await
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn random() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    // wasi:random cannot fail on a conforming host; zeros would only repeat an id.
    let _ = getrandom::fill(&mut bytes);
    bytes
}

/// The request as the core sees it. Spin's own `spin-*` headers describe the route, not the
/// visitor, and are left out so both platforms hand the core the same facts.
fn request_facts(request: &IncomingRequest, method: &str) -> RequestFacts {
    let mut headers: Vec<(String, String)> = request
        .headers()
        .entries()
        .into_iter()
        .map(|(name, value)| {
            (
                name.to_ascii_lowercase(),
                String::from_utf8_lossy(&value).into_owned(),
            )
        })
        .collect();
    let full_url = headers
        .iter()
        .find(|(name, _)| name == "spin-full-url")
        .map(|(_, v)| v.clone());
    headers.retain(|(name, _)| !name.starts_with("spin-"));
    let uri = request.uri();
    let url = if uri.starts_with("http://") || uri.starts_with("https://") {
        uri
    } else if let Some(full) = full_url {
        full
    } else {
        let host = headers
            .iter()
            .find(|(n, _)| n == "host")
            .map_or("localhost", |(_, v)| v.as_str());
        format!("http://{host}{uri}")
    };
    RequestFacts {
        method: method.to_owned(),
        url,
        headers,
        platform: Default::default(),
    }
}

fn health(state: &EdgeState) -> EdgeResponse {
    let body = health_json(
        "spin",
        state.snapshot.as_deref(),
        &state.posteriors,
        &state.pointers,
        &state::counters(),
    );
    EdgeResponse::json(200, body)
}

fn queue_unavailable() -> EdgeResponse {
    EdgeResponse::error(
        503,
        "queue_unavailable",
        "events cannot be queued right now",
    )
}

fn accept_feedback(
    body: &[u8],
    state: &EdgeState,
    facts: &RequestFacts,
    settings: &Settings,
    now: u64,
) -> EdgeResponse {
    let Some(snapshot) = state.snapshot.as_deref() else {
        return feedback_unavailable();
    };
    if !settings.has_keys() {
        return feedback_unavailable();
    }
    let accepted = match feedback(body, snapshot, facts, &settings.hmac_key, now) {
        FeedbackOutcome::Rejected(answer) => return answer,
        FeedbackOutcome::Accepted(accepted) => accepted,
    };
    let Some(queue) = settings
        .redis_url
        .as_deref()
        .and_then(|url| Queue::open(url).ok())
    else {
        return queue_unavailable();
    };
    match queue.first_feedback(&accepted.dedupe_key) {
        Ok(false) => duplicate_feedback(),
        Err(_) => queue_unavailable(),
        Ok(true) => match queue.send(&queue_messages(std::slice::from_ref(&accepted.event))) {
            Ok(()) => feedback_accepted(&accepted),
            Err(_) => {
                queue.forget_feedback(&accepted.dedupe_key);
                queue_unavailable()
            }
        },
    }
}

/// Decides, fetches the origin and streams its body through the rewriter. Fails open: without
/// a snapshot or keys, or when the rewriter cannot start, the origin's page goes out untouched.
async fn page(
    state: &EdgeState,
    settings: &Settings,
    facts: RequestFacts,
    path_and_query: &str,
    body: Vec<u8>,
    response_out: ResponseOutparam,
    now_ms: u64,
) {
    let decision = match state.snapshot.as_deref() {
        Some(snapshot) if settings.has_keys() => {
            let instance_models = models::load(settings, &state.pointers, now_ms / 1000).await;
            let loaded: Vec<_> = instance_models
                .iter()
                .map(models::InstanceModel::loaded)
                .collect();
            let decision = decide(&DecideInput {
                snapshot,
                posteriors: &state.posteriors,
                facts: &facts,
                keys: Keys {
                    token: &settings.hmac_key,
                    unit: &settings.unit_id_key,
                },
                random: random(),
                now: now_ms / 1000,
                models: &loaded,
            });
            for reason in &decision.fallbacks {
                eprintln!("stellwerk: {reason}");
                state::fallback("model_run");
            }
            Some(decision)
        }
        Some(_) => {
            state::fallback("no_keys");
            None
        }
        None => {
            state::fallback("no_snapshot");
            None
        }
    };
    if let Some(decision) = &decision
        && let Some(answer) = gate_response(&decision.gate)
    {
        respond(response_out, answer, facts.method == "HEAD").await;
        send_events(settings, decision);
        return;
    }

    let origin = match fetch_origin(settings, &facts, path_and_query, body).await {
        Ok(origin) => origin,
        Err(_) => {
            let answer =
                EdgeResponse::error(502, "origin_unavailable", "the origin could not be reached");
            respond(response_out, answer, false).await;
            if let Some(decision) = &decision {
                send_events(settings, decision);
            }
            return;
        }
    };
    let origin_headers: Vec<(String, String)> = origin
        .headers()
        .entries()
        .into_iter()
        .filter(|(name, _)| !HOP_BY_HOP.contains(&name.to_ascii_lowercase().as_str()))
        .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
        .collect();
    let header = |wanted: &str| {
        origin_headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(wanted))
            .map(|(_, v)| v.as_str())
    };
    let content_type = header("content-type");
    let nonce = header("content-security-policy").and_then(csp_nonce);

    let pending = Rc::new(RefCell::new(Vec::new()));
    let mut rewriter = decision.as_ref().and_then(|decision| {
        let injection = decision.page_injection(BEACON_PATH, nonce);
        let output = Rc::clone(&pending);
        match PageRewriter::new(
            &decision.mutations,
            injection.as_ref(),
            content_type,
            move |chunk: &[u8]| output.borrow_mut().extend_from_slice(chunk),
        ) {
            Ok(rewriter) => Some(rewriter),
            Err(_) => {
                state::fallback("rewrite_setup");
                None
            }
        }
    });
    let rewritten = rewriter.as_ref().is_some_and(|r| r.is_rewriting());
    let secure = facts.url.starts_with("https://");
    let headers = match &decision {
        Some(decision) => page_headers(&origin_headers, decision, rewritten, secure),
        None => origin_headers.clone(),
    };

    let Some(response) = outgoing_response(origin.status(), &headers) else {
        return;
    };
    let mut sink = response.take_body();
    response_out.set(response);
    if facts.method != "HEAD" {
        let mut chunks = pin!(origin.take_body_stream());
        while let Some(Ok(chunk)) = chunks.next().await {
            let out = match rewriter.as_mut() {
                Some(r) if r.is_rewriting() => {
                    if r.write(&chunk).is_err() {
                        state::fallback("rewrite_failed");
                    }
                    std::mem::take(&mut *pending.borrow_mut())
                }
                _ => chunk,
            };
            if !out.is_empty() && sink.send(out).await.is_err() {
                break;
            }
        }
        if let Some(r) = rewriter.take() {
            match r.end() {
                Ok(summary) if summary.bail_out.is_some() => state::fallback("rewrite_bail_out"),
                Ok(_) => {}
                Err(_) => state::fallback("rewrite_failed"),
            }
            let rest = std::mem::take(&mut *pending.borrow_mut());
            if !rest.is_empty() {
                let _ = sink.send(rest).await;
            }
        }
    }
    // Closing the body ends the visitor's response; the events go out after it.
    let _ = sink.close().await;
    drop(sink);
    if let Some(decision) = &decision {
        send_events(settings, decision);
    }
}

async fn fetch_origin(
    settings: &Settings,
    facts: &RequestFacts,
    path_and_query: &str,
    body: Vec<u8>,
) -> Result<IncomingResponse, String> {
    let url = origin_url(&settings.origin_url, path_and_query)
        .ok_or_else(|| format!("origin_url {:?} is not an http(s) URL", settings.origin_url))?;
    let mut builder = http::Request::builder()
        .method(facts.method.as_str())
        .uri(&url);
    for (name, value) in origin_request_headers(&facts.headers) {
        builder = builder.header(name, value);
    }
    let request = builder.body(body).map_err(|e| e.to_string())?;
    spin_sdk::http::send::<_, IncomingResponse>(request)
        .await
        .map_err(|e| e.to_string())
}

fn send_events(settings: &Settings, decision: &PageDecision) {
    if decision.events.is_empty() {
        return;
    }
    let sent = settings
        .redis_url
        .as_deref()
        .ok_or_else(|| "redis_url is not set".to_owned())
        .and_then(Queue::open)
        .and_then(|queue| queue.send(&queue_messages(&decision.events)));
    if let Err(reason) = sent {
        state::fallback("events_dropped");
        eprintln!("stellwerk: events dropped: {reason}");
    }
}

fn outgoing_response(status: u16, headers: &[(String, String)]) -> Option<OutgoingResponse> {
    let list: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(n, v)| (n.clone(), v.clone().into_bytes()))
        .collect();
    let fields = Fields::from_list(&list).ok()?;
    let response = OutgoingResponse::new(fields);
    response.set_status_code(status).ok()?;
    Some(response)
}

/// Sends a response the edge produced itself.
async fn respond(response_out: ResponseOutparam, answer: EdgeResponse, head: bool) {
    let Some(response) = outgoing_response(answer.status, &answer.headers) else {
        return;
    };
    let mut sink = response.take_body();
    response_out.set(response);
    if !head {
        let _ = sink.send(answer.body).await;
    }
    let _ = sink.close().await;
}
