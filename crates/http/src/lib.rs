//! What every certbound HTTP part shares: the verified client certificate of the connection
//! as a typed extractor (STYLE.md 6), form bodies as OAuth reads them, and error text that is
//! safe to put in an `error_description`.
//!
//! This crate performs no TLS and no protocol decisions; the server crate creates
//! [`PeerCertificate`] values only after rustls has verified the chain.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

/// The client certificate the connection presented. It exists in a request's extensions only if
/// the TLS handshake proved possession of its key and the listener's policy accepted it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerCertificate {
    /// The leaf certificate, DER.
    pub der: Arc<[u8]>,
    /// RFC 8705 `x5t#S256` of the leaf.
    pub thumbprint: Arc<str>,
    /// Whether the chain verified against the directory CA. Always true where the listener
    /// requires that (directory mTLS, cards); false on the authorization server for a
    /// self-signed certificate (`self_signed_tls_client_auth`, RFC 8705 §2.2), whose
    /// possession the TLS handshake still proved.
    pub issued_by_directory: bool,
}

/// The TCP address the connection came from (the proxy's, behind one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddress(pub std::net::SocketAddr);

impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<ClientAddress>().copied())
    }
}

/// Refusal of a request that needs a client certificate and came without one.
#[derive(Debug)]
pub struct MissingCertificate;

impl IntoResponse for MissingCertificate {
    fn into_response(self) -> Response {
        oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "this endpoint requires mutual TLS: present a client certificate issued by the directory",
        )
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PeerCertificate {
    type Rejection = MissingCertificate;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<PeerCertificate>()
            .cloned()
            .ok_or(MissingCertificate)
    }
}

impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for PeerCertificate {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<PeerCertificate>().cloned())
    }
}

/// Removes characters RFC 6749 §5.2 forbids in `error_description` (outside %x20-21 /
/// %x23-5B / %x5D-7E): control characters such as CR, LF and TAB become spaces; `"` and `\`
/// become `'` and `/`.
///
/// At most [`MAX_DESCRIPTION`] characters: a description may quote what the client sent, and
/// nothing a client sends is echoed or recorded unbounded.
pub fn clean_description(text: &str) -> String {
    let mut cleaned: String = text
        .chars()
        .take(MAX_DESCRIPTION)
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            c if (' '..='~').contains(&c) => c,
            _ => ' ',
        })
        .collect();
    if text.chars().nth(MAX_DESCRIPTION).is_some() {
        cleaned.push_str("...");
    }
    cleaned
}

/// The longest error description sent or recorded, in characters.
pub const MAX_DESCRIPTION: usize = 512;

mod audit;
mod metrics;

pub use audit::{AuditLog, AuditUnavailable, OnFailure, Rotation};
pub use metrics::Metrics;

tokio::task_local! {
    static TRACE_ID: String;
}

/// The trace id of the request being answered: made once per request at the edge of each
/// service (the audit layer, [`AuditLog::audited`]), carried by every error body, the
/// `X-Trace-Id` header and the audit record. Outside a request (tools, unit tests) a fresh one.
pub fn trace_id() -> String {
    TRACE_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| new_trace_id())
}

/// A new trace id: a [`random_uuid`]; should the generator fail, the id is still unique within
/// this process (a count), which is all a trace id needs.
pub(crate) fn new_trace_id() -> String {
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    random_uuid()
        .unwrap_or_else(|| {
            let count = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // The count in the last eight bytes, where the version and variant bits leave it
            // whole but for its two highest bits.
            uuid::Builder::from_random_bytes(
                ((u128::from(std::process::id()) << 96) | u128::from(count)).to_be_bytes(),
            )
            .into_uuid()
        })
        .to_string()
}

/// A version 4 UUID from aws-lc's random generator, without a system call (`Uuid::new_v4`
/// makes a `getrandom` call each time, measurable on the token path); `None` should the
/// generator fail.
pub fn random_uuid() -> Option<uuid::Uuid> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).ok()?;
    Some(uuid::Builder::from_random_bytes(bytes).into_uuid())
}

/// An internal failure's detail, attached to its (generic) answer so that the edge logs it with
/// the request's trace id: error types never log in `IntoResponse`.
#[derive(Clone, Debug)]
pub struct InternalError(pub String);

/// An RFC 6749 §5.2 error response, with the request's `trace_id`. `401 invalid_client` and `invalid_token` carry
/// `WWW-Authenticate` as RFC 6749 §5.2 and RFC 6750 §3 require.
pub fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = serde_json::json!({
        "error": error,
        "error_description": clean_description(description),
        "trace_id": trace_id(),
    });
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        let challenge = if error == "invalid_client" {
            "Basic realm=\"certbound\", error=\"invalid_client\"".to_owned()
        } else {
            format!(
                "Bearer error=\"{error}\", error_description=\"{}\"",
                clean_description(description)
            )
        };
        if let Ok(value) = challenge.parse() {
            response
                .headers_mut()
                .insert(axum::http::header::WWW_AUTHENTICATE, value);
        }
    }
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    response.extensions_mut().insert(Refusal {
        code: error.to_owned(),
        description: clean_description(description),
    });
    response
}

/// axum answers some refusals itself, before any handler runs, as plain text or with no body at
/// all: a body over the limit (413), a method the path does not take (405), a path or query that
/// does not parse (400), a wrong content type (415). This layer gives each the service's own JSON
/// error shape through `shape` (its status kept, axum's reason or the status's name as the
/// description), so that every refusal a client meets reads alike. Apply it inside the audit
/// layer, so that `shape`'s [`Refusal`] is recorded.
pub fn shaped_refusals<S: Clone + Send + Sync + 'static>(
    router: axum::Router<S>,
    shape: fn(StatusCode, String) -> Response,
) -> axum::Router<S> {
    router.layer(axum::middleware::map_response(move |response: Response| {
        reshape(response, shape)
    }))
}

async fn reshape(response: Response, shape: fn(StatusCode, String) -> Response) -> Response {
    let plain = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_none_or(|value| value.as_bytes().starts_with(b"text/plain"));
    if !response.status().is_client_error() || !plain {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_owned();
    let description = match (parts.status, text.is_empty()) {
        (StatusCode::METHOD_NOT_ALLOWED, _) => {
            "this endpoint does not take that method: the Allow header lists the ones it takes"
                .to_owned()
        }
        (StatusCode::PAYLOAD_TOO_LARGE, _) => {
            format!("the request body is too large ({text})")
        }
        (status, true) => status.canonical_reason().unwrap_or("refused").to_owned(),
        (_, false) => text,
    };
    let mut shaped = shape(parts.status, description);
    if let Some(allow) = parts.headers.get(axum::http::header::ALLOW) {
        shaped
            .headers_mut()
            .insert(axum::http::header::ALLOW, allow.clone());
    }
    shaped
}

/// [`shaped_refusals`]' shape for the OAuth services (the directory, the authorization server):
/// RFC 6749 §5.2 JSON with `invalid_request`.
pub fn oauth_refusal(status: StatusCode, description: String) -> Response {
    oauth_error(status, "invalid_request", &description)
}

/// Why a form body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormError {
    /// Content-Type is not `application/x-www-form-urlencoded` (a `charset` parameter is fine).
    ContentType,
    /// A parameter appears twice (RFC 6749 §3.2: parameters must not be repeated).
    Repeated(String),
}

impl FormError {
    /// The message for `error_description`.
    pub fn description(&self) -> String {
        match self {
            Self::ContentType => "the body must be application/x-www-form-urlencoded".to_owned(),
            Self::Repeated(name) => format!("parameter `{name}` is repeated"),
        }
    }
}

/// Parses an `application/x-www-form-urlencoded` body (with or without `charset`) into
/// parameters; empty values count as absent (RFC 6749 §3.1).
pub fn parse_form(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<BTreeMap<String, String>, FormError> {
    let essence = content_type
        .and_then(|value| value.split(';').next())
        .map(str::trim);
    if !essence
        .is_some_and(|essence| essence.eq_ignore_ascii_case("application/x-www-form-urlencoded"))
    {
        return Err(FormError::ContentType);
    }
    let mut parameters = BTreeMap::new();
    for (name, value) in body
        .split(|byte| *byte == b'&')
        .filter(|sequence| !sequence.is_empty())
        .map(form_pair)
    {
        if value.is_empty() {
            continue;
        }
        match parameters.entry(name) {
            std::collections::btree_map::Entry::Occupied(repeated) => {
                return Err(FormError::Repeated(repeated.key().clone()));
            }
            std::collections::btree_map::Entry::Vacant(new) => {
                new.insert(value);
            }
        }
    }
    Ok(parameters)
}

/// One `name=value` of a form (no `&` in it, not empty), decoded as `form_urlencoded` decodes
/// it: `+` a space, `%XX` a byte, then UTF-8 with U+FFFD for what is not. Without a `+` or a `%`
/// there is nothing to decode, and the bytes are taken as they are, checked as UTF-8 once: a
/// client assertion is a kilobyte of base64url, and the crate's decoding, byte by byte, was
/// about 5 % of a token request's instructions.
fn form_pair(sequence: &[u8]) -> (String, String) {
    if sequence.contains(&b'%') || sequence.contains(&b'+') {
        return form_urlencoded::parse(sequence)
            .next()
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .unwrap_or_default();
    }
    let text = |bytes: &[u8]| match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    };
    match sequence.iter().position(|byte| *byte == b'=') {
        Some(at) => (
            text(sequence.get(..at).unwrap_or_default()),
            text(sequence.get(at + 1..).unwrap_or_default()),
        ),
        None => (text(sequence), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_lose_control_characters() {
        assert_eq!(clean_description("a\r\nb\tc\"d\\"), "a  b c'd/");
    }

    #[test]
    fn forms_accept_a_charset_and_refuse_repeats() {
        let form = parse_form(
            Some("application/x-www-form-urlencoded; charset=UTF-8"),
            b"a=1&b=&c=x%20y",
        )
        .unwrap();
        assert_eq!(form.get("a").map(String::as_str), Some("1"));
        assert_eq!(form.get("b"), None);
        assert_eq!(form.get("c").map(String::as_str), Some("x y"));
        assert_eq!(
            parse_form(Some("application/json"), b"{}"),
            Err(FormError::ContentType)
        );
        assert_eq!(parse_form(None, b"a=1"), Err(FormError::ContentType));
        assert_eq!(
            parse_form(Some("application/x-www-form-urlencoded"), b"a=1&a=2"),
            Err(FormError::Repeated("a".into()))
        );
    }

    /// Every body of up to five bytes drawn from the characters that matter (the separators,
    /// `+`, `%` and hex digits, a letter, bytes that are not UTF-8 alone) parses exactly as
    /// `form_urlencoded::parse` parses it, refusals included.
    #[test]
    fn forms_parse_as_form_urlencoded_does() {
        fn reference(body: &[u8]) -> Result<BTreeMap<String, String>, FormError> {
            let mut parameters = BTreeMap::new();
            for (name, value) in form_urlencoded::parse(body) {
                if value.is_empty() {
                    continue;
                }
                if parameters
                    .insert(name.clone().into_owned(), value.into_owned())
                    .is_some()
                {
                    return Err(FormError::Repeated(name.into_owned()));
                }
            }
            Ok(parameters)
        }
        let alphabet: &[u8] = b"&=+%2Fa\xc3\xa9\xff";
        let mut body = Vec::new();
        let mut checked = 0;
        for length in 0..=5u32 {
            for mut n in 0..alphabet.len().pow(length) {
                body.clear();
                for _ in 0..length {
                    body.push(alphabet[n % alphabet.len()]);
                    n /= alphabet.len();
                }
                assert_eq!(
                    parse_form(Some("application/x-www-form-urlencoded"), &body),
                    reference(&body),
                    "{body:?}"
                );
                checked += 1;
            }
        }
        assert!(checked > 100_000, "{checked}");
        let assertion = b"client_assertion=eyJhbGciOiJQUzI1NiJ9.eyJpc3MiOiJjIn0.c2ln-_&grant_type=client_credentials";
        assert_eq!(
            parse_form(Some("application/x-www-form-urlencoded"), assertion),
            reference(assertion)
        );
    }
}

/// A refusal, attached to an error response so the audit middleware can record it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The wire error code (`invalid_client`, `invalid_token`...).
    pub code: String,
    /// The description sent to the client (never a secret).
    pub description: String,
}
