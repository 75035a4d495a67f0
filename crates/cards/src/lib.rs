//! The Cards API: the Thredd Cards API the seed exists to reach. Card issuing, status, PIN, CVV,
//! encrypted card data and bulk creation, behind mTLS and certificate-bound access tokens.
//!
//! Every call proves three things before it touches a card: the access token verifies with the
//! authorization server's keys and is unexpired and unrevoked; its `cnf.x5t#S256` is the
//! certificate on this connection (RFC 8705 §3); it carries the call's scope. A card belongs to
//! the organisation (`org_id`) of the client that made it, and no other tenant can see it.
//! PAN, PIN and CVV are sealed under the master key and leave only through their endpoints.

mod auth;
mod body;
mod bulk;
pub mod crypto;
mod error;
mod handlers;
mod idempotency;
pub mod ledger;
#[cfg(test)]
mod ledger_properties;
mod lifecycle;
pub mod model;
mod network;
pub mod openapi;
mod transactions;
pub mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use certbound_store::{CardsStore, DirectoryStore, MasterKey, TokenStandingStore};
use certbound_trust::fetch::KeyCache;

pub use error::CardsError;

/// Everything the Cards API reads and writes, as one trait object: its cards, the authorization
/// server's revocations and clients, the directory's certificate revocations.
pub trait Store: CardsStore + TokenStandingStore + DirectoryStore {}
impl<T: CardsStore + TokenStandingStore + DirectoryStore> Store for T {}

/// The largest request body the API reads.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The Cards API's settings.
#[derive(Clone, Debug)]
pub struct CardsConfig {
    /// The authorization server whose tokens are accepted (`iss`).
    pub issuer: String,
    /// Its JWKS.
    pub jwks_uri: String,
    /// Card products.
    pub products: Vec<model::Product>,
    /// Bulk card requests an organisation may have unfinished at once.
    pub bulk_jobs_per_organisation: usize,
    /// Whether the simulated card network (`/sandbox/...`) answers.
    pub card_network: bool,
    /// The HTTPS client webhook deliveries go out with (its trust anchors decide which
    /// receivers are trusted).
    pub webhook_client: reqwest::Client,
    /// How long a notification is retried before it is given up on, seconds.
    pub webhook_retry_seconds: i64,
}

/// The Cards API.
pub struct Cards {
    config: CardsConfig,
    store: Arc<dyn Store>,
    master: Arc<MasterKey>,
    keys: crypto::CardKeys,
    token_keys: KeyCache,
    /// Tokens whose signature was verified, until they expire.
    verified: certbound_trust::VerifiedTokens,
    /// Token standings read from the store, until the store's trust counter moves.
    standing: certbound_trust::StandingCache,
    work: tokio::sync::Notify,
    /// Woken when a change was announced, so that its notification goes out at once.
    webhook_work: tokio::sync::Notify,
    audit: certbound_http::AuditLog,
}

impl std::fmt::Debug for Cards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cards")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The name a card's PAN, CVV or PIN (`what`: `pan`, `cvv`, `pin`) is sealed under (the master
/// key's associated data): a sealed value moved to another card or field does not open.
pub fn sealed_name(public_token: &str, what: &str) -> String {
    format!("card:{public_token}:{what}")
}

impl Cards {
    /// Assembles the API.
    pub fn new(
        config: CardsConfig,
        store: Arc<dyn Store>,
        master: Arc<MasterKey>,
        keys: crypto::CardKeys,
        token_key_source: Box<dyn certbound_trust::fetch::KeySource>,
        audit: certbound_http::AuditLog,
    ) -> Arc<Self> {
        Arc::new(Self {
            config,
            store,
            master,
            keys,
            token_keys: KeyCache::new(token_key_source),
            verified: certbound_trust::VerifiedTokens::new(),
            standing: certbound_trust::StandingCache::new(),
            work: tokio::sync::Notify::new(),
            webhook_work: tokio::sync::Notify::new(),
            audit,
        })
    }

    /// Hits and misses of this instance's caches, by name, for the operator's metrics.
    pub fn cache_lookups(&self) -> Vec<(&'static str, (u64, u64))> {
        vec![
            ("cards_verified_tokens", self.verified.lookups()),
            ("cards_token_standing", self.standing.lookups()),
        ]
    }

    /// Runs the bulk job worker until `shutdown` flips: it resumes unfinished jobs at start.
    pub async fn run_bulk_worker(self: Arc<Self>, shutdown: tokio::sync::watch::Receiver<bool>) {
        bulk::run(self, shutdown).await;
    }

    /// Delivers webhook notifications until `shutdown` flips (every instance runs one; they
    /// share the outbox).
    pub async fn run_webhook_worker(self: Arc<Self>, shutdown: tokio::sync::watch::Receiver<bool>) {
        webhooks::run(self, shutdown).await;
    }

    /// Port 8444's router: everything under `/api/v1`, `/healthz` at the root.
    pub fn router(self: &Arc<Self>) -> Router {
        let api = Router::new()
            .route("/cards", post(handlers::create_card))
            .route("/cards/bulk", post(bulk::create).get(bulk::show))
            .route(
                "/cards/{public_token}",
                get(handlers::show_card).patch(handlers::update_card),
            )
            .route(
                "/cards/{public_token}/status",
                get(handlers::show_status).put(handlers::change_status),
            )
            .route(
                "/cards/{public_token}/pin",
                get(handlers::show_pin).post(handlers::set_pin),
            )
            .route("/cards/{public_token}/cvv", get(handlers::show_cvv))
            .route(
                "/cards/{public_token}/cvv/status",
                get(handlers::show_cvv_status).post(handlers::change_cvv_status),
            )
            .route("/cards/{public_token}/encrypted", post(handlers::encrypted))
            .route(
                "/cards/{public_token}/transactions",
                post(transactions::post_transaction).get(transactions::list_transactions),
            )
            .route(
                "/cards/{public_token}/balance",
                get(transactions::show_balance),
            )
            .merge(self.card_network())
            .route("/cards/{public_token}/replace", post(lifecycle::replace))
            .route("/cards/{public_token}/renew", post(lifecycle::renew))
            .route(
                "/cards/{public_token}/card-type",
                axum::routing::patch(lifecycle::convert).post(lifecycle::convert),
            )
            .route("/webhooks/notifications", get(webhooks::undelivered))
            .route("/webhooks/notifications/resend", post(webhooks::resend))
            .route("/keys", get(handlers::keys))
            .route("/openapi.json", get(openapi::document))
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .layer(axum::middleware::map_response(no_store))
            .with_state(self.clone());
        let router = Router::new()
            .nest("/api/v1", api)
            .route("/healthz", get(|| async { "ok" }))
            .fallback(|| async { CardsError::NotFound("no such endpoint".into()) });
        let router = certbound_http::shaped_refusals(router, error::framework_refusal);
        self.audit
            .audited(router, "cards", certbound_store::clock::now)
    }
}

impl Cards {
    /// The sandbox's simulated card network, when the configuration has it on.
    fn card_network(self: &Arc<Self>) -> Router<Arc<Self>> {
        if !self.config.card_network {
            return Router::new();
        }
        Router::new()
            .route(
                "/sandbox/cards/{public_token}/authorisations",
                post(network::authorise),
            )
            .route(
                "/sandbox/cards/{public_token}/authorisations/{id}/clear",
                post(network::clear),
            )
            .route(
                "/sandbox/cards/{public_token}/authorisations/{id}/reverse",
                post(network::reverse),
            )
    }
}

/// Every Cards API answer may carry card data (PAN, PIN, CVV, cardholder details): no cache, shared
/// or private, keeps one.
async fn no_store(mut response: axum::response::Response) -> axum::response::Response {
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    response
}

/// Entry points for the fuzz targets (`fuzz/`): parsers of outside input, without I/O.
#[doc(hidden)]
pub mod fuzzing {
    /// Every Cards API request body, parsed and validated as the handlers do.
    pub fn bodies(body: &[u8]) {
        let products = crate::model::default_products();
        if let Ok(card) = crate::body::parse::<crate::model::CreateCard>(body) {
            let _ = card.check(&products, "2026-01-01");
            let _ = card.emboss_name();
        }
        if let Ok(update) = crate::body::parse::<crate::model::UpdateCard>(body) {
            let _ = update.check();
            let mut details = serde_json::json!({"cardType": "Virtual"});
            let _ = update.apply(&mut details);
        }
        if let Ok(change) = crate::body::parse::<crate::model::ChangeStatus>(body)
            && let Ok(to) = change.wanted()
        {
            let _ = crate::model::CardStatus::Active.transition(to);
        }
        if let Ok(pin) = crate::body::parse::<crate::model::SetPin>(body) {
            let _ = crate::model::check_pin(&pin.pin);
        }
        if let Ok(cvv) = crate::body::parse::<crate::model::CvvStatus>(body) {
            let _ = cvv.blocked();
        }
        let _ = crate::body::parse::<crate::model::EncryptedRequest>(body);
        let _ = crate::body::parse::<crate::model::BulkRequest>(body);
        if let Ok(posting) = crate::body::parse::<crate::model::PostTransaction>(body) {
            let currency = posting.currency_code.clone();
            let _ = crate::ledger::parse_amount(&posting.amount, &currency);
            let _ = crate::ledger::parse_signed_amount(&posting.amount, &currency);
        }
        if let Ok(authorise) = crate::body::parse::<crate::model::Authorise>(body) {
            let _ = crate::ledger::parse_amount(&authorise.amount, &authorise.currency_code);
            if let Some(merchant) = authorise.merchant {
                let _ = merchant.check();
            }
        }
        if let Ok(clear) = crate::body::parse::<crate::model::Clear>(body)
            && let Some(amount) = clear.amount
        {
            let _ = crate::ledger::parse_amount(&amount, "GBP");
        }
        let _ = crate::body::parse::<crate::model::ReplaceCard>(body);
        let _ = crate::body::parse::<crate::model::RenewCard>(body);
        let _ = crate::body::parse::<crate::model::ConvertCard>(body);
        let _ = crate::body::parse::<crate::webhooks::Resend>(body);
    }
}
