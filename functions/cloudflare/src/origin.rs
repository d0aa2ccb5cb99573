//! How a visitor's request maps to the origin request, and which responses get rewritten.

/// Request headers passed on to the origin. Everything else stays at the edge: the visitor's
/// IP and Cloudflare's own headers never reach the origin from here.
pub const FORWARDED_REQUEST_HEADERS: &[&str] = &[
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

/// Why the origin URL could not be formed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginUrlError {
    /// `ORIGIN_URL` is empty or not `http(s)://host…`.
    NotHttp(String),
    /// The visitor's path does not start with `/`.
    RelativePath(String),
}

impl std::fmt::Display for OriginUrlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotHttp(url) => write!(f, "ORIGIN_URL: {url:?} is not an http(s) URL"),
            Self::RelativePath(path) => write!(f, "path {path:?} does not start with /"),
        }
    }
}

impl std::error::Error for OriginUrlError {}

/// `origin` + the visitor's path + query. A path prefix on `origin` is kept (`https://o/shop` +
/// `/cart` → `https://o/shop/cart`).
pub fn origin_url(origin: &str, path: &str, query: Option<&str>) -> Result<String, OriginUrlError> {
    let base = origin.trim().trim_end_matches('/');
    let scheme_ok = base.starts_with("http://") || base.starts_with("https://");
    let host_ok = base
        .split_once("://")
        .is_some_and(|(_, rest)| !rest.is_empty());
    if !scheme_ok || !host_ok {
        return Err(OriginUrlError::NotHttp(origin.to_string()));
    }
    if !path.starts_with('/') {
        return Err(OriginUrlError::RelativePath(path.to_string()));
    }
    let mut url = String::with_capacity(base.len() + path.len() + 1);
    url.push_str(base);
    url.push_str(path);
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        url.push('?');
        url.push_str(query);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_origin_path_and_query() {
        assert_eq!(
            origin_url("http://127.0.0.1:8080/", "/shop/item", Some("id=3&x=%20")),
            Ok("http://127.0.0.1:8080/shop/item?id=3&x=%20".to_string())
        );
        assert_eq!(
            origin_url("https://example.com/base", "/", None),
            Ok("https://example.com/base/".to_string())
        );
        assert_eq!(
            origin_url("https://example.com", "/a", Some("")),
            Ok("https://example.com/a".to_string())
        );
    }

    #[test]
    fn refuses_a_missing_or_non_http_origin() {
        for bad in ["", "   ", "example.com", "ftp://example.com", "https://"] {
            assert!(
                matches!(origin_url(bad, "/", None), Err(OriginUrlError::NotHttp(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            origin_url("https://example.com", "a", None),
            Err(OriginUrlError::RelativePath("a".into()))
        );
    }

    #[test]
    fn the_forwarded_list_is_lowercase_and_excludes_client_addresses() {
        for name in FORWARDED_REQUEST_HEADERS {
            assert_eq!(*name, name.to_ascii_lowercase());
        }
        for private in [
            "cf-connecting-ip",
            "x-forwarded-for",
            "x-real-ip",
            "authorization",
        ] {
            assert!(!FORWARDED_REQUEST_HEADERS.contains(&private), "{private}");
        }
    }
}
