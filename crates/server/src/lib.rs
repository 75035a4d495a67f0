//! certbound's HTTPS edge and process wiring: typed configuration, first-start bootstrap of the
//! data dir (master key, database, CA hierarchy, signing keys, TLS certificates, `ca.pem`,
//! `admin.token`), rustls listeners that capture the verified client certificate, and graceful
//! shutdown.
//!
//! No protocol logic lives here: the parts' routers decide; this crate only runs them.

mod bootstrap;
mod config;
mod idle;
mod listener;
mod ops;
mod proxy;
mod unread_body;
mod verifier;

pub use bootstrap::{
    BootstrapError, MasterKeyRotation, TrustMaterial, backup, restore, rotate_master_key,
    rotate_token_signing_key,
};
pub use certbound_authz::keys::{DEFAULT_PUBLISH_DELAY, MIN_PUBLISH_DELAY};
pub use config::{
    AuditFailure, AuditRotation, ConfigError, Limits, Listen, Ops, Part, RateLimits, Sandbox,
    StackConfig, Webhooks,
};
pub use listener::{Routers, RunningStack, StartError, start};
pub use proxy::forwarded_certificates;
