//! A card's life after issue (DESIGN.md section 11): replacement, renewal and conversion from
//! virtual to physical, following Thredd's documented behaviour where it is clear; where it is
//! not, the choices are these (and the README's):
//!
//! - **Replace** issues a new card (new publicToken, PAN and CVV; same holder, address, product
//!   and type) and stops the old one at once: it is blocked (`05`, "Replaced by card ...") unless
//!   its status is already terminal (a lost or stolen card stays as it is), and it can never
//!   become active again; it still pays out (an unload, a transfer, a pending presentment).
//!   `moveBalance` moves the available balance to the new card in the same act as two lines;
//!   holds stay with the old card and settle there. `moveExpiryDate` keeps the old expiry;
//!   `expiryDate` (`YYYY-MM`) sets one; otherwise the default. A closed card cannot be replaced,
//!   nor a card replaced twice (409). With an `IdempotencyKey` a replacement cut short by a crash
//!   is completed by the retry, never repeated.
//! - **Renew**: `Renew` (the default) gives a new expiry date and CVV, same PAN; `Migrate` a new
//!   PAN and CVV, same expiry; `RenewWithSameExpiry` a new CVV alone. Not on a card in a terminal
//!   status or replaced (409).
//! - **Convert** (`PATCH .../card-type`, POST accepted): virtual to physical only, only from an
//!   active card; the expiry stays unless `newExpiryDate` is given.

// `serde_json::Value["key"]` answers `Null` for a missing key or a non-object; it never panics.
#![allow(clippy::indexing_slicing)]

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use certbound_store::{CardRecord, Posted};

use crate::transactions::posting;
use certbound_trust::Secret;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::body::parse;
use crate::handlers::{
    ATTEMPTS, Issue, card_token, change_card_announcing, created, date, default_expiry, details,
    iso, issue_card, owned, parse_date, product, rfc3339, seal, stored_status,
};
use crate::idempotency::idempotent;
use crate::ledger::{self, Direction, TypeCode};
use crate::model::{
    self, CardStatus, CardType, ConvertCard, PublicToken, RenewCard, RenewStep, ReplaceCard,
};
use crate::{Cards, CardsError, webhooks};

/// The card that replaced this one, if any.
pub(crate) fn replaced_by(card: &CardRecord) -> Option<String> {
    let details: Value = serde_json::from_str(&card.details).ok()?;
    details["replacedBy"].as_str().map(str::to_owned)
}

/// A body that may be empty (`{}` then).
fn optional_body<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, CardsError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse(body)
    }
}

/// The last day of the month `YYYY-MM`, if it is one and is after `today`.
fn end_of_month(text: &str, today: time::Date) -> Result<time::Date, CardsError> {
    let refuse = || CardsError::field("expiryDate", "expiryDate must be a future month, YYYY-MM");
    let (year, month) = text.trim().split_once('-').ok_or_else(refuse)?;
    let year: i32 = year.parse().map_err(|_| refuse())?;
    let month = month
        .parse::<u8>()
        .ok()
        .and_then(|month| time::Month::try_from(month).ok())
        .ok_or_else(refuse)?;
    let day = time::util::days_in_month(month, year);
    let date = time::Date::from_calendar_date(year, month, day).map_err(|_| refuse())?;
    if date <= today {
        return Err(refuse());
    }
    Ok(date)
}

/// How long a replacement may take between naming its new card on the old one and issuing it,
/// seconds: a mark older than this whose card was never issued (its request died, and no retry
/// with its key came) no longer stands in the way of a new replacement.
const REPLACING: i64 = 60;

/// `POST /cards/{publicToken}/replace`.
///
/// The old card is marked first, in one conditional write, with the public token the new card
/// will have: of two replacements at once exactly one marks it (the other gets 409), so one card
/// is issued. Then the new card is issued under that token, then the balance moved.
pub(crate) async fn replace(
    State(cards): State<Arc<Cards>>,
    caller: Caller,
    Path(public_token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, CardsError> {
    caller.require("cards.write")?;
    let old_token = card_token(&public_token)?;
    let request: ReplaceCard = optional_body(&body)?;
    let now = certbound_store::clock::now();
    let today = date(now);
    let chosen_expiry = request
        .expiry_date
        .as_deref()
        .map(|text| end_of_month(text, today))
        .transpose()?;
    let endpoint = format!("POST /cards/{old_token}/replace");
    let (shared, who, old_ref, request_ref) = (&cards, &caller, &old_token, &request);
    idempotent(&cards, &caller, &headers, endpoint, &body, |claim| async move {
        let (cards, caller) = (shared, who);
        let old = owned(cards, caller, old_ref).await?;
        let old_details = details(&old)?;
        let ours = claim.is_some() && old_details["replacingClaim"].as_str() == claim.as_deref();
        let new_token = match replaced_by(&old) {
            // A request with this key marked the card and died: finish what it began.
            Some(by) if ours => PublicToken::parse(&by)
                .ok_or_else(|| CardsError::Internal("stored token".into()))?,
            _ => {
                if stored_status(&old)? == CardStatus::Closed {
                    return Err(CardsError::Conflict(
                        "the card is Closed (46): a closed card cannot be replaced".into(),
                    ));
                }
                let dangling = match replaced_by(&old) {
                    Some(by) => {
                        let issued = cards.store.card(&by).await?.is_some();
                        let since = old_details["replacingSince"].as_i64().unwrap_or(0);
                        if issued || now - since <= REPLACING {
                            return Err(CardsError::Conflict(format!(
                                "the card was replaced already, by card {by}"
                            )));
                        }
                        Some(by)
                    }
                    None => None,
                };
                let token = PublicToken::generate()?;
                mark_replaced(cards, caller, old_ref, &token, claim.as_deref(), dangling.as_deref())
                    .await?;
                token
            }
        };
        let new_details = match cards.store.card(new_token.as_str()).await? {
            Some(card) if card.organisation_id == old.organisation_id => details(&card)?,
            Some(_) => {
                return Err(CardsError::Conflict(
                    "the replacement's publicToken is taken: retry the request".into(),
                ));
            }
            None => {
                let mut new_details = old_details.clone();
                let product_code = new_details["cardProduct"].as_str().unwrap_or_default().to_owned();
                let product = product(cards, &product_code)
                    .ok_or_else(|| CardsError::Internal(format!("no product {product_code}")))?;
                let expiry = match (chosen_expiry, request_ref.move_expiry_date) {
                    (Some(expiry), _) => expiry,
                    (None, Some(true)) => new_details["expiryDate"]
                        .as_str()
                        .and_then(parse_date)
                        .unwrap_or_else(|| default_expiry(today)),
                    (None, _) => default_expiry(today),
                };
                if let Value::Object(map) = &mut new_details {
                    for made_anew in [
                        "maskedPan",
                        "startDate",
                        "expiryDate",
                        "currencyCode",
                        "replacedBy",
                        "replacingClaim",
                        "replacingSince",
                    ] {
                        map.remove(made_anew);
                    }
                    map.insert("replaces".into(), Value::from(old.public_token.clone()));
                }
                let issue = Issue {
                    product,
                    active: true,
                    expiry,
                    idempotency_id: claim.as_deref(),
                    public_token: Some(&new_token),
                };
                issue_card(cards, caller.tenant(), &issue, new_details, now).await?.1
            }
        };
        if request_ref.move_balance == Some(true) {
            move_balance(cards, caller, old_ref, &new_token, claim.as_deref()).await?;
        }
        tracing::info!(old = %old_ref, new = %new_token, "card replaced");
        let _ = cards.audit.record(
            "cards",
            "card_replaced",
            now,
            json!({"public_token": old_ref.as_str(), "organisation_id": old.organisation_id,
                   "replaced_by": new_token.as_str(), "client_id": caller.claims.client_id.to_string()}),
        );
        Ok((StatusCode::OK, Some(created(new_token.as_str(), &new_details))))
    })
    .await
}

/// Marks the old card replaced by `new` (and by which request, since when) and stops it: blocked
/// (05) unless already terminal; a status change is announced (event 103). Refused (409) if
/// another replacement marked it meanwhile, unless that mark is `dangling` (never issued, stale).
async fn mark_replaced(
    cards: &Cards,
    caller: &Caller,
    old: &PublicToken,
    new: &PublicToken,
    claim: Option<&str>,
    dangling: Option<&str>,
) -> Result<(), CardsError> {
    let card = owned(cards, caller, old).await?;
    let target = webhooks::target_of(cards, &card).await?;
    let message = format!("Replaced by card {new}");
    let announce = |card: &CardRecord, from: CardStatus, now: i64| {
        if card.status_code == from.code() {
            return Vec::new();
        }
        target
            .iter()
            .map(|url| {
                webhooks::status_change(url, card, from.code(), &card.status_code, &message, now)
            })
            .collect()
    };
    change_card_announcing(
        cards,
        caller,
        old,
        |card, from, now| {
            match replaced_by(card) {
                None => {}
                Some(by) if Some(by.as_str()) == dangling => {}
                Some(by) => {
                    return Err(CardsError::Conflict(format!(
                        "the card was replaced already, by card {by}"
                    )));
                }
            }
            let mut details = details(card)?;
            if let Value::Object(map) = &mut details {
                map.insert("replacedBy".into(), Value::from(new.as_str()));
                map.insert("replacingSince".into(), Value::from(now));
                if let Some(claim) = claim {
                    map.insert("replacingClaim".into(), Value::from(claim));
                }
            }
            card.details = details.to_string();
            if !from.is_terminal() {
                card.status_code = CardStatus::Blocked.code().to_owned();
                card.status_updated = json!({
                    "updated": rfc3339(now),
                    "updatedBy": caller.claims.client_id.to_string(),
                    "description": message,
                })
                .to_string();
            }
            Ok(())
        },
        announce,
    )
    .await?;
    Ok(())
}

/// Moves the old card's available balance to the new one: two lines, one act.
async fn move_balance(
    cards: &Cards,
    caller: &Caller,
    old: &PublicToken,
    new: &PublicToken,
    request_id: Option<&str>,
) -> Result<(), CardsError> {
    if let Some(claim) = request_id
        && !cards
            .store
            .transaction_lines_of_request(claim)
            .await?
            .is_empty()
    {
        return Ok(());
    }
    for _ in 0..ATTEMPTS {
        let from = owned(cards, caller, old).await?;
        let to = owned(cards, caller, new).await?;
        let purse = crate::transactions::purse_of(cards, &from)?;
        let amount = purse.available();
        if amount <= 0 {
            return Ok(());
        }
        let target_purse = crate::transactions::purse_of(cards, &to)?;
        let debit = ledger::decide(&purse, Direction::Debit, amount, &purse.currency)?;
        let credit = ledger::decide(&target_purse, Direction::Credit, amount, &purse.currency)?;
        let now = certbound_store::clock::now();
        let line =
            |card: &CardRecord, leg: i64, code: TypeCode, signed: i64, description: String| {
                crate::transactions::line(
                    card,
                    leg,
                    "TransferFunds",
                    code,
                    "40",
                    signed,
                    &purse.currency,
                    description,
                    None,
                    request_id,
                    now,
                )
            };
        let mut out = line(
            &from,
            0,
            TypeCode::Unload,
            -amount,
            format!("Balance moved to replacement card {new}"),
        );
        let mut into = line(
            &to,
            1,
            TypeCode::Load,
            amount,
            format!("Balance moved from replaced card {old}"),
        );
        out.link = Some(into.id.clone());
        into.link = Some(out.id.clone());
        let postings = [posting(&from, debit, out), posting(&to, credit, into)];
        let targets = webhooks::targets_of(cards, &[&from, &to]).await?;
        match crate::transactions::post_announced(cards, &postings, None, &targets, None).await? {
            Posted::Done(_) => return Ok(()),
            Posted::Refused(_) => continue,
        }
    }
    Err(crate::handlers::kept_changing())
}

/// `POST /cards/{publicToken}/renew` → 204.
pub(crate) async fn renew(
    State(cards): State<Arc<Cards>>,
    caller: Caller,
    Path(public_token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, CardsError> {
    caller.require("cards.write")?;
    let token = card_token(&public_token)?;
    let request: RenewCard = optional_body(&body)?;
    let step = request.renew_step.unwrap_or_default();
    let endpoint = format!("POST /cards/{token}/renew");
    let (shared, who, token_ref) = (&cards, &caller, &token);
    idempotent(&cards, &caller, &headers, endpoint, &body, |_| async move {
        let (cards, caller) = (shared, who);
        change_card_announcing(
            cards,
            caller,
            token_ref,
            |card, status, now| {
                status.accepts_changes()?;
                if let Some(by) = replaced_by(card) {
                    return Err(CardsError::Conflict(format!(
                        "the card was replaced by card {by}: renew that one"
                    )));
                }
                let mut details = details(card)?;
                let cvv = Secret::new(model::random_digits(3)?);
                card.cvv_sealed = seal(cards, token_ref.as_str(), "cvv", &cvv)?;
                match step {
                    RenewStep::Renew => {
                        details["expiryDate"] = Value::from(iso(default_expiry(date(now))));
                    }
                    RenewStep::Migrate => {
                        let code = details["cardProduct"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned();
                        let product = product(cards, &code)
                            .ok_or_else(|| CardsError::Internal(format!("no product {code}")))?;
                        let pan = Secret::new(model::new_pan(product)?);
                        card.pan_sealed = seal(cards, token_ref.as_str(), "pan", &pan)?;
                        details["maskedPan"] = Value::from(model::masked(pan.expose()));
                    }
                    RenewStep::RenewWithSameExpiry => {}
                }
                card.details = details.to_string();
                Ok(())
            },
            |_, _, _| Vec::new(),
        )
        .await?;
        Ok((StatusCode::NO_CONTENT, None))
    })
    .await
}

/// `PATCH /cards/{publicToken}/card-type` (POST accepted): virtual to physical.
pub(crate) async fn convert(
    State(cards): State<Arc<Cards>>,
    caller: Caller,
    Path(public_token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, CardsError> {
    caller.require("cards.write")?;
    let token = card_token(&public_token)?;
    let request: ConvertCard = parse(&body)?;
    if request.card_type != CardType::Physical {
        return Err(CardsError::field(
            "cardType",
            "cardType must be Physical: a card converts from virtual to physical only",
        ));
    }
    let now = certbound_store::clock::now();
    let new_expiry = match (&request.new_expiry_date, request.move_expiry_date) {
        (Some(_), Some(true)) => {
            return Err(CardsError::field(
                "newExpiryDate",
                "give newExpiryDate or moveExpiryDate, not both",
            ));
        }
        (Some(text), _) => Some(
            parse_date(text)
                .filter(|expiry| *expiry > date(now))
                .ok_or_else(|| {
                    CardsError::field(
                        "newExpiryDate",
                        "newExpiryDate must be a future date, YYYY-MM-DD",
                    )
                })?,
        ),
        (None, _) => None,
    };
    let endpoint = format!("PATCH /cards/{token}/card-type");
    let (shared, who, token_ref) = (&cards, &caller, &token);
    idempotent(&cards, &caller, &headers, endpoint, &body, |_| async move {
        let (card, ()) = change_card_announcing(
            shared,
            who,
            token_ref,
            |card, status, _| {
                if status != CardStatus::Active {
                    return Err(CardsError::Conflict(format!(
                        "the card is {} ({}): only an active card converts",
                        status.name(),
                        status.code()
                    )));
                }
                let mut details = details(card)?;
                if details["cardType"] != "Virtual" {
                    return Err(CardsError::Unprocessable {
                        field: "cardType".into(),
                        message: format!(
                            "the card is {}: only a virtual card converts to physical",
                            details["cardType"].as_str().unwrap_or_default()
                        ),
                    });
                }
                details["cardType"] = Value::from("Physical");
                if let Some(expiry) = new_expiry {
                    details["expiryDate"] = Value::from(iso(expiry));
                }
                card.details = details.to_string();
                Ok(())
            },
            |_, _, _| Vec::new(),
        )
        .await?;
        let details = details(&card)?;
        Ok((
            StatusCode::OK,
            Some(json!({
                "publicToken": card.public_token,
                "cardType": details["cardType"],
                "maskedPan": details["maskedPan"],
                "expiryDate": details["expiryDate"],
            })),
        ))
    })
    .await
}
