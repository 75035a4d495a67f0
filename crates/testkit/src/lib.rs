//! The whole certbound stack in-process on free ports, for tests (kanidm's testkit): a fresh
//! data dir per stack, a fresh database per stack (SQLite, or PostgreSQL when
//! `CERTBOUND_TEST_DATABASE_URL` names a server), HTTP clients that trust the stack's CA, and
//! onboarding helpers that do the seed's directory steps with keys made here.
//!
//! Test-only code: it may panic on setup failures, which are bugs in the test environment.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use certbound_server::{RunningStack, StackConfig};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use serde_json::{Value, json};

/// The database URL for a new stack: a fresh PostgreSQL database when
/// `CERTBOUND_TEST_DATABASE_URL` is set, else SQLite in the data dir.
pub async fn fresh_database_url() -> Option<String> {
    let base = std::env::var("CERTBOUND_TEST_DATABASE_URL")
        .ok()
        .filter(|url| url.starts_with("postgres"))?;
    let name = format!("certbound_t_{}", uuid::Uuid::new_v4().simple());
    let (server, _) = base
        .rsplit_once('/')
        .expect("CERTBOUND_TEST_DATABASE_URL must end in /DATABASE");
    use sqlx::Connection as _;
    let mut connection = sqlx::PgConnection::connect(&base)
        .await
        .expect("connect to the test PostgreSQL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut connection)
        .await
        .unwrap();
    Some(format!("{server}/{name}"))
}

/// A running stack and what a test needs to talk to it.
pub struct TestStack {
    /// The stack.
    pub stack: RunningStack,
    /// The data dir (deleted on drop).
    pub dir: tempfile::TempDir,
    /// The database URL the stack uses.
    pub database_url: String,
}

/// A key and the certificate chain the directory issued for it.
#[derive(Clone, Debug)]
pub struct Credential {
    /// PKCS#8 PEM private key.
    pub key_pem: String,
    /// The issued chain (leaf, issuing CA), PEM.
    pub chain_pem: String,
    /// `KeyId` (kid).
    pub key_id: String,
    /// `CertificateId`.
    pub certificate_id: String,
    /// `x5t#S256`.
    pub thumbprint: String,
}

/// A software statement onboarded in the directory with a transport and a signing certificate.
#[derive(Clone, Debug)]
pub struct Software {
    /// OrganisationId.
    pub organisation_id: String,
    /// SoftwareStatementId.
    pub software_statement_id: String,
    /// ClientId (URL form).
    pub client_id: String,
    /// Transport certificate (mTLS).
    pub transport: Credential,
    /// Signing certificate (client assertions).
    pub signing: Credential,
}

/// A config for a stack on free ports in `dir`.
pub fn config(dir: &Path, database_url: Option<String>) -> StackConfig {
    let mut config = StackConfig {
        data_dir: dir.to_path_buf(),
        database_url,
        ..StackConfig::default()
    };
    config.listen.directory = SocketAddr::from(([127, 0, 0, 1], 0));
    config.listen.directory_mtls = SocketAddr::from(([127, 0, 0, 1], 0));
    config.listen.authz = SocketAddr::from(([127, 0, 0, 1], 0));
    config.listen.cards = SocketAddr::from(([127, 0, 0, 1], 0));
    config.ops.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.shutdown_grace_seconds = 2;
    config
}

/// A first start's material (master key, CA hierarchy, SSA signer, cards keys, token signing key,
/// TLS certificates, admin token), made once per test binary: a first start costs about 300 ms
/// (three RSA keys), a start over existing material about 35 ms. `dir` holds the files of the
/// data dir; `database` names the PostgreSQL database new ones are copied from (`TEMPLATE`), or
/// is `None` on SQLite, whose database is a file of `dir`. Never dropped: one temporary
/// directory per test binary run stays behind.
struct Golden {
    dir: tempfile::TempDir,
    database: Option<String>,
}

static GOLDEN: tokio::sync::OnceCell<Golden> = tokio::sync::OnceCell::const_new();

async fn golden() -> &'static Golden {
    GOLDEN
        .get_or_init(|| async {
            let dir = tempfile::tempdir().unwrap();
            let database = fresh_database_url().await;
            let stack = certbound_server::start(config(dir.path(), database.clone()))
                .await
                .unwrap();
            let store = stack.database.clone();
            stack.shutdown().await;
            // PostgreSQL copies a template only while nobody is connected to it.
            store.pool().close().await;
            Golden { dir, database }
        })
        .await
}

/// A new data dir (and, on PostgreSQL, database) holding the once-made first-start material.
async fn from_golden() -> (tempfile::TempDir, Option<String>) {
    let golden = golden().await;
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(golden.dir.path()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() && entry.file_name() != "audit.jsonl" {
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
    }
    let database = match &golden.database {
        Some(template) => {
            let (server, template_name) = template.rsplit_once('/').unwrap();
            let name = format!("certbound_t_{}", uuid::Uuid::new_v4().simple());
            use sqlx::Connection as _;
            let admin = std::env::var("CERTBOUND_TEST_DATABASE_URL").unwrap();
            let mut connection = sqlx::PgConnection::connect(&admin).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "CREATE DATABASE {name} TEMPLATE {template_name}"
            )))
            .execute(&mut connection)
            .await
            .unwrap();
            Some(format!("{server}/{name}"))
        }
        None => None,
    };
    (dir, database)
}

impl TestStack {
    /// Starts a stack with a fresh data dir and database, over the first-start material made
    /// once per test binary (see `Golden`): the CA, keys and admin token are shared by such
    /// stacks, nothing else is.
    pub async fn start() -> Self {
        let (dir, database_url) = from_golden().await;
        Self::start_in(dir, database_url).await
    }

    /// Starts a stack in an existing data dir (to test restarts).
    pub async fn start_in(dir: tempfile::TempDir, database_url: Option<String>) -> Self {
        Self::start_with(dir, database_url, |_| {}).await
    }

    /// Starts a stack with a changed configuration.
    pub async fn start_with(
        dir: tempfile::TempDir,
        database_url: Option<String>,
        change: impl FnOnce(&mut StackConfig),
    ) -> Self {
        let mut config = config(dir.path(), database_url);
        change(&mut config);
        let database_url = config.database_url();
        let stack = certbound_server::start(config).await.unwrap();
        Self {
            stack,
            dir,
            database_url,
        }
    }

    /// Stops the stack and starts it again on the same ports, data dir and database.
    pub async fn restart(self) -> Self {
        self.restart_with(|_| {}).await
    }

    /// [`TestStack::restart`] with a changed configuration.
    pub async fn restart_with(self, change: impl FnOnce(&mut StackConfig)) -> Self {
        let ports = self.ports();
        let (dir, database_url) = self.stop().await;
        let database_url = Some(database_url).filter(|url| url.starts_with("postgres"));
        Self::start_with(dir, database_url, |config| {
            on_ports(config, ports);
            change(config);
        })
        .await
    }

    /// The ports the stack listens on (directory, directory mTLS, authz, cards), to start
    /// another stack on them ([`on_ports`]): registrations name the directory's URL.
    pub fn ports(&self) -> [u16; 4] {
        [
            &self.stack.directory_url,
            &self.stack.directory_mtls_url,
            &self.stack.authz_url,
            &self.stack.cards_url,
        ]
        .map(|url| {
            url.as_deref()
                .and_then(|url| url.rsplit(':').next())
                .and_then(|rest| rest.split('/').next())
                .and_then(|port| port.parse::<u16>().ok())
                .unwrap_or(0)
        })
    }

    /// Stops the stack and hands back its data dir.
    pub async fn stop(self) -> (tempfile::TempDir, String) {
        self.stack.shutdown().await;
        (self.dir, self.database_url)
    }

    /// A new data dir holding this stack's master key, as another instance on the same database
    /// needs.
    pub fn data_dir_for_another_instance(&self) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(
            self.data_dir().join("master.key"),
            dir.path().join("master.key"),
        )
        .unwrap();
        dir
    }

    /// Whether several instances can serve the stack's database: PostgreSQL. An embedded
    /// SQLite file has one server (a second is refused; see `instances.rs`).
    pub fn shared_database(&self) -> bool {
        self.database_url.starts_with("postgres")
    }

    /// How many cards the organisation has, read from the database (cards made and hidden from
    /// the client count too).
    pub async fn cards_of(&self, organisation_id: &str) -> i64 {
        let database = certbound_store::Database::connect(&self.database_url)
            .await
            .unwrap();
        sqlx::query_scalar("SELECT COUNT(*) FROM cards WHERE organisation_id = $1")
            .bind(organisation_id)
            .fetch_one(database.pool())
            .await
            .unwrap()
    }

    /// The data dir path.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// `DATA_DIR/audit.jsonl` as it stands once the refusal records queued for the trail's thread
    /// are written.
    pub fn audit_trail(&self) -> String {
        self.stack.flush_audit();
        std::fs::read_to_string(self.data_dir().join("audit.jsonl")).unwrap_or_default()
    }

    /// A directory public-port URL.
    pub fn public(&self, path: &str) -> String {
        format!(
            "{}{path}",
            self.stack
                .directory_url
                .as_deref()
                .expect("the directory runs")
        )
    }

    /// A directory mTLS-port URL.
    pub fn mtls(&self, path: &str) -> String {
        format!(
            "{}{path}",
            self.stack
                .directory_mtls_url
                .as_deref()
                .expect("the directory runs")
        )
    }

    /// An authorization server URL (under its issuer).
    pub fn authz(&self, path: &str) -> String {
        format!(
            "{}{path}",
            self.stack.authz_url.as_deref().expect("authz runs")
        )
    }

    /// A Cards API URL (under `/api/v1`).
    pub fn cards(&self, path: &str) -> String {
        format!(
            "{}{path}",
            self.stack.cards_url.as_deref().expect("cards runs")
        )
    }

    /// Onboards and registers a software with `roles`; returns it with an access token.
    pub async fn client_with_token(&self, roles: &[&str]) -> (Software, String) {
        let software = self.onboard(roles).await;
        self.register(&software, json!({})).await;
        let token = self.access_token(&software).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        (software, token)
    }

    /// The software's SSA from the directory.
    pub async fn ssa(&self, software: &Software) -> String {
        let token = self.directory_token(software).await;
        let response = self
            .mtls_client(&software.transport)
            .get(self.mtls(&format!(
                "/organisations/{}/softwarestatements/{}/assertion",
                software.organisation_id, software.software_statement_id
            )))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    }

    /// Sends a DCR request (JSON) with the transport certificate.
    pub async fn register_request(&self, software: &Software, body: &Value) -> reqwest::Response {
        self.mtls_client(&software.transport)
            .post(self.authz("/oauth2/register"))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Registers the software with its SSA and `extra` metadata; returns the response body.
    pub async fn register(&self, software: &Software, extra: Value) -> Value {
        let mut body = json!({"software_statement": self.ssa(software).await});
        if let (Value::Object(body), Value::Object(extra)) = (&mut body, extra) {
            body.extend(extra);
        }
        let response = self.register_request(software, &body).await;
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, 201, "{text}");
        serde_json::from_str(&text).unwrap()
    }

    /// A client assertion for the authorization server, `aud` its issuer.
    pub fn authz_assertion(&self, software: &Software, change: impl FnOnce(&mut Value)) -> String {
        let issuer = self.authz("");
        self.assertion(software, |claims| {
            claims["aud"] = json!(issuer);
            change(claims);
        })
    }

    /// A token request at the authorization server with `private_key_jwt`, over `credential`.
    pub async fn authz_token_request(
        &self,
        credential: &Credential,
        assertion: &str,
        extra: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut form = vec![
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion),
        ];
        form.extend_from_slice(extra);
        self.mtls_client(credential)
            .post(self.authz("/oauth2/token"))
            .form(&form)
            .send()
            .await
            .unwrap()
    }

    /// A registered client's access token (all registered scopes).
    pub async fn access_token(&self, software: &Software) -> Value {
        let assertion = self.authz_assertion(software, |_| {});
        let response = self
            .authz_token_request(&software.transport, &assertion, &[])
            .await;
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).unwrap()
    }

    fn builder(&self) -> reqwest::ClientBuilder {
        let ca = reqwest::Certificate::from_pem(self.stack.ca_pem.as_bytes()).unwrap();
        reqwest::Client::builder().tls_certs_only([ca])
    }

    /// A client with no certificate that trusts the stack's CA.
    pub fn client(&self) -> reqwest::Client {
        self.builder().build().unwrap()
    }

    /// A client presenting `credential` that trusts the stack's CA.
    pub fn mtls_client(&self, credential: &Credential) -> reqwest::Client {
        identity_client(
            &self.stack.ca_pem,
            &credential.key_pem,
            &credential.chain_pem,
        )
    }

    /// An admin API request with the operator's token.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client()
            .request(method, self.public(path))
            .bearer_auth(&self.stack.admin_token)
    }

    /// Creates an organisation; returns its id.
    pub async fn organisation(&self, name: &str) -> String {
        let response = self
            .admin(reqwest::Method::POST, "/organisations")
            .json(&json!({"OrganisationName": name, "Country": "GB", "RegistrationNumber": "00000001"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        response.json::<Value>().await.unwrap()["OrganisationId"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Creates a software statement with the given roles; returns (id, client id).
    pub async fn software_statement(
        &self,
        organisation_id: &str,
        roles: &[&str],
    ) -> (String, String) {
        let response = self
            .admin(
                reqwest::Method::POST,
                &format!("/organisations/{organisation_id}/softwarestatements"),
            )
            .json(&software_statement_body(roles))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        (
            body["SoftwareStatementId"].as_str().unwrap().to_owned(),
            body["ClientId"].as_str().unwrap().to_owned(),
        )
    }

    /// Makes a P-256 key and CSR here, has the directory sign it, returns the credential.
    pub async fn certificate(
        &self,
        organisation_id: &str,
        software_statement_id: Option<&str>,
        kind: &str,
    ) -> Credential {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let common_name = software_statement_id.unwrap_or(organisation_id);
        let csr = csr_pem(&key, organisation_id, common_name);
        let path = match software_statement_id {
            Some(id) => format!(
                "/organisations/{organisation_id}/softwarestatements/{id}/certificates/{kind}"
            ),
            None => format!("/organisations/{organisation_id}/certificates/{kind}"),
        };
        let response = self
            .admin(reqwest::Method::POST, &path)
            .header("content-type", "application/pkcs10")
            .body(csr)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
        let body: Value = response.json().await.unwrap();
        Credential {
            key_pem: key.serialize_pem(),
            chain_pem: body["Certificate"].as_str().unwrap().to_owned(),
            key_id: body["KeyId"].as_str().unwrap().to_owned(),
            certificate_id: body["CertificateId"].as_str().unwrap().to_owned(),
            thumbprint: body["x5t#S256"].as_str().unwrap().to_owned(),
        }
    }

    /// An organisation and a software statement with transport and signing certificates.
    pub async fn onboard(&self, roles: &[&str]) -> Software {
        let organisation_id = self.organisation("Test Company 1").await;
        self.onboard_in(&organisation_id, roles).await
    }

    /// A software statement with certificates in an existing organisation.
    pub async fn onboard_in(&self, organisation_id: &str, roles: &[&str]) -> Software {
        let (software_statement_id, client_id) =
            self.software_statement(organisation_id, roles).await;
        let transport = self
            .certificate(organisation_id, Some(&software_statement_id), "transport")
            .await;
        let signing = self
            .certificate(organisation_id, Some(&software_statement_id), "signing")
            .await;
        Software {
            organisation_id: organisation_id.to_owned(),
            software_statement_id,
            client_id,
            transport,
            signing,
        }
    }

    /// A signed ES256 client assertion for `software`, audience the mTLS token endpoint.
    pub fn assertion(&self, software: &Software, change: impl FnOnce(&mut Value)) -> String {
        let now = now();
        let mut claims = json!({
            "iss": software.client_id,
            "sub": software.client_id,
            "aud": self.mtls("/token"),
            "iat": now,
            "exp": now + 60,
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        change(&mut claims);
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(software.signing.key_id.clone());
        let key =
            jsonwebtoken::EncodingKey::from_ec_pem(software.signing.key_pem.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }

    /// Requests a directory token with `private_key_jwt` over the software's transport certificate.
    pub async fn token_request(&self, software: &Software, assertion: &str) -> reqwest::Response {
        self.mtls_client(&software.transport)
            .post(self.mtls("/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", "directory:software"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", assertion),
            ])
            .send()
            .await
            .unwrap()
    }

    /// A directory access token for `software`.
    pub async fn directory_token(&self, software: &Software) -> String {
        let response = self
            .token_request(software, &self.assertion(software, |_| {}))
            .await;
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// A Cards API client of one software: its transport certificate and access token.
pub struct CardsClient<'a> {
    /// The stack it calls.
    pub stack: &'a TestStack,
    /// The certificate it presents.
    pub credential: Credential,
    /// Its access token.
    pub token: String,
}

impl CardsClient<'_> {
    /// The same client (certificate and token) calling another instance.
    pub fn at<'b>(&self, stack: &'b TestStack) -> CardsClient<'b> {
        CardsClient {
            stack,
            credential: self.credential.clone(),
            token: self.token.clone(),
        }
    }

    /// A call with an optional JSON body: (status, JSON body or null, headers).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        self.raw(method, path, body.map(|body| body.to_string()), &[])
            .await
    }

    /// A call with a raw body and extra headers.
    pub async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
        headers: &[(&str, &str)],
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut request = self
            .stack
            .mtls_client(&self.credential)
            .request(method, self.stack.cards(path))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            headers,
        )
    }
}

impl TestStack {
    /// Another instance on this one's database (its own data dir with the same master key), as
    /// behind one load balancer: it shares this one's public authorization server issuer.
    pub async fn another_instance(&self) -> TestStack {
        let dir = self.data_dir_for_another_instance();
        let issuer = self.stack.authz_url.clone();
        TestStack::start_with(dir, Some(self.database_url.clone()), |config| {
            config.authz_issuer = issuer;
        })
        .await
    }

    /// A registered client with `roles` whose software statement sends events to `webhook`
    /// (`ApiWebhookUri`), and its Cards API client.
    pub async fn cards_client_with_webhook(
        &self,
        roles: &[&str],
        webhook: &str,
    ) -> (CardsClient<'_>, Software) {
        let organisation_id = self.organisation("Test Company 1").await;
        let mut body = software_statement_body(roles);
        body["ApiWebhookUri"] = json!(webhook);
        let response = self
            .admin(
                reqwest::Method::POST,
                &format!("/organisations/{organisation_id}/softwarestatements"),
            )
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let statement: Value = response.json().await.unwrap();
        let software_statement_id = statement["SoftwareStatementId"]
            .as_str()
            .unwrap()
            .to_owned();
        let software = Software {
            transport: self
                .certificate(&organisation_id, Some(&software_statement_id), "transport")
                .await,
            signing: self
                .certificate(&organisation_id, Some(&software_statement_id), "signing")
                .await,
            client_id: statement["ClientId"].as_str().unwrap().to_owned(),
            organisation_id,
            software_statement_id,
        };
        self.register(&software, json!({})).await;
        let token = self.access_token(&software).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        (
            CardsClient {
                stack: self,
                credential: software.transport.clone(),
                token,
            },
            software,
        )
    }

    /// A registered client with `roles` and its Cards API client.
    pub async fn cards_client(&self, roles: &[&str]) -> (CardsClient<'_>, Software) {
        let (software, token) = self.client_with_token(roles).await;
        (
            CardsClient {
                stack: self,
                credential: software.transport.clone(),
                token,
            },
            software,
        )
    }
}

/// Runs the futures concurrently, polled together in this task (they borrow the clients, so
/// they cannot be spawned).
pub async fn all_at_once<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|context| {
        let mut pending = false;
        for (future, output) in pinned.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(context) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// Makes `config` listen on `ports` (from [`TestStack::ports`]).
pub fn on_ports(config: &mut StackConfig, ports: [u16; 4]) {
    config.listen.directory.set_port(ports[0]);
    config.listen.directory_mtls.set_port(ports[1]);
    config.listen.authz.set_port(ports[2]);
    config.listen.cards.set_port(ports[3]);
}

/// A reqwest client presenting `key_pem` + `chain_pem` and trusting `ca_pem` only.
pub fn identity_client(ca_pem: &str, key_pem: &str, chain_pem: &str) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap();
    let identity = reqwest::Identity::from_pem(format!("{chain_pem}{key_pem}").as_bytes()).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .identity(identity)
        .build()
        .unwrap()
}

/// A `POST /cards` body: a virtual card for Ada Lovelace with product 10001.
pub fn card_body(customer_reference: &str) -> Value {
    json!({
        "cardType": "Virtual",
        "cardProduct": "10001",
        "customerReference": customer_reference,
        "cardHolder": {"title": "Ms", "firstName": "Ada", "lastName": "Lovelace", "dateOfBirth": "1990-12-10"},
        "address": {"addressLine1": "1 High Street", "city": "London", "postCode": "EC1A 1BB", "country": "GBR"}
    })
}

/// A software statement body with the seed's example values.
pub fn software_statement_body(roles: &[&str]) -> Value {
    json!({
        "ClientName": "Test Company App 1",
        "Version": "1.0",
        "HomepageUri": "https://example.com",
        "LogoUri": "https://example.com/logo.png",
        "RedirectUri": ["https://example.com/callback"],
        "Roles": roles,
        "Description": "A test app for Company 1",
    })
}

/// A PEM CSR for `key` with the directory's subject layout.
pub fn csr_pem(key: &KeyPair, organisational_unit: &str, common_name: &str) -> String {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CountryName, "GB");
    name.push(DnType::OrganizationName, "Test Company 1");
    name.push(DnType::OrganizationalUnitName, organisational_unit);
    name.push(DnType::CommonName, common_name);
    params.distinguished_name = name;
    params.serialize_request(key).unwrap().pem().unwrap()
}

/// The wall clock, for building test tokens.
#[allow(clippy::disallowed_methods)]
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
