//! The object store over outbound HTTP: model bytes for decisions, and the sync's objects.
//! Requests are built (and SigV4-signed when the store has access keys) by the core's
//! `s3::ObjectStore`; this module only sends them.

use spin_sdk::http::Response;
use stellwerk_core::s3::ObjectStore;

/// An object's bytes; `Ok(None)` when the store says it does not exist (404).
pub async fn get(store: &ObjectStore, key: &str, now: u64) -> Result<Option<Vec<u8>>, String> {
    let response = send(store, "GET", key, Vec::new(), now).await?;
    match *response.status() {
        200 => Ok(Some(response.into_body())),
        404 => Ok(None),
        status => Err(format!("GET {key}: the object store answered {status}")),
    }
}

/// Stores an object.
pub async fn put(store: &ObjectStore, key: &str, body: Vec<u8>, now: u64) -> Result<(), String> {
    let response = send(store, "PUT", key, body, now).await?;
    match *response.status() {
        200..=299 => Ok(()),
        status => Err(format!("PUT {key}: the object store answered {status}")),
    }
}

async fn send(
    store: &ObjectStore,
    method: &str,
    key: &str,
    body: Vec<u8>,
    now: u64,
) -> Result<Response, String> {
    let request = store.request(method, key, &body, now);
    let mut builder = http::Request::builder().method(method).uri(&request.url);
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    if method == "PUT" {
        // S3 refuses a PUT streamed without a length.
        builder = builder.header("content-length", body.len());
    }
    let request = builder.body(body).map_err(|e| e.to_string())?;
    spin_sdk::http::send::<_, Response>(request)
        .await
        .map_err(|e| format!("{method} {key}: {e}"))
}
