//! Typed configuration (STYLE.md 13): defaults, then a TOML file, then command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A part of the stack that `up` can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    /// The authorization server (port 8443).
    Authz,
    /// The Cards API (port 8444).
    Cards,
    /// The directory (ports 8441 and 8442).
    Directory,
}

impl std::str::FromStr for Part {
    type Err = ConfigError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.trim() {
            "authz" => Ok(Self::Authz),
            "cards" => Ok(Self::Cards),
            "directory" => Ok(Self::Directory),
            other => Err(ConfigError::Invalid(format!(
                "unknown role `{other}`: use directory, authz or cards"
            ))),
        }
    }
}

/// Listener addresses. Port 0 picks a free port (tests, `demo`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listen {
    /// Directory public port (8441).
    pub directory: SocketAddr,
    /// Directory mTLS port (8442).
    pub directory_mtls: SocketAddr,
    /// Authorization server (8443).
    pub authz: SocketAddr,
    /// Cards API (8444).
    pub cards: SocketAddr,
}

impl Default for Listen {
    fn default() -> Self {
        Self {
            directory: SocketAddr::from(([127, 0, 0, 1], 8441)),
            directory_mtls: SocketAddr::from(([127, 0, 0, 1], 8442)),
            authz: SocketAddr::from(([127, 0, 0, 1], 8443)),
            cards: SocketAddr::from(([127, 0, 0, 1], 8444)),
        }
    }
}

/// The operations listener (`[ops]`): `/metrics`, `/livez`, `/readyz`, plain HTTP.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ops {
    /// Whether it runs (`--no-ops` turns it off).
    pub enabled: bool,
    /// Its address (default `127.0.0.1:9464`: loopback, as it needs no credentials).
    pub listen: SocketAddr,
}

impl Default for Ops {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}

/// The Cards API's sandbox (`[sandbox]`): what certbound adds to Thredd's API for testing.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sandbox {
    /// The simulated card network (`/api/v1/sandbox/cards/{publicToken}/authorisations`): on
    /// for local use; `false` for a deployment that must answer like the real API alone.
    pub card_network: bool,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self { card_network: true }
    }
}

/// Webhook deliveries to programme managers (`[webhooks]`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Webhooks {
    /// A PEM bundle of CA certificates trusted for webhook receivers, in addition to the
    /// system's roots (a receiver on a private CA).
    pub ca_file: Option<PathBuf>,
    /// How long a notification is retried before it is given up on, seconds (a day by default).
    pub retry_seconds: i64,
}

impl Default for Webhooks {
    fn default() -> Self {
        Self {
            ca_file: None,
            retry_seconds: 86_400,
        }
    }
}

/// Connection limits of every listener.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Open connections per listener; more are closed at once.
    pub max_connections: usize,
    /// Open connections per source address and listener (trusted proxies exempt); more are
    /// closed at once.
    pub max_connections_per_address: usize,
    /// Seconds a connection may sit with no request in flight and nothing read or written
    /// (after TLS, between requests, HTTP/2 with no open stream) before it is closed.
    pub idle_timeout_seconds: u64,
    /// Seconds a request's body may take to arrive whole, however steadily it trickles.
    pub body_timeout_seconds: u64,
    /// Seconds a client may take to complete the TLS handshake.
    pub handshake_timeout_seconds: u64,
    /// Seconds a client may take to send a request's headers, and to start the next request on
    /// a kept-alive connection (slowloris).
    pub header_read_timeout_seconds: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_connections_per_address: 256,
            idle_timeout_seconds: 30,
            body_timeout_seconds: 30,
            handshake_timeout_seconds: 10,
            header_read_timeout_seconds: 30,
        }
    }
}

/// Requests per minute at the authorization server's token and registration endpoints (0: no
/// limit), counted in the shared store so they hold across instances.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    /// Token requests per claimed client.
    pub token_per_client: i64,
    /// Token requests per source address.
    pub token_per_address: i64,
    /// Registrations per source address.
    pub register_per_address: i64,
}

impl Default for RateLimits {
    fn default() -> Self {
        let defaults = certbound_authz::RateLimits::default();
        Self {
            token_per_client: defaults.token_per_client,
            token_per_address: defaults.token_per_address,
            register_per_address: defaults.register_per_address,
        }
    }
}

/// When `audit.jsonl` starts a new file (`[audit]` in the config file), and how many old files
/// stay: the trail's disk use is bounded by `(keep + 1) * max_bytes`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditRotation {
    /// Size at which the file rotates, bytes (default 64 MiB).
    pub max_bytes: u64,
    /// Age at which the file rotates, seconds (default a day).
    pub max_age_seconds: i64,
    /// Old files kept, `audit.jsonl.1` the newest (default 7).
    pub keep: u32,
    /// While a record cannot be written (a full disk): `refuse` security-relevant actions
    /// (issuance, revocation, registration; 503) — the default — or `continue` and report.
    pub on_failure: AuditFailure,
}

/// `[audit] on_failure`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditFailure {
    /// Carry on; lost records are counted and reported.
    Continue,
    /// Refuse the action (503).
    #[default]
    Refuse,
}

impl Default for AuditRotation {
    fn default() -> Self {
        let rotation = certbound_http::Rotation::default();
        Self {
            max_bytes: rotation.max_bytes,
            max_age_seconds: rotation.max_age_seconds,
            keep: rotation.keep,
            on_failure: AuditFailure::Refuse,
        }
    }
}

/// Everything `certbound up` needs.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StackConfig {
    /// Where the database (SQLite), master key, `ca.pem` and `admin.token` live.
    pub data_dir: PathBuf,
    /// `postgres://...` to share state between instances; SQLite in the data dir otherwise.
    pub database_url: Option<String>,
    /// Which parts run in this process.
    pub roles: Vec<Part>,
    /// Listener addresses.
    pub listen: Listen,
    /// The operations listener.
    pub ops: Ops,
    /// The host name in public URLs (issuers, keystore, `ClientId`).
    pub public_host: String,
    /// Lifetime of access tokens, seconds.
    pub token_lifetime_seconds: i64,
    /// Accept RS256 client assertions in addition to PS256 and ES256.
    pub allow_rs256: bool,
    /// The longest life a client assertion may have (`exp` − `iat`), seconds.
    pub assertion_max_lifetime_seconds: i64,
    /// Time a drain on shutdown may take, seconds.
    pub shutdown_grace_seconds: u64,
    /// A path under which the authorization server lives, e.g. `/uat-thredd/confidential-clients`
    /// (its issuer is then `https://host:8443/uat-thredd/confidential-clients`).
    pub issuer_path: String,
    /// The directory's public URL, for an authorization server running without the directory
    /// in the same process (it trusts SSAs from there). Defaults to this process's directory.
    pub directory_url: Option<String>,
    /// FAPI 2 strictness: client assertions must carry the issuer alone as `aud`.
    pub strict_audience: bool,
    /// The authorization server's public issuer URL when instances sit behind a load balancer
    /// (every instance must announce the same one). Defaults to this listener's URL plus
    /// `issuer_path`.
    pub authz_issuer: Option<String>,
    /// Connection limits.
    pub limits: Limits,
    /// Rate limits.
    pub rate_limits: RateLimits,
    /// When the audit trail rotates.
    pub audit: AuditRotation,
    /// Bulk card requests an organisation may have unfinished at once (429 beyond).
    pub bulk_jobs_per_organisation: usize,
    /// Trusted-proxy mode: networks (CIDRs) of the proxies whose `X-SSL-Client-Cert` /
    /// `X-Forwarded-Client-Cert` headers carry the client certificate. Empty: off.
    pub trusted_proxies: Vec<String>,
    /// The Cards API's sandbox.
    pub sandbox: Sandbox,
    /// Webhook deliveries.
    pub webhooks: Webhooks,
}

impl Default for StackConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("certbound-data"),
            database_url: None,
            roles: vec![Part::Directory, Part::Authz, Part::Cards],
            listen: Listen::default(),
            ops: Ops::default(),
            public_host: "localhost".into(),
            token_lifetime_seconds: 600,
            allow_rs256: false,
            assertion_max_lifetime_seconds: certbound_jose::DEFAULT_MAX_LIFETIME,
            shutdown_grace_seconds: 10,
            issuer_path: String::new(),
            directory_url: None,
            strict_audience: false,
            authz_issuer: None,
            limits: Limits::default(),
            rate_limits: RateLimits::default(),
            audit: AuditRotation::default(),
            bulk_jobs_per_organisation: 5,
            trusted_proxies: Vec::new(),
            sandbox: Sandbox::default(),
            webhooks: Webhooks::default(),
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("config file {path} is invalid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range.
    #[error("{0}")]
    Invalid(String),
}

impl StackConfig {
    /// Reads a TOML file over the defaults; unknown keys are an error.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        toml::from_str(&text).map_err(|error| ConfigError::Parse {
            path: path.into(),
            message: error.to_string(),
        })
    }

    /// Reads and checks a config file, reporting every problem at once, each with its key
    /// (`certbound config check`): TOML syntax, then each key on its own (unknown keys, wrong
    /// types, values out of range), then the rules over the whole configuration.
    pub fn check_file(path: &Path) -> Result<Self, Vec<String>> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| vec![format!("cannot read {}: {source}", path.display())])?;
        let document: toml::Table = toml::from_str(&text)
            .map_err(|error| vec![format!("not valid TOML: {}", error.message())])?;
        let mut problems = Vec::new();
        for (key, value) in &document {
            match value {
                toml::Value::Table(table) => {
                    for (inner, value) in table {
                        let mut section = toml::Table::new();
                        section.insert(inner.clone(), value.clone());
                        let mut single = toml::Table::new();
                        single.insert(key.clone(), toml::Value::Table(section));
                        if let Err(error) = single.try_into::<Self>() {
                            problems.push(format!("{key}.{inner}: {}", error.message()));
                        }
                    }
                }
                value => {
                    let mut single = toml::Table::new();
                    single.insert(key.clone(), value.clone());
                    if let Err(error) = single.try_into::<Self>() {
                        problems.push(format!("{key}: {}", error.message()));
                    }
                }
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let config: Self = document
            .try_into()
            .map_err(|error: toml::de::Error| vec![error.message().to_owned()])?;
        config.validate().map_err(|error| vec![error.to_string()])?;
        Ok(config)
    }

    /// The effective configuration as TOML, with secrets redacted (a database password).
    pub fn redacted_toml(&self) -> String {
        let mut config = self.clone();
        if let Some(url) = &config.database_url
            && let Some((scheme, rest)) = url.split_once("://")
            && let Some((credentials, host)) = rest.rsplit_once('@')
            && let Some((user, _password)) = credentials.split_once(':')
        {
            config.database_url = Some(format!("{scheme}://{user}:REDACTED@{host}"));
        }
        toml::to_string(&config).unwrap_or_else(|error| format!("# cannot print: {error}\n"))
    }

    /// Checks values the types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.roles.is_empty() {
            return Err(ConfigError::Invalid(
                "no role to run: give --role directory,authz,cards".into(),
            ));
        }
        let path = &self.issuer_path;
        if !path.is_empty()
            && (!path.starts_with('/') || path.ends_with('/') || path.contains(['?', '#', ' ']))
        {
            return Err(ConfigError::Invalid(format!(
                "issuer_path `{path}` must look like /tenant/name: a leading slash, no trailing one"
            )));
        }
        if !(30..=86_400).contains(&self.token_lifetime_seconds) {
            return Err(ConfigError::Invalid(
                "token_lifetime_seconds must be between 30 and 86400".into(),
            ));
        }
        Ok(())
    }

    /// The database URL: the configured one, or SQLite in the data dir.
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("certbound.db").display()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_overrides_defaults_and_refuses_unknown_keys() {
        let dir = std::env::temp_dir().join(format!("certbound-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("certbound.toml");
        std::fs::write(
            &file,
            "token_lifetime_seconds = 300\n[listen]\ndirectory = \"127.0.0.1:9441\"\n",
        )
        .unwrap();
        let config = StackConfig::from_file(&file).unwrap();
        assert_eq!(config.token_lifetime_seconds, 300);
        assert_eq!(config.listen.directory.port(), 9441);
        assert_eq!(config.listen.directory_mtls.port(), 8442);
        std::fs::write(&file, "tokn_lifetime = 1\n").unwrap();
        assert!(matches!(
            StackConfig::from_file(&file),
            Err(ConfigError::Parse { .. })
        ));
        assert!("cardz".parse::<Part>().is_err());
    }
}
