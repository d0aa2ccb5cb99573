//! Every request that is not Stellwerk's own: gate, decide, fetch the origin, stream its HTML
//! through the core's rewriter. Any engine failure serves the origin's bytes untouched.

use super::{client_rate, control, isolate, origin_body};
use crate::bindings::{secrets, vars};
use crate::body::{BodyRewriter, RewriteError, rewrite_stream};
use std::cell::RefCell;
use std::rc::Rc;
use stellwerk_core::{
    BEACON_PATH, DecideInput, Keys, LoadedModel, PageDecision, PageRewriter, PlatformFacts,
    RequestFacts, csp_nonce, decide, gate_response, origin_request_headers, origin_url,
    page_headers,
};
use wasm_bindgen::JsValue;
use worker::{
    Context, Env, Error, Fetch, Headers, Method, Request, RequestInit, RequestRedirect, Response,
    ResponseBody, Result, console_error,
};

impl From<RewriteError> for Error {
    fn from(error: RewriteError) -> Self {
        Error::RustError(error.to_string())
    }
}

/// The facts the core decides on, read from the Worker's request.
pub fn request_facts(req: &Request) -> Result<RequestFacts> {
    let cf = req.cf();
    Ok(RequestFacts {
        method: req.method().to_string(),
        url: req.url()?.to_string(),
        headers: req.headers().entries().collect(),
        platform: PlatformFacts {
            country: cf.and_then(|cf| cf.country()),
            asn: cf.and_then(|cf| cf.asn()),
            tls_version: cf.map(|cf| cf.tls_version()).filter(|v| !v.is_empty()),
            bot_score: cf
                .and_then(|cf| cf.bot_management())
                .map(|bot| bot.score())
                .and_then(|score| u8::try_from(score).ok()),
            // Workers cannot resolve PTR records; good bots need another platform's hint.
            reverse_dns: None,
            // Counted in `decide_for`, once the snapshot says whether this path is limited.
            client_rate: None,
        },
    })
}

pub fn secret(env: &Env, name: &str) -> Vec<u8> {
    env.secret(name)
        .map(|s| s.to_string().into_bytes())
        .unwrap_or_default()
}

/// Proxies one visitor request to the origin, personalised where the snapshot says so.
pub async fn handle(req: Request, env: &Env, ctx: &Context, now_ms: f64) -> Result<Response> {
    let decision = match decide_for(&req, env, now_ms).await {
        Ok(decision) => decision,
        Err(reason) => {
            // No snapshot, no KV: the site must not go down with the engine.
            isolate::count_fallback(&reason);
            None
        }
    };
    if let Some(decision) = &decision
        && let Some(stopped) = gate_response(&decision.gate)
    {
        control::send_events(ctx, env, &decision.events)?;
        return control::edge_response(stopped);
    }

    let mut origin = match Fetch::Request(origin_request(&req, env)?).send().await {
        Ok(response) => response,
        Err(error) => {
            console_error!("stellwerk: origin fetch failed: {error}");
            return Response::error("stellwerk: origin unreachable", 502);
        }
    };
    let content_type = origin.headers().get("content-type")?;
    let page = stellwerk_core::is_html(content_type.as_deref())
        && origin.status_code() == 200
        && matches!(origin.body(), ResponseBody::Stream(_));
    let Some(decision) = decision.filter(|_| page) else {
        // Not a page, an origin error, or no decision: the origin's response as it was sent.
        return Ok(origin);
    };

    let nonce = origin
        .headers()
        .get("content-security-policy")?
        .as_deref()
        .and_then(csp_nonce);
    let injection = decision.page_injection(BEACON_PATH, nonce);
    let output = Rc::new(RefCell::new(Vec::new()));
    let sink = Rc::clone(&output);
    let rewriter = match PageRewriter::new(
        &decision.mutations,
        injection.as_ref(),
        content_type.as_deref(),
        move |bytes: &[u8]| sink.borrow_mut().extend_from_slice(bytes),
    ) {
        Ok(rewriter) => rewriter,
        Err(error) => {
            // The variant cannot be applied to this page: serve it untouched and log no exposure.
            console_error!("stellwerk: rewrite refused, serving the origin page: {error}");
            isolate::count_fallback("rewrite");
            return Ok(origin);
        }
    };
    let rewritten = rewriter.is_rewriting();
    let secure = req.url()?.scheme() == "https";
    let origin_headers: Vec<(String, String)> = origin.headers().entries().collect();
    let headers = Headers::new();
    for (name, value) in page_headers(&origin_headers, &decision, rewritten, secure) {
        headers.append(&name, &value)?;
    }
    control::send_events(ctx, env, &decision.events)?;
    if !rewritten {
        // Nothing to rewrite (kill switch, no variant on this page): the runtime streams the
        // origin's body itself, and no byte crosses into wasm.
        let (_, body) = origin.into_parts();
        return Ok(Response::from_body(body)?
            .with_status(200)
            .with_headers(headers));
    }
    let body = rewrite_stream(
        origin_body::chunks(&mut origin)?,
        PageBody {
            rewriter: Some(rewriter),
            output,
        },
        |_| {},
    );
    Ok(Response::from_stream(body)?
        .with_status(200)
        .with_headers(headers))
}

/// Gate and decide; `Err` names why the engine could not run (counted as a fallback).
async fn decide_for(
    req: &Request,
    env: &Env,
    now_ms: f64,
) -> std::result::Result<Option<PageDecision>, String> {
    let state = isolate::state(env, now_ms).await.map_err(|e| {
        console_error!("stellwerk: state unavailable, passing through: {e}");
        "state_unavailable".to_owned()
    })?;
    let Some(snapshot) = state.snapshot.as_deref() else {
        return Err("no_snapshot".into());
    };
    let mut facts = request_facts(req).map_err(|e| format!("request: {e}"))?;
    let unit_key = secret(env, secrets::UNIT_ID_KEY);
    facts.platform.client_rate =
        client_rate::count(req, env, &snapshot.fraud, facts.path(), &unit_key).await;
    let models = isolate::models(env, &state.pointers).await;
    let loaded: Vec<LoadedModel<'_>> = models.iter().map(isolate::IsolateModel::loaded).collect();
    let mut random = [0u8; 16];
    getrandom::fill(&mut random).map_err(|e| format!("randomness: {e}"))?;
    let token_key = secret(env, secrets::HMAC_KEY);
    let decision = decide(&DecideInput {
        snapshot,
        posteriors: &state.posteriors,
        facts: &facts,
        keys: Keys {
            token: &token_key,
            unit: &unit_key,
        },
        random,
        now: (now_ms / 1000.0) as u64,
        models: &loaded,
    });
    for reason in &decision.fallbacks {
        console_error!("stellwerk: {reason}");
        isolate::count_fallback("model_run");
    }
    // A contextual experiment decided by its plain policy: counted by reason (`contextual_missing_feature`, …).
    for fallback in decision
        .assignments
        .iter()
        .filter_map(|a| a.fallback.as_deref())
    {
        let code = fallback.split(':').next().unwrap_or(fallback);
        isolate::count_fallback(&format!("contextual_{code}"));
    }
    Ok(Some(decision))
}

/// Adapts the core's push-style rewriter to the body stream: each chunk in, what the rewriter
/// released out.
struct PageBody {
    rewriter: Option<PageRewriter<'static>>,
    output: Rc<RefCell<Vec<u8>>>,
}

impl BodyRewriter for PageBody {
    fn push(&mut self, chunk: &[u8]) -> std::result::Result<Vec<u8>, RewriteError> {
        let rewriter = self.rewriter.as_mut().ok_or_else(|| RewriteError {
            reason: "after end".into(),
        })?;
        rewriter.write(chunk).map_err(|e| {
            isolate::count_fallback("rewrite");
            RewriteError {
                reason: e.to_string(),
            }
        })?;
        Ok(std::mem::take(&mut *self.output.borrow_mut()))
    }

    fn finish(&mut self) -> std::result::Result<Vec<u8>, RewriteError> {
        if let Some(rewriter) = self.rewriter.take() {
            rewriter.end().map_err(|e| RewriteError {
                reason: e.to_string(),
            })?;
        }
        Ok(std::mem::take(&mut *self.output.borrow_mut()))
    }
}

/// The visitor's request re-addressed to `ORIGIN_URL`, with only the headers the core passes on.
fn origin_request(req: &Request, env: &Env) -> Result<Request> {
    let origin = env.var(vars::ORIGIN_URL)?.to_string();
    let url = req.url()?;
    let path_and_query = match url.query() {
        Some(query) if !query.is_empty() => format!("{}?{query}", url.path()),
        _ => url.path().to_owned(),
    };
    let target = origin_url(&origin, &path_and_query)
        .ok_or_else(|| Error::RustError(format!("ORIGIN_URL {origin:?} is not an http(s) URL")))?;

    let visitor_headers: Vec<(String, String)> = req.headers().entries().collect();
    let headers = Headers::new();
    for (name, value) in origin_request_headers(&visitor_headers) {
        headers.append(&name, &value)?;
    }
    if let Some(host) = url.host_str() {
        headers.set("x-forwarded-host", host)?;
    }
    headers.set("x-forwarded-proto", url.scheme())?;

    let method = req.method();
    let mut init = RequestInit::new();
    init.with_method(method.clone())
        .with_headers(headers)
        // The visitor's browser follows the origin's redirects, not the edge.
        .with_redirect(RequestRedirect::Manual);
    if !matches!(method, Method::Get | Method::Head) {
        init.with_body(req.inner().body().map(JsValue::from));
    }
    Request::new_with_init(&target, &init)
}
