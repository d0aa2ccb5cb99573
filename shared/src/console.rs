//! The marketers' console page under `/_stellwerk/admin/`: its routes, the login form, and its
//! embedded assets. The page talks to the JSON API ([`crate::admin_api`]); the charting library
//! (uPlot) is not in the core: the adapter embeds it from `node_modules` at build time and
//! passes its bytes in.

use serde_json::json;

use crate::admin_api::ADMIN_API_PREFIX;
use crate::admin_auth::{
    CONSOLE_PATH, login_accepted, session_cookie, session_cookie_cleared, valid_login_name,
};
use crate::edge::EdgeResponse;

const APP_HTML: &str = include_str!("../console/index.html");
const LOGIN_HTML: &str = include_str!("../console/login.html");
const CONSOLE_JS: &str = include_str!("../console/console.js");
const CONSOLE_CSS: &str = include_str!("../console/console.css");

/// Whether a path belongs to the console or its API (the older admin routes under
/// `/_stellwerk/admin/` are matched before this).
pub fn is_console_path(path: &str) -> bool {
    (path == CONSOLE_PATH || path.starts_with("/_stellwerk/admin/"))
        && !path.starts_with(crate::edge::OBJECTS_PREFIX)
}

/// What a console request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleRoute {
    /// Under `/_stellwerk/admin/api/`: see [`crate::admin_call`].
    Api,
    /// `POST /_stellwerk/admin/login` (form: `name`, `token`).
    Login,
    /// `POST /_stellwerk/admin/logout`.
    Logout,
    /// `GET /_stellwerk/admin/` (and `#/...` client routes): the app, or the login page.
    App,
    /// `GET /_stellwerk/admin/assets/{name}`.
    Asset(ConsoleAsset),
    NotFound,
    MethodNotAllowed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleAsset {
    Script,
    Style,
    ChartScript,
    ChartStyle,
}

pub fn console_route(method: &str, path: &str) -> ConsoleRoute {
    if path.starts_with(ADMIN_API_PREFIX) {
        return ConsoleRoute::Api;
    }
    let get = method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("HEAD");
    let post = method.eq_ignore_ascii_case("POST");
    let (wanted_get, route) = match path.strip_prefix(CONSOLE_PATH).unwrap_or(path) {
        "" | "/" => (true, ConsoleRoute::App),
        "/login" => (false, ConsoleRoute::Login),
        "/logout" => (false, ConsoleRoute::Logout),
        "/assets/console.js" => (true, ConsoleRoute::Asset(ConsoleAsset::Script)),
        "/assets/console.css" => (true, ConsoleRoute::Asset(ConsoleAsset::Style)),
        "/assets/uplot.js" => (true, ConsoleRoute::Asset(ConsoleAsset::ChartScript)),
        "/assets/uplot.css" => (true, ConsoleRoute::Asset(ConsoleAsset::ChartStyle)),
        _ => return ConsoleRoute::NotFound,
    };
    if (wanted_get && get) || (!wanted_get && post) {
        route
    } else {
        ConsoleRoute::MethodNotAllowed
    }
}

/// The charting library's files, embedded by the adapter.
#[derive(Debug, Clone, Copy)]
pub struct ChartLibrary<'a> {
    pub script: &'a [u8],
    pub style: &'a [u8],
}

/// The console's own responses for a caller with credentials (`who`) or without.
pub fn console_page(
    route: ConsoleRoute,
    who: Option<&str>,
    chart: ChartLibrary<'_>,
) -> EdgeResponse {
    if who.is_none() {
        return match route {
            ConsoleRoute::App => login_page(None),
            _ => unauthorized(),
        };
    }
    match route {
        ConsoleRoute::App => page(200, APP_HTML),
        ConsoleRoute::Asset(asset) => {
            let (content_type, body) = match asset {
                ConsoleAsset::Script => ("text/javascript; charset=utf-8", CONSOLE_JS.as_bytes()),
                ConsoleAsset::Style => ("text/css; charset=utf-8", CONSOLE_CSS.as_bytes()),
                ConsoleAsset::ChartScript => ("text/javascript; charset=utf-8", chart.script),
                ConsoleAsset::ChartStyle => ("text/css; charset=utf-8", chart.style),
            };
            EdgeResponse {
                status: 200,
                headers: vec![
                    ("content-type".into(), content_type.into()),
                    ("cache-control".into(), "private, max-age=300".into()),
                ],
                body: body.to_vec(),
            }
        }
        ConsoleRoute::NotFound => EdgeResponse::error(404, "not_found", "no such console page"),
        ConsoleRoute::MethodNotAllowed => EdgeResponse::error(
            405,
            "method_not_allowed",
            "this console route does not take that method",
        ),
        ConsoleRoute::Api | ConsoleRoute::Login | ConsoleRoute::Logout => {
            EdgeResponse::error(404, "not_found", "not a console page")
        }
    }
}

/// The API's and the assets' answer without credentials.
pub fn unauthorized() -> EdgeResponse {
    EdgeResponse::error(
        401,
        "unauthorized",
        "log in to the console or send the admin bearer token",
    )
}

/// The login form, with status 401: nothing but the form is shown without credentials.
pub fn login_page(error: Option<&str>) -> EdgeResponse {
    let message = match error {
        Some(text) => format!(
            "<p class=\"error\" role=\"alert\">{}</p>",
            escape_html(text)
        ),
        None => String::new(),
    };
    page(401, &LOGIN_HTML.replace("<!--message-->", &message))
}

/// `POST /_stellwerk/admin/login`: a form with `name` and `token`. Success sets the signed
/// session cookie and goes to the console (303); anything else shows the form again (401).
pub fn login(form: &[u8], admin_secret: &str, now: u64, secure: bool) -> EdgeResponse {
    let fields: Vec<(String, String)> = form_urlencoded(form);
    let get = |key: &str| {
        fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    };
    let Some(name) = valid_login_name(get("name")) else {
        return login_page(Some(
            "Enter your name (letters, digits, spaces, . _ - @): the audit log records it.",
        ));
    };
    if !login_accepted(get("token"), admin_secret) {
        return login_page(Some("That admin token is not right."));
    }
    EdgeResponse {
        status: 303,
        headers: vec![
            ("location".into(), format!("{CONSOLE_PATH}/")),
            (
                "set-cookie".into(),
                session_cookie(&name, admin_secret, now, secure),
            ),
            ("cache-control".into(), "no-store".into()),
        ],
        body: Vec::new(),
    }
}

/// `POST /_stellwerk/admin/logout`: clears the cookie and shows the login page.
pub fn logout(secure: bool) -> EdgeResponse {
    EdgeResponse {
        status: 303,
        headers: vec![
            ("location".into(), format!("{CONSOLE_PATH}/")),
            ("set-cookie".into(), session_cookie_cleared(secure)),
            ("cache-control".into(), "no-store".into()),
        ],
        body: Vec::new(),
    }
}

/// The caller's identity as JSON (`GET api/whoami`).
pub fn whoami(who: &str) -> EdgeResponse {
    EdgeResponse::json(200, json!({ "who": who }).to_string())
}

fn page(status: u16, html: &str) -> EdgeResponse {
    EdgeResponse {
        status,
        headers: vec![
            ("content-type".into(), "text/html; charset=utf-8".into()),
            ("cache-control".into(), "no-store".into()),
            // The console loads only its own files and talks only to its own API.
            (
                "content-security-policy".into(),
                "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'"
                    .into(),
            ),
            ("x-content-type-options".into(), "nosniff".into()),
            ("referrer-policy".into(), "no-referrer".into()),
        ],
        body: html.as_bytes().to_vec(),
    }
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `application/x-www-form-urlencoded` pairs.
fn form_urlencoded(body: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'+', _, _) => out.push(b' '),
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 2;
            }
            (byte, _, _) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin_auth::admin_identity;

    const CHART: ChartLibrary<'static> = ChartLibrary {
        script: b"/*uplot*/",
        style: b"/*css*/",
    };

    #[test]
    fn console_routes() {
        assert_eq!(
            console_route("GET", "/_stellwerk/admin/"),
            ConsoleRoute::App
        );
        assert_eq!(console_route("GET", "/_stellwerk/admin"), ConsoleRoute::App);
        assert_eq!(
            console_route("POST", "/_stellwerk/admin/login"),
            ConsoleRoute::Login
        );
        assert_eq!(
            console_route("GET", "/_stellwerk/admin/login"),
            ConsoleRoute::MethodNotAllowed
        );
        assert_eq!(
            console_route("GET", "/_stellwerk/admin/api/flags"),
            ConsoleRoute::Api
        );
        assert_eq!(
            console_route("GET", "/_stellwerk/admin/assets/uplot.js"),
            ConsoleRoute::Asset(ConsoleAsset::ChartScript)
        );
        assert_eq!(
            console_route("GET", "/_stellwerk/admin/secret"),
            ConsoleRoute::NotFound
        );
    }

    #[test]
    fn without_credentials_only_the_login_form_is_shown() {
        let app = console_page(ConsoleRoute::App, None, CHART);
        assert_eq!(app.status, 401);
        let html = String::from_utf8(app.body).unwrap();
        assert!(html.contains("action=\"/_stellwerk/admin/login\""));
        assert!(!html.contains("console.js"));
        let asset = console_page(ConsoleRoute::Asset(ConsoleAsset::Script), None, CHART);
        assert_eq!(asset.status, 401);
        let with = console_page(
            ConsoleRoute::Asset(ConsoleAsset::ChartScript),
            Some("token"),
            CHART,
        );
        assert_eq!(
            (with.status, with.body.as_slice()),
            (200, &b"/*uplot*/"[..])
        );
        assert_eq!(
            console_page(ConsoleRoute::App, Some("token"), CHART).status,
            200
        );
    }

    #[test]
    fn a_login_sets_a_session_the_identity_check_accepts() {
        let ok = login(b"name=Ada+L%C3%B6w&token=s3cret", "s3cret", 1000, true);
        assert_eq!(ok.status, 303);
        let cookie = &ok
            .headers
            .iter()
            .find(|(n, _)| n == "set-cookie")
            .unwrap()
            .1;
        let pair = cookie.split(';').next().unwrap();
        assert_eq!(
            admin_identity(None, Some(pair), "s3cret", 1001).as_deref(),
            Some("session:Ada Löw")
        );
        let wrong = login(b"name=Ada&token=guess", "s3cret", 1000, true);
        assert_eq!(wrong.status, 401);
        assert!(String::from_utf8(wrong.body).unwrap().contains("not right"));
        assert_eq!(
            login(b"name=%3Cb%3E&token=s3cret", "s3cret", 1000, true).status,
            401
        );
        assert!(
            logout(false)
                .headers
                .iter()
                .any(|(_, v)| v.contains("Max-Age=0"))
        );
    }

    #[test]
    fn login_errors_are_escaped() {
        let page = login_page(Some("<script>"));
        assert!(
            String::from_utf8(page.body)
                .unwrap()
                .contains("&lt;script&gt;")
        );
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c%2"), "a b c%2");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
