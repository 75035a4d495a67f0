//! Errors a person can act on: each says what failed and what to do next.

use std::path::PathBuf;

/// Everything the client can fail at.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A server answered with an error.
    #[error("{step}: {url} answered {status}{detail}{}", .hint.as_ref().map(|hint| format!("\n  → {hint}")).unwrap_or_default())]
    Http {
        /// The step (`2.1 RC Access Token`...).
        step: String,
        /// The URL called.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The server's error, formatted.
        detail: String,
        /// What to do, where the server's own description does not say it already.
        hint: Option<String>,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Bad input from the user.
    #[error("{0}")]
    Invalid(String),
    /// A profile field a step needs is not there.
    #[error("the profile {path} has no `{field}`\n  → {hint}")]
    MissingField {
        /// The profile file.
        path: PathBuf,
        /// The field.
        field: &'static str,
        /// What to do.
        hint: &'static str,
    },
    /// The TLS layer refused: our certificate, or the server's.
    #[error("{url}: {detail}\n  → {hint}")]
    Tls {
        /// The URL.
        url: String,
        /// What rustls said.
        detail: String,
        /// What to do.
        hint: String,
    },
    /// Onboarding failed after the directory made something: the profile keeps it.
    #[error(
        "{error}\n  → {} keeps what was made so far: run the same command again to continue from there",
        .profile.display()
    )]
    Resumable {
        /// What failed.
        error: Box<ClientError>,
        /// The profile directory kept.
        profile: PathBuf,
    },
    /// No TCP connection.
    #[error(
        "cannot reach {url}: {detail}\n  → is certbound running there? `certbound up` prints its URLs; check the host and port"
    )]
    Unreachable {
        /// The URL.
        url: String,
        /// Why.
        detail: String,
    },
}

impl ClientError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }

    /// Classifies a transport error from reqwest.
    pub(crate) fn transport(url: &str, error: &reqwest::Error) -> Self {
        let mut chain = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(inner) = source {
            chain.push_str(": ");
            chain.push_str(&inner.to_string());
            source = inner.source();
        }
        let lower = chain.to_ascii_lowercase();
        if lower.contains("alert") || lower.contains("certificate required") {
            return Self::Tls {
                url: url.to_owned(),
                detail: chain,
                hint: "the server refused the client certificate: use the transport certificate the directory issued \
                       (and not revoked), or run `certbound onboard` with a new --out"
                    .into(),
            };
        }
        if lower.contains("invalid peer certificate")
            || lower.contains("unknownissuer")
            || lower.contains("certificate")
        {
            return Self::Tls {
                url: url.to_owned(),
                detail: chain,
                hint: "cannot verify the server's certificate: pass the stack's ca.pem with --ca"
                    .into(),
            };
        }
        Self::Unreachable {
            url: url.to_owned(),
            detail: chain,
        }
    }
}
