//! The directory: the seed's Raidiam Connect. Organisations, software statements with roles,
//! certificates issued from CSRs, the public keystore, the CRL, its own mTLS token endpoint
//! (`client_credentials`, scope `directory:software`) and signed Software Statement Assertions.
//!
//! Domain rules live in plain functions over the store traits; the routers only extract,
//! call and map. Two routers: [`Directory::public_router`] for port 8441 (no client
//! certificate) and [`Directory::mtls_router`] for port 8442 (certificate required, checked
//! against revocation on every request).

#![recursion_limit = "256"]

mod admin;
mod certificates;
mod console;
mod error;
mod organisations;
mod ssa;
mod token;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use certbound_jose::{AlgorithmPolicy, SigningKey};
use certbound_pki::{CertificateAuthority, Jwk};
use certbound_store::{DirectoryStore, ReplayStore};

pub use console::CONTENT_SECURITY_POLICY;
pub use error::DirectoryError;
pub use organisations::{ROLES, Role};

/// The largest request body the directory reads (CSRs and JSON are a few KiB).
pub const BODY_LIMIT: usize = 64 * 1024;

/// Everything the directory stores, as one trait object.
pub trait Store: DirectoryStore + ReplayStore {}
impl<T: DirectoryStore + ReplayStore> Store for T {}

/// The directory's settings.
#[derive(Clone, Debug)]
pub struct DirectoryConfig {
    /// The public base URL and OpenID issuer, `https://localhost:8441` by default.
    pub issuer: String,
    /// The mTLS base URL, `https://localhost:8442` by default.
    pub mtls_base: String,
    /// Lifetime of directory access tokens, seconds.
    pub token_lifetime: i64,
    /// Accepted client assertion algorithms.
    pub algorithms: AlgorithmPolicy,
    /// The longest accepted client assertion life, seconds.
    pub assertion_max_lifetime: i64,
}

/// The directory service: configuration, store, CA and the SSA signer.
pub struct Directory {
    config: DirectoryConfig,
    store: Arc<dyn Store>,
    ca: CertificateAuthority,
    ssa_signer: SigningKey,
    ssa_signer_jwk: Jwk,
    admin_token_hash: [u8; 32],
    audit: certbound_http::AuditLog,
    /// The last CRL this instance signed, served until the revocations change or it nears its
    /// `nextUpdate`.
    crl: tokio::sync::Mutex<Option<certificates::SignedCrl>>,
    /// The console's sessions on this instance.
    console: console::Sessions,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Directory {
    /// Assembles the directory. `ssa_signer` signs PS256 with kid `signer`; its JWK carries its
    /// certificate chain. `admin_token` is compared in constant time (only its hash is kept).
    pub fn new(
        config: DirectoryConfig,
        store: Arc<dyn Store>,
        ca: CertificateAuthority,
        ssa_signer: SigningKey,
        ssa_signer_jwk: Jwk,
        admin_token: &str,
        audit: certbound_http::AuditLog,
    ) -> Arc<Self> {
        Arc::new(Self {
            config,
            store,
            ca,
            ssa_signer,
            ssa_signer_jwk,
            admin_token_hash: sha256(admin_token.as_bytes()),
            audit,
            crl: tokio::sync::Mutex::new(None),
            console: console::Sessions::new(),
        })
    }

    /// Whether `presented` is the operator's admin token (compared in constant time, by hash).
    pub(crate) fn is_admin_token(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        let hash = sha256(presented.trim().as_bytes());
        bool::from(hash.ct_eq(&self.admin_token_hash))
    }

    /// The directory's configuration.
    pub fn config(&self) -> &DirectoryConfig {
        &self.config
    }

    /// The `ClientId` of a software statement.
    pub fn client_id(&self, software_statement_id: &str) -> String {
        format!(
            "{}/openid_relying_party/{software_statement_id}",
            self.config.issuer
        )
    }

    fn mtls_token_endpoint(&self) -> String {
        format!("{}/token", self.config.mtls_base)
    }

    fn token_endpoint(&self) -> String {
        format!("{}/token", self.config.issuer)
    }

    /// Port 8441: discovery, JWKS, keystore, CA and CRL download, and the admin API.
    pub fn public_router(self: &Arc<Self>) -> Router {
        let admin = Router::new()
            .route(
                "/organisations",
                post(organisations::create_organisation).get(organisations::list_organisations),
            )
            .route("/organisations/{organisation_id}", get(organisations::show_organisation))
            .route(
                "/organisations/{organisation_id}/softwarestatements",
                post(organisations::create_software_statement).get(organisations::list_software_statements),
            )
            .route(
                "/organisations/{organisation_id}/softwarestatements/{software_statement_id}",
                get(organisations::show_software_statement),
            )
            .route(
                "/organisations/{organisation_id}/softwarestatements/{software_statement_id}/certificates",
                get(certificates::list_software_certificates),
            )
            .route(
                "/organisations/{organisation_id}/softwarestatements/{software_statement_id}/certificates/{kind}",
                post(certificates::issue_software_certificate).get(certificates::show_software_certificate).delete(certificates::revoke_software_certificate),
            )
            .route(
                "/organisations/{organisation_id}/softwarestatements/{software_statement_id}/certificates/{kind}/csr-command",
                get(certificates::software_csr_command),
            )
            .route("/organisations/{organisation_id}/certificates", get(certificates::list_organisation_certificates))
            .route(
                "/organisations/{organisation_id}/certificates/{kind}",
                post(certificates::issue_organisation_certificate).get(certificates::show_organisation_certificate).delete(certificates::revoke_organisation_certificate),
            )
            .route(
                "/organisations/{organisation_id}/certificates/{kind}/csr-command",
                get(certificates::organisation_csr_command),
            )
            .route_layer(axum::middleware::from_fn_with_state(self.clone(), admin::require_admin));
        let router = Router::new()
            .merge(admin)
            .merge(console::router())
            .route("/healthz", get(|| async { "ok" }))
            .route("/.well-known/openid-configuration", get(token::discovery))
            .route("/jwks", get(ssa::jwks))
            .route("/ca.pem", get(certificates::ca_pem))
            .route("/crl", get(certificates::crl))
            .route("/roles", get(organisations::list_roles))
            .route("/token", post(token::token_without_certificate))
            .route(
                "/keystore/{organisation_id}/{file}",
                get(certificates::organisation_keystore),
            )
            .route(
                "/keystore/{organisation_id}/{second}/{file}",
                get(certificates::keystore_two),
            )
            .route(
                "/keystore/{organisation_id}/{software_statement_id}/inactive/{file}",
                get(certificates::software_inactive_keystore),
            )
            .fallback(error::not_found)
            .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT));
        let router = certbound_http::shaped_refusals(router, certbound_http::oauth_refusal);
        self.audit
            .audited(router, "directory", certbound_store::clock::now)
            .with_state(self.clone())
    }

    /// Port 8442: the token endpoint and the SSA assertion, behind the certificate checks.
    pub fn mtls_router(self: &Arc<Self>) -> Router {
        let router = Router::new()
            .route("/token", post(token::token))
            .route(
                "/organisations/{organisation_id}/softwarestatements/{software_statement_id}/assertion",
                get(ssa::assertion),
            )
            .route_layer(axum::middleware::from_fn_with_state(self.clone(), token::refuse_revoked_certificate))
            .route("/healthz", get(|| async { "ok" }))
            .fallback(error::not_found)
            .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT));
        let router = certbound_http::shaped_refusals(router, certbound_http::oauth_refusal);
        self.audit
            .audited(router, "directory", certbound_store::clock::now)
            .with_state(self.clone())
    }
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

pub(crate) fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
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
