//! Bulk card creation: `POST /cards/bulk` records a job and answers 202 at once; a worker creates
//! the cards in the background, recording each one as it goes, so a job survives a restart (the
//! next start resumes it) and an instance that dies mid-job (another takes it over once it has
//! made no progress for [`STALE_AFTER`] seconds).
//!
//! Organisations share the workers fairly: each round takes the oldest unfinished job of every
//! organisation and makes at most [`BATCH`] cards of each, so one organisation's queue of large
//! jobs does not hold up another's small one. An organisation may have at most
//! `bulk_jobs_per_organisation` jobs unfinished at once (429 beyond).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use certbound_store::{BulkCard, BulkJobRecord};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::auth::Caller;
use crate::body::parse;
use crate::handlers::{Issue, Tenant, new_card, product};
use crate::idempotency::idempotent;
use crate::model::BulkRequest;
use crate::{Cards, CardsError};

/// A Processing job without progress for this long is taken over.
pub(crate) const STALE_AFTER: i64 = 30;
/// How often the worker looks for work when not notified.
const POLL: Duration = Duration::from_secs(2);
/// Cards made for one job before the worker turns to the next organisation's.
pub(crate) const BATCH: usize = 5;

/// `POST /cards/bulk`.
pub(crate) async fn create(
    State(cards): State<Arc<Cards>>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, CardsError> {
    caller.require("bulkcard.write")?;
    let request: BulkRequest = parse(&body)?;
    if !(1..=50).contains(&request.quantity) {
        return Err(CardsError::field(
            "quantity",
            "quantity must be between 1 and 50",
        ));
    }
    if product(&cards, &request.card_product).is_none() {
        return Err(CardsError::field("cardProduct", "unknown card product"));
    }
    let queued = cards
        .store
        .unfinished_bulk_jobs()
        .await?
        .iter()
        .filter(|job| job.organisation_id == caller.claims.org_id)
        .count();
    if queued >= cards.config.bulk_jobs_per_organisation {
        return Err(CardsError::TooManyRequests(format!(
            "this organisation has {queued} bulk card requests unfinished, the most it may have: \
             wait for one to complete"
        )));
    }
    let (cards, caller, request) = (&*cards, &caller, &request);
    idempotent(
        cards,
        caller,
        &headers,
        "POST /cards/bulk".into(),
        &body,
        |claim| async move {
            let now = certbound_store::clock::now();
            let id = uuid::Uuid::new_v4().to_string();
            cards
                .store
                .insert_bulk_job(&BulkJobRecord {
                    id: id.clone(),
                    organisation_id: caller.claims.org_id.to_string(),
                    client_id: caller.claims.client_id.to_string(),
                    request: serde_json::to_string(&request)
                        .map_err(|error| CardsError::Internal(error.to_string()))?,
                    quantity: request.quantity,
                    status: "Pending".into(),
                    public_tokens: "[]".into(),
                    created_at: now,
                    updated_at: now,
                    idempotency_id: claim.clone(),
                })
                .await?;
            // With a key, the job is the one that key made, whichever request made it.
            let id = match &claim {
                Some(claim) => cards
                    .store
                    .bulk_job_by_idempotency(claim)
                    .await?
                    .map_or(id, |job| job.id),
                None => id,
            };
            cards.work.notify_one();
            tracing::info!(
                id,
                quantity = request.quantity,
                "bulk card request accepted"
            );
            Ok((StatusCode::ACCEPTED, Some(json!({"id": id}))))
        },
    )
    .await
}

/// The query of `GET /cards/bulk`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BulkQuery {
    bulk_card_request_id: Option<String>,
}

/// `GET /cards/bulk?bulkCardRequestId=`.
pub(crate) async fn show(
    State(cards): State<Arc<Cards>>,
    caller: Caller,
    Query(query): Query<BulkQuery>,
) -> Result<Json<Value>, CardsError> {
    caller.require("bulkcard.read")?;
    let id = query
        .bulk_card_request_id
        .ok_or_else(|| CardsError::field("bulkCardRequestId", "bulkCardRequestId is required"))?;
    let job = cards
        .store
        .bulk_job(&id)
        .await?
        .filter(|job| job.organisation_id == caller.claims.org_id)
        .ok_or_else(|| CardsError::NotFound(format!("bulk card request {id} does not exist")))?;
    let tokens: Vec<String> = serde_json::from_str(&job.public_tokens).unwrap_or_default();
    // Between its turns a job waits as Pending in the store; begun, it is Processing to the client.
    let status = if job.status == "Pending" && !tokens.is_empty() {
        "Processing"
    } else {
        job.status.as_str()
    };
    Ok(Json(
        json!({"id": job.id, "status": status, "quantity": job.quantity, "publicTokens": tokens}),
    ))
}

/// The worker loop.
pub(crate) async fn run(cards: Arc<Cards>, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        let mut worked = false;
        match cards.store.unfinished_bulk_jobs().await {
            Ok(jobs) => {
                // The oldest unfinished job of each organisation: one turn each.
                let mut organisations = std::collections::HashSet::new();
                for job in jobs {
                    if *shutdown.borrow() {
                        return;
                    }
                    if !organisations.insert(job.organisation_id.clone()) {
                        continue;
                    }
                    match process(&cards, job, &shutdown).await {
                        Ok(made) => worked |= made,
                        Err(error) => {
                            tracing::warn!(%error, "bulk job step failed; it will be retried");
                        }
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "cannot read bulk jobs"),
        }
        if worked {
            continue;
        }
        tokio::select! {
            _ = cards.work.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One turn of a job: claims it under a new lease, makes up to [`BATCH`] cards (each inserted
/// and listed in one transaction that checks the lease), and puts it back (Pending) for the
/// next turn unless it is complete. A worker that stalled while another instance took its job
/// over finds its lease gone at its next card and stops: the job makes exactly its quantity,
/// every card listed. Whether it made any card.
async fn process(
    cards: &Cards,
    job: BulkJobRecord,
    shutdown: &watch::Receiver<bool>,
) -> Result<bool, CardsError> {
    let now = certbound_store::clock::now();
    let lease = uuid::Uuid::new_v4().to_string();
    if !cards
        .store
        .claim_bulk_job(&job.id, &lease, now, now - STALE_AFTER)
        .await?
    {
        return Ok(false);
    }
    // The claim may have raced another worker's progress: work from what the store has now.
    let job = cards.store.bulk_job(&job.id).await?.unwrap_or(job);
    let request: BulkRequest = serde_json::from_str(&job.request)
        .map_err(|error| CardsError::Internal(error.to_string()))?;
    let mut tokens: Vec<String> = serde_json::from_str(&job.public_tokens).unwrap_or_default();
    let Some(product) = product(cards, &request.card_product).cloned() else {
        cards
            .store
            .update_bulk_job(&job.id, &lease, "Failed", now)
            .await?;
        return Ok(false);
    };
    let tenant = Tenant {
        organisation_id: &job.organisation_id,
        client_id: &job.client_id,
    };
    let mut made = 0;
    while i64::try_from(tokens.len()).unwrap_or(i64::MAX) < job.quantity {
        let now = certbound_store::clock::now();
        if *shutdown.borrow() || made == BATCH {
            // Stop between cards: what is done is recorded; back to Pending so the next turn or
            // the next start (of this or any instance) resumes it.
            cards
                .store
                .update_bulk_job(&job.id, &lease, "Pending", now)
                .await?;
            return Ok(made > 0);
        }
        let issue = Issue {
            product: &product,
            active: true,
            expiry: crate::handlers::default_expiry(crate::handlers::date(now)),
            idempotency_id: None,
            public_token: None,
        };
        let details = json!({
            "cardType": request.card_type,
            "cardProduct": request.card_product,
            "customerReference": format!("bulk-{}", job.id),
            "cardHolder": null,
            "address": null,
            "fulfilment": null,
            "designId": null,
            "embossName": "",
        });
        let (record, public_token, _) = new_card(cards, tenant, &issue, details, now)?;
        let mut listed = tokens.clone();
        listed.push(public_token.to_string());
        let listed_json = serde_json::to_string(&listed)
            .map_err(|error| CardsError::Internal(error.to_string()))?;
        match cards
            .store
            .record_bulk_card(&job.id, &lease, &record, &listed_json, now)
            .await?
        {
            BulkCard::Recorded => {
                cards.audit.metrics().card_created();
                tokens = listed;
                made += 1;
            }
            BulkCard::TokenTaken => {}
            BulkCard::Fenced => {
                tracing::warn!(id = %job.id, "bulk job taken over by another worker; this one stops");
                return Ok(made > 0);
            }
        }
    }
    cards
        .store
        .update_bulk_job(&job.id, &lease, "Complete", certbound_store::clock::now())
        .await?;
    tracing::info!(id = %job.id, cards = tokens.len(), "bulk card request complete");
    Ok(true)
}
