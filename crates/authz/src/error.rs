//! The authorization server's errors, named by their RFC codes, and their one mapping to HTTP.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use certbound_http::oauth_error;

/// Every refusal of the authorization server. The variant names are the wire codes.
#[derive(Debug, thiserror::Error)]
pub enum AuthzError {
    /// 500, logged with a trace id.
    #[error("internal error: {0}")]
    Internal(String),
    /// RFC 6749 §5.2: client authentication failed (401).
    #[error("{0}")]
    InvalidClient(String),
    /// RFC 7591 §3.2.2: a metadata value is invalid.
    #[error("{0}")]
    InvalidClientMetadata(String),
    /// RFC 7591 §3.2.2: a redirect URI is not allowed.
    #[error("{0}")]
    InvalidRedirectUri(String),
    /// RFC 6749 §5.2: the request is malformed.
    #[error("{0}")]
    InvalidRequest(String),
    /// RFC 6749 §5.2: a requested scope is not allowed.
    #[error("{0}")]
    InvalidScope(String),
    /// RFC 7591 §3.2.2: the software statement is invalid.
    #[error("{0}")]
    InvalidSoftwareStatement(String),
    /// RFC 6750 §3.1: the registration access token is missing or wrong (401).
    #[error("{0}")]
    InvalidToken(String),
    /// RFC 7591 §3.2.2: the software statement is not approved for this registration.
    #[error("{0}")]
    UnapprovedSoftwareStatement(String),
    /// 429 with `Retry-After` (RFC 6585 §4): over a rate limit.
    #[error("{message}")]
    TooManyRequests {
        /// What happened.
        message: String,
        /// Seconds until the window resets.
        retry_after: u64,
    },
    /// 503 `temporarily_unavailable`: the audit trail cannot be written, so the action was not
    /// taken (DESIGN.md section 6).
    #[error("{0}")]
    TemporarilyUnavailable(String),
    /// RFC 6749 §5.2: the client may not use this grant or method.
    #[error("{0}")]
    UnauthorizedClient(String),
    /// RFC 6749 §5.2.
    #[error("{0}")]
    UnsupportedGrantType(String),
    /// RFC 7009 §2.2.1.
    #[error("{0}")]
    UnsupportedTokenType(String),
}

impl AuthzError {
    /// The wire `error` code.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Internal(_) => "server_error",
            Self::InvalidClient(_) => "invalid_client",
            Self::InvalidClientMetadata(_) => "invalid_client_metadata",
            Self::InvalidRedirectUri(_) => "invalid_redirect_uri",
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidScope(_) => "invalid_scope",
            Self::InvalidSoftwareStatement(_) => "invalid_software_statement",
            Self::InvalidToken(_) => "invalid_token",
            Self::UnapprovedSoftwareStatement(_) => "unapproved_software_statement",
            Self::UnauthorizedClient(_) => "unauthorized_client",
            Self::UnsupportedGrantType(_) => "unsupported_grant_type",
            Self::UnsupportedTokenType(_) => "unsupported_token_type",
            Self::TooManyRequests { .. } => "too_many_requests",
            Self::TemporarilyUnavailable(_) => "temporarily_unavailable",
        }
    }
}

impl From<certbound_store::StoreError> for AuthzError {
    fn from(error: certbound_store::StoreError) -> Self {
        Self::Internal(error.to_string())
    }
}

impl From<certbound_http::AuditUnavailable> for AuthzError {
    fn from(error: certbound_http::AuditUnavailable) -> Self {
        Self::TemporarilyUnavailable(error.to_string())
    }
}

impl IntoResponse for AuthzError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Internal(detail) => {
                // Logged at the edge with the request's trace id, which the body carries too.
                let mut response = oauth_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    self.as_str(),
                    "internal error: report it with this answer's trace_id",
                );
                response
                    .extensions_mut()
                    .insert(certbound_http::InternalError(detail.clone()));
                return response;
            }
            Self::TooManyRequests { retry_after, .. } => {
                let mut response = oauth_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    self.as_str(),
                    &self.to_string(),
                );
                if let Ok(value) = axum::http::HeaderValue::from_str(&retry_after.to_string()) {
                    response
                        .headers_mut()
                        .insert(axum::http::header::RETRY_AFTER, value);
                }
                return response;
            }
            Self::InvalidClient(_) | Self::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Self::TemporarilyUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::InvalidClientMetadata(_)
            | Self::InvalidRedirectUri(_)
            | Self::InvalidRequest(_)
            | Self::InvalidScope(_)
            | Self::InvalidSoftwareStatement(_)
            | Self::UnapprovedSoftwareStatement(_)
            | Self::UnauthorizedClient(_)
            | Self::UnsupportedGrantType(_)
            | Self::UnsupportedTokenType(_) => StatusCode::BAD_REQUEST,
        };
        oauth_error(status, self.as_str(), &self.to_string())
    }
}

/// The fallback for unknown paths.
pub(crate) async fn not_found() -> Response {
    oauth_error(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}
