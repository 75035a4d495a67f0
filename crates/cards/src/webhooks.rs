//! Events to the programme manager (DESIGN.md section 11): for a software statement with an
//! `ApiWebhookUri`, every status change of its cards (event 103) and every posting and
//! authorisation step (event 112) is POSTed there as `{context: {notificationId, eventCode,
//! eventVersion, notificationTime}, payload}`.
//!
//! Durable and exactly ordered: a notification is written to the outbox in the same transaction
//! as the change it announces (none is lost, none announces a change that did not happen),
//! numbered in its card's order. A worker in every instance delivers the first undelivered one
//! of each card (so a card's notifications arrive in order), leasing it so that two instances
//! never send it at once, with a bounded number in flight (and fewer per URL, so one dead
//! receiver cannot hold up the others), and retries with exponential backoff (1 s, 2 s, 4 s ...
//! at most 5 minutes apart) for a bounded time counted from its first attempt, then gives up on
//! it (`Failed`: listed as undelivered, sent again on request with a new window). Delivery is at least once: a receiver de-duplicates by `notificationId`.
//!
//! Signed: each delivery carries `Content-Digest` (RFC 9530, SHA-256 of the body) and an HTTP
//! Message Signature (RFC 9421) `sig1` over `@method`, `@target-uri`, `content-digest` and `date`,
//! with the Cards signing key published at `GET /keys` (`alg="rsa-pss-sha512"`, `keyid` its
//! `kid`), as FAPI 2 Message Signing uses them. The structured fields are written by `sfv`; the
//! digest and the signature are aws-lc's.

// `serde_json::Value["key"]` answers `Null` for a missing key or a non-object; it never panics.
#![allow(clippy::indexing_slicing)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use certbound_store::{CardRecord, NotificationDraft, NotificationRecord, TransactionLine};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::handlers::rfc3339;
use crate::ledger::{StatusCode as LineStatus, TypeCode, amount_json};
use crate::{Cards, CardsError};

/// The components every delivery's signature covers, in order.
pub const COVERED: [&str; 4] = ["@method", "@target-uri", "content-digest", "date"];

/// How long one delivery may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// How long a worker holds a notification it is delivering, seconds.
const LEASE: i64 = 30;

/// How often a worker looks for due notifications when nothing wakes it.
const POLL: Duration = Duration::from_millis(500);

/// The longest wait between two attempts, seconds.
const MAX_BACKOFF: i64 = 300;

/// The wait before attempt `attempts + 1`, seconds: 1, 2, 4, ... at most [`MAX_BACKOFF`].
pub fn backoff(attempts: i64) -> i64 {
    let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 16)).unwrap_or(16);
    (1_i64 << exponent).min(MAX_BACKOFF)
}

/// The `ApiWebhookUri` of the software statement whose client made the card, if it has one.
pub(crate) async fn target_of(
    cards: &Cards,
    card: &CardRecord,
) -> Result<Option<String>, CardsError> {
    let software_statement_id = card.client_id.rsplit('/').next().unwrap_or_default();
    let Some(record) = cards
        .store
        .software_statement(software_statement_id)
        .await?
    else {
        return Ok(None);
    };
    let body: Value = serde_json::from_str(&record.body)
        .map_err(|error| CardsError::Internal(error.to_string()))?;
    Ok(body["ApiWebhookUri"]
        .as_str()
        .filter(|uri| !uri.is_empty())
        .map(str::to_owned))
}

/// The webhook targets of the cards an act touches, by public token.
pub(crate) async fn targets_of(
    cards: &Cards,
    touched: &[&CardRecord],
) -> Result<HashMap<String, String>, CardsError> {
    let mut targets = HashMap::new();
    for card in touched {
        if let Some(url) = target_of(cards, card).await? {
            targets.insert(card.public_token.clone(), url);
        }
    }
    Ok(targets)
}

fn draft(
    card_token: &str,
    organisation_id: &str,
    url: &str,
    event_code: &str,
    payload: Value,
    now: i64,
) -> NotificationDraft {
    let id = uuid::Uuid::new_v4().to_string();
    let body = json!({
        "context": {
            "notificationId": id,
            "eventCode": event_code,
            "eventVersion": "v1",
            "notificationTime": rfc3339(now),
        },
        "payload": payload,
    });
    NotificationDraft {
        id,
        organisation_id: organisation_id.to_owned(),
        public_token: card_token.to_owned(),
        url: url.to_owned(),
        event_code: event_code.to_owned(),
        body: body.to_string(),
        created_at: now,
    }
}

/// Event 103, a card status change.
pub(crate) fn status_change(
    url: &str,
    card: &CardRecord,
    old: &str,
    new: &str,
    message: &str,
    now: i64,
) -> NotificationDraft {
    draft(
        &card.public_token,
        &card.organisation_id,
        url,
        "103",
        json!({
            "publicToken": card.public_token,
            "oldCardStatus": old,
            "newCardStatus": new,
            "dateTime": rfc3339(now),
            "message": message,
        }),
        now,
    )
}

/// Event 112 for each line of a card with a webhook: a posting or an authorisation step, with
/// the balances it left (`responseCode` for an authorisation).
pub(crate) fn transaction_confirmations(
    targets: &HashMap<String, String>,
    lines: &[TransactionLine],
    response_code: Option<&str>,
) -> Vec<NotificationDraft> {
    lines
        .iter()
        .filter_map(|line| {
            let url = targets.get(&line.public_token)?;
            let type_code = TypeCode::parse(&line.type_code);
            let status = LineStatus::parse(&line.status_code);
            let mut payload = json!({
                "publicToken": line.public_token,
                "transactionId": line.id,
                "transactionType": {"code": line.type_code, "description": type_code.map(TypeCode::description)},
                "transactionStatus": {"code": line.status_code, "description": status.map(LineStatus::description)},
                "amount": amount_json(line.amount_minor, &line.currency),
                "currencyCode": line.currency,
                "actualBalance": amount_json(line.actual_balance, &line.currency),
                "availableBalance": amount_json(line.available_balance, &line.currency),
                "dateTime": rfc3339(line.created_at),
                "description": line.description,
                "transactionLink": line.link,
            });
            if let (Some(code), Value::Object(map)) = (response_code, &mut payload) {
                map.insert("responseCode".into(), Value::from(code));
            }
            Some(draft(&line.public_token, &line.organisation_id, url, "112", payload, line.created_at))
        })
        .collect()
}

/// An IMF-fixdate (RFC 9110 §5.6.7) for the `Date` header.
fn http_date(now: i64) -> String {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::OffsetDateTime::from_unix_timestamp(now)
        .ok()
        .and_then(|at| at.format(&format).ok())
        .unwrap_or_default()
}

fn sfv_error(error: impl std::fmt::Display) -> CardsError {
    CardsError::Internal(format!("structured field: {error}"))
}

/// The headers that sign a POST of `body` to `target_uri` at `now`: `Date`, `Content-Digest`,
/// `Signature-Input` and `Signature` (RFC 9421 §2.5's signature base, signed RSA-PSS-SHA512).
pub fn signature_headers(
    keys: &crate::crypto::CardKeys,
    target_uri: &str,
    body: &[u8],
    now: i64,
) -> Result<Vec<(&'static str, String)>, CardsError> {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body);
    let mut content_digest = sfv::DictSerializer::new();
    let _ = content_digest.bare_item(sfv::key_ref("sha-256"), digest.as_ref());
    let content_digest = content_digest
        .finish()
        .ok_or_else(|| sfv_error("empty Content-Digest"))?;
    let date = http_date(now);
    let kid = keys.signing_kid();
    let created = sfv::Integer::try_from(now).map_err(sfv_error)?;
    let components: Vec<&sfv::StringRef> = COVERED
        .iter()
        .map(|name| sfv::StringRef::from_str(name))
        .collect::<Result<_, _>>()
        .map_err(sfv_error)?;
    let keyid = sfv::StringRef::from_str(kid).map_err(sfv_error)?;
    let alg = sfv::string_ref("rsa-pss-sha512");
    let write_list = |mut inner: sfv::InnerListSerializer<'_>| {
        for component in &components {
            let _ = inner.bare_item(*component);
        }
        let _ = inner
            .finish()
            .parameter(sfv::key_ref("created"), created)
            .parameter(sfv::key_ref("keyid"), keyid)
            .parameter(sfv::key_ref("alg"), alg);
    };
    let mut params = sfv::ListSerializer::new();
    write_list(params.inner_list());
    let params = params
        .finish()
        .ok_or_else(|| sfv_error("empty signature parameters"))?;
    let mut input = sfv::DictSerializer::new();
    write_list(input.inner_list(sfv::key_ref("sig1")));
    let input = input
        .finish()
        .ok_or_else(|| sfv_error("empty Signature-Input"))?;
    let base = format!(
        "\"@method\": POST\n\"@target-uri\": {target_uri}\n\"content-digest\": {content_digest}\n\"date\": {date}\n\"@signature-params\": {params}"
    );
    let signature = keys.sign_pss_sha512(base.as_bytes())?;
    let mut signature_header = sfv::DictSerializer::new();
    let _ = signature_header.bare_item(sfv::key_ref("sig1"), signature.as_slice());
    let signature_header = signature_header
        .finish()
        .ok_or_else(|| sfv_error("empty Signature"))?;
    Ok(vec![
        ("date", date),
        ("content-digest", content_digest),
        ("signature-input", input),
        ("signature", signature_header),
    ])
}

/// Deliveries in flight at once, per instance.
const IN_FLIGHT: usize = 16;

/// Deliveries in flight at once to one URL: a slow or dead receiver holds at most this many of
/// [`IN_FLIGHT`], so the others' events keep flowing.
const IN_FLIGHT_PER_URL: usize = 4;

/// Delivers notifications until `shutdown` flips: at start, whenever a change was announced,
/// and every [`POLL`]; deliveries run in the background, bounded in all and per URL.
pub(crate) async fn run(cards: Arc<Cards>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let lease = uuid::Uuid::new_v4().to_string();
    let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let per_url: Arc<std::sync::Mutex<HashMap<String, usize>>> = Arc::default();
    let mut deliveries = tokio::task::JoinSet::new();
    loop {
        while deliveries.try_join_next().is_some() {}
        if *shutdown.borrow() {
            // Deliveries under way finish (each is bounded by its timeout) and record their
            // outcome, so no lease outlives this instance.
            while deliveries.join_next().await.is_some() {}
            return;
        }
        let now = certbound_store::clock::now();
        match cards.store.due_notifications(now, 64).await {
            Ok(due) => {
                for record in due {
                    let url = record.draft.url.clone();
                    let busy = per_url
                        .lock()
                        .map(|counts| counts.get(&url).copied().unwrap_or(0))
                        .unwrap_or(IN_FLIGHT_PER_URL);
                    if busy >= IN_FLIGHT_PER_URL {
                        continue;
                    }
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        break;
                    };
                    match cards
                        .store
                        .lease_notification(&record.draft.id, &lease, now + LEASE, now)
                        .await
                    {
                        Ok(true) => {
                            if let Ok(mut counts) = per_url.lock() {
                                *counts.entry(url.clone()).or_default() += 1;
                            }
                            let (cards, lease, per_url) =
                                (cards.clone(), lease.clone(), per_url.clone());
                            deliveries.spawn(async move {
                                deliver(cards, record, lease).await;
                                if let Ok(mut counts) = per_url.lock()
                                    && let Some(count) = counts.get_mut(&url)
                                {
                                    *count = count.saturating_sub(1);
                                    if *count == 0 {
                                        counts.remove(&url);
                                    }
                                }
                                drop(permit);
                            });
                        }
                        Ok(false) => {}
                        Err(error) => tracing::warn!(%error, "cannot lease a webhook notification"),
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "cannot read the webhook outbox"),
        }
        tokio::select! {
            _ = shutdown.changed() => {}
            () = cards.webhook_work.notified() => {}
            () = tokio::time::sleep(POLL) => {}
            Some(_) = deliveries.join_next(), if !deliveries.is_empty() => {}
        }
    }
}

async fn deliver(cards: Arc<Cards>, record: NotificationRecord, lease: String) {
    let now = certbound_store::clock::now();
    let sent = send(&cards, &record, now).await;
    let done = certbound_store::clock::now();
    let outcome = match sent {
        Ok(()) => Ok(()),
        Err(error) => {
            let attempts = record.attempts + 1;
            // The window counts from the first attempt since the last resend.
            let first = record.first_attempt_at.unwrap_or(now);
            let give_up = done - first >= cards.config.webhook_retry_seconds;
            tracing::info!(notification_id = %record.draft.id, attempts, give_up, %error, "webhook delivery failed");
            Err((error, done + backoff(attempts), give_up))
        }
    };
    if let Err(error) = cards
        .store
        .notification_attempted(&record.draft.id, &lease, now, outcome)
        .await
    {
        tracing::warn!(%error, notification_id = %record.draft.id, "cannot record a webhook delivery");
    }
}

async fn send(cards: &Cards, record: &NotificationRecord, now: i64) -> Result<(), String> {
    let mut url = reqwest::Url::parse(&record.draft.url).map_err(|error| error.to_string())?;
    if url.scheme() != "https" {
        return Err("the webhook URI is not https".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the webhook URI carries credentials: refused".into());
    }
    // A fragment is never sent; the signed target is exactly what is sent.
    url.set_fragment(None);
    let headers = signature_headers(&cards.keys, url.as_str(), record.draft.body.as_bytes(), now)
        .map_err(|error| error.to_string())?;
    let mut request = cards
        .config
        .webhook_client
        .post(url)
        .timeout(TIMEOUT)
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request
        .body(record.draft.body.clone())
        .send()
        .await
        .map_err(|error| error.to_string())?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("the receiver answered {}", response.status()))
    }
}

/// The query of `GET /webhooks/notifications`.
#[derive(Debug, Deserialize)]
pub(crate) struct Listing {
    status: Option<String>,
}

fn listed(record: &NotificationRecord) -> Value {
    json!({
        "notificationId": record.draft.id,
        "eventCode": record.draft.event_code,
        "publicToken": record.draft.public_token,
        "status": record.status,
        "attempts": record.attempts,
        "nextAttempt": rfc3339(record.next_attempt_at),
        "lastError": record.last_error,
        "created": rfc3339(record.draft.created_at),
    })
}

/// `GET /webhooks/notifications?status=undelivered`: the caller's organisation's notifications
/// not delivered yet (pending or given up on), oldest first.
pub(crate) async fn undelivered(
    State(cards): State<Arc<Cards>>,
    caller: Caller,
    Query(listing): Query<Listing>,
) -> Result<Json<Value>, CardsError> {
    caller.require("cards.read")?;
    match listing.status.as_deref() {
        None | Some("undelivered") => {}
        Some(_) => {
            return Err(CardsError::field(
                "status",
                "status must be `undelivered` (the only list kept)",
            ));
        }
    }
    let records = cards
        .store
        .undelivered_notifications(&caller.claims.org_id)
        .await?;
    Ok(Json(Value::Array(records.iter().map(listed).collect())))
}

/// `POST /webhooks/notifications/resend` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resend {
    /// The notifications to send again.
    pub notification_ids: Vec<String>,
}

/// `POST /webhooks/notifications/resend {notificationIds}`: sends the organisation's
/// notifications again (delivered or not), each in its card's order.
pub(crate) async fn resend(
    State(cards): State<Arc<Cards>>,
    caller: Caller,
    body: Bytes,
) -> Result<Json<Value>, CardsError> {
    caller.require("cards.write")?;
    let request: Resend = crate::body::parse(&body)?;
    if request.notification_ids.is_empty() || request.notification_ids.len() > 100 {
        return Err(CardsError::field(
            "notificationIds",
            "notificationIds must name 1 to 100 notifications",
        ));
    }
    let ids: Vec<String> = request
        .notification_ids
        .iter()
        .map(|id| {
            uuid::Uuid::parse_str(id.trim())
                .map(|id| id.to_string())
                .map_err(|_| CardsError::field("notificationIds", "each notificationId is a UUID"))
        })
        .collect::<Result<_, _>>()?;
    let found = cards
        .store
        .resend_notifications(&caller.claims.org_id, &ids, certbound_store::clock::now())
        .await?;
    cards.webhook_work.notify_one();
    Ok(Json(json!({"resent": found})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let waits: Vec<i64> = (1..=12).map(backoff).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(backoff(0), 1);
        assert_eq!(backoff(i64::MAX), 300);
    }

    #[test]
    fn dates_are_imf_fixdates() {
        assert_eq!(http_date(1_764_514_800), "Sun, 30 Nov 2025 15:00:00 GMT");
    }
}
