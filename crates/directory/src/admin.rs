//! The operator's bearer token for the admin API, compared in constant time.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::{Directory, DirectoryError};

/// Lets the request through only with `Authorization: Bearer <admin token>`.
#[tracing::instrument(skip_all)]
pub(crate) async fn require_admin(
    State(directory): State<Arc<Directory>>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        });
    let Some(presented) = presented else {
        return DirectoryError::Unauthorized(
            "the admin API needs `Authorization: Bearer <token>`: the token is in DATA_DIR/admin.token".into(),
        )
        .into_response();
    };
    if !directory.is_admin_token(presented) {
        return DirectoryError::Unauthorized(
            "the admin token is wrong: use the one in DATA_DIR/admin.token".into(),
        )
        .into_response();
    }
    next.run(request).await
}
