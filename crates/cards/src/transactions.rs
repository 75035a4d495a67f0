//! The ledger's endpoints (DESIGN.md section 11): postings, the balance and the transaction list.
//! The rules are [`crate::ledger`]'s; the store applies what they decide atomically
//! ([`certbound_store::CardsStore::post`]), and a decision that lost a race is made again on
//! what the card holds now.

// `serde_json::Value["key"]` answers `Null` for a missing key or a non-object; it never panics.
#![allow(clippy::indexing_slicing)]

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse as _, Response};
use certbound_store::{AuthorisationChange, CardRecord, Posted, Posting, TransactionLine};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::body::parse;
use crate::handlers::{
    ATTEMPTS, card_token, details, kept_changing, owned, product, rfc3339, stored_status,
};
use crate::idempotency::idempotent;
use crate::ledger::{
    self, Decided, Direction, Purse, StatusCode as LineStatus, TransactionType, TypeCode,
    amount_json,
};
use crate::model::{PostTransaction, PublicToken};
use crate::{Cards, CardsError, webhooks};

/// The card's balance as the API shows it (`GET .../balance`, and inside `GET /cards/{token}`).
/// Its fields are in the order the answer has always had (serde_json's maps sort their keys).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Balance<'a> {
    available_balance: Value,
    card_balance: Value,
    currency_code: &'a str,
    pending_amount: Value,
}

impl<'a> Balance<'a> {
    /// The balance of `card`, whose details name `currency`.
    pub(crate) fn of(card: &CardRecord, currency: &'a str) -> Self {
        Self {
            available_balance: amount_json(card.balance_minor + card.pending_minor, currency),
            card_balance: amount_json(card.balance_minor, currency),
            currency_code: currency,
            pending_amount: amount_json(card.pending_minor, currency),
        }
    }
}

/// A card's money and limits, for the ledger's rules.
pub(crate) fn purse_of(cards: &Cards, card: &CardRecord) -> Result<Purse, CardsError> {
    let details = details(card)?;
    let currency = details["currencyCode"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let max_balance = details["cardProduct"]
        .as_str()
        .and_then(|code| product(cards, code))
        .map_or(
            ledger::DEFAULT_MAX_BALANCE * ledger::scale(&currency),
            |product| product.max_balance,
        );
    Ok(Purse {
        status: stored_status(card)?,
        currency,
        balance: card.balance_minor,
        pending: card.pending_minor,
        max_balance,
        replaced_by: details["replacedBy"].as_str().map(str::to_owned),
    })
}

/// What a `POST .../transactions` asks for, read and checked before anything is decided.
#[derive(Clone, Debug)]
struct Act {
    kind: TransactionType,
    direction: Direction,
    amount: i64,
    currency: String,
    to: Option<PublicToken>,
    fee: Option<i64>,
    fee_type: Option<String>,
    note: Option<String>,
    description: Option<String>,
}

impl Act {
    fn read(request: PostTransaction, from: &PublicToken) -> Result<Self, CardsError> {
        let currency = request.currency_code.trim().to_ascii_uppercase();
        if currency.len() != 3 || !currency.bytes().all(|byte| byte.is_ascii_uppercase()) {
            return Err(CardsError::field(
                "currencyCode",
                "currencyCode must be an ISO 4217 code such as GBP",
            ));
        }
        let (direction, amount) = match request.transaction_type {
            TransactionType::BalanceAdjustment => {
                ledger::parse_signed_amount(&request.amount, &currency)
            }
            TransactionType::Load => {
                ledger::parse_amount(&request.amount, &currency).map(|a| (Direction::Credit, a))
            }
            TransactionType::Fee | TransactionType::TransferFunds | TransactionType::Unload => {
                ledger::parse_amount(&request.amount, &currency).map(|a| (Direction::Debit, a))
            }
        }
        .map_err(|message| CardsError::field("amount", format!("amount {message}")))?;
        let to = match (
            &request.transaction_type,
            request.to_public_token.as_deref(),
        ) {
            (TransactionType::TransferFunds, Some(to)) => {
                let to = PublicToken::parse(to.trim()).ok_or_else(|| {
                    CardsError::field("toPublicToken", "toPublicToken must be a card's 9 digits")
                })?;
                if &to == from {
                    return Err(CardsError::field(
                        "toPublicToken",
                        "toPublicToken must be another card",
                    ));
                }
                Some(to)
            }
            (TransactionType::TransferFunds, None) => {
                return Err(CardsError::field(
                    "toPublicToken",
                    "TransferFunds needs toPublicToken: the card that receives",
                ));
            }
            (_, Some(_)) => {
                return Err(CardsError::field(
                    "toPublicToken",
                    "only TransferFunds takes toPublicToken",
                ));
            }
            (_, None) => None,
        };
        let fee = match (&request.transaction_type, &request.fee_amount) {
            (_, None) => None,
            (TransactionType::Fee | TransactionType::BalanceAdjustment, Some(_)) => {
                return Err(CardsError::field(
                    "feeAmount",
                    "feeAmount charges a fee with a Load, Unload or TransferFunds; a Fee's amount is the fee",
                ));
            }
            (_, Some(fee)) => Some(ledger::parse_amount(fee, &currency).map_err(|message| {
                CardsError::field("feeAmount", format!("feeAmount {message}"))
            })?),
        };
        Ok(Self {
            kind: request.transaction_type,
            direction,
            amount,
            currency,
            to,
            fee,
            fee_type: request.fee_type,
            note: request.user,
            description: request.description,
        })
    }

    /// The type code and ISO 8583 processing code of the act's main line.
    fn codes(&self) -> (TypeCode, &'static str) {
        match (self.kind, self.direction) {
            (TransactionType::BalanceAdjustment, Direction::Credit) => {
                (TypeCode::BalanceAdjustment, "22")
            }
            (TransactionType::BalanceAdjustment, Direction::Debit) => {
                (TypeCode::BalanceAdjustment, "02")
            }
            (TransactionType::Fee, _) => (TypeCode::Fee, "19"),
            (TransactionType::Load, _) => (TypeCode::Load, "28"),
            (TransactionType::TransferFunds, _) => (TypeCode::Unload, "40"),
            (TransactionType::Unload, _) => (TypeCode::Unload, "01"),
        }
    }
}

/// A settled line for `card`, linked to nothing (its number and balances are the store's to
/// fill): the one constructor of the ledger's, the network's and the lifecycle's lines.
#[allow(clippy::too_many_arguments)]
pub(crate) fn line(
    card: &CardRecord,
    leg: i64,
    kind: &str,
    type_code: TypeCode,
    processing_code: &str,
    amount: i64,
    currency: &str,
    description: String,
    note: Option<String>,
    request_id: Option<&str>,
    now: i64,
) -> TransactionLine {
    TransactionLine {
        id: uuid::Uuid::new_v4().to_string(),
        public_token: card.public_token.clone(),
        organisation_id: card.organisation_id.clone(),
        line: 0,
        type_code: type_code.code().to_owned(),
        status_code: LineStatus::Settled.code().to_owned(),
        transaction_type: kind.to_owned(),
        amount_minor: amount,
        currency: currency.to_owned(),
        actual_balance: 0,
        available_balance: 0,
        description,
        note,
        link: None,
        processing_code: processing_code.to_owned(),
        request_id: request_id.map(str::to_owned),
        leg,
        created_at: now,
    }
}

/// A decided posting for `card`: applied only while the card has the status it was decided on,
/// and a credit only while the card is unchanged (so no money lands on a card being replaced).
pub(crate) fn posting(card: &CardRecord, decided: Decided, line: TransactionLine) -> Posting {
    Posting {
        expected_status: card.status_code.clone(),
        expected_version: (decided.balance_delta > 0).then_some(card.version),
        balance_delta: decided.balance_delta,
        pending_delta: decided.pending_delta,
        available_floor: decided.available_floor,
        balance_ceiling: decided.balance_ceiling,
        line,
    }
}

/// Decides the act on what the cards hold now: its postings, in leg order, and the webhook
/// targets of the cards it touches.
async fn decide(
    cards: &Cards,
    caller: &Caller,
    from: &PublicToken,
    act: &Act,
    request_id: Option<&str>,
    now: i64,
) -> Result<(Vec<Posting>, HashMap<String, String>), CardsError> {
    let card = owned(cards, caller, from).await?;
    let mut purse = purse_of(cards, &card)?;
    let decided = ledger::decide(&purse, act.direction, act.amount, &act.currency)?;
    let (type_code, processing_code) = act.codes();
    let signed = decided.balance_delta;
    let description = act.description.clone().unwrap_or_else(|| match &act.to {
        Some(to) => format!("Transfer to card {to}"),
        None => act.kind.name().to_owned(),
    });
    let mut main = line(
        &card,
        0,
        act.kind.name(),
        type_code,
        processing_code,
        signed,
        &act.currency,
        description,
        act.note.clone(),
        request_id,
        now,
    );
    purse = ledger::apply(&purse, &decided).unwrap_or(purse);
    let mut postings = Vec::new();
    let mut touched = vec![card.clone()];
    if let Some(to) = &act.to {
        let target = owned(cards, caller, to)
            .await
            .map_err(|_| CardsError::Unprocessable {
                field: "toPublicToken".into(),
                message: format!("card {to} does not exist"),
            })?;
        let target_purse = purse_of(cards, &target)?;
        let credit = ledger::decide(&target_purse, Direction::Credit, act.amount, &act.currency)
            .map_err(|error| match error {
                CardsError::Unprocessable { message, .. } => CardsError::Unprocessable {
                    field: "toPublicToken".into(),
                    message: format!("card {to} cannot receive it: {message}"),
                },
                other => other,
            })?;
        let mut received = line(
            &target,
            1,
            act.kind.name(),
            TypeCode::Load,
            processing_code,
            act.amount,
            &act.currency,
            format!("Transfer from card {from}"),
            act.note.clone(),
            request_id,
            now,
        );
        received.link = Some(main.id.clone());
        main.link = Some(received.id.clone());
        postings.push(posting(&card, decided, main));
        postings.push(posting(&target, credit, received));
        touched.push(target);
    } else {
        postings.push(posting(&card, decided, main));
    }
    if let Some(fee) = act.fee {
        let charged =
            ledger::decide(&purse, Direction::Debit, fee, &act.currency).map_err(|error| {
                match error {
                    CardsError::Unprocessable { message, .. } => CardsError::Unprocessable {
                        field: "feeAmount".into(),
                        message: format!("the fee cannot be charged: {message}"),
                    },
                    other => other,
                }
            })?;
        let description = act
            .fee_type
            .clone()
            .map_or_else(|| "Fee".to_owned(), |kind| format!("Fee: {kind}"));
        let mut fee_line = line(
            &card,
            2,
            TransactionType::Fee.name(),
            TypeCode::Fee,
            "19",
            -fee,
            &act.currency,
            description,
            act.note.clone(),
            request_id,
            now,
        );
        fee_line.link = postings.first().map(|first| first.line.id.clone());
        postings.push(posting(&card, charged, fee_line));
    }
    let touched: Vec<&CardRecord> = touched.iter().collect();
    Ok((postings, webhooks::targets_of(cards, &touched).await?))
}

/// Posts the act, deciding again whenever another act changed a card first.
async fn post_act(
    cards: &Cards,
    caller: &Caller,
    from: &PublicToken,
    act: &Act,
    request_id: Option<&str>,
) -> Result<Vec<TransactionLine>, CardsError> {
    for _ in 0..ATTEMPTS {
        let now = certbound_store::clock::now();
        let (postings, targets) = decide(cards, caller, from, act, request_id, now).await?;
        match post_announced(cards, &postings, None, &targets, None).await? {
            Posted::Done(lines) => return Ok(lines),
            Posted::Refused(_) => continue,
        }
    }
    Err(kept_changing())
}

/// The answer to a posting: its lines, and the balance of the card it was asked on.
fn answer(from: &PublicToken, lines: &[TransactionLine]) -> Value {
    let transaction: Vec<Value> = lines
        .iter()
        .map(|line| {
            json!({
                "transactionType": line.transaction_type,
                "transactionId": line.id,
                "amount": amount_json(line.amount_minor, &line.currency),
                "currencyCode": line.currency,
                "publicToken": line.public_token,
            })
        })
        .collect();
    let balance = lines
        .iter()
        .rev()
        .find(|line| line.public_token == from.as_str())
        .map_or(Value::Null, balance_after);
    json!({"transaction": transaction, "balance": balance})
}

/// A card's balance as a line left it, as answers carry it.
pub(crate) fn balance_after(line: &TransactionLine) -> Value {
    json!({
        "currencyCode": line.currency,
        "cardBalance": amount_json(line.actual_balance, &line.currency),
        "pendingAmount": amount_json(line.available_balance - line.actual_balance, &line.currency),
        "availableBalance": amount_json(line.available_balance, &line.currency),
    })
}

/// Posts an act with event 112 for each line of a card that has a webhook (`targets`), in the
/// same transaction, and wakes the delivery worker when it wrote any: the one way the ledger,
/// the network and the life cycle post.
pub(crate) async fn post_announced(
    cards: &Cards,
    postings: &[Posting],
    authorisation: Option<&AuthorisationChange>,
    targets: &HashMap<String, String>,
    response_code: Option<&str>,
) -> Result<Posted, CardsError> {
    let announce = |lines: &[TransactionLine]| {
        webhooks::transaction_confirmations(targets, lines, response_code)
    };
    let posted = cards
        .store
        .post_with(postings, authorisation, Some(&announce))
        .await?;
    if matches!(posted, Posted::Done(_)) && !targets.is_empty() {
        cards.webhook_work.notify_one();
    }
    Ok(posted)
}

/// `POST /cards/{publicToken}/transactions`.
pub(crate) async fn post_transaction(
    State(cards): State<Arc<Cards>>,
    caller: Caller,
    Path(public_token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, CardsError> {
    caller.require("cards.write")?;
    let from = card_token(&public_token)?;
    let request: PostTransaction = parse(&body)?;
    let act = Act::read(request, &from)?;
    let endpoint = format!("POST /cards/{from}/transactions");
    let (shared, who, from, act) = (&cards, &caller, &from, &act);
    idempotent(&cards, &caller, &headers, endpoint, &body, |claim| async move {
        let (cards, caller) = (shared, who);
        if let Some(claim) = &claim {
            // A retry that took over the claim of a request that died after posting: the
            // posting is there, and is answered, never made twice.
            let posted = cards.store.transaction_lines_of_request(claim).await?;
            if !posted.is_empty() {
                return Ok((StatusCode::OK, Some(answer(from, &posted))));
            }
        }
        let lines = post_act(cards, caller, from, act, claim.as_deref()).await?;
        for line in &lines {
            tracing::info!(public_token = %line.public_token, transaction_id = %line.id, kind = %line.transaction_type, amount_minor = line.amount_minor, "card transaction posted");
            // Best effort: the posting is made; a lost record is counted and reported.
            let _ = cards.audit.record(
                "cards",
                "card_transaction",
                line.created_at,
                json!({"public_token": line.public_token, "organisation_id": line.organisation_id,
                       "transaction_id": line.id, "type": line.type_code, "amount_minor": line.amount_minor,
                       "currency": line.currency, "client_id": caller.claims.client_id.to_string()}),
            );
        }
        Ok((StatusCode::OK, Some(answer(from, &lines))))
    })
    .await
}

/// `GET /cards/{publicToken}/balance`.
pub(crate) async fn show_balance(
    State(cards): State<Arc<Cards>>,
    caller: Caller,
    Path(public_token): Path<String>,
) -> Result<Response, CardsError> {
    caller.require("cards.read")?;
    let card = owned(&cards, &caller, &card_token(&public_token)?).await?;
    let currency = crate::handlers::ShownDetails::of(&card)?
        .currency()
        .into_owned();
    Ok(Json(Balance::of(&card, &currency)).into_response())
}

/// The query of `GET .../transactions`.
#[derive(Debug, Deserialize)]
pub(crate) struct Period {
    #[serde(rename = "fromDate")]
    from_date: Option<String>,
    #[serde(rename = "toDate")]
    to_date: Option<String>,
}

/// The first second of `YYYYMMDD` (UTC).
fn day_start(field: &str, text: &str) -> Result<i64, CardsError> {
    let format = time::macros::format_description!("[year][month][day]");
    time::Date::parse(text.trim(), &format)
        .map(|date| date.midnight().assume_utc().unix_timestamp())
        .map_err(|_| CardsError::field(field, format!("{field} must be a date as YYYYMMDD")))
}

/// `GET /cards/{publicToken}/transactions?fromDate=YYYYMMDD&toDate=YYYYMMDD` (both optional:
/// from the first line, to today).
pub(crate) async fn list_transactions(
    State(cards): State<Arc<Cards>>,
    caller: Caller,
    Path(public_token): Path<String>,
    Query(period): Query<Period>,
) -> Result<Json<Value>, CardsError> {
    caller.require("cards.read")?;
    let from = period
        .from_date
        .as_deref()
        .map(|text| day_start("fromDate", text))
        .transpose()?
        .unwrap_or(0);
    let to = period
        .to_date
        .as_deref()
        .map(|text| day_start("toDate", text).map(|start| start + 86_399))
        .transpose()?
        .unwrap_or(i64::MAX);
    if from > to {
        return Err(CardsError::field(
            "fromDate",
            "fromDate must not be after toDate",
        ));
    }
    let card = owned(&cards, &caller, &card_token(&public_token)?).await?;
    let lines = cards
        .store
        .transaction_lines(&card.public_token, from, to)
        .await?;
    let listed: Vec<Value> = lines.iter().map(line_json).collect();
    Ok(Json(Value::Array(listed)))
}

/// One line of the transaction list, in Thredd's names.
pub(crate) fn line_json(line: &TransactionLine) -> Value {
    let type_code = TypeCode::parse(&line.type_code);
    let status = LineStatus::parse(&line.status_code);
    let amount = amount_json(line.amount_minor, &line.currency);
    json!({
        "id": line.id,
        "description": line.description,
        "dateTime": rfc3339(line.created_at),
        "type": {"code": line.type_code, "description": type_code.map(TypeCode::description)},
        "status": {"code": line.status_code, "description": status.map(LineStatus::description)},
        "amount": {
            "billingValue": amount,
            "billingCurrency": line.currency,
            "transactionValue": amount,
            "transactionCurrency": line.currency,
            "actualBalance": amount_json(line.actual_balance, &line.currency),
            "availableBalance": amount_json(line.available_balance, &line.currency),
        },
        "processingCode": line.processing_code,
        "transactionLink": line.link,
        "note": line.note,
    })
}
