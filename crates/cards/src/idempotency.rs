//! `IdempotencyKey` on writes: a GUID, kept one hour per organisation.
//!
//! The first request with a key is the only one that acts: it *claims* the key (an atomic insert
//! of a record with no answer yet) before it does anything, and fills the answer in once it has
//! one. Copies that arrive meanwhile, at this instance or another, wait for that answer and
//! replay it; a retry after it replays it too, whatever the card's state is now (the state
//! checks run inside the claimed write, never before the key is looked up). The same key on
//! another endpoint, or with another body, is refused with 400. Only successful answers are
//! remembered: a refused first request releases its claim, so the client may retry after fixing
//! it. A claim whose instance died before answering is taken over after [`STALE`] seconds.
//!
//! The body is remembered as a keyed digest (HMAC under a key derived from the master key), never
//! a bare hash: a PIN-setting body would otherwise fall to brute force without the master key.

use std::future::Future;
use std::time::Duration;

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use certbound_store::IdempotencyRecord;
use serde_json::Value;

use crate::auth::Caller;
use crate::{Cards, CardsError};

/// How long a key is remembered, seconds.
pub(crate) const KEPT: i64 = 3600;

/// After how many seconds an unanswered claim counts as abandoned (its instance died).
const STALE: i64 = 60;

/// How long a copy waits for the first request's answer before answering 409.
const WAIT: Duration = Duration::from_secs(15);

/// How often a waiting copy looks for the answer.
const POLL: Duration = Duration::from_millis(25);

/// A successful write: its status and JSON body (none for 204).
pub(crate) type Written = (StatusCode, Option<Value>);

/// The status of a claim that has no answer yet.
const CLAIMED: i64 = 0;

fn respond((status, body): Written) -> Response {
    match body {
        Some(body) => (status, Json(body)).into_response(),
        None => status.into_response(),
    }
}

/// Runs `write` once per `IdempotencyKey`. `write` gets the claim's name (the key and the body's
/// keyed digest), which what it creates must carry: a retry that takes over the claim of a request
/// that died after acting finds the effect by it instead of making it again.
pub(crate) async fn idempotent<F, Fut>(
    cards: &Cards,
    caller: &Caller,
    headers: &HeaderMap,
    endpoint: String,
    body: &[u8],
    write: F,
) -> Result<Response, CardsError>
where
    F: FnOnce(Option<String>) -> Fut,
    Fut: Future<Output = Result<Written, CardsError>>,
{
    let Some(key) = headers.get("IdempotencyKey") else {
        return Ok(respond(write(None).await?));
    };
    let key = key
        .to_str()
        .ok()
        .and_then(|key| uuid::Uuid::parse_str(key.trim()).ok())
        .ok_or_else(|| CardsError::field("IdempotencyKey", "IdempotencyKey must be a GUID"))?;
    let claim = IdempotencyRecord {
        id: format!("{}|{key}", caller.claims.org_id),
        request_hash: cards
            .master
            .digest(&format!("idempotency|{endpoint}"), body),
        endpoint,
        status: CLAIMED,
        response: String::new(),
        created_at: certbound_store::clock::now(),
    };
    if let Some(first) = claim_or_wait(cards, &claim).await? {
        return replay(&first, &claim);
    }
    // What the effects carry: the key and the body's digest, so that a key used again after it
    // expired, for another request, can never be taken for the first one's effects.
    match write(Some(format!("{}|{}", claim.id, claim.request_hash))).await {
        Ok(written) => {
            let response = written.1.as_ref().map(Value::to_string).unwrap_or_default();
            let status = i64::from(written.0.as_u16());
            cards
                .store
                .complete_idempotency(&claim.id, status, &response)
                .await?;
            Ok(respond(written))
        }
        Err(refused) => {
            cards.store.release_idempotency(&claim.id).await?;
            Err(refused)
        }
    }
}

/// Claims the key (`None`: this request acts) or waits for the first request's answer.
async fn claim_or_wait(
    cards: &Cards,
    claim: &IdempotencyRecord,
) -> Result<Option<IdempotencyRecord>, CardsError> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = certbound_store::clock::now();
        if cards
            .store
            .insert_idempotency(&IdempotencyRecord {
                created_at: now,
                ..claim.clone()
            })
            .await?
        {
            return Ok(None);
        }
        match cards.store.idempotency(&claim.id, now - KEPT).await? {
            // Released by a refused first request (or expired) meanwhile: claim it again.
            None => continue,
            Some(first) if first.status != CLAIMED => return Ok(Some(first)),
            Some(first) => {
                // Refuse a misused key at once, without waiting for the first to finish.
                refuse_misuse(&first, claim)?;
                if first.created_at < now - STALE
                    && cards
                        .store
                        .take_over_idempotency(&claim.id, now - STALE, now)
                        .await?
                {
                    return Ok(None);
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(CardsError::Conflict(
                "a request with this IdempotencyKey is still being processed: retry it shortly"
                    .into(),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

fn refuse_misuse(first: &IdempotencyRecord, claim: &IdempotencyRecord) -> Result<(), CardsError> {
    if first.endpoint != claim.endpoint {
        return Err(CardsError::field(
            "IdempotencyKey",
            "this IdempotencyKey was used on another endpoint: use a new key for each request",
        ));
    }
    if first.request_hash != claim.request_hash {
        return Err(CardsError::field(
            "IdempotencyKey",
            "this IdempotencyKey was used with a different body: use a new key for a new request",
        ));
    }
    Ok(())
}

fn replay(first: &IdempotencyRecord, claim: &IdempotencyRecord) -> Result<Response, CardsError> {
    refuse_misuse(first, claim)?;
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
