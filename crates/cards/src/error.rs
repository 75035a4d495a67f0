//! The Cards API's errors: the Thredd shape `{type, title, status, traceId, errors}` for request
//! errors, RFC 6750 `WWW-Authenticate` for token errors. One mapping, one place.

use std::collections::BTreeMap;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Everything the Cards API refuses or fails at.
#[derive(Debug, thiserror::Error)]
pub enum CardsError {
    /// 409: the card's state forbids it (a terminal status, a blocked CVV).
    #[error("{0}")]
    Conflict(String),
    /// 403 `insufficient_scope` (RFC 6750 §3.1): the token lacks the scope.
    #[error("this call needs the `{0}` scope")]
    InsufficientScope(&'static str),
    /// 500, logged with the trace id.
    #[error("internal error: {0}")]
    Internal(String),
    /// 401 `invalid_token` (RFC 6750 §3.1): missing, expired, revoked, unknown or wrongly bound.
    #[error("{0}")]
    InvalidToken(String),
    /// 404: no such card for this organisation.
    #[error("{0}")]
    NotFound(String),
    /// 413.
    #[error("the request body is too large")]
    TooLarge,
    /// 429: a quota of the caller's organisation is used up for now.
    #[error("{0}")]
    TooManyRequests(String),
    /// 422: well-formed but not applicable (fulfilment on a virtual card).
    #[error("{field}: {message}")]
    Unprocessable {
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// 400 with field errors.
    #[error("one or more validation errors occurred")]
    Validation(BTreeMap<String, Vec<String>>),
}

impl CardsError {
    /// A 400 for one field.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::Validation(BTreeMap::from([(field.to_owned(), vec![message.into()])]))
    }
}

impl From<certbound_store::StoreError> for CardsError {
    fn from(error: certbound_store::StoreError) -> Self {
        Self::Internal(error.to_string())
    }
}

fn problem(
    status: StatusCode,
    title: &str,
    errors: BTreeMap<String, Vec<String>>,
    trace_id: &str,
) -> Response {
    let kind = match status.as_u16() {
        400 => "https://tools.ietf.org/html/rfc9110#section-15.5.1",
        401 => "https://tools.ietf.org/html/rfc9110#section-15.5.2",
        403 => "https://tools.ietf.org/html/rfc9110#section-15.5.4",
        404 => "https://tools.ietf.org/html/rfc9110#section-15.5.5",
        405 => "https://tools.ietf.org/html/rfc9110#section-15.5.6",
        409 => "https://tools.ietf.org/html/rfc9110#section-15.5.10",
        413 => "https://tools.ietf.org/html/rfc9110#section-15.5.14",
        415 => "https://tools.ietf.org/html/rfc9110#section-15.5.16",
        422 => "https://tools.ietf.org/html/rfc9110#section-15.5.21",
        429 => "https://tools.ietf.org/html/rfc6585#section-4",
        _ => "https://tools.ietf.org/html/rfc9110#section-15.6.1",
    };
    let body = json!({"type": kind, "title": title, "status": status.as_u16(), "traceId": trace_id, "errors": errors});
    (status, Json(body)).into_response()
}

/// The Thredd shape for a refusal axum makes before a handler runs
/// ([`certbound_http::shaped_refusals`]): a body over the limit, a method the path does not take,
/// a path or query that does not parse, a wrong content type.
pub(crate) fn framework_refusal(status: StatusCode, message: String) -> Response {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return CardsError::TooLarge.into_response();
    }
    let title = status.canonical_reason().unwrap_or("Bad Request");
    let trace_id = certbound_http::trace_id();
    let mut response = problem(
        status,
        title,
        BTreeMap::from([("request".to_owned(), vec![message.clone()])]),
        &trace_id,
    );
    response.extensions_mut().insert(certbound_http::Refusal {
        code: title.to_owned(),
        description: certbound_http::clean_description(&message),
    });
    response
}

impl IntoResponse for CardsError {
    fn into_response(self) -> Response {
        let trace_id = certbound_http::trace_id();
        let one = |key: &str, message: String| BTreeMap::from([(key.to_owned(), vec![message])]);
        match self {
            Self::Validation(errors) => problem(
                StatusCode::BAD_REQUEST,
                "One or more validation errors occurred.",
                errors,
                &trace_id,
            ),
            Self::Conflict(message) => problem(
                StatusCode::CONFLICT,
                "Conflict",
                one("card", message),
                &trace_id,
            ),
            Self::NotFound(message) => problem(
                StatusCode::NOT_FOUND,
                "Not Found",
                one("card", message),
                &trace_id,
            ),
            Self::TooLarge => problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Payload Too Large",
                one(
                    "body",
                    "the request body is larger than the API accepts".into(),
                ),
                &trace_id,
            ),
            Self::TooManyRequests(message) => {
                let mut response = problem(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too Many Requests",
                    one("request", message.clone()),
                    &trace_id,
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                response.extensions_mut().insert(certbound_http::Refusal {
                    code: "too_many_requests".into(),
                    description: certbound_http::clean_description(&message),
                });
                response
            }
            Self::Unprocessable { field, message } => problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Unprocessable Entity",
                one(&field, message),
                &trace_id,
            ),
            Self::InvalidToken(message) => {
                let mut response = problem(
                    StatusCode::UNAUTHORIZED,
                    "Unauthorized",
                    one("token", message.clone()),
                    &trace_id,
                );
                let challenge = format!(
                    "Bearer error=\"invalid_token\", error_description=\"{}\"",
                    certbound_http::clean_description(&message)
                );
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    response
                        .headers_mut()
                        .insert(header::WWW_AUTHENTICATE, value);
                }
                response.extensions_mut().insert(certbound_http::Refusal {
                    code: "invalid_token".into(),
                    description: certbound_http::clean_description(&message),
                });
                response
            }
            Self::InsufficientScope(scope) => {
                let mut response = problem(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    one("token", format!("this call needs the `{scope}` scope")),
                    &trace_id,
                );
                let challenge = format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\"");
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    response
                        .headers_mut()
                        .insert(header::WWW_AUTHENTICATE, value);
                }
                response.extensions_mut().insert(certbound_http::Refusal {
                    code: "insufficient_scope".into(),
                    description: format!("this call needs the `{scope}` scope"),
                });
                response
            }
            Self::Internal(detail) => {
                // Logged at the edge with the request's trace id, which the body carries too.
                let mut response = problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal Server Error",
                    BTreeMap::new(),
                    &trace_id,
                );
                response
                    .extensions_mut()
                    .insert(certbound_http::InternalError(detail));
                response
            }
        }
    }
}
