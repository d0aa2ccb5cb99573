//! Requests to an object store: a plain HTTP(S) base URL, or an S3-compatible bucket with AWS
//! Signature Version 4 (header-based, payload hash signed) when credentials are given.
//!
//! Sans-IO like the rest of the core: the adapter passes the current time and sends the request
//! this module describes. Signing follows AWS's "Signature Calculations for the Authorization
//! Header" for S3 (the tests reproduce its published example signatures).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::request::hex;

/// Access keys for an S3-compatible store (AWS S3, R2, MinIO, Ceph, GCS interoperability).
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Signing region (`us-east-1`; `auto` for R2).
    pub region: String,
    /// Temporary credentials' `x-amz-security-token`, if any.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// Where objects live: `scheme://host[:port]` plus an optional path prefix (the bucket for a
/// path-style endpoint, and/or a folder), and the credentials to sign with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectStore {
    /// `scheme://authority`, no trailing slash.
    origin: String,
    /// The `Host` header the client sends (the authority).
    host: String,
    /// Path segments before the key, without leading or trailing slash.
    prefix: String,
    credentials: Option<S3Credentials>,
}

/// One request to send: its URL and the headers to add (the client adds `host` itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRequest {
    pub url: String,
    pub headers: Vec<(String, String)>,
}

impl ObjectStore {
    /// A store at `base_url` (`https://bucket.s3.eu-west-1.amazonaws.com/prefix`,
    /// `http://minio:9000/bucket`); requests are signed when `credentials` are given.
    pub fn new(base_url: &str, credentials: Option<S3Credentials>) -> Result<ObjectStore, String> {
        let invalid = || format!("object store URL {base_url:?} is not http(s)://host[/prefix]");
        let (scheme, rest) = base_url.split_once("://").ok_or_else(invalid)?;
        if !matches!(scheme, "http" | "https") {
            return Err(invalid());
        }
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty() || host.contains(['?', '#', '@']) || path.contains(['?', '#']) {
            return Err(invalid());
        }
        Ok(ObjectStore {
            origin: format!("{scheme}://{host}"),
            host: host.to_owned(),
            prefix: path.trim_matches('/').to_owned(),
            credentials,
        })
    }

    /// Whether requests are signed.
    pub fn signs(&self) -> bool {
        self.credentials.is_some()
    }

    /// The request for `method` on the object `key`, with a body of `payload` (empty for GET),
    /// signed at `now` (unix seconds) when the store has credentials.
    pub fn request(&self, method: &str, key: &str, payload: &[u8], now: u64) -> ObjectRequest {
        let mut path = String::from("/");
        for segment in self.prefix.split('/').chain(key.split('/')) {
            if !segment.is_empty() {
                if path.len() > 1 {
                    path.push('/');
                }
                path.push_str(&uri_encode(segment));
            }
        }
        let headers = match &self.credentials {
            Some(credentials) => sign(
                credentials,
                &SignInput {
                    method,
                    host: &self.host,
                    path: &path,
                    query: &[],
                    headers: &[],
                    payload_sha256: &hex(&Sha256::digest(payload)),
                    now,
                },
            ),
            None => Vec::new(),
        };
        ObjectRequest {
            url: format!("{}{path}", self.origin),
            headers,
        }
    }
}

/// What a signature covers.
pub struct SignInput<'a> {
    pub method: &'a str,
    /// The authority the request goes to (`host[:port]`).
    pub host: &'a str,
    /// The URI path, already percent-encoded as it goes on the wire ([`uri_encode`] per segment).
    pub path: &'a str,
    /// Query parameters, unencoded.
    pub query: &'a [(&'a str, &'a str)],
    /// Further headers the request carries that are signed too.
    pub headers: &'a [(&'a str, &'a str)],
    /// Hex SHA-256 of the body.
    pub payload_sha256: &'a str,
    /// Unix seconds.
    pub now: u64,
}

/// The headers that sign a request: `x-amz-date`, `x-amz-content-sha256`, the session token if
/// any, and `authorization`. `host` and `input.headers` are signed but not returned.
pub fn sign(credentials: &S3Credentials, input: &SignInput<'_>) -> Vec<(String, String)> {
    let amz_date = amz_date(input.now);
    let day = &amz_date[..8];
    let mut added = vec![
        (
            "x-amz-content-sha256".to_owned(),
            input.payload_sha256.to_owned(),
        ),
        ("x-amz-date".to_owned(), amz_date.clone()),
    ];
    if let Some(token) = &credentials.session_token {
        added.push(("x-amz-security-token".to_owned(), token.clone()));
    }
    let mut signed: Vec<(String, String)> = input
        .headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned()))
        .chain(std::iter::once(("host".to_owned(), input.host.to_owned())))
        .chain(added.iter().cloned())
        .collect();
    signed.sort();
    let signed_names = signed
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let mut query: Vec<(String, String)> = input
        .query
        .iter()
        .map(|(k, v)| (uri_encode(k), uri_encode(v)))
        .collect();
    query.sort();
    let canonical = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        input.method,
        input.path,
        query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&"),
        signed
            .iter()
            .map(|(n, v)| format!("{n}:{v}\n"))
            .collect::<String>(),
        signed_names,
        input.payload_sha256,
    );
    let scope = format!("{day}/{}/s3/aws4_request", credentials.region);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(
        format!("AWS4{}", credentials.secret_access_key).as_bytes(),
        day.as_bytes(),
    );
    for part in [credentials.region.as_str(), "s3", "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex(&hmac(&key, to_sign.as_bytes()));
    added.push((
        "authorization".to_owned(),
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope},SignedHeaders={signed_names},Signature={signature}",
            credentials.access_key_id
        ),
    ));
    added
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Percent-encodes every byte but `A-Z a-z 0-9 - . _ ~`, as SigV4 wants (one path segment or
/// one query key or value).
pub fn uri_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `YYYYMMDDTHHMMSSZ` for unix seconds (UTC).
fn amz_date(now: u64) -> String {
    let (days, seconds) = (now / 86_400, now % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        seconds / 3_600,
        seconds / 60 % 60,
        seconds % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The credentials and instant of AWS's S3 SigV4 examples (2013-05-24T00:00:00Z).
    fn aws_example() -> S3Credentials {
        S3Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            region: "us-east-1".into(),
            session_token: None,
        }
    }
    const MAY_24_2013: u64 = 1_369_353_600;
    const HOST: &str = "examplebucket.s3.amazonaws.com";
    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn authorization(input: SignInput<'_>) -> String {
        sign(&aws_example(), &input)
            .into_iter()
            .find(|(n, _)| n == "authorization")
            .map(|(_, v)| v)
            .expect("an authorization header")
    }

    fn get(path: &str, query: &[(&str, &str)], headers: &[(&str, &str)]) -> String {
        authorization(SignInput {
            method: "GET",
            host: HOST,
            path,
            query,
            headers,
            payload_sha256: EMPTY_SHA256,
            now: MAY_24_2013,
        })
    }

    #[test]
    fn reproduces_the_get_object_example() {
        assert_eq!(
            get("/test.txt", &[], &[("Range", "bytes=0-9")]),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,\
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn reproduces_the_put_object_example() {
        let payload = hex(&Sha256::digest(b"Welcome to Amazon S3."));
        let path = format!("/{}", uri_encode("test$file.text"));
        assert_eq!(path, "/test%24file.text");
        let header = authorization(SignInput {
            method: "PUT",
            host: HOST,
            path: &path,
            query: &[],
            headers: &[
                ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ],
            payload_sha256: &payload,
            now: MAY_24_2013,
        });
        assert!(header.contains(
            "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class,"
        ));
        assert!(header.ends_with(
            "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
        ));
    }

    #[test]
    fn reproduces_the_bucket_examples_with_sorted_queries() {
        assert!(get("/", &[("lifecycle", "")], &[]).ends_with(
            "Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
        ));
        assert!(
            get("/", &[("prefix", "J"), ("max-keys", "2")], &[]).ends_with(
                "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
            )
        );
    }

    #[test]
    fn a_store_request_signs_the_path_it_sends() {
        let store = ObjectStore::new(
            "https://examplebucket.s3.amazonaws.com/",
            Some(aws_example()),
        )
        .expect("a valid base URL");
        let request = store.request("GET", "test.txt", b"", MAY_24_2013);
        assert_eq!(
            request.url,
            "https://examplebucket.s3.amazonaws.com/test.txt"
        );
        let header = |name: &str| {
            request
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("x-amz-date"), Some("20130524T000000Z"));
        assert_eq!(header("x-amz-content-sha256"), Some(EMPTY_SHA256));
        // Same canonical request as the GET example without its Range header.
        assert_eq!(
            header("authorization"),
            Some(get("/test.txt", &[], &[]).as_str())
        );
    }

    #[test]
    fn prefixes_and_keys_are_encoded_per_segment() {
        let store = ObjectStore::new("http://127.0.0.1:9000/bucket/stell werk/", None).unwrap();
        let request = store.request("PUT", "models/ctr+mlp/1.0.0.onnx", b"x", 0);
        assert_eq!(
            request.url,
            "http://127.0.0.1:9000/bucket/stell%20werk/models/ctr%2Bmlp/1.0.0.onnx"
        );
        assert!(request.headers.is_empty(), "no credentials, no signature");
        assert!(!store.signs());
    }

    #[test]
    fn the_signature_depends_on_key_body_and_time() {
        let store = ObjectStore::new("https://s3.example.com/b", Some(aws_example())).unwrap();
        let signature = |key: &str, body: &[u8], now: u64| {
            store.request("PUT", key, body, now).headers.last().cloned()
        };
        let base = signature("a.json", b"{}", MAY_24_2013);
        assert_ne!(base, signature("b.json", b"{}", MAY_24_2013));
        assert_ne!(base, signature("a.json", b"[]", MAY_24_2013));
        assert_ne!(base, signature("a.json", b"{}", MAY_24_2013 + 1));
    }

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(MAY_24_2013), "20130524T000000Z");
        assert_eq!(amz_date(951_782_400 + 3_723), "20000229T010203Z");
        assert_eq!(amz_date(4_102_444_799), "20991231T235959Z");
    }

    #[test]
    fn refuses_what_is_not_an_http_base_url() {
        for url in [
            "s3://bucket",
            "https://",
            "ftp://host/x",
            "https://host?x=1",
        ] {
            assert!(ObjectStore::new(url, None).is_err(), "{url}");
        }
    }

    #[test]
    fn a_session_token_is_sent_and_signed() {
        let mut credentials = aws_example();
        credentials.session_token = Some("token".into());
        let headers = sign(
            &credentials,
            &SignInput {
                method: "GET",
                host: HOST,
                path: "/",
                query: &[],
                headers: &[],
                payload_sha256: EMPTY_SHA256,
                now: MAY_24_2013,
            },
        );
        assert!(headers.contains(&("x-amz-security-token".into(), "token".into())));
        assert!(
            headers.last().unwrap().1.contains(
                "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,"
            )
        );
    }
}
