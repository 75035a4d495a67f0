//! HTTP with the profile's trust anchor and transport certificate, and the seed's single steps:
//! discovery, RC token, SSA, registration, access token (cached), and calls to the Cards API.

// `serde_json::Value["key"]` answers `Null` for a missing key or a non-object; it never panics.
#![allow(clippy::indexing_slicing)]

use std::path::{Path, PathBuf};

use reqwest::Method;
use serde_json::{Value, json};

use crate::profile::{AssertionAudience, Profile, read};
use crate::{ClientError, now};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// A cached token is reused until this many seconds before it expires.
const TOKEN_MARGIN: i64 = 30;

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// The body as JSON (`Null` if empty or not JSON).
    pub json: Value,
    /// The body as text.
    pub text: String,
}

/// A client session over a profile directory.
pub struct Session {
    dir: PathBuf,
    /// The profile (saved back as steps complete).
    pub profile: Profile,
    plain: reqwest::Client,
    mtls: Option<reqwest::Client>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// What to do next after an error answer; `None` where the server's own description already says
/// it (the directory's admin-token refusal names the file to use).
fn hint(step: &str, status: u16, body: &Value) -> Option<String> {
    let error = body
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Some(match (status, error) {
        (401, "invalid_token") => "the access token is expired, revoked or bound to another certificate: run `certbound token --refresh`".into(),
        (401, "unauthorized") => return None,
        (401, _) => "authentication failed: check the profile's certificates and client_id, or onboard again".into(),
        (403, _) => "the token lacks a scope the call needs: ask for it (`certbound token --scope '...'`); the software's roles must allow it".into(),
        (404, _) => format!("{step}: no such resource or path: check the path (Cards API paths start with /cards)"),
        (400, "invalid_software_statement") => "fetch a fresh SSA (`certbound ssa`) and register again".into(),
        (400, _) | (422, _) => "fix the request as the error says".into(),
        (409, _) => "the resource is not in a state that allows this".into(),
        (413, _) => "the body is too large".into(),
        _ => "see the server's log for the trace id".into(),
    })
}

impl Session {
    /// Opens a session with explicit trust and (optionally) an identity.
    pub fn new(dir: &Path, profile: Profile) -> Result<Self, ClientError> {
        let ca = profile.ca.as_deref().map(|ca| read(dir, ca)).transpose()?;
        let builder = || -> Result<reqwest::ClientBuilder, ClientError> {
            // No redirect is followed: one could carry the client certificate, an assertion or a
            // PIN to a host the profile does not name, or to plain http.
            let mut builder = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .redirect(reqwest::redirect::Policy::none());
            if let Some(ca) = &ca {
                let ca = reqwest::Certificate::from_pem(ca.as_bytes()).map_err(|error| {
                    ClientError::Invalid(format!("the CA file is not a PEM certificate: {error}"))
                })?;
                builder = builder.tls_certs_only([ca]);
            }
            Ok(builder)
        };
        let plain = builder()?
            .build()
            .map_err(|error| ClientError::Invalid(error.to_string()))?;
        let mtls = match (&profile.transport_certificate, &profile.transport_key) {
            (Some(certificate), Some(key)) => {
                let pem = format!("{}{}", read(dir, certificate)?, read(dir, key)?);
                let identity = reqwest::Identity::from_pem(pem.as_bytes()).map_err(|error| {
                    ClientError::Invalid(format!(
                        "the transport certificate or key does not parse: {error}"
                    ))
                })?;
                Some(
                    builder()?
                        .identity(identity)
                        .build()
                        .map_err(|error| ClientError::Invalid(error.to_string()))?,
                )
            }
            _ => None,
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            profile,
            plain,
            mtls,
        })
    }

    /// Opens the profile in `path`: the profile's directory or its `profile.toml`.
    pub fn open(path: &Path) -> Result<Self, ClientError> {
        let dir = Profile::directory_of(path);
        Self::new(&dir, Profile::load(&dir)?)
    }

    /// The profile directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Saves the profile.
    pub fn save(&self) -> Result<(), ClientError> {
        self.profile.save(&self.dir)
    }

    fn mtls(&self) -> Result<&reqwest::Client, ClientError> {
        self.mtls.as_ref().ok_or_else(|| ClientError::MissingField {
            path: self.dir.join(crate::profile::FILE),
            field: "transport_certificate",
            hint: "run `certbound onboard` to get a transport certificate",
        })
    }

    /// Sends a request (with the transport certificate if `mtls`) and maps transport failures to
    /// actionable errors; any HTTP status is returned.
    pub async fn send(
        &self,
        mtls: bool,
        request: reqwest::RequestBuilder,
    ) -> Result<Response, ClientError> {
        let built = request
            .build()
            .map_err(|error| ClientError::Invalid(error.to_string()))?;
        let url = built.url().to_string();
        let client = if mtls { self.mtls()? } else { &self.plain };
        let mut response = client
            .execute(built)
            .await
            .map_err(|error| ClientError::transport(&url, &error))?;
        let status = response.status().as_u16();
        if response.status().is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|value| value.to_str().ok())
                .map(printable)
                .unwrap_or_default();
            return Err(ClientError::Invalid(format!(
                "{url} answered {status}, a redirect to `{location}`: certbound follows no redirect \
                 (it could carry your certificate, assertion or card data elsewhere); \
                 point the profile at the server's own address"
            )));
        }
        let cap = self
            .profile
            .max_response_bytes
            .unwrap_or(crate::profile::DEFAULT_MAX_RESPONSE_BYTES);
        let too_large = || {
            ClientError::Invalid(format!(
                "{url} sent an answer larger than {cap} bytes; it was not read. If that is expected, \
                 raise max_response_bytes in the profile"
            ))
        };
        if response.content_length().is_some_and(|length| length > cap) {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| ClientError::transport(&url, &error))?
        {
            if bytes.len() as u64 + chunk.len() as u64 > cap {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Response { status, json, text })
    }

    /// Sends and requires a 2xx.
    pub async fn expect(
        &self,
        step: &str,
        mtls: bool,
        request: reqwest::RequestBuilder,
    ) -> Result<Response, ClientError> {
        let url = request
            .try_clone()
            .and_then(|r| r.build().ok())
            .map(|r| r.url().to_string())
            .unwrap_or_default();
        let response = self.send(mtls, request).await?;
        if (200..300).contains(&response.status) {
            return Ok(response);
        }
        let detail = match (
            &response.json.get("error"),
            &response.json.get("error_description"),
            response.json.get("errors"),
        ) {
            (Some(error), Some(description), _) => format!(
                ": {} — {}",
                error.as_str().unwrap_or_default(),
                description.as_str().unwrap_or_default()
            ),
            (_, _, Some(errors)) => format!(": {errors}"),
            _ if !response.text.is_empty() => {
                format!(": {}", response.text.chars().take(300).collect::<String>())
            }
            _ => String::new(),
        };
        Err(ClientError::Http {
            step: step.to_owned(),
            url,
            status: response.status,
            detail,
            hint: hint(step, response.status, &response.json),
        })
    }

    /// The client without a certificate (cheap to clone).
    pub fn plain_client(&self) -> reqwest::Client {
        self.plain.clone()
    }

    /// A request builder on the plain client (the builder only; `send` picks the identity).
    pub fn request(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        self.plain.request(method, url)
    }

    /// The directory's discovery document ("Raidiam Connect Well-Known").
    pub async fn directory_discovery(&self) -> Result<Value, ClientError> {
        let base = Profile::base_url(&self.dir, &self.profile.directory, "directory")?;
        let url = format!("{base}/.well-known/openid-configuration");
        Ok(self
            .expect(
                "Raidiam Connect Well-Known",
                false,
                self.request(Method::GET, &url),
            )
            .await?
            .json)
    }

    /// The authorization server's discovery document ("Cloudentity Well-Known").
    pub async fn authz_discovery(&self) -> Result<Value, ClientError> {
        let base = Profile::base_url(&self.dir, &self.profile.authz, "authz")?;
        let url = format!("{base}/.well-known/openid-configuration");
        // With the transport certificate when there is one: some servers (node-oidc-provider
        // behind Node's https server) ask every connection for it, discovery too. The host is
        // the one the profile names.
        Ok(self
            .expect(
                "Cloudentity Well-Known",
                self.mtls.is_some(),
                self.request(Method::GET, &url),
            )
            .await?
            .json)
    }

    fn endpoint(document: &Value, name: &str) -> Result<String, ClientError> {
        document
            .get("mtls_endpoint_aliases")
            .and_then(|aliases| aliases.get(name))
            .or_else(|| document.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ClientError::Invalid(format!("the discovery document names no {name}")))
    }

    /// A PS256 client assertion signed by the profile's signing key.
    pub fn assertion(&self, audience: &str) -> Result<String, ClientError> {
        let hint = "run `certbound onboard` to get a signing certificate";
        let client_id = Profile::field(
            &self.dir,
            &self.profile.client_id,
            "client_id",
            "run `certbound onboard`",
        )?;
        let key = read(
            &self.dir,
            Profile::field(&self.dir, &self.profile.signing_key, "signing_key", hint)?,
        )?;
        let now = now();
        let claims = json!({"iss": client_id, "sub": client_id, "aud": audience, "iat": now, "exp": now + 60, "jti": uuid::Uuid::new_v4().to_string()});
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::PS256);
        // Without a `kid` in the profile the header names none (a server with one key for the
        // client needs none).
        header.kid = self.profile.kid.clone().filter(|kid| !kid.is_empty());
        header.typ = Some("JWT".into());
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(key.as_bytes()).map_err(|error| {
            ClientError::Invalid(format!("the signing key does not parse: {error}"))
        })?;
        jsonwebtoken::encode(&header, &claims, &key)
            .map_err(|error| ClientError::Invalid(error.to_string()))
    }

    /// 2.1 RC Access Token: the directory token (`directory:software`) with `private_key_jwt`.
    pub async fn rc_token(&self) -> Result<String, ClientError> {
        let discovery = self.directory_discovery().await?;
        let endpoint = Self::endpoint(&discovery, "token_endpoint")?;
        let assertion = self.assertion(&endpoint)?;
        let form = [
            ("grant_type", "client_credentials"),
            ("scope", "directory:software"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion.as_str()),
        ];
        let response = self
            .expect(
                "2.1 RC Access Token",
                true,
                self.request(Method::POST, &endpoint).form(&form),
            )
            .await?;
        response.json["access_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ClientError::Invalid("no access_token in the answer".into()))
    }

    /// 2.2 Get RC SSA.
    pub async fn ssa(&self, rc_token: &str) -> Result<String, ClientError> {
        let discovery = self.directory_discovery().await?;
        let token_endpoint = Self::endpoint(&discovery, "token_endpoint")?;
        let base = token_endpoint.trim_end_matches("/token");
        let org = Profile::field(
            &self.dir,
            &self.profile.org_id,
            "org_id",
            "run `certbound onboard`",
        )?;
        let ssa = Profile::field(
            &self.dir,
            &self.profile.ssa_id,
            "ssa_id",
            "run `certbound onboard`",
        )?;
        let url = format!("{base}/organisations/{org}/softwarestatements/{ssa}/assertion");
        Ok(self
            .expect(
                "2.2 Get RC SSA",
                true,
                self.request(Method::GET, &url).bearer_auth(rc_token),
            )
            .await?
            .text)
    }

    /// 2.3 Dynamic Client Registration; stores the RFC 7592 handle in the profile.
    pub async fn register(&mut self, ssa: &str) -> Result<Value, ClientError> {
        let discovery = self.authz_discovery().await?;
        let endpoint = Self::endpoint(&discovery, "registration_endpoint")?;
        let body = json!({"software_statement": ssa});
        let response = self
            .expect(
                "2.3 Dynamic Client Registration",
                true,
                self.request(Method::POST, &endpoint).json(&body),
            )
            .await?;
        self.profile.registration_client_uri = response.json["registration_client_uri"]
            .as_str()
            .map(str::to_owned);
        self.profile.registration_access_token = response.json["registration_access_token"]
            .as_str()
            .map(str::to_owned);
        if self.profile.scope.is_none() {
            // From now on token requests ask for what the software registered.
            self.profile.scope = response.json["scope"].as_str().map(str::to_owned);
        }
        self.save()?;
        Ok(response.json)
    }

    /// Get Access Token: cached in the profile until 30 s before expiry unless `refresh`. Asks
    /// for the profile's `scope`.
    pub async fn access_token(&mut self, refresh: bool) -> Result<String, ClientError> {
        self.access_token_for(refresh, None).await
    }

    /// [`Session::access_token`], asking for `scope` instead of the profile's (a new token
    /// whenever `scope` is given).
    pub async fn access_token_for(
        &mut self,
        refresh: bool,
        scope: Option<&str>,
    ) -> Result<String, ClientError> {
        if !refresh
            && scope.is_none()
            && let (Some(token), Some(expires_at)) = (
                &self.profile.access_token,
                self.profile.access_token_expires_at,
            )
            && expires_at - TOKEN_MARGIN > now()
        {
            return Ok(token.clone());
        }
        let discovery = self.authz_discovery().await?;
        let endpoint = Self::endpoint(&discovery, "token_endpoint")?;
        let audience = match self.profile.assertion_audience.unwrap_or_default() {
            AssertionAudience::Issuer => discovery["issuer"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| {
                    ClientError::Invalid("the discovery document names no issuer".into())
                })?,
            AssertionAudience::TokenEndpoint => endpoint.clone(),
        };
        let client_id = Profile::field(
            &self.dir,
            &self.profile.client_id,
            "client_id",
            "run `certbound onboard`",
        )?
        .to_owned();
        let assertion = self.assertion(&audience)?;
        let asked = scope
            .map(str::to_owned)
            .or_else(|| self.profile.scope.clone())
            .map(|scope| scope.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|scope| !scope.is_empty());
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", client_id.as_str()),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion.as_str()),
        ];
        if let Some(asked) = &asked {
            form.push(("scope", asked.as_str()));
        }
        let response = self
            .expect(
                "Get Access Token",
                true,
                self.request(Method::POST, &endpoint).form(&form),
            )
            .await?;
        let token = response.json["access_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ClientError::Invalid("no access_token in the answer".into()))?;
        self.profile.access_token = Some(token.clone());
        self.profile.access_token_expires_at =
            Some(now() + response.json["expires_in"].as_i64().unwrap_or(0));
        // RFC 6749 §5.1: a server may leave `scope` out when it granted what was asked.
        self.profile.access_token_scope =
            response.json["scope"].as_str().map(str::to_owned).or(asked);
        self.save()?;
        Ok(token)
    }

    /// What to say when the Cards API refuses the token's scope (403): the scopes the token
    /// has, and how to ask for others.
    pub fn scope_hint(&self) -> String {
        format!(
            "the token has the scopes `{}`; the call needs the one the error names: ask for it with              `certbound token --scope '...'` (or set `scope` in the profile); the software's roles must allow it",
            self.profile
                .access_token_scope
                .as_deref()
                .unwrap_or("(none)")
        )
    }

    /// The URL `call` sends to: a whole `https` URL as it is; a path that starts with the Cards
    /// base's own path (`/api/v1/cards`) on the base's origin; any other path under the base
    /// (`/cards` → `https://host/api/v1/cards`).
    pub fn cards_url(&self, path: &str) -> Result<String, ClientError> {
        let lower = path.to_ascii_lowercase();
        if lower.starts_with("https://") {
            return Ok(path.to_owned());
        }
        if lower.starts_with("http://") {
            return Err(ClientError::Invalid(format!(
                "{path}: the Cards API is called over https only (the transport certificate and token never travel in clear)"
            )));
        }
        let base = Profile::base_url(&self.dir, &self.profile.cards, "cards")?;
        let parsed = reqwest::Url::parse(base).map_err(|error| {
            ClientError::Invalid(format!(
                "the profile's `cards` URL {base} does not parse: {error}"
            ))
        })?;
        let base_path = parsed.path().trim_end_matches('/');
        let path = format!("/{}", path.trim_start_matches('/'));
        let under_base = !base_path.is_empty()
            && (path == base_path
                || path
                    .strip_prefix(base_path)
                    .is_some_and(|rest| rest.starts_with('/') || rest.starts_with('?')));
        Ok(if under_base {
            format!("{}{path}", base.strip_suffix(base_path).unwrap_or(base))
        } else {
            format!("{base}{path}")
        })
    }

    /// Calls the Cards API (see [`Session::cards_url`] for `path`) with the transport certificate
    /// and a fresh token; retries once with a new token on `invalid_token`.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Response, ClientError> {
        let url = self.cards_url(path)?;
        let mut refresh = false;
        loop {
            let token = self.access_token(refresh).await?;
            let mut request = self.request(method.clone(), &url).bearer_auth(&token);
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = self.send(true, request).await?;
            if response.status == 401 && !refresh {
                refresh = true;
                continue;
            }
            return Ok(response);
        }
    }
}

/// A server's text with its control characters (but line breaks and tabs) shown as `\u{..}`
/// escapes, so that nothing a server sends can drive the user's terminal (a window title, a
/// screen clear) when it is printed.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' | '\t' => c.to_string(),
            c if c.is_control() => c.escape_unicode().to_string(),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code

    use super::*;

    fn session_for(cards: &str) -> Session {
        let profile = Profile {
            directory: "https://localhost:8441".into(),
            authz: "https://localhost:8443".into(),
            cards: cards.into(),
            ..Profile::default()
        };
        Session::new(Path::new("."), profile).unwrap()
    }

    #[test]
    fn a_call_path_is_whole_relative_or_a_url() {
        let session = session_for("https://localhost:8444/api/v1/");
        for (path, url) in [
            ("/cards", "https://localhost:8444/api/v1/cards"),
            ("cards/123", "https://localhost:8444/api/v1/cards/123"),
            ("/api/v1/cards", "https://localhost:8444/api/v1/cards"),
            (
                "/api/v1/cards/bulk?bulkCardRequestId=1",
                "https://localhost:8444/api/v1/cards/bulk?bulkCardRequestId=1",
            ),
            ("/api/v1", "https://localhost:8444/api/v1"),
            ("/api/v10/x", "https://localhost:8444/api/v1/api/v10/x"),
            (
                "https://cards.example/api/v1/keys",
                "https://cards.example/api/v1/keys",
            ),
        ] {
            assert_eq!(session.cards_url(path).unwrap(), url, "{path}");
        }
        let error = session.cards_url("http://localhost:8444/api/v1/keys");
        assert!(error.unwrap_err().to_string().contains("https only"));
        let root = session_for("https://cards.example");
        assert_eq!(
            root.cards_url("/cards").unwrap(),
            "https://cards.example/cards"
        );
    }

    /// Issue 16 item 3: each step needs only the base URL it uses, and says which field is
    /// missing or wrong.
    #[test]
    fn a_missing_or_wrong_base_url_is_named() {
        let dir = Path::new("/profiles/p");
        let empty = Profile::base_url(dir, "", "directory")
            .unwrap_err()
            .to_string();
        assert!(empty.contains("`directory` is empty"), "{empty}");
        assert!(empty.contains("/profiles/p/profile.toml"), "{empty}");
        let other = Profile::base_url(dir, "ftp://as.example", "authz")
            .unwrap_err()
            .to_string();
        assert!(
            other.contains("`authz` = ftp://as.example is not an https URL"),
            "{other}"
        );
        let garbage = Profile::base_url(dir, "as example", "cards")
            .unwrap_err()
            .to_string();
        assert!(
            garbage.contains("`cards` = as example is not a URL"),
            "{garbage}"
        );
        assert_eq!(
            Profile::base_url(dir, "https://as.example/tenant/", "authz").unwrap(),
            "https://as.example/tenant"
        );
        // A profile without `cards` still loads; only the Cards steps refuse.
        let session = session_for("");
        let error = session.cards_url("/cards").unwrap_err().to_string();
        assert!(error.contains("`cards` is empty"), "{error}");
    }

    /// Issue 16 item 3: without a `kid` in the profile the assertion's header names none.
    #[test]
    fn an_assertion_names_a_kid_only_when_the_profile_has_one() {
        let dir = tempfile::tempdir().unwrap();
        let key = crate::new_key_and_csr(None, "Org", "org", "software").unwrap();
        std::fs::write(dir.path().join("signing.key"), key.key_pem.as_bytes()).unwrap();
        let mut profile = Profile {
            client_id: Some("client-1".into()),
            signing_key: Some("signing.key".into()),
            ..Profile::default()
        };
        let header = |session: &Session| {
            let assertion = session.assertion("https://as.example").unwrap();
            jsonwebtoken::decode_header(&assertion).unwrap()
        };
        let session = Session::new(dir.path(), profile.clone()).unwrap();
        assert_eq!(header(&session).kid, None);
        profile.kid = Some("kid-1".into());
        let session = Session::new(dir.path(), profile).unwrap();
        assert_eq!(header(&session).kid.as_deref(), Some("kid-1"));
    }

    #[test]
    fn the_assertion_audience_is_a_profile_setting() {
        let profile: Profile = toml::from_str(
            "authz = \"https://as.example\"\nassertion_audience = \"token_endpoint\"\n",
        )
        .unwrap();
        assert_eq!(
            profile.assertion_audience,
            Some(AssertionAudience::TokenEndpoint)
        );
        assert!(toml::from_str::<Profile>("assertion_audience = \"audience\"\n").is_err());
        assert_eq!(
            Profile::default().assertion_audience.unwrap_or_default(),
            AssertionAudience::Issuer
        );
    }

    #[test]
    fn a_profile_is_named_by_its_directory_or_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("profile.toml");
        std::fs::write(&file, "").unwrap();
        assert_eq!(Profile::directory_of(&file), dir.path());
        assert_eq!(Profile::directory_of(dir.path()), dir.path());
        assert_eq!(
            Profile::directory_of(Path::new("profile.toml")),
            Path::new(".")
        );
    }

    /// A server that answers every connection with `answer` (raw HTTP/1.1), counting them.
    async fn hostile(answer: Vec<u8>) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = count.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut request = [0u8; 8192];
                    let _ = stream.read(&mut request).await;
                    let _ = stream.write_all(&answer).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        (url, count)
    }

    #[tokio::test]
    async fn a_redirect_is_never_followed() {
        let (foreign, reached) =
            hostile(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}".to_vec()).await;
        for status in [
            "301 Moved Permanently",
            "302 Found",
            "307 Temporary Redirect",
            "308 Permanent Redirect",
        ] {
            let answer = format!(
                "HTTP/1.1 {status}\r\nLocation: {foreign}/steal\r\nContent-Length: 0\r\n\r\n"
            );
            let (origin, _) = hostile(answer.into_bytes()).await;
            let session = session_for("https://localhost:8444/api/v1");
            let request = session
                .request(
                    Method::POST,
                    &format!("{origin}/api/v1/cards/123456789/pin"),
                )
                .body(r#"{"pin":"4921"}"#);
            let error = session.send(false, request).await.unwrap_err().to_string();
            assert!(error.contains("follows no redirect"), "{status}: {error}");
            assert!(error.contains(&format!("{foreign}/steal")), "{error}");
        }
        assert_eq!(
            reached.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "the redirect's target was contacted"
        );
    }

    #[tokio::test]
    async fn an_answer_larger_than_the_cap_is_not_read() {
        let mut session = session_for("https://localhost:8444/api/v1");
        session.profile.max_response_bytes = Some(1024 * 1024);
        // Announced as 64 MiB: refused before reading.
        let (announced, _) =
            hostile(b"HTTP/1.1 200 OK\r\nContent-Length: 67108864\r\n\r\n".to_vec()).await;
        // Not announced, 2 MiB: refused once the cap is passed.
        let mut streamed = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
        streamed.extend(std::iter::repeat_n(b'a', 2 * 1024 * 1024));
        let (unannounced, _) = hostile(streamed).await;
        for url in [announced, unannounced] {
            let error = session
                .send(false, session.request(Method::GET, &url))
                .await
                .unwrap_err()
                .to_string();
            assert!(error.contains("larger than 1048576 bytes"), "{error}");
            assert!(error.contains("max_response_bytes"), "{error}");
        }
        // Within the cap, the answer is read whole.
        let (small, _) =
            hostile(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"ok\":true}".to_vec()).await;
        let response = session
            .send(false, session.request(Method::GET, &small))
            .await
            .unwrap();
        assert_eq!(response.json["ok"], true);
    }

    #[test]
    fn nothing_a_server_sends_can_drive_the_terminal() {
        let hostile = "title\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}31m\r line\nnext\ttab";
        let shown = printable(hostile);
        assert!(
            !shown
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t'),
            "{shown:?}"
        );
        assert!(
            shown.contains("\\u{1b}]0;pwned") && shown.contains("\nnext\ttab"),
            "{shown}"
        );
    }
}
