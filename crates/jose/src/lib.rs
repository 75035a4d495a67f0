//! certbound's thin layer over `jsonwebtoken`: which algorithms are allowed, which key of a
//! JWK Set verifies a token, and the RFC 7523 rules of a client assertion.
//!
//! No I/O and no clock: keys and `now` are passed in. The replay check of `jti` belongs to the
//! store (a shared use-once operation); this crate only returns the `jti` and its expiry.
//!
//! Two hot-path exceptions to "through jsonwebtoken", both because it parses a key again for
//! every use: the ES256 token signer signs through aws-lc-rs with its key parsed once, and a
//! client assertion's PS256/ES256/RS256 signature is checked with the client's key parsed once
//! (aws-lc-rs `ParsedPublicKey`). The cryptography is aws-lc's either way; the JWS framing around
//! it is RFC 7515's compact form, held to jsonwebtoken's own decisions by a test.

mod assertion;
mod jws;
mod keys;

pub use assertion::{
    AssertionError, AssertionRules, DEFAULT_MAX_LIFETIME, VerifiedAssertion,
    verify_client_assertion,
};
pub use jsonwebtoken::Algorithm;
pub use jws::{
    JwsError, VerifiedJws, unverified_claims, unverified_header, unverified_kid, verify_jws,
};
pub use keys::{AlgorithmPolicy, JoseError, SigningKey, VerificationKey, sign};
