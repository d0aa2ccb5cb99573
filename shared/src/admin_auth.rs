//! Who may use the console and the admin API: the admin bearer token, or a console session
//! whose cookie is signed with that same secret. Time comes in as an argument.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::request::hex;

/// The console's session cookie.
pub const SESSION_COOKIE: &str = "stellwerk_admin";

/// How long a console session lasts.
pub const SESSION_SECONDS: u64 = 12 * 3600;

/// Where the session cookie is sent: the console and its API only.
pub const CONSOLE_PATH: &str = "/_stellwerk/admin";

/// Who made an admin request, for the audit log: `token` for the bearer token, `session:<name>`
/// for a console login. `None`: no valid credentials (or no admin secret configured).
pub fn admin_identity(
    authorization: Option<&str>,
    cookie_header: Option<&str>,
    admin_secret: &str,
    now: u64,
) -> Option<String> {
    if admin_secret.is_empty() {
        return None;
    }
    if let Some(presented) = authorization.and_then(|v| v.strip_prefix("Bearer ")) {
        return equal_in_constant_time(presented.trim().as_bytes(), admin_secret.as_bytes())
            .then(|| "token".to_owned());
    }
    let value = cookie_value(cookie_header?, SESSION_COOKIE)?;
    session_name(value, admin_secret, now).map(|name| format!("session:{name}"))
}

/// Whether a login's presented token is the admin secret.
pub fn login_accepted(presented: &str, admin_secret: &str) -> bool {
    !admin_secret.is_empty()
        && equal_in_constant_time(presented.as_bytes(), admin_secret.as_bytes())
}

/// A name fit for the audit log: 1–64 letters, digits, spaces or `. _ - @`, trimmed.
pub fn valid_login_name(name: &str) -> Option<String> {
    let name = name.trim();
    let ok = !name.is_empty()
        && name.chars().count() <= 64
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '.' | '_' | '-' | '@'));
    ok.then(|| name.to_owned())
}

/// `Set-Cookie` for a new session of `name`, valid for [`SESSION_SECONDS`] from `now`.
pub fn session_cookie(name: &str, admin_secret: &str, now: u64, secure: bool) -> String {
    let expires = now + SESSION_SECONDS;
    let payload = format!("{}.{expires}", URL_SAFE_NO_PAD.encode(name));
    let signature = sign(&payload, admin_secret);
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{SESSION_COOKIE}={payload}.{signature}; Path={CONSOLE_PATH}; Max-Age={SESSION_SECONDS}; HttpOnly; SameSite=Strict{secure}"
    )
}

/// `Set-Cookie` that ends the session in the browser.
pub fn session_cookie_cleared(secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}=; Path={CONSOLE_PATH}; Max-Age=0; HttpOnly; SameSite=Strict{secure}")
}

/// The session's name when the cookie value is signed with `admin_secret` and not expired.
fn session_name(value: &str, admin_secret: &str, now: u64) -> Option<String> {
    let (payload, signature) = value.rsplit_once('.')?;
    if !equal_in_constant_time(signature.as_bytes(), sign(payload, admin_secret).as_bytes()) {
        return None;
    }
    let (name, expires) = payload.split_once('.')?;
    if expires.parse::<u64>().ok()? <= now {
        return None;
    }
    String::from_utf8(URL_SAFE_NO_PAD.decode(name).ok()?).ok()
}

/// The signature binds the purpose too, so no other value signed with the secret passes.
fn sign(payload: &str, admin_secret: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(admin_secret.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(b"stellwerk-console-session\n");
    mac.update(payload.as_bytes());
    hex(&mac.finalize().into_bytes())
}

fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then_some(value)
    })
}

/// Does not stop at the first differing byte, so timing does not reveal a partial match.
fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cret-admin-token";
    const NOW: u64 = 1_700_000_000;

    fn cookie_pair(set_cookie: &str) -> String {
        set_cookie.split(';').next().unwrap().to_owned()
    }

    #[test]
    fn the_bearer_token_is_the_identity_token() {
        let bearer = format!("Bearer {SECRET}");
        assert_eq!(
            admin_identity(Some(&bearer), None, SECRET, NOW).as_deref(),
            Some("token")
        );
        assert_eq!(admin_identity(Some("Bearer nope"), None, SECRET, NOW), None);
        assert_eq!(admin_identity(None, None, SECRET, NOW), None);
        assert_eq!(admin_identity(Some("Bearer "), None, "", NOW), None);
    }

    #[test]
    fn a_signed_session_names_its_user_until_it_expires() {
        let set = session_cookie("Ada Lovelace", SECRET, NOW, true);
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.ends_with("Secure")
        );
        assert!(set.contains("Path=/_stellwerk/admin;"));
        let header = format!("theme=dark; {}", cookie_pair(&set));
        assert_eq!(
            admin_identity(None, Some(&header), SECRET, NOW + 10).as_deref(),
            Some("session:Ada Lovelace")
        );
        assert_eq!(
            admin_identity(None, Some(&header), SECRET, NOW + SESSION_SECONDS),
            None,
            "expired"
        );
        assert_eq!(
            admin_identity(None, Some(&header), "another-secret", NOW + 10),
            None,
            "signed with another secret"
        );
    }

    #[test]
    fn a_tampered_session_is_refused() {
        let set = session_cookie("ada", SECRET, NOW, false);
        let value = cookie_pair(&set);
        let (payload, signature) = value.rsplit_once('.').unwrap();
        let (name, expires) = payload.split_once('.').unwrap();
        // A later expiry with the old signature.
        let forged = format!(
            "{SESSION_COOKIE}={name}.{}.{signature}",
            expires.parse::<u64>().unwrap() + 1
        );
        assert_eq!(admin_identity(None, Some(&forged), SECRET, NOW), None);
        let other_name = format!(
            "{}={}.{expires}.{signature}",
            SESSION_COOKIE,
            URL_SAFE_NO_PAD.encode("root")
        );
        assert_eq!(admin_identity(None, Some(&other_name), SECRET, NOW), None);
        // A wrong bearer token is not rescued by a valid cookie.
        assert_eq!(
            admin_identity(Some("Bearer x"), Some(&value), SECRET, NOW),
            None
        );
    }

    #[test]
    fn login_names_and_tokens() {
        assert!(login_accepted(SECRET, SECRET));
        assert!(!login_accepted("s3cret", SECRET));
        assert!(!login_accepted("", ""));
        assert_eq!(valid_login_name("  Ada ").as_deref(), Some("Ada"));
        assert_eq!(valid_login_name("a<script>"), None);
        assert_eq!(valid_login_name(""), None);
        assert!(session_cookie_cleared(false).contains("Max-Age=0"));
    }
}
