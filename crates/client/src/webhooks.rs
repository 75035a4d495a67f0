//! Checking a webhook delivery from the Cards API, as a programme manager's receiver does it:
//! `Content-Digest` (RFC 9530) is the body's SHA-256, and the HTTP Message Signature (RFC 9421)
//! `sig1` covers `@method`, `@target-uri`, `content-digest` and `date`, is `rsa-pss-sha512`, is
//! fresh, and verifies with the key its `keyid` names in the Cards API's `GET /keys`.
//!
//! Written from the RFCs, independently of the Cards API's signing code: the structured fields
//! are parsed (`sfv`), the signature base is rebuilt from what was received, and the signature
//! is checked by aws-lc.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// The components a delivery's signature must cover.
const REQUIRED: [&str; 4] = ["@method", "@target-uri", "content-digest", "date"];

/// How far a signature's `created` may be from the receiver's clock, seconds.
pub const MAX_SKEW: i64 = 300;

/// Why a delivery was not accepted.
#[derive(Debug, thiserror::Error)]
#[error("webhook delivery refused: {0}")]
pub struct Refused(String);

fn refuse(reason: impl Into<String>) -> Refused {
    Refused(reason.into())
}

/// Checks a delivery: `method` and `target_uri` as the receiver saw them, `headers` by lowercase
/// name, the raw `body`, the Cards API's JWKS (`GET /keys`) and the receiver's clock `now`.
pub fn verify_delivery(
    method: &str,
    target_uri: &str,
    headers: &HashMap<String, String>,
    body: &[u8],
    jwks: &Value,
    now: i64,
) -> Result<(), Refused> {
    let header = |name: &str| {
        headers
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| refuse(format!("no {name} header")))
    };
    let content_digest = header("content-digest")?;
    let digests: sfv::Dictionary = sfv::Parser::new(content_digest)
        .parse()
        .map_err(|error| refuse(format!("Content-Digest: {error}")))?;
    let sha256 = match digests.get("sha-256") {
        Some(sfv::ListEntry::Item(item)) => item.bare_item.as_byte_sequence().map(<[u8]>::to_vec),
        _ => None,
    }
    .ok_or_else(|| refuse("Content-Digest has no sha-256"))?;
    let actual = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body);
    if actual.as_ref() != sha256.as_slice() {
        return Err(refuse("Content-Digest is not the body's SHA-256"));
    }

    let input = header("signature-input")?;
    let inputs: sfv::Dictionary = sfv::Parser::new(input)
        .parse()
        .map_err(|error| refuse(format!("Signature-Input: {error}")))?;
    let Some(sfv::ListEntry::InnerList(covered)) = inputs.get("sig1") else {
        return Err(refuse("Signature-Input has no sig1 inner list"));
    };
    let components: Vec<String> = covered
        .items
        .iter()
        .map(|item| {
            item.bare_item
                .as_string()
                .map(|name| name.as_str().to_owned())
        })
        .collect::<Option<_>>()
        .ok_or_else(|| refuse("a covered component is not a string"))?;
    for required in REQUIRED {
        if !components.iter().any(|component| component == required) {
            return Err(refuse(format!("the signature does not cover {required}")));
        }
    }
    let alg = covered
        .params
        .get("alg")
        .and_then(|value| value.as_string())
        .map(|value| value.as_str().to_owned());
    if alg.as_deref() != Some("rsa-pss-sha512") {
        return Err(refuse("alg must be rsa-pss-sha512"));
    }
    let created = covered
        .params
        .get("created")
        .and_then(|value| value.as_integer())
        .map(i64::from)
        .ok_or_else(|| refuse("no created parameter"))?;
    if (now - created).abs() > MAX_SKEW {
        return Err(refuse(
            "the signature is not fresh (created is more than 5 minutes away)",
        ));
    }
    let keyid = covered
        .params
        .get("keyid")
        .and_then(|value| value.as_string())
        .map(|value| value.as_str().to_owned())
        .ok_or_else(|| refuse("no keyid parameter"))?;

    // The signature base (RFC 9421 §2.5), rebuilt from what was received.
    let mut base = String::new();
    for component in &components {
        let value = match component.as_str() {
            "@method" => method.to_owned(),
            "@target-uri" => target_uri.to_owned(),
            name if name.starts_with('@') => {
                return Err(refuse(format!("unexpected derived component {name}")));
            }
            name => header(name)?.trim().to_owned(),
        };
        base.push_str(&format!("\"{component}\": {value}\n"));
    }
    // The parameters line is sig1's inner list as RFC 9421 serializes it, whatever other
    // signatures the header carries, and wherever sig1 stands in it.
    let mut params = sfv::ListSerializer::new();
    params.members([&sfv::ListEntry::InnerList(covered.clone())]);
    let params = params
        .finish()
        .ok_or_else(|| refuse("sig1 has no parameters"))?;
    base.push_str(&format!("\"@signature-params\": {params}"));

    let signatures: sfv::Dictionary = sfv::Parser::new(header("signature")?)
        .parse()
        .map_err(|error| refuse(format!("Signature: {error}")))?;
    let signature = match signatures.get("sig1") {
        Some(sfv::ListEntry::Item(item)) => item.bare_item.as_byte_sequence().map(<[u8]>::to_vec),
        _ => None,
    }
    .ok_or_else(|| refuse("Signature has no sig1 byte sequence"))?;

    let key = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|key| key["kid"] == keyid.as_str()))
        .ok_or_else(|| refuse(format!("no key {keyid} in the JWKS")))?;
    if key["use"] != "sig" {
        return Err(refuse("the key is not a signing key"));
    }
    let component = |name: &str| {
        key[name]
            .as_str()
            .and_then(|text| URL_SAFE_NO_PAD.decode(text).ok())
            .ok_or_else(|| refuse(format!("the key has no {name}")))
    };
    let (n, e) = (component("n")?, component("e")?);
    aws_lc_rs::signature::RsaPublicKeyComponents { n: &n, e: &e }
        .verify(
            &aws_lc_rs::signature::RSA_PSS_2048_8192_SHA512,
            base.as_bytes(),
            &signature,
        )
        .map_err(|_| refuse("the signature does not verify"))?;
    Ok(())
}
