//! certbound's client library: every step of the seed (the CA's web wizard and the Postman
//! collection) as code, discovery-driven, with one transport certificate for every host. The
//! `certbound` CLI, its `demo`, the tests and the load generator are built on it.
//!
//! Endpoints come from the directory's and the authorization server's discovery documents and
//! their `mtls_endpoint_aliases`; only the three base URLs (directory, authorization server,
//! Cards API) are configured, so pointing a profile at other hosts needs no code change.

mod error;
mod keys;
mod onboard;
mod profile;
mod session;
pub mod webhooks;

pub use error::ClientError;
pub use keys::{KeyAndCsr, new_key_and_csr, pkcs12};
pub use onboard::{OnboardOptions, Reporter, onboard};
pub use profile::{AssertionAudience, DEFAULT_MAX_RESPONSE_BYTES, Profile, write_private};
pub use session::{Response, Session, printable};

/// The wall clock, read at the edge of the client.
#[allow(clippy::disallowed_methods)] // the client's one clock read
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}
