//! The Cards API's own keys and the encrypted card data endpoint's cryptography, all aws-lc-rs:
//! RSA-OAEP-256 to unwrap the client's AES key, AES-256-GCM for the payload, PS256 over
//! ciphertext‖tag‖iv so the client knows the card service produced it.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, PrivateDecryptingKey};
use aws_lc_rs::signature::{RSA_PSS_SHA256, RSA_PSS_SHA512, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use certbound_pki::{Jwk, JwkSet};
use zeroize::Zeroizing;

use crate::error::CardsError;

/// The encryption and signing keys of the Cards API, with their published JWKS.
pub struct CardKeys {
    decrypting: OaepPrivateDecryptingKey,
    signing: RsaKeyPair,
    jwks: JwkSet,
}

impl std::fmt::Debug for CardKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardKeys").finish_non_exhaustive()
    }
}

impl CardKeys {
    /// From PKCS#8 RSA keys and their certificate chains (leaf first).
    pub fn new(
        encryption_pkcs8: &[u8],
        encryption_chain: &[Vec<u8>],
        signing_pkcs8: &[u8],
        signing_chain: &[Vec<u8>],
    ) -> Result<Self, CardsError> {
        let internal = |error: &dyn std::fmt::Display| CardsError::Internal(error.to_string());
        let private = PrivateDecryptingKey::from_pkcs8(encryption_pkcs8)
            .map_err(|error| internal(&format!("encryption key: {error}")))?;
        let decrypting = OaepPrivateDecryptingKey::new(private)
            .map_err(|error| internal(&format!("encryption key: {error}")))?;
        let signing = RsaKeyPair::from_pkcs8(signing_pkcs8).map_err(|error| internal(&error))?;
        let jwk = |chain: &[Vec<u8>], key_use: &str, alg: &str| {
            let slices: Vec<&[u8]> = chain.iter().map(Vec::as_slice).collect();
            Jwk::from_certificate_chain(&slices, key_use, Some(alg))
                .map_err(|error| internal(&error))
        };
        let jwks = JwkSet {
            keys: vec![
                jwk(encryption_chain, "enc", "RSA-OAEP-256")?,
                jwk(signing_chain, "sig", "PS256")?,
            ],
        };
        Ok(Self {
            decrypting,
            signing,
            jwks,
        })
    }

    /// `GET /keys`.
    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    /// The signing key's `kid` (as `GET /keys` publishes it).
    pub fn signing_kid(&self) -> &str {
        self.jwks
            .keys
            .iter()
            .find(|key| key.key_use == "sig")
            .map_or("", |key| key.kid.as_str())
    }

    /// An RSASSA-PSS SHA-512 signature of `message` by the signing key (RFC 9421's
    /// `rsa-pss-sha512`, for webhook deliveries).
    pub fn sign_pss_sha512(&self, message: &[u8]) -> Result<Vec<u8>, CardsError> {
        let mut signature = vec![0u8; self.signing.public_modulus_len()];
        self.signing
            .sign(
                &RSA_PSS_SHA512,
                &aws_lc_rs::rand::SystemRandom::new(),
                message,
                &mut signature,
            )
            .map_err(|_| CardsError::Internal("RSA-PSS-SHA512 signing failed".into()))?;
        Ok(signature)
    }

    /// The encrypted card data response for `plaintext` under the client's wrapped AES key.
    pub fn encrypt_for_client(
        &self,
        wrapped_key: &str,
        plaintext: &[u8],
    ) -> Result<EncryptedPayload, CardsError> {
        let bad_key = || {
            CardsError::field(
                "key",
                "key must be base64 of a 32-byte AES key encrypted with RSA-OAEP-256 to the encryption key of /keys",
            )
        };
        let wrapped = STANDARD.decode(wrapped_key.trim()).map_err(|_| bad_key())?;
        let mut buffer = Zeroizing::new(vec![0u8; self.decrypting.min_output_size()]);
        let key = self
            .decrypting
            .decrypt(&OAEP_SHA256_MGF1SHA256, &wrapped, &mut buffer, None)
            .map_err(|_| bad_key())?;
        if key.len() != 32 {
            return Err(bad_key());
        }
        let aead = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| bad_key())?);
        let mut iv = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut iv).map_err(|_| CardsError::Internal("no randomness".into()))?;
        let mut sealed = plaintext.to_vec();
        aead.seal_in_place_append_tag(Nonce::assume_unique_for_key(iv), Aad::empty(), &mut sealed)
            .map_err(|_| CardsError::Internal("AES-GCM failed".into()))?;
        let mut signed = sealed.clone();
        signed.extend_from_slice(&iv);
        let mut signature = vec![0u8; self.signing.public_modulus_len()];
        self.signing
            .sign(
                &RSA_PSS_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                &signed,
                &mut signature,
            )
            .map_err(|_| CardsError::Internal("PS256 signing failed".into()))?;
        Ok(EncryptedPayload {
            iv: STANDARD.encode(iv),
            encrypted_payload: STANDARD.encode(&sealed),
            signature_of_payload_and_iv: STANDARD.encode(signature),
        })
    }
}

/// The `/encrypted` response.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EncryptedPayload {
    /// base64 of the 12-byte IV.
    pub iv: String,
    /// base64 of ciphertext‖tag.
    pub encrypted_payload: String,
    /// base64 of the PS256 signature over ciphertext‖tag‖iv.
    pub signature_of_payload_and_iv: String,
}
