//! The directory's errors and their one mapping to HTTP (STYLE.md 5). The admin API and the
//! token endpoint answer the same JSON shape, RFC 6749 §5.2's `{error, error_description}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use certbound_http::oauth_error;

/// Everything the directory refuses or fails at.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// 409: the resource is already in the requested state.
    #[error("{0}")]
    Conflict(String),
    /// 403: authenticated, but not for this resource.
    #[error("{0}")]
    Forbidden(String),
    /// 500: logged with a trace id, answered generically.
    #[error("internal error: {0}")]
    Internal(String),
    /// 401 `invalid_client` (RFC 6749 §5.2): client authentication failed.
    #[error("{0}")]
    InvalidClient(String),
    /// 400 `invalid_request`: one named field is missing or malformed (the reason names it too).
    /// The console shows the reason next to that field.
    #[error("{reason}")]
    InvalidField {
        /// The field, as the API names it (`OrganisationName`, `Roles`, `Csr`).
        field: &'static str,
        /// What is wrong and what to send instead.
        reason: String,
    },
    /// 400 `invalid_request`: the request is malformed as a whole.
    #[error("{0}")]
    InvalidRequest(String),
    /// 400 `invalid_scope` (RFC 6749 §5.2).
    #[error("{0}")]
    InvalidScope(String),
    /// 401 `invalid_token` (RFC 6750 §3.1): missing, unknown, expired or wrongly bound token.
    #[error("{0}")]
    InvalidToken(String),
    /// 404: no such resource.
    #[error("{0}")]
    NotFound(String),
    /// 503 `temporarily_unavailable`: the audit trail cannot be written, so the action was not
    /// taken (DESIGN.md section 6).
    #[error("{0}")]
    TemporarilyUnavailable(String),
    /// 401 for the admin API: no or wrong operator token.
    #[error("{0}")]
    Unauthorized(String),
    /// 415: the body's media type is not one this endpoint reads.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 400 `unsupported_grant_type` (RFC 6749 §5.2).
    #[error("{0}")]
    UnsupportedGrantType(String),
}

impl DirectoryError {
    /// The wire `error` code.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Conflict(_) => "conflict",
            Self::Forbidden(_) => "forbidden",
            Self::Internal(_) => "server_error",
            Self::InvalidClient(_) => "invalid_client",
            Self::InvalidField { .. } | Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidScope(_) => "invalid_scope",
            Self::InvalidToken(_) => "invalid_token",
            Self::NotFound(_) => "not_found",
            Self::TemporarilyUnavailable(_) => "temporarily_unavailable",
            Self::Unauthorized(_) => "unauthorized",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::UnsupportedGrantType(_) => "unsupported_grant_type",
        }
    }
}

impl DirectoryError {
    /// The refusal of one field.
    pub(crate) fn field(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidField {
            field,
            reason: reason.into(),
        }
    }
}

impl From<certbound_store::StoreError> for DirectoryError {
    fn from(error: certbound_store::StoreError) -> Self {
        Self::Internal(error.to_string())
    }
}

impl From<certbound_http::AuditUnavailable> for DirectoryError {
    fn from(error: certbound_http::AuditUnavailable) -> Self {
        Self::TemporarilyUnavailable(error.to_string())
    }
}

impl DirectoryError {
    /// The HTTP status of this refusal: the one mapping, used by the API's answers and the
    /// console's pages alike.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::InvalidClient(_) | Self::InvalidToken(_) | Self::Unauthorized(_) => {
                StatusCode::UNAUTHORIZED
            }
            Self::InvalidField { .. }
            | Self::InvalidRequest(_)
            | Self::InvalidScope(_)
            | Self::UnsupportedGrantType(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::TemporarilyUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        }
    }
}

impl IntoResponse for DirectoryError {
    fn into_response(self) -> Response {
        match &self {
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
                response
            }
            Self::Unauthorized(_) => {
                let mut response =
                    oauth_error(StatusCode::UNAUTHORIZED, self.as_str(), &self.to_string());
                response.headers_mut().insert(
                    axum::http::header::WWW_AUTHENTICATE,
                    axum::http::HeaderValue::from_static(
                        "Bearer realm=\"certbound directory admin\"",
                    ),
                );
                response
            }
            _ => oauth_error(self.status(), self.as_str(), &self.to_string()),
        }
    }
}

/// The fallback for unknown paths.
pub(crate) async fn not_found() -> DirectoryError {
    DirectoryError::NotFound("no such endpoint".into())
}
