//! `IdempotencyKey` on writes: a GUID, kept one hour per organisation. The same key on the same
//! endpoint with the same body replays the first response; on another endpoint, or with another
//! body, it is refused with 400. Only successful responses are remembered, so a client may retry
//! after fixing a refused request.

use std::future::Future;

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use certbound_store::IdempotencyRecord;
use serde_json::Value;

use crate::auth::Caller;
use crate::{Cards, CardsError};

/// How long a key is remembered, seconds.
pub(crate) const KEPT: i64 = 3600;

/// A successful write: its status and JSON body (none for 204).
pub(crate) type Written = (StatusCode, Option<Value>);

fn respond((status, body): Written) -> Response {
    match body {
        Some(body) => (status, Json(body)).into_response(),
        None => status.into_response(),
    }
}

/// Runs `write` once per `IdempotencyKey`.
pub(crate) async fn idempotent<F, Fut>(
    cards: &Cards,
    caller: &Caller,
    headers: &HeaderMap,
    endpoint: String,
    body: &[u8],
    write: F,
) -> Result<Response, CardsError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Written, CardsError>>,
{
    let Some(key) = headers.get("IdempotencyKey") else {
        return Ok(respond(write().await?));
    };
    let key = key
        .to_str()
        .ok()
        .and_then(|key| uuid::Uuid::parse_str(key.trim()).ok())
        .ok_or_else(|| CardsError::field("IdempotencyKey", "IdempotencyKey must be a GUID"))?;
    let id = format!("{}|{key}", caller.claims.org_id);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body);
    let request_hash: String = digest
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let now = certbound_store::clock::now();
    if let Some(first) = cards.store.idempotency(&id, now - KEPT).await? {
        return replay(first, &endpoint, &request_hash);
    }
    let written = write().await?;
    let record = IdempotencyRecord {
        id: id.clone(),
        endpoint: endpoint.clone(),
        request_hash: request_hash.clone(),
        status: i64::from(written.0.as_u16()),
        response: written.1.as_ref().map(Value::to_string).unwrap_or_default(),
        created_at: now,
    };
    if !cards.store.insert_idempotency(&record).await? {
        // A concurrent request with the same key won: answer as it did.
        if let Some(first) = cards.store.idempotency(&id, now - KEPT).await? {
            return replay(first, &endpoint, &request_hash);
        }
    }
    Ok(respond(written))
}

fn replay(
    first: IdempotencyRecord,
    endpoint: &str,
    request_hash: &str,
) -> Result<Response, CardsError> {
    if first.endpoint != endpoint {
        return Err(CardsError::field(
            "IdempotencyKey",
            "this IdempotencyKey was used on another endpoint: use a new key for each request",
        ));
    }
    if first.request_hash != request_hash {
        return Err(CardsError::field(
            "IdempotencyKey",
            "this IdempotencyKey was used with a different body: use a new key for a new request",
        ));
    }
    let status = u16::try_from(first.status)
        .ok()
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or(StatusCode::OK);
    let body = if first.response.is_empty() {
        None
    } else {
        serde_json::from_str(&first.response).ok()
    };
    let mut response = respond((status, body));
    response
        .headers_mut()
        .insert("Idempotent-Replayed", HeaderValue::from_static("true"));
    Ok(response)
}
