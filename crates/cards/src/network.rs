//! The sandbox's simulated card network (DESIGN.md section 11; certbound's own, on by default,
//! `[sandbox] card_network = false` turns it off): a purchase is authorised (a hold on the
//! available balance, or a decline with the ISO 8583 code a real network gives), then cleared
//! (the hold becomes a debit, whatever the balance then) or reversed (the hold is released).
//! Every step is a line of the card's transaction list with the balances it left; an
//! authorisation moves from `Pending` once, in the same transaction as the money it moves.

// `serde_json::Value["key"]` answers `Null` for a missing key or a non-object; it never panics.
#![allow(clippy::indexing_slicing)]

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use certbound_store::{
    AuthorisationChange, AuthorisationRecord, CardRecord, Posted, TransactionLine,
};
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::body::parse;
use crate::handlers::{ATTEMPTS, card_token, details, kept_changing, owned, parse_date};
use crate::idempotency::idempotent;
use crate::ledger::{self, ResponseCode, StatusCode as LineStatus, TypeCode};
use crate::model::{Authorise, Clear, Merchant, PublicToken};
use crate::transactions::{balance_after, post_announced, posting, purse_of};
use crate::{Cards, CardsError, webhooks};

/// A presentment may exceed its authorisation (a tip, a fuel pump's final amount), up to this
/// many times it.
const MAX_PRESENTED: i64 = 2;

/// The states of an authorisation.
const PENDING: &str = "Pending";
const CLEARED: &str = "Cleared";
const REVERSED: &str = "Reversed";
const DECLINED: &str = "Declined";

/// Whether the card's expiry date is before `now`'s day.
fn expired(card: &CardRecord, now: i64) -> Result<bool, CardsError> {
    Ok(details(card)?["expiryDate"]
        .as_str()
        .and_then(parse_date)
        .is_some_and(|expiry| expiry < crate::handlers::date(now)))
}

/// A line of the network's (processing code 00) with its status and the authorisation it
/// belongs to.
#[allow(clippy::too_many_arguments)]
fn step_line(
    card: &CardRecord,
    type_code: TypeCode,
    status: LineStatus,
    amount: i64,
    currency: &str,
    description: String,
    link: Option<String>,
    request_id: Option<&str>,
    now: i64,
) -> TransactionLine {
    let mut line = crate::transactions::line(
        card,
        0,
        type_code.description(),
        type_code,
        "00",
        amount,
        currency,
        description,
        None,
        request_id,
        now,
    );
    line.status_code = status.code().to_owned();
    line.link = link;
    line
}

fn merchant_name(merchant: &Merchant) -> String {
    merchant
        .name
        .clone()
        .unwrap_or_else(|| "a merchant".to_owned())
}

/// `POST /sandbox/cards/{publicToken}/authorisations`.
pub(crate) async fn authorise(
    State(cards): State<Arc<Cards>>,
    caller: Caller,
    Path(public_token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, CardsError> {
    caller.require("cards.write")?;
    let token = card_token(&public_token)?;
    let request: Authorise = parse(&body)?;
    let currency = request.currency_code.trim().to_ascii_uppercase();
    let amount = ledger::parse_amount(&request.amount, &currency)
        .map_err(|message| CardsError::field("amount", format!("amount {message}")))?;
    let merchant = request.merchant.unwrap_or_default();
    merchant.check()?;
    let endpoint = format!("POST /sandbox/cards/{token}/authorisations");
    let (shared, who, token_ref, merchant_ref) = (&cards, &caller, &token, &merchant);
    idempotent(&cards, &caller, &headers, endpoint, &body, |claim| async move {
        let (cards, caller) = (shared, who);
        if let Some((record, line)) = already_posted(cards, claim.as_deref()).await? {
            // A retry that took over the claim of a request that died after authorising.
            return Ok((StatusCode::CREATED, Some(authorisation_answer(&record, &line))));
        }
        for _ in 0..ATTEMPTS {
            let card = owned(cards, caller, token_ref).await?;
            let purse = purse_of(cards, &card)?;
            ledger::same_currency(&purse, &currency).map_err(|_| CardsError::Unprocessable {
                field: "currencyCode".into(),
                message: format!(
                    "the card's currency is {}, not {currency}: the sandbox's network converts nothing",
                    purse.currency
                ),
            })?;
            let now = certbound_store::clock::now();
            let code = ledger::authorise(&purse, amount, expired(&card, now)?);
            let approved = code == ResponseCode::Approved;
            let id = uuid::Uuid::new_v4().to_string();
            let (decided, status, state) = if approved {
                (ledger::hold(amount), LineStatus::Accepted, PENDING)
            } else {
                (ledger::nothing(), LineStatus::Declined, DECLINED)
            };
            let description = format!(
                "Authorisation at {}: {}",
                merchant_name(merchant_ref),
                code.description()
            );
            let line = step_line(
                &card,
                TypeCode::Authorisation,
                status,
                -amount,
                &currency,
                description,
                Some(id.clone()),
                claim.as_deref(),
                now,
            );
            let auth_code = approved.then(|| {
                let digits: u32 = u32::from_be_bytes(*uuid::Uuid::new_v4().as_bytes().first_chunk().unwrap_or(&[0; 4]));
                format!("{:06}", digits % 1_000_000)
            });
            let record = AuthorisationRecord {
                id: id.clone(),
                public_token: card.public_token.clone(),
                organisation_id: card.organisation_id.clone(),
                amount_minor: amount,
                currency: currency.clone(),
                merchant: serde_json::to_string(merchant_ref).unwrap_or_default(),
                state: state.to_owned(),
                response_code: code.code().to_owned(),
                auth_code: auth_code.clone(),
                created_at: now,
                updated_at: now,
            };
            let postings = [posting(&card, decided, line)];
            let targets = webhooks::targets_of(cards, &[&card]).await?;
            let insert = AuthorisationChange::Insert(record.clone());
            match post_announced(cards, &postings, Some(&insert), &targets, Some(code.code()))
                .await?
            {
                Posted::Done(lines) => {
                    let line = lines.first().ok_or_else(|| CardsError::Internal("no line posted".into()))?;
                    tracing::info!(public_token = %card.public_token, authorisation_id = %id, response_code = code.code(), "sandbox authorisation");
                    let _ = cards.audit.record(
                        "cards",
                        "card_authorisation",
                        now,
                        json!({"public_token": card.public_token, "organisation_id": card.organisation_id,
                               "authorisation_id": id, "response_code": code.code(), "amount_minor": amount}),
                    );
                    return Ok((StatusCode::CREATED, Some(authorisation_answer(&record, line))));
                }
                Posted::Refused(_) => continue,
            }
        }
        Err(kept_changing())
    })
    .await
}

/// The line a request with this claim posted, and its authorisation, if it posted one.
async fn already_posted(
    cards: &Cards,
    claim: Option<&str>,
) -> Result<Option<(AuthorisationRecord, TransactionLine)>, CardsError> {
    let Some(claim) = claim else { return Ok(None) };
    let Some(line) = cards
        .store
        .transaction_lines_of_request(claim)
        .await?
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    let id = line.link.clone().unwrap_or_default();
    let record = cards
        .store
        .authorisation(&id)
        .await?
        .ok_or_else(|| CardsError::Internal(format!("no authorisation {id} for its line")))?;
    Ok(Some((record, line)))
}

/// The answer to an authorisation.
fn authorisation_answer(record: &AuthorisationRecord, line: &TransactionLine) -> Value {
    let code = ResponseCode::parse(&record.response_code);
    json!({
        "authorisationId": record.id,
        "approved": code == Some(ResponseCode::Approved),
        "responseCode": record.response_code,
        "responseDescription": code.map(ResponseCode::description),
        "authCode": record.auth_code,
        "transactionId": line.id,
        "balance": balance_after(line),
    })
}

/// The answer to a clearing or a reversal.
fn settled_answer(record: &AuthorisationRecord, line: &TransactionLine) -> Value {
    json!({
        "authorisationId": record.id,
        "state": record.state,
        "transactionId": line.id,
        "balance": balance_after(line),
    })
}

/// What happens to a pending authorisation.
#[derive(Clone, Copy)]
enum Settle {
    Clear,
    Reverse,
}

async fn settle(
    cards: &Cards,
    caller: &Caller,
    token: &PublicToken,
    id: &str,
    how: Settle,
    presented: Option<&Value>,
    request_id: Option<&str>,
) -> Result<(StatusCode, Option<Value>), CardsError> {
    if let Some((record, line)) = already_posted(cards, request_id).await? {
        // A retry that took over the claim of a request that died after settling.
        return Ok((StatusCode::OK, Some(settled_answer(&record, &line))));
    }
    for _ in 0..ATTEMPTS {
        let card = owned(cards, caller, token).await?;
        let authorisation = cards
            .store
            .authorisation(id)
            .await?
            .filter(|record| record.public_token == card.public_token)
            .ok_or_else(|| {
                CardsError::NotFound(format!(
                    "authorisation {id} does not exist for card {token}"
                ))
            })?;
        if authorisation.state != PENDING {
            return Err(CardsError::Conflict(format!(
                "authorisation {id} is {}: only a pending one can be cleared or reversed",
                authorisation.state
            )));
        }
        let merchant: Merchant = serde_json::from_str(&authorisation.merchant).unwrap_or_default();
        let now = certbound_store::clock::now();
        let amount = authorisation.amount_minor;
        let presented = match presented {
            Some(value) => ledger::parse_amount(value, &authorisation.currency)
                .map_err(|message| CardsError::field("amount", format!("amount {message}")))?,
            None => amount,
        };
        if presented > amount.saturating_mul(MAX_PRESENTED) {
            return Err(CardsError::Unprocessable {
                field: "amount".into(),
                message: format!(
                    "a presentment may be at most {MAX_PRESENTED} times the authorised {}",
                    ledger::format_major(amount, &authorisation.currency)
                ),
            });
        }
        let (decided, type_code, status, signed, to, what) = match how {
            Settle::Clear => (
                ledger::clear(amount, presented),
                TypeCode::Presentment,
                LineStatus::Settled,
                -presented,
                CLEARED,
                "Presentment",
            ),
            Settle::Reverse => (
                ledger::release(amount),
                TypeCode::AuthorisationReversal,
                LineStatus::Reversed,
                amount,
                REVERSED,
                "Authorisation reversal",
            ),
        };
        let line = step_line(
            &card,
            type_code,
            status,
            signed,
            &authorisation.currency,
            format!("{what} at {}", merchant_name(&merchant)),
            Some(authorisation.id.clone()),
            request_id,
            now,
        );
        let change = AuthorisationChange::Transition {
            id: authorisation.id.clone(),
            from: PENDING.to_owned(),
            to: to.to_owned(),
            now,
        };
        let targets = webhooks::targets_of(cards, &[&card]).await?;
        let postings = [posting(&card, decided, line)];
        match post_announced(cards, &postings, Some(&change), &targets, None).await? {
            Posted::Done(lines) => {
                let line = lines
                    .first()
                    .ok_or_else(|| CardsError::Internal("no line posted".into()))?;
                let _ = cards.audit.record(
                    "cards",
                    "card_authorisation_settled",
                    now,
                    json!({"public_token": card.public_token, "organisation_id": card.organisation_id,
                           "authorisation_id": authorisation.id, "state": to}),
                );
                let record = AuthorisationRecord {
                    state: to.to_owned(),
                    ..authorisation
                };
                return Ok((StatusCode::OK, Some(settled_answer(&record, line))));
            }
            Posted::Refused(_) => continue,
        }
    }
    Err(kept_changing())
}

async fn settle_call(
    cards: Arc<Cards>,
    caller: Caller,
    public_token: String,
    id: String,
    headers: HeaderMap,
    body: Bytes,
    how: Settle,
) -> Result<Response, CardsError> {
    caller.require("cards.write")?;
    let token = card_token(&public_token)?;
    let id = uuid::Uuid::parse_str(&id)
        .map_err(|_| CardsError::NotFound("no authorisation has this id: it is a UUID".into()))?
        .to_string();
    let verb = match how {
        Settle::Clear => "clear",
        Settle::Reverse => "reverse",
    };
    let presented = match how {
        Settle::Clear if !body.iter().all(u8::is_ascii_whitespace) => parse::<Clear>(&body)?.amount,
        _ => None,
    };
    let endpoint = format!("POST /sandbox/cards/{token}/authorisations/{id}/{verb}");
    let (shared, who, token_ref, id_ref, presented_ref) =
        (&cards, &caller, &token, &id, &presented);
    idempotent(
        &cards,
        &caller,
        &headers,
        endpoint,
        &body,
        |claim| async move {
            settle(
                shared,
                who,
                token_ref,
                id_ref,
                how,
                presented_ref.as_ref(),
                claim.as_deref(),
            )
            .await
        },
    )
    .await
}

/// `POST /sandbox/cards/{publicToken}/authorisations/{id}/clear`: a presentment.
pub(crate) async fn clear(
    State(cards): State<Arc<Cards>>,
    caller: Caller,
    Path((public_token, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, CardsError> {
    settle_call(
        cards,
        caller,
        public_token,
        id,
        headers,
        body,
        Settle::Clear,
    )
    .await
}

/// `POST /sandbox/cards/{publicToken}/authorisations/{id}/reverse`.
pub(crate) async fn reverse(
    State(cards): State<Arc<Cards>>,
    caller: Caller,
    Path((public_token, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, CardsError> {
    settle_call(
        cards,
        caller,
        public_token,
        id,
        headers,
        body,
        Settle::Reverse,
    )
    .await
}
