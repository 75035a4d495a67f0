//! Envelope encryption at rest: AES-256-GCM (aws-lc-rs) under the master key, a fresh random
//! nonce per value, and the value's name as associated data so a sealed value cannot be moved
//! to another row. Format: `v1.` + base64(nonce ‖ ciphertext ‖ tag).
//!
//! The master key also keys digests of values that may hold secrets (an idempotency record's
//! request body carries a PIN): HMAC-SHA-256 under a key derived from the master key
//! (HMAC(master, label), the HKDF-Expand step with one block), never a bare hash that a small
//! secret space would give away to brute force.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

const PREFIX: &str = "v1.";

/// Why a value could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The master key is not 32 bytes of base64 or hex.
    #[error("the master key must be 32 bytes, base64 or hex encoded")]
    BadMasterKey,
    /// The sealed value is corrupt, or was sealed under another master key or name.
    #[error("a sealed value does not open: wrong master key, or the value was altered")]
    Open,
    /// The crypto library failed.
    #[error("sealing failed")]
    Seal,
}

/// The 32-byte key that encrypts every secret the stack stores.
pub struct MasterKey {
    key: LessSafeKey,
    digests: hmac::Key,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// A new random key and its encoded form (base64), for writing to `master.key`.
    pub fn generate() -> Result<(Self, Zeroizing<String>), SealError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(bytes.as_mut()).map_err(|_| SealError::Seal)?;
        let encoded = Zeroizing::new(STANDARD.encode(bytes.as_ref()));
        Ok((Self::from_bytes(bytes.as_ref())?, encoded))
    }

    /// Parses the encoded key (base64 or 64 hex digits), surrounding whitespace ignored.
    pub fn parse(encoded: &str) -> Result<Self, SealError> {
        let trimmed = encoded.trim();
        let bytes = Zeroizing::new(
            if trimmed.len() == 64 && trimmed.bytes().all(|b| b.is_ascii_hexdigit()) {
                (0..64)
                    .step_by(2)
                    .map(|i| {
                        trimmed
                            .get(i..i + 2)
                            .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                    })
                    .collect::<Option<Vec<u8>>>()
                    .ok_or(SealError::BadMasterKey)?
            } else {
                STANDARD
                    .decode(trimmed)
                    .map_err(|_| SealError::BadMasterKey)?
            },
        );
        Self::from_bytes(&bytes)
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, SealError> {
        if bytes.len() != 32 {
            return Err(SealError::BadMasterKey);
        }
        let key = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| SealError::BadMasterKey)?;
        let derived = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, bytes),
            b"certbound keyed digests v1\x01",
        );
        Ok(Self {
            key: LessSafeKey::new(key),
            digests: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
        })
    }

    /// A keyed digest of `data` for `purpose` (hex HMAC-SHA-256): equal inputs give equal
    /// digests, and nothing about `data` can be learnt from it without the master key.
    pub fn digest(&self, purpose: &str, data: &[u8]) -> String {
        let mut context = hmac::Context::with_key(&self.digests);
        context.update(purpose.as_bytes());
        context.update(&[0]);
        context.update(data);
        context
            .sign()
            .as_ref()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    /// Encrypts `plaintext`, bound to `name`.
    pub fn seal(&self, name: &str, plaintext: &[u8]) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| SealError::Seal)?;
        let mut buffer = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut buffer,
            )
            .map_err(|_| SealError::Seal)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buffer);
        Ok(format!("{PREFIX}{}", STANDARD.encode(out)))
    }

    /// Decrypts a value sealed under `name`.
    pub fn open(&self, name: &str, sealed: &str) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let body = sealed.strip_prefix(PREFIX).ok_or(SealError::Open)?;
        let bytes = STANDARD.decode(body).map_err(|_| SealError::Open)?;
        let (nonce, ciphertext) = bytes.split_at_checked(NONCE_LEN).ok_or(SealError::Open)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Open)?;
        let mut buffer = Zeroizing::new(ciphertext.to_vec());
        let plaintext = self
            .key
            .open_in_place(nonce, Aad::from(name.as_bytes()), buffer.as_mut_slice())
            .map_err(|_| SealError::Open)?;
        Ok(Zeroizing::new(plaintext.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_bound_to_the_name() {
        let (key, encoded) = MasterKey::generate().unwrap();
        let sealed = key.seal("ca.issuing", b"secret key bytes").unwrap();
        assert!(!sealed.contains("secret"));
        assert_eq!(
            key.open("ca.issuing", &sealed).unwrap().as_slice(),
            b"secret key bytes"
        );
        assert!(matches!(key.open("ca.root", &sealed), Err(SealError::Open)));
        let again = MasterKey::parse(&encoded).unwrap();
        assert_eq!(
            again.open("ca.issuing", &sealed).unwrap().as_slice(),
            b"secret key bytes"
        );
        let (other, _) = MasterKey::generate().unwrap();
        assert!(matches!(
            other.open("ca.issuing", &sealed),
            Err(SealError::Open)
        ));
    }

    #[test]
    fn digests_are_keyed_by_purpose_and_master_key() {
        let (key, _) = MasterKey::generate().unwrap();
        let (other, _) = MasterKey::generate().unwrap();
        let body = br#"{"pin":"1234"}"#;
        let digest = key.digest("idempotency", body);
        assert_eq!(digest, key.digest("idempotency", body));
        assert_eq!(digest.len(), 64);
        assert_ne!(digest, key.digest("other purpose", body));
        assert_ne!(digest, other.digest("idempotency", body));
        let bare = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body);
        let bare: String = bare.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_ne!(
            digest, bare,
            "not the unsalted SHA-256 a brute force would find"
        );
    }

    #[test]
    fn refuses_short_keys() {
        assert!(matches!(
            MasterKey::parse("c2hvcnQ="),
            Err(SealError::BadMasterKey)
        ));
        assert!(MasterKey::parse(&"ab".repeat(32)).is_ok());
    }
}
