//! The profile: what onboarding learned (the Postman collection's variables `org_id`, `ssa_id`,
//! `kid`, `client_id`), the endpoints, the key and certificate files beside it, and the cached
//! access token. Written 0600: it holds the registration access token and access token.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ClientError;

/// The file name inside the profile directory.
pub(crate) const FILE: &str = "profile.toml";

/// A client profile.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Organisation ID (UUID): the collection's `org_id`.
    pub org_id: Option<String>,
    /// Application (software statement) ID: `ssa_id`.
    pub ssa_id: Option<String>,
    /// Signing certificate key ID: `kid`.
    pub kid: Option<String>,
    /// Client ID (URL form): `client_id`.
    pub client_id: Option<String>,
    /// Directory public base URL (only the directory steps need it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub directory: String,
    /// Authorization server base URL (its issuer): discovery starts here.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub authz: String,
    /// Cards API base URL (`.../api/v1`; only `call` and `cards` need it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cards: String,
    /// The trust anchor file (the stack's `ca.pem`), relative to the profile; system roots if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// Transport certificate chain (PEM), relative to the profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport_certificate: Option<String>,
    /// Transport key (PKCS#8 PEM, 0600), relative to the profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport_key: Option<String>,
    /// Signing certificate chain (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_certificate: Option<String>,
    /// Signing key (PKCS#8 PEM, 0600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<String>,
    /// RFC 7592 registration_client_uri, once registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_client_uri: Option<String>,
    /// RFC 7592 registration_access_token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_access_token: Option<String>,
    /// The cached access token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// Its expiry, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_expires_at: Option<i64>,
    /// The scopes to ask for in token requests (space separated). Onboarding and `register`
    /// set the software's registered scopes; `token --scope` asks for others once. Without it
    /// no `scope` is sent (a server may then grant none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The scopes the cached access token was granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_scope: Option<String>,
    /// The `aud` of client assertions at the authorization server: `issuer` (the default, FAPI 2)
    /// or `token_endpoint` (some FAPI 1 deployments accept only that).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assertion_audience: Option<AssertionAudience>,
    /// The most the client reads of one answer, bytes ([`DEFAULT_MAX_RESPONSE_BYTES`] if unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_bytes: Option<u64>,
}

/// What a client assertion names as its audience (`assertion_audience`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssertionAudience {
    /// The authorization server's issuer identifier.
    #[default]
    Issuer,
    /// The token endpoint's URL (the one the request goes to).
    TokenEndpoint,
}

/// The most the client reads of one answer unless the profile says otherwise: 16 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;

impl Profile {
    /// The profile directory a `--profile` argument names: the directory itself, or its
    /// `profile.toml`.
    pub fn directory_of(path: &Path) -> PathBuf {
        if path.file_name() == Some(std::ffi::OsStr::new(FILE)) || path.is_file() {
            match path.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
                _ => PathBuf::from("."),
            }
        } else {
            path.to_path_buf()
        }
    }

    /// Reads `DIR/profile.toml`.
    pub fn load(dir: &Path) -> Result<Self, ClientError> {
        let path = dir.join(FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ClientError::Invalid(format!(
                    "no profile at {}: run `certbound onboard --out {}` first, or pass --profile DIR",
                    path.display(),
                    dir.display()
                ))
            } else {
                ClientError::Io { path: path.clone(), source }
            }
        })?;
        toml::from_str(&text).map_err(|error| {
            ClientError::Invalid(format!(
                "{} is not a valid profile: {error}",
                path.display()
            ))
        })
    }

    /// Writes `DIR/profile.toml`, owner-only.
    pub fn save(&self, dir: &Path) -> Result<(), ClientError> {
        let text =
            toml::to_string(self).map_err(|error| ClientError::Invalid(error.to_string()))?;
        write_private(&dir.join(FILE), text.as_bytes())
    }

    /// A base URL the step needs (`directory`, `authz` or `cards`): set, and an absolute URL
    /// with a host, or an error naming the field and what to write there. (The Cards API itself
    /// is called over https only: see `Session::cards_url`.)
    pub fn base_url<'a>(
        dir: &Path,
        value: &'a str,
        field: &'static str,
    ) -> Result<&'a str, ClientError> {
        let path = dir.join(FILE);
        if value.trim().is_empty() {
            return Err(ClientError::Invalid(format!(
                "{}: `{field}` is empty; this step needs it: set it to the base URL, e.g. {}",
                path.display(),
                match field {
                    "directory" => "https://localhost:8441",
                    "authz" => "https://localhost:8443 (the authorization server's issuer)",
                    _ => "https://localhost:8444/api/v1",
                }
            )));
        }
        match reqwest::Url::parse(value) {
            Ok(url) if ["https", "http"].contains(&url.scheme()) && url.host().is_some() => {
                Ok(value.trim_end_matches('/'))
            }
            Ok(_) => Err(ClientError::Invalid(format!(
                "{}: `{field}` = {value} is not an https URL with a host",
                path.display()
            ))),
            Err(error) => Err(ClientError::Invalid(format!(
                "{}: `{field}` = {value} is not a URL ({error})",
                path.display()
            ))),
        }
    }

    /// A required field, or an error naming it and the step that sets it.
    pub fn field<'a>(
        dir: &Path,
        value: &'a Option<String>,
        field: &'static str,
        hint: &'static str,
    ) -> Result<&'a str, ClientError> {
        value.as_deref().ok_or_else(|| ClientError::MissingField {
            path: dir.join(FILE),
            field,
            hint,
        })
    }
}

/// Writes a file readable by the owner only.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), ClientError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(ClientError::io(path))?;
    file.write_all(contents).map_err(ClientError::io(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(ClientError::io(path))
}

/// Reads a file of the profile.
pub(crate) fn read(dir: &Path, name: &str) -> Result<String, ClientError> {
    let path: PathBuf = dir.join(name);
    std::fs::read_to_string(&path).map_err(ClientError::io(path))
}
