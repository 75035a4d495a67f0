//! The authorization server: the seed's Cloudentity. Discovery, Dynamic Client Registration with
//! a software statement (RFC 7591) and its management (RFC 7592), `client_credentials` with
//! `private_key_jwt`, `tls_client_auth` or `self_signed_tls_client_auth`, certificate-bound ES256
//! access tokens (RFC 8705), introspection (RFC 7662), revocation (RFC 7009) and a JWKS with room
//! for rotation.
//!
//! No bearer token is ever issued without a client certificate. Replay protection, clients,
//! keys and revocations live in the shared store, so any number of instances agree.

#![recursion_limit = "256"]

mod budgets;
mod client_auth;
mod discovery;
mod error;
pub mod keys;
mod registration;
mod token;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use certbound_jose::AlgorithmPolicy;
use certbound_store::{
    AuthzStore, DirectoryStore, MasterKey, RateLimitStore, ReplayStore, TokenStandingStore,
};

pub use error::AuthzError;

/// Everything the authorization server stores, as one trait object.
/// The directory's certificate revocations are included: a revoked certificate gets nothing here.
pub trait Store:
    AuthzStore + ReplayStore + DirectoryStore + RateLimitStore + TokenStandingStore
{
}
impl<T: AuthzStore + ReplayStore + DirectoryStore + RateLimitStore + TokenStandingStore> Store
    for T
{
}

/// Requests per minute allowed at the token and registration endpoints (0: no limit). Counted in
/// the shared store, so the limit holds across instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimits {
    /// Token requests per client, counted only once the request authenticated as it.
    pub token_per_client: i64,
    /// Token requests per source address.
    pub token_per_address: i64,
    /// Registration requests per source address.
    pub register_per_address: i64,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            token_per_client: 600,
            token_per_address: 6000,
            register_per_address: 60,
        }
    }
}

/// The authorization server's settings.
#[derive(Clone, Debug)]
pub struct AuthzConfig {
    /// The issuer, `https://localhost:8443` by default; may carry a path
    /// (`https://host/uat-thredd/confidential-clients`), under which every endpoint lives.
    pub issuer: String,
    /// The SSA issuer to trust: the directory's public URL.
    pub directory_issuer: String,
    /// Where the directory publishes its SSA signing key.
    pub directory_jwks_uri: String,
    /// Access token lifetime, seconds.
    pub token_lifetime: i64,
    /// Accepted client assertion and request object algorithms.
    pub algorithms: AlgorithmPolicy,
    /// The longest accepted client assertion life, seconds.
    pub assertion_max_lifetime: i64,
    /// FAPI 2 strictness: a client assertion's `aud` must be the issuer string alone.
    pub strict_audience: bool,
    /// The scopes this server may grant (discovery lists them).
    pub scopes_supported: Vec<String>,
    /// Rate limits.
    pub rate_limits: RateLimits,
}

/// The largest request body the authorization server reads (an SSA is a few KiB).
pub const BODY_LIMIT: usize = 64 * 1024;

/// The maximum age of an SSA at registration, seconds.
pub const SSA_MAX_AGE: i64 = 300;

/// The authorization server.
pub struct Authz {
    config: AuthzConfig,
    store: Arc<dyn Store>,
    keys: keys::TokenKeys,
    key_cache: certbound_trust::fetch::KeyCache,
    /// Token standings read from the store, until its trust counter moves (introspection).
    standing: certbound_trust::StandingCache,
    /// Rate-limit counts, in memory, shared through the store once a second.
    budgets: Arc<budgets::Budgets>,
    /// Registered clients with the presented certificate's record, until the trust counter
    /// moves (the token endpoint's client authentication).
    clients: certbound_trust::Remembered<client_auth::ClientAndCertificate>,
    /// The directory's certificates of a signing key, by `kid`, until the trust counter moves.
    signing_certificates: certbound_trust::Remembered<Arc<Vec<certbound_store::CertificateRecord>>>,
    audit: certbound_http::AuditLog,
}

impl std::fmt::Debug for Authz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authz")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Authz {
    /// Assembles the server, creating its first token signing key if the store has none.
    pub async fn new(
        config: AuthzConfig,
        store: Arc<dyn Store>,
        master: Arc<MasterKey>,
        key_source: Box<dyn certbound_trust::fetch::KeySource>,
        audit: certbound_http::AuditLog,
    ) -> Result<Arc<Self>, AuthzError> {
        let now = certbound_store::clock::now();
        let keys = keys::TokenKeys::load(store.clone(), master, now, config.token_lifetime).await?;
        let budgets = Arc::new(budgets::Budgets::default());
        let shared: Arc<dyn RateLimitStore> = store.clone();
        tokio::spawn(budgets::exchange_until_dropped(
            Arc::downgrade(&budgets),
            shared,
        ));
        Ok(Arc::new(Self {
            config,
            store,
            keys,
            key_cache: certbound_trust::fetch::KeyCache::new(key_source),
            standing: certbound_trust::StandingCache::new(),
            budgets,
            clients: certbound_trust::Remembered::new(),
            signing_certificates: certbound_trust::Remembered::new(),
            audit,
        }))
    }

    /// The configuration.
    pub fn config(&self) -> &AuthzConfig {
        &self.config
    }

    pub(crate) fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.config.issuer.trim_end_matches('/'))
    }

    /// The verification keys of the current ring (for resource servers in the same process).
    pub async fn verification_keys(
        &self,
        now: i64,
        force_reload: bool,
    ) -> Result<Vec<certbound_jose::VerificationKey>, AuthzError> {
        Ok(self
            .keys
            .ring(now, force_reload)
            .await?
            .verification()
            .to_vec())
    }
    /// Hits and misses of this instance's caches, by name, for the operator's metrics.
    pub fn cache_lookups(&self) -> Vec<(&'static str, (u64, u64))> {
        vec![
            ("authz_token_standing", self.standing.lookups()),
            ("authz_clients", self.clients.lookups()),
            (
                "authz_signing_certificates",
                self.signing_certificates.lookups(),
            ),
        ]
    }

    /// Port 8443's router. Every endpoint sits under the issuer's path; `/healthz` at the root.
    pub fn router(self: &Arc<Self>) -> Router {
        let endpoints = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(discovery::discovery),
            )
            .route("/.well-known/jwks.json", get(discovery::jwks))
            .route("/oauth2/register", post(registration::register))
            .route(
                "/oauth2/register/{client_id}",
                get(registration::read)
                    .put(registration::update)
                    .delete(registration::delete),
            )
            .route("/oauth2/token", post(token::token))
            .route("/oauth2/introspect", post(token::introspect))
            .route("/oauth2/revoke", post(token::revoke))
            .with_state(self.clone());
        let prefix = url::Url::parse(&self.config.issuer)
            .map(|url| url.path().trim_end_matches('/').to_owned())
            .unwrap_or_default();
        let routed = if prefix.is_empty() {
            endpoints
        } else {
            Router::new().nest(&prefix, endpoints)
        };
        let router = routed
            .route("/healthz", get(|| async { "ok" }))
            .fallback(error::not_found)
            .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT));
        let router = certbound_http::shaped_refusals(router, certbound_http::oauth_refusal);
        self.audit
            .audited(router, "authz", certbound_store::clock::now)
    }
}

impl Authz {
    /// Counts a request against `limit` per minute for `key`; 429 once over it.
    pub(crate) async fn limit(&self, key: &str, limit: i64, now: i64) -> Result<(), AuthzError> {
        if limit <= 0 {
            return Ok(());
        }
        let window = now - now.rem_euclid(60);
        let count = self.budgets.spend(key, window);
        if count > limit {
            return Err(AuthzError::TooManyRequests {
                message: format!("more than {limit} requests a minute: slow down"),
                retry_after: u64::try_from(window + 60 - now).unwrap_or(1).max(1),
            });
        }
        Ok(())
    }
}

pub(crate) fn sha256_b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

pub(crate) fn random_token() -> Result<String, AuthzError> {
    use base64::Engine as _;
    let mut secret = [0u8; 32];
    aws_lc_rs::rand::fill(&mut secret).map_err(|_| AuthzError::Internal("no randomness".into()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret))
}

/// Entry points for the fuzz targets (`fuzz/`): parsers of outside input, without I/O.
#[doc(hidden)]
pub mod fuzzing {
    use certbound_jose::AlgorithmPolicy;

    /// A DCR request body (JSON) against a fixed SSA: parsing and every metadata rule.
    pub fn registration(body: &[u8]) {
        let Ok(serde_json::Value::Object(request)) =
            serde_json::from_slice::<serde_json::Value>(body)
        else {
            return;
        };
        let ssa = crate::registration::SoftwareStatement {
            software_id: "s1".into(),
            client_id: "https://d/openid_relying_party/s1".into(),
            org_id: "o1".into(),
            jwks_uri: "https://d/keystore/o1/s1/application.jwks".into(),
            jwks_transport_uri: None,
            redirect_uris: vec!["https://example.com/cb".into()],
            scopes: certbound_trust::ScopeSet::parse("cards.read"),
            client_name: "App".into(),
            client_uri: None,
            logo_uri: None,
            description: None,
            software_version: None,
        };
        let _ = crate::registration::build_metadata(
            &request,
            &ssa,
            "ssa",
            "CN=s1,OU=o1",
            &AlgorithmPolicy::default(),
            0,
        );
        let _ = certbound_jose::unverified_claims(std::str::from_utf8(body).unwrap_or_default());
    }
}
