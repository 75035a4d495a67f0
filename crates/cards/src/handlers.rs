//! The Cards API endpoints: extract, check, call the store, map.

// `serde_json::Value["key"]` answers `Null` for a missing key or a non-object; it never panics.
#![allow(clippy::indexing_slicing)]

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use certbound_store::CardRecord;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::auth::Caller;
use certbound_trust::Secret;

use crate::body::parse;
use crate::idempotency::idempotent;
use crate::model::{
    self, CardStatus, ChangeStatus, CreateCard, CvvStatus, EncryptedRequest, Product, PublicToken,
    SetPin, UpdateCard,
};
use crate::{Cards, CardsError};

pub(crate) fn date(unix: i64) -> time::Date {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map(|at| at.date())
        .unwrap_or(time::Date::MIN)
}

pub(crate) fn iso(date: time::Date) -> String {
    date.format(time::macros::format_description!("[year]-[month]-[day]"))
        .unwrap_or_default()
}

pub(crate) fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// The last day of the month three years from `today`.
pub(crate) fn default_expiry(today: time::Date) -> time::Date {
    let year = today.year() + 3;
    let day = time::util::days_in_month(today.month(), year);
    time::Date::from_calendar_date(year, today.month(), day).unwrap_or(today)
}

pub(crate) fn seal(
    cards: &Cards,
    public_token: &str,
    what: &str,
    value: &Secret,
) -> Result<String, CardsError> {
    cards
        .master
        .seal(
            &crate::sealed_name(public_token, what),
            value.expose().as_bytes(),
        )
        .map_err(|error| CardsError::Internal(error.to_string()))
}

fn open(cards: &Cards, public_token: &str, what: &str, sealed: &str) -> Result<Secret, CardsError> {
    let bytes = cards
        .master
        .open(&crate::sealed_name(public_token, what), sealed)
        .map_err(|error| CardsError::Internal(error.to_string()))?;
    String::from_utf8(bytes.to_vec())
        .map(Secret::new)
        .map_err(|error| CardsError::Internal(error.to_string()))
}

pub(crate) fn product<'a>(cards: &'a Cards, code: &str) -> Option<&'a Product> {
    cards
        .config
        .products
        .iter()
        .find(|product| product.code == code)
}

/// The card a path names, or 404. A malformed token names no card (and is not echoed back).
pub(crate) fn card_token(text: &str) -> Result<PublicToken, CardsError> {
    PublicToken::parse(text)
        .ok_or_else(|| CardsError::NotFound("no card has this publicToken: it is 9 digits".into()))
}

/// The caller's card, or 404 (another tenant's card does not exist for it).
pub(crate) async fn owned(
    cards: &Cards,
    caller: &Caller,
    public_token: &PublicToken,
) -> Result<CardRecord, CardsError> {
    cards
        .store
        .card(public_token.as_str())
        .await?
        .filter(|card| card.organisation_id == caller.claims.org_id)
        .ok_or_else(|| CardsError::NotFound(format!("card {public_token} does not exist")))
}

/// The stored status of a card.
pub(crate) fn stored_status(card: &CardRecord) -> Result<CardStatus, CardsError> {
    CardStatus::parse(&card.status_code)
        .ok_or_else(|| CardsError::Internal("unknown stored status".into()))
}

/// The refusal of a write that lost the race for its card every time it tried (409).
pub(crate) fn kept_changing() -> CardsError {
    CardsError::Conflict("the card kept changing under this request: retry it".into())
}

/// How often a write re-reads a card that another write changed under it before giving up.
pub(crate) const ATTEMPTS: usize = 8;

/// Reads the caller's card, lets `change` decide on it (from its current status, at `now`) and
/// writes it back only if no other write came in between: a write that lost the race reads the
/// card again and decides again, so no write overwrites another's (a PIN set cannot bring back
/// the status a concurrent `Lost` replaced).
async fn change_card<T>(
    cards: &Cards,
    caller: &Caller,
    public_token: &PublicToken,
    change: impl FnMut(&mut CardRecord, CardStatus, i64) -> Result<T, CardsError>,
) -> Result<(CardRecord, T), CardsError> {
    change_card_announcing(cards, caller, public_token, change, |_, _, _| Vec::new()).await
}

/// [`change_card`], writing the notifications `announce` makes of the change (the card as
/// written, its status before, the time) in the same transaction.
pub(crate) async fn change_card_announcing<T>(
    cards: &Cards,
    caller: &Caller,
    public_token: &PublicToken,
    mut change: impl FnMut(&mut CardRecord, CardStatus, i64) -> Result<T, CardsError>,
    announce: impl Fn(&CardRecord, CardStatus, i64) -> Vec<certbound_store::NotificationDraft>,
) -> Result<(CardRecord, T), CardsError> {
    for _ in 0..ATTEMPTS {
        let mut card = owned(cards, caller, public_token).await?;
        let now = certbound_store::clock::now();
        let status = stored_status(&card)?;
        let outcome = change(&mut card, status, now)?;
        card.updated_at = now;
        let notifications = announce(&card, status, now);
        if cards
            .store
            .update_card_announcing(&card, &notifications)
            .await?
        {
            if !notifications.is_empty() {
                cards.webhook_work.notify_one();
            }
            card.version += 1;
            return Ok((card, outcome));
        }
    }
    Err(kept_changing())
}

pub(crate) fn details(card: &CardRecord) -> Result<Value, CardsError> {
    serde_json::from_str(&card.details).map_err(|error| CardsError::Internal(error.to_string()))
}

/// Who a new card belongs to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tenant<'a> {
    /// The organisation.
    pub(crate) organisation_id: &'a str,
    /// The client that asked.
    pub(crate) client_id: &'a str,
}

/// What a new card is.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Issue<'a> {
    /// Its product (BIN, currency).
    pub(crate) product: &'a Product,
    /// Active (00) or awaiting activation (02).
    pub(crate) active: bool,
    /// Its expiry date.
    pub(crate) expiry: time::Date,
    /// The `IdempotencyKey` claim of the request creating it, if any.
    pub(crate) idempotency_id: Option<&'a str>,
    /// The public token it must have (a replacement names its card before issuing it); a fresh
    /// one if `None`.
    pub(crate) public_token: Option<&'a PublicToken>,
}

/// A new card's record (PAN and CVV made and sealed, a fresh public token) and its details.
pub(crate) fn new_card(
    cards: &Cards,
    tenant: Tenant<'_>,
    issue: &Issue<'_>,
    mut details: Value,
    now: i64,
) -> Result<(CardRecord, PublicToken, Value), CardsError> {
    let pan = Secret::new(model::new_pan(issue.product)?);
    let cvv = Secret::new(model::random_digits(3)?);
    if let Value::Object(map) = &mut details {
        map.insert("maskedPan".into(), Value::from(model::masked(pan.expose())));
        map.insert("startDate".into(), Value::from(iso(date(now))));
        map.insert("expiryDate".into(), Value::from(iso(issue.expiry)));
        map.insert(
            "currencyCode".into(),
            Value::from(issue.product.currency.clone()),
        );
    }
    let status = if issue.active {
        CardStatus::Active
    } else {
        CardStatus::Inactive
    };
    let public_token = match issue.public_token {
        Some(token) => token.clone(),
        None => PublicToken::generate()?,
    };
    let record = CardRecord {
        public_token: public_token.to_string(),
        organisation_id: tenant.organisation_id.to_owned(),
        client_id: tenant.client_id.to_owned(),
        details: details.to_string(),
        pan_sealed: seal(cards, public_token.as_str(), "pan", &pan)?,
        cvv_sealed: seal(cards, public_token.as_str(), "cvv", &cvv)?,
        pin_sealed: None,
        status_code: status.code().to_owned(),
        status_updated: json!({"updated": rfc3339(now), "updatedBy": tenant.client_id, "description": "Card issued"}).to_string(),
        cvv_blocked: false,
        created_at: now,
        updated_at: now,
        version: 0,
        idempotency_id: issue.idempotency_id.map(str::to_owned),
        balance_minor: 0,
        pending_minor: 0,
    };
    Ok((record, public_token, details))
}

/// Creates and stores a card for `POST /cards`. Two requests holding one `IdempotencyKey` claim
/// (a takeover racing a request thought dead) make one card: the second answers with the
/// first's.
pub(crate) async fn issue_card(
    cards: &Cards,
    tenant: Tenant<'_>,
    issue: &Issue<'_>,
    details: Value,
    now: i64,
) -> Result<(PublicToken, Value), CardsError> {
    for _ in 0..5 {
        let (record, public_token, details) = new_card(cards, tenant, issue, details.clone(), now)?;
        if cards.store.insert_card(&record).await? {
            cards.audit.metrics().card_created();
            tracing::info!(
                public_token = %public_token,
                organisation_id = tenant.organisation_id,
                "card issued"
            );
            return Ok((public_token, details));
        }
        if let Some(id) = issue.idempotency_id
            && let Some(card) = cards.store.card_by_idempotency(id).await?
            && let Some(token) = PublicToken::parse(&card.public_token)
        {
            return Ok((token, self::details(&card)?));
        }
        if issue.public_token.is_some() {
            return Err(CardsError::Conflict(
                "the replacement's publicToken is taken: retry the request".into(),
            ));
        }
    }
    Err(CardsError::Internal(
        "could not find a free public token".into(),
    ))
}

/// `POST /cards`.
pub(crate) async fn create_card(
    State(cards): State<Arc<Cards>>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, CardsError> {
    caller.require("cards.write")?;
    let request: CreateCard = parse(&body)?;
    let now = certbound_store::clock::now();
    let today = date(now);
    let product = request.check(&cards.config.products, &iso(today))?;
    let endpoint = "POST /cards".to_owned();
    let (cards, caller) = (&*cards, &caller);
    idempotent(
        cards,
        caller,
        &headers,
        endpoint,
        &body,
        |claim| async move {
            if let Some(claim) = &claim
                && let Some(card) = cards.store.card_by_idempotency(claim).await?
            {
                // A request with this key made the card and died before answering: answer as it
                // would have.
                return Ok((
                    StatusCode::CREATED,
                    Some(created(&card.public_token, &details(&card)?)),
                ));
            }
            let expiry = request
                .expiry_date
                .as_deref()
                .and_then(parse_date)
                .unwrap_or_else(|| default_expiry(today));
            let details = json!({
                "cardType": request.card_type,
                "cardProduct": request.card_product,
                "customerReference": request.customer_reference,
                "cardHolder": request.card_holder,
                "address": request.address,
                "fulfilment": request.fulfilment,
                "designId": request.design_id,
                "embossName": request.emboss_name(),
            });
            let issue = Issue {
                product,
                active: request.activate_now.unwrap_or(true),
                expiry,
                idempotency_id: claim.as_deref(),
                public_token: None,
            };
            let (public_token, details) =
                issue_card(cards, caller.tenant(), &issue, details, now).await?;
            Ok((
                StatusCode::CREATED,
                Some(created(public_token.as_str(), &details)),
            ))
        },
    )
    .await
}

/// `POST /cards`'s answer for a card.
pub(crate) fn created(public_token: &str, details: &Value) -> Value {
    json!({
        "publicToken": public_token,
        "customerReference": details["customerReference"],
        "embossName": details["embossName"],
        "maskedPan": details["maskedPan"],
        "startDate": details["startDate"],
        "expiryDate": details["expiryDate"],
    })
}

pub(crate) fn parse_date(value: &str) -> Option<time::Date> {
    time::Date::parse(
        value,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()
}

fn status_view(card: &CardRecord) -> Result<Value, CardsError> {
    let status = stored_status(card)?;
    let updated: Value = serde_json::from_str(&card.status_updated).unwrap_or_else(|_| json!({}));
    Ok(json!({
        "status": status.name(),
        "cardStatusCode": status.code(),
        "updated": updated["updated"],
        "updatedBy": updated["updatedBy"],
        "description": updated["description"],
    }))
}

/// `GET /cards/{publicToken}`.
pub(crate) async fn show_card(
    State(cards): State<Arc<Cards>>,
    caller: Caller,
    Path(public_token): Path<String>,
) -> Result<Response, CardsError> {
    caller.require("cards.read")?;
    let card = owned(&cards, &caller, &card_token(&public_token)?).await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        card_answer(&card)?,
    )
        .into_response())
}

/// The body of `GET /cards/{publicToken}`'s answer for `card`.
fn card_answer(card: &CardRecord) -> Result<Vec<u8>, CardsError> {
    let shown = ShownDetails::of(card)?;
    let status = stored_status(card)?;
    let currency = shown.currency();
    serde_json::to_vec(&CardView {
        balance: crate::transactions::Balance::of(card, &currency),
        card_details: CardDetailsView {
            address: shown.address,
            card_holder: shown.card_holder,
            card_product: shown.card_product,
            customer_reference: shown.customer_reference,
            design_id: shown.design_id,
            emboss_name: shown.emboss_name,
            expiry_date: shown.expiry_date,
            fulfilment: shown.fulfilment,
            masked_pan: shown.masked_pan,
            start_date: shown.start_date,
        },
        card_status_code: status.code(),
        card_status_description: status.description(),
        card_type: shown.card_type,
        public_token: &card.public_token,
        status: status.name(),
    })
    .map_err(|error| CardsError::Internal(error.to_string()))
}

/// The stored details that `GET /cards/{publicToken}` shows (and whose currency `.../balance`
/// shows), each kept as the JSON text it is stored as: the answer copies them, without making a
/// tree of the details and writing it out again (a missing value, or `null`, is shown as `null`).
///
/// Every writer of a card stores its details as serde_json writes a `Value` (an object, compact,
/// each object's keys sorted, no key twice), so the copied text is what writing the tree again
/// would give. Details stored in another form would be shown as stored (their spacing and key
/// order kept; still the same JSON). Details that are not an object, or that repeat one of these
/// keys, are not read as the tree read them (where it showed `null`s, this refuses them as an
/// internal error, or reads an array by position); no writer stores such details.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ShownDetails<'a> {
    #[serde(borrow)]
    address: Option<&'a RawValue>,
    #[serde(borrow)]
    card_holder: Option<&'a RawValue>,
    #[serde(borrow)]
    card_product: Option<&'a RawValue>,
    #[serde(borrow)]
    card_type: Option<&'a RawValue>,
    #[serde(borrow)]
    currency_code: Option<&'a RawValue>,
    #[serde(borrow)]
    customer_reference: Option<&'a RawValue>,
    #[serde(borrow)]
    design_id: Option<&'a RawValue>,
    #[serde(borrow)]
    emboss_name: Option<&'a RawValue>,
    #[serde(borrow)]
    expiry_date: Option<&'a RawValue>,
    #[serde(borrow)]
    fulfilment: Option<&'a RawValue>,
    #[serde(borrow)]
    masked_pan: Option<&'a RawValue>,
    #[serde(borrow)]
    start_date: Option<&'a RawValue>,
}

impl<'a> ShownDetails<'a> {
    /// The details of `card`.
    pub(crate) fn of(card: &'a CardRecord) -> Result<Self, CardsError> {
        serde_json::from_str(&card.details).map_err(|error| CardsError::Internal(error.to_string()))
    }

    /// The card's currency: its `currencyCode` if that is text, else none (`""`).
    pub(crate) fn currency(&self) -> std::borrow::Cow<'_, str> {
        self.currency_code
            .and_then(|raw| serde_json::from_str(raw.get()).ok())
            .unwrap_or_default()
    }
}

/// What `GET /cards/{publicToken}` answers. The fields of each object are in the order the
/// answer has always had (serde_json's maps sort their keys).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CardView<'a> {
    balance: crate::transactions::Balance<'a>,
    card_details: CardDetailsView<'a>,
    card_status_code: &'a str,
    card_status_description: &'a str,
    card_type: Option<&'a RawValue>,
    public_token: &'a str,
    status: &'a str,
}

/// The `cardDetails` of [`CardView`].
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CardDetailsView<'a> {
    address: Option<&'a RawValue>,
    card_holder: Option<&'a RawValue>,
    card_product: Option<&'a RawValue>,
    customer_reference: Option<&'a RawValue>,
    design_id: Option<&'a RawValue>,
    emboss_name: Option<&'a RawValue>,
    expiry_date: Option<&'a RawValue>,
    fulfilment: Option<&'a RawValue>,
    masked_pan: Option<&'a RawValue>,
    start_date: Option<&'a RawValue>,
}

/// `PATCH /cards/{publicToken}`.
pub(crate) async fn update_card(
    State(cards): State<Arc<Cards>>,
    caller: Caller,
    Path(public_token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, CardsError> {
    caller.require("cards.write")?;
    let public_token = card_token(&public_token)?;
    let request: UpdateCard = parse(&body)?;
    request.check()?;
    let endpoint = format!("PATCH /cards/{public_token}");
    idempotent(&cards, &caller, &headers, endpoint, &body, |_| async {
        change_card(&cards, &caller, &public_token, |card, status, _| {
            status.accepts_changes()?;
            let mut details = details(card)?;
            request.apply(&mut details)?;
            card.details = details.to_string();
            Ok(())
        })
        .await?;
        Ok((StatusCode::NO_CONTENT, None))
    })
    .await
}

/// `GET /cards/{publicToken}/status`.
pub(crate) async fn show_status(
    State(cards): State<Arc<Cards>>,
    caller: Caller,
    Path(public_token): Path<String>,
) -> Result<Json<Value>, CardsError> {
    caller.require("cards.read")?;
    let card = owned(&cards, &caller, &card_token(&public_token)?).await?;
    Ok(Json(status_view(&card)?))
}

/// `PUT /cards/{publicToken}/status`. `updatedBy` is the caller's to say; the audit trail
/// records the authenticated client beside it, whatever it says.
pub(crate) async fn change_status(
    State(cards): State<Arc<Cards>>,
    caller: Caller,
    Path(public_token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, CardsError> {
    caller.require("cards.write")?;
    let public_token = card_token(&public_token)?;
    let request: ChangeStatus = parse(&body)?;
    let to = request.wanted()?;
    let client_id = caller.claims.client_id.to_string();
    let updated_by = request
        .updated_by
        .clone()
        .unwrap_or_else(|| client_id.clone());
    let endpoint = format!("PUT /cards/{public_token}/status");
    idempotent(&cards, &caller, &headers, endpoint, &body, |_| async {
        let target =
            crate::webhooks::target_of(&cards, &owned(&cards, &caller, &public_token).await?)
                .await?;
        let message = request
            .description
            .clone()
            .unwrap_or_else(|| to.description().to_owned());
        let announce = |card: &CardRecord, from: CardStatus, now: i64| {
            target
                .iter()
                .map(|url| {
                    crate::webhooks::status_change(url, card, from.code(), to.code(), &message, now)
                })
                .collect()
        };
        let (card, now) = change_card_announcing(
            &cards,
            &caller,
            &public_token,
            |card, from, now| {
                from.transition(to)?;
                if let Some(by) = crate::lifecycle::replaced_by(card)
                    && to == CardStatus::Active
                {
                    return Err(CardsError::Conflict(format!(
                        "the card was replaced by card {by}: it cannot become active again"
                    )));
                }
                card.status_code = to.code().to_owned();
                card.status_updated = json!({
                    "updated": rfc3339(now),
                    "updatedBy": updated_by,
                    "description": request.description.as_deref().unwrap_or(to.description()),
                })
                .to_string();
                Ok(now)
            },
            announce,
        )
        .await?;
        tracing::info!(%public_token, status = to.code(), "card status changed");
        // Best effort: the change is made; a lost record is counted and reported.
        let _ = cards.audit.record(
            "cards",
            "card_status_changed",
            now,
            json!({"public_token": card.public_token, "organisation_id": card.organisation_id,
                   "status": to.code(), "client_id": client_id, "updated_by": updated_by}),
        );
        Ok((StatusCode::OK, Some(status_view(&card)?)))
    })
    .await
}

/// `POST /cards/{publicToken}/pin`.
pub(crate) async fn set_pin(
    State(cards): State<Arc<Cards>>,
    caller: Caller,
    Path(public_token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, CardsError> {
    caller.require("pin.write")?;
    let public_token = card_token(&public_token)?;
    let request: SetPin = parse(&body)?;
    model::check_pin(&request.pin)?;
    let endpoint = format!("POST /cards/{public_token}/pin");
    idempotent(&cards, &caller, &headers, endpoint, &body, |_| async {
        change_card(&cards, &caller, &public_token, |card, status, _| {
            status.accepts_changes()?;
            card.pin_sealed = Some(seal(&cards, public_token.as_str(), "pin", &request.pin)?);
            Ok(())
        })
        .await?;
        Ok((StatusCode::NO_CONTENT, None))
    })
    .await
}

/// `GET /cards/{publicToken}/pin`.
pub(crate) async fn show_pin(
    State(cards): State<Arc<Cards>>,
    caller: Caller,
    Path(public_token): Path<String>,
) -> Result<Json<Value>, CardsError> {
    caller.require("pin.read")?;
    let card = owned(&cards, &caller, &card_token(&public_token)?).await?;
    let sealed = card
        .pin_sealed
        .as_deref()
        .ok_or_else(|| CardsError::NotFound("no PIN has been set on this card".into()))?;
    Ok(Json(
        json!({"pin": open(&cards, &card.public_token, "pin", sealed)?.expose()}),
    ))
}

/// `GET /cards/{publicToken}/cvv`.
pub(crate) async fn show_cvv(
    State(cards): State<Arc<Cards>>,
    caller: Caller,
    Path(public_token): Path<String>,
) -> Result<Json<Value>, CardsError> {
    caller.require("cvv.read")?;
    let card = owned(&cards, &caller, &card_token(&public_token)?).await?;
    if card.cvv_blocked {
        return Err(CardsError::Conflict(
            "CVV lookups are blocked on this card: unblock them first".into(),
        ));
    }
    Ok(Json(
        json!({"cvv": open(&cards, &card.public_token, "cvv", &card.cvv_sealed)?.expose(), "resultStatus": "Success"}),
    ))
}

/// `GET /cards/{publicToken}/cvv/status`.
pub(crate) async fn show_cvv_status(
    State(cards): State<Arc<Cards>>,
    caller: Caller,
    Path(public_token): Path<String>,
) -> Result<Json<Value>, CardsError> {
    caller.require("cvv.read")?;
    let card = owned(&cards, &caller, &card_token(&public_token)?).await?;
    Ok(Json(
        json!({"status": if card.cvv_blocked { "Blocked" } else { "Unblocked" }}),
    ))
}

/// `POST /cards/{publicToken}/cvv/status`.
pub(crate) async fn change_cvv_status(
    State(cards): State<Arc<Cards>>,
    caller: Caller,
    Path(public_token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, CardsError> {
    caller.require("cvv.write")?;
    let public_token = card_token(&public_token)?;
    let request: CvvStatus = parse(&body)?;
    let blocked = request.blocked()?;
    let endpoint = format!("POST /cards/{public_token}/cvv/status");
    idempotent(&cards, &caller, &headers, endpoint, &body, |_| async {
        change_card(&cards, &caller, &public_token, |card, status, _| {
            status.accepts_changes()?;
            card.cvv_blocked = blocked;
            Ok(())
        })
        .await?;
        Ok((StatusCode::OK, Some(json!({"status": request.status}))))
    })
    .await
}

/// `POST /cards/{publicToken}/encrypted`: PAN, CVV, expiry and emboss name, encrypted to the
/// client's AES key and signed by the card service.
pub(crate) async fn encrypted(
    State(cards): State<Arc<Cards>>,
    caller: Caller,
    Path(public_token): Path<String>,
    body: Bytes,
) -> Result<Response, CardsError> {
    caller.require("cards.encrypted")?;
    let card = owned(&cards, &caller, &card_token(&public_token)?).await?;
    let request: EncryptedRequest = parse(&body)?;
    let details = details(&card)?;
    let plaintext = zeroize::Zeroizing::new(
        json!({
            "pan": open(&cards, &card.public_token, "pan", &card.pan_sealed)?.expose(),
            "cvv": open(&cards, &card.public_token, "cvv", &card.cvv_sealed)?.expose(),
            "expiryDate": details["expiryDate"],
            "embossName": details["embossName"],
        })
        .to_string(),
    );
    let payload = cards
        .keys
        .encrypt_for_client(&request.key, plaintext.as_bytes())?;
    Ok(Json(payload).into_response())
}

/// `GET /keys`: the Cards API's encryption and signing keys. mTLS only, no token.
pub(crate) async fn keys(
    State(cards): State<Arc<Cards>>,
    peer: Option<certbound_http::PeerCertificate>,
) -> Result<Json<certbound_pki::JwkSet>, CardsError> {
    if peer.is_none() {
        return Err(CardsError::InvalidToken(
            "present your transport certificate (mutual TLS)".into(),
        ));
    }
    Ok(Json(cards.keys.jwks().clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(details: &str, status_code: &str) -> CardRecord {
        CardRecord {
            public_token: "123456789".into(),
            organisation_id: "org".into(),
            client_id: "client".into(),
            details: details.into(),
            pan_sealed: String::new(),
            cvv_sealed: String::new(),
            pin_sealed: None,
            status_code: status_code.into(),
            status_updated: "{}".into(),
            cvv_blocked: false,
            created_at: 0,
            updated_at: 0,
            version: 1,
            idempotency_id: None,
            balance_minor: 12_345,
            pending_minor: -2_000,
        }
    }

    /// The answer as it was built before the details were copied as text: a tree of the
    /// details, its values moved into a `json!` tree, written out.
    fn as_a_tree(card: &CardRecord) -> String {
        let mut details: Value = serde_json::from_str(&card.details).unwrap();
        let status = stored_status(card).unwrap();
        let currency = details["currencyCode"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let amount = |minor| crate::ledger::amount_json(minor, &currency);
        let mut take = |name: &str| details.get_mut(name).map_or(Value::Null, Value::take);
        json!({
            "cardType": take("cardType"),
            "publicToken": card.public_token,
            "status": status.name(),
            "cardStatusCode": status.code(),
            "cardStatusDescription": status.description(),
            "balance": {
                "currencyCode": currency,
                "cardBalance": amount(card.balance_minor),
                "pendingAmount": amount(card.pending_minor),
                "availableBalance": amount(card.balance_minor + card.pending_minor),
            },
            "cardDetails": {
                "cardProduct": take("cardProduct"),
                "customerReference": take("customerReference"),
                "maskedPan": take("maskedPan"),
                "embossName": take("embossName"),
                "startDate": take("startDate"),
                "expiryDate": take("expiryDate"),
                "designId": take("designId"),
                "cardHolder": take("cardHolder"),
                "address": take("address"),
                "fulfilment": take("fulfilment"),
            },
        })
        .to_string()
    }

    #[test]
    fn a_cards_answer_is_the_same_text_as_its_tree_was() {
        // As certbound stores a card's details (a tree written out by serde_json), with text
        // that needs escaping, nested objects, a `null`, a missing value and a field the answer
        // does not show.
        let stored = json!({
            "cardType": "Virtual",
            "cardProduct": "P-1",
            "currencyCode": "GBP",
            "customerReference": "ref \"quoted\" \\ back\u{1}slash é",
            "maskedPan": "123456******1234",
            "embossName": "A N OTHER",
            "startDate": "2026-12",
            "expiryDate": "2029-12",
            "designId": null,
            "cardHolder": {"firstName": "Ann", "lastName": "Other", "dateOfBirth": "1990-01-01"},
            "address": {"addressLine1": "1 Road", "city": "Town", "country": "GBR"},
            "replacedBy": "987654321",
        })
        .to_string();
        for status in ["00", "05", "41"] {
            let card = card(&stored, status);
            let answer = String::from_utf8(card_answer(&card).unwrap()).unwrap();
            assert_eq!(answer, as_a_tree(&card), "status {status}");
        }
        let answer: Value =
            serde_json::from_slice(&card_answer(&card(&stored, "00")).unwrap()).unwrap();
        assert_eq!(answer["cardDetails"]["fulfilment"], Value::Null);
        assert_eq!(answer["cardDetails"]["designId"], Value::Null);
        assert_eq!(answer["balance"]["cardBalance"], json!(123.45));
        assert_eq!(answer["balance"]["availableBalance"], json!(103.45));
        assert!(answer["cardDetails"].get("replacedBy").is_none());
    }

    #[test]
    fn details_stored_in_another_form_are_shown_as_the_same_json() {
        // Spaces and unsorted keys (as the bench's seeder stores them): shown as stored, the
        // same JSON as the tree showed.
        let stored = r#"{ "cardType" : "Virtual", "currencyCode": "EUR",
            "cardHolder": {"title": "Mx", "firstName": "A", "lastName": "B"},
            "address": {"postCode": "EC1A 1BB", "country": "GBR", "county": null} }"#;
        let card = card(stored, "00");
        let answer: Value = serde_json::from_slice(&card_answer(&card).unwrap()).unwrap();
        let tree: Value = serde_json::from_str(&as_a_tree(&card)).unwrap();
        assert_eq!(answer, tree);
        assert_eq!(answer["balance"]["currencyCode"], "EUR");
        assert_eq!(answer["cardDetails"]["address"]["country"], "GBR");
    }

    #[test]
    fn details_that_are_not_json_are_an_internal_error() {
        let answer = card_answer(&card("{not json", "00"));
        assert!(matches!(answer, Err(CardsError::Internal(_))), "{answer:?}");
    }
}
