//! certbound's public-key infrastructure: the directory's CA hierarchy, the policy a CSR must
//! pass before it is signed, certificate issuing and revocation lists, and the JWK view of an
//! issued certificate (`kid` = RFC 7638 thumbprint, `x5c`, `x5t#S256`).
//!
//! This crate does no I/O and never reads the clock: callers pass `now` in. Every primitive
//! comes from rcgen, x509-parser and aws-lc-rs; nothing here is home-made cryptography.

mod ca;
mod certificate;
mod csr;
mod jwk;
mod keys;

pub use ca::{
    CaError, CertificateAuthority, IssuedCertificate, IssuedSubject, RevokedSerial, ServerIdentity,
    pem,
};
pub use certificate::{
    CertificateInfo, CertificateType, ParseError, names_client_auth, thumbprint_sha256,
};
pub use csr::{CsrError, CsrSubject, VerifiedCsr, check_csr};
pub use jwk::{Jwk, JwkSet};
pub use keys::{KeyError, PrivateKey, SigningKeyKind};

/// Seconds since the Unix epoch: the one representation of time this crate accepts.
pub type UnixTime = i64;

pub(crate) fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
