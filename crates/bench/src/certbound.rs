//! Setting up the stack under test: onboarded clients (one per connection) through the client
//! library, and the inputs each scenario sends.

// `serde_json::Value["key"]` answers `Null` for a missing key; it never panics. Bench code.
#![allow(clippy::indexing_slicing)]

use std::path::Path;

use certbound_client::{OnboardOptions, Reporter, Session};
use certbound_jose::VerificationKey;
use serde_json::{Value, json};

use crate::load::Generator;
use crate::server::Server;

struct Quiet;

impl Reporter for Quiet {
    fn step(&self, _: usize, _: usize, _: &str) {}
    fn detail(&self, _: &str, _: &str) {}
}

/// An onboarded client.
pub(crate) struct Client {
    pub(crate) session: Session,
    pub(crate) identity_pem: String,
}

/// The stack and its clients.
pub(crate) struct Stack {
    pub(crate) ca_pem: String,
    admin_token: String,
    directory: String,
    pub(crate) issuer: String,
    token_endpoint: String,
    registration_endpoint: String,
    pub(crate) clients: Vec<Client>,
    /// With a second instance: each origin of the first (authorization server, Cards API) and
    /// the second's in its place; odd connections go to the second.
    second: Vec<(String, String)>,
}

/// `scheme://host:port` of a URL.
fn origin(url: &str) -> String {
    url.split('/').take(3).collect::<Vec<_>>().join("/")
}

pub(crate) fn http_client(
    ca_pem: &str,
    identity_pem: Option<&str>,
    keep_alive: bool,
) -> Result<reqwest::Client, String> {
    let ca =
        reqwest::Certificate::from_pem(ca_pem.as_bytes()).map_err(|error| error.to_string())?;
    let mut builder = reqwest::Client::builder().tls_certs_only([ca]).http1_only();
    if let Some(pem) = identity_pem {
        builder = builder.identity(
            reqwest::Identity::from_pem(pem.as_bytes()).map_err(|error| error.to_string())?,
        );
    }
    if !keep_alive {
        builder = builder.pool_max_idle_per_host(0);
    }
    builder.build().map_err(|error| error.to_string())
}

impl Stack {
    /// Sends every other connection to `second` (an instance on the same database).
    pub(crate) fn spread_over(&mut self, first: &Server, second: &Server) -> Result<(), String> {
        self.second = vec![
            (origin(&first.url("authz")?), origin(&second.url("authz")?)),
            (origin(&first.url("cards")?), origin(&second.url("cards")?)),
        ];
        Ok(())
    }

    /// `url` for connection `index`: at the second instance for odd ones, when there is one.
    fn at(&self, index: usize, url: &str) -> String {
        if index % 2 == 1 {
            for (first, second) in &self.second {
                if let Some(rest) = url.strip_prefix(first.as_str()) {
                    return format!("{second}{rest}");
                }
            }
        }
        url.to_owned()
    }

    /// Onboards `count` clients (organisation, application, RSA transport and signing keys,
    /// RC token, SSA, registration, access token).
    pub(crate) async fn prepare(
        server: &Server,
        data: &Path,
        work: &Path,
        count: usize,
    ) -> Result<Self, String> {
        let ca_pem =
            std::fs::read_to_string(data.join("ca.pem")).map_err(|error| error.to_string())?;
        let admin_token = std::fs::read_to_string(data.join("admin.token"))
            .map_err(|error| error.to_string())?
            .trim()
            .to_owned();
        let directory = server.url("directory")?;
        let authz = server.url("authz")?;
        let cards = server.url("cards")?;
        println!("Onboarding {count} clients ...");
        let mut clients = Vec::new();
        for index in 0..count {
            let options = OnboardOptions {
                directory: directory.clone(),
                authz: authz.clone(),
                cards: cards.clone(),
                admin_token: admin_token.clone(),
                ca_pem: Some(ca_pem.clone()),
                organisation_name: format!("Bench Org {index}"),
                country: "GB".into(),
                client_name: format!("Bench Client {index}"),
                roles: vec!["programme-manager".into()],
                out: work.join(format!("client-{index}")),
                webhook: None,
            };
            let session = certbound_client::onboard(&options, &Quiet)
                .await
                .map_err(|error| error.to_string())?;
            let out = session.dir().to_path_buf();
            let read = |name: &str| {
                std::fs::read_to_string(out.join(name)).map_err(|error| error.to_string())
            };
            let identity_pem = format!("{}{}", read("transport.pem")?, read("transport.key")?);
            clients.push(Client {
                session,
                identity_pem,
            });
        }
        let discovery = clients
            .first()
            .ok_or("no clients")?
            .session
            .authz_discovery()
            .await
            .map_err(|error| error.to_string())?;
        Ok(Self {
            ca_pem,
            admin_token,
            directory,
            issuer: discovery["issuer"].as_str().unwrap_or_default().to_owned(),
            token_endpoint: discovery["mtls_endpoint_aliases"]["token_endpoint"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            registration_endpoint: discovery["mtls_endpoint_aliases"]["registration_endpoint"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            clients,
            second: Vec::new(),
        })
    }

    /// `count` fresh assertions per client, signed on every core before the timed phase.
    pub(crate) async fn assertions(
        &self,
        count: usize,
        audience: &str,
    ) -> Result<Vec<Vec<String>>, String> {
        println!(
            "Pre-generating {} PS256 client assertions ...",
            count * self.clients.len()
        );
        let mut pools = Vec::new();
        for client in &self.clients {
            let cores = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2);
            let mut handles = Vec::new();
            for part in 0..cores {
                let dir = client.session.dir().to_path_buf();
                let audience = audience.to_owned();
                let share = count / cores + usize::from(part < count % cores);
                handles.push(tokio::task::spawn_blocking(
                    move || -> Result<Vec<String>, String> {
                        let session = Session::open(&dir).map_err(|error| error.to_string())?;
                        (0..share)
                            .map(|_| {
                                session
                                    .assertion(&audience)
                                    .map_err(|error| error.to_string())
                            })
                            .collect()
                    },
                ));
            }
            let mut pool = Vec::new();
            for handle in handles {
                pool.extend(handle.await.map_err(|error| error.to_string())??);
            }
            pools.push(pool);
        }
        Ok(pools)
    }

    /// One generator per client: `client_credentials` with the next pre-generated assertion.
    pub(crate) async fn token_generators(
        &self,
        count: usize,
        keep_alive: bool,
    ) -> Result<Vec<Generator>, String> {
        self.token_generators_for(
            &self.token_endpoint,
            &self.issuer,
            &self.ca_pem,
            count,
            keep_alive,
        )
        .await
    }

    /// The same against any token endpoint (the peer's too): assertions for `audience`, TLS
    /// trusting `trust_pem`, each connection presenting its client's transport certificate.
    pub(crate) async fn token_generators_for(
        &self,
        endpoint: &str,
        audience: &str,
        trust_pem: &str,
        count: usize,
        keep_alive: bool,
    ) -> Result<Vec<Generator>, String> {
        let pools = self.assertions(count, audience).await?;
        let mut generators: Vec<Generator> = Vec::new();
        for (index, (client, pool)) in self.clients.iter().zip(pools).enumerate() {
            let http = http_client(trust_pem, Some(&client.identity_pem), keep_alive)?;
            let endpoint = self.at(index, endpoint);
            let client_id = client.session.profile.client_id.clone().unwrap_or_default();
            let mut pool = pool.into_iter();
            generators.push(Box::new(move || {
                let assertion = pool.next()?;
                Some(http.post(&endpoint).form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id.as_str()),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", assertion.as_str()),
                ]))
            }));
        }
        Ok(generators)
    }

    /// The handshake floor: one generator per client, each request a new mutual-TLS connection
    /// to the authorization server's port that asks for `/healthz` (the least a connection can
    /// carry), presenting the client's transport certificate as a token request would.
    pub(crate) fn handshake_generators(&self) -> Result<Vec<Generator>, String> {
        let url = format!("{}/healthz", origin(&self.token_endpoint));
        let mut generators: Vec<Generator> = Vec::new();
        for (index, client) in self.clients.iter().enumerate() {
            let http = http_client(&self.ca_pem, Some(&client.identity_pem), false)?;
            let url = self.at(index, &url);
            generators.push(Box::new(move || Some(http.get(&url))));
        }
        Ok(generators)
    }

    /// One generator per client: `GET /cards/{publicToken}` over the client's mutual-TLS
    /// connection (keep-alive) with a bearer token that is not a token: each answer a 401, each
    /// refusal a record in the audit trail.
    pub(crate) async fn refused_generators(&self) -> Result<Vec<Generator>, String> {
        let mut generators: Vec<Generator> = Vec::new();
        for (index, client) in self.clients.iter().enumerate() {
            let session = Session::open(client.session.dir()).map_err(|error| error.to_string())?;
            let url = self.at(index, &format!("{}/cards/123456789", session.profile.cards));
            let http = http_client(&self.ca_pem, Some(&client.identity_pem), true)?;
            generators.push(Box::new(move || {
                Some(http.get(&url).bearer_auth("not-a-token"))
            }));
        }
        Ok(generators)
    }

    /// One generator per client: `GET /cards/{publicToken}` with a bound token, keep-alive.
    pub(crate) async fn cards_generators(&self) -> Result<Vec<Generator>, String> {
        let mut generators: Vec<Generator> = Vec::new();
        for (index, client) in self.clients.iter().enumerate() {
            let mut session =
                Session::open(client.session.dir()).map_err(|error| error.to_string())?;
            let card = json!({
                "cardType": "Virtual", "cardProduct": "10001", "customerReference": "bench",
                "cardHolder": {"firstName": "Bench", "lastName": "Mark", "dateOfBirth": "1990-01-01"},
                "address": {"addressLine1": "1 Bench Street", "city": "London", "postCode": "EC1A 1BB", "country": "GBR"},
            });
            let created = session
                .call(reqwest::Method::POST, "/cards", Some(&card))
                .await
                .map_err(|error| error.to_string())?;
            let public_token = created.json["publicToken"]
                .as_str()
                .ok_or(format!("card creation failed: {}", created.text))?
                .to_owned();
            let token = session
                .access_token(false)
                .await
                .map_err(|error| error.to_string())?;
            let url = self.at(
                index,
                &format!("{}/cards/{public_token}", session.profile.cards),
            );
            let http = http_client(&self.ca_pem, Some(&client.identity_pem), true)?;
            generators.push(Box::new(move || Some(http.get(&url).bearer_auth(&token))));
        }
        Ok(generators)
    }

    /// One generator: DCR of pre-created software statements, one after another, each over its
    /// own new mTLS connection.
    pub(crate) async fn register_generators(&self, count: usize) -> Result<Vec<Generator>, String> {
        println!("Pre-creating {count} software statements with certificates and SSAs ...");
        let plain = http_client(&self.ca_pem, None, true)?;
        let admin = |request: reqwest::RequestBuilder| request.bearer_auth(&self.admin_token);
        let organisation: Value = admin(plain.post(format!("{}/organisations", self.directory)))
            .json(&json!({"OrganisationName": "Bench Registrations", "Country": "GB"}))
            .send()
            .await
            .map_err(|error| error.to_string())?
            .json()
            .await
            .map_err(|error| error.to_string())?;
        let org = organisation["OrganisationId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let discovery: Value = plain
            .get(format!(
                "{}/.well-known/openid-configuration",
                self.directory
            ))
            .send()
            .await
            .map_err(|error| error.to_string())?
            .json()
            .await
            .map_err(|error| error.to_string())?;
        let rc_endpoint = discovery["mtls_endpoint_aliases"]["token_endpoint"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut prepared = Vec::new();
        for index in 0..count {
            let statement: Value = admin(plain.post(format!("{}/organisations/{org}/softwarestatements", self.directory)))
                .json(&json!({"ClientName": format!("Registration {index}"), "Version": "1", "HomepageUri": "https://example.com",
                    "LogoUri": "https://example.com/logo.png", "RedirectUri": ["https://example.com/cb"], "Roles": ["card-reader"]}))
                .send()
                .await
                .map_err(|error| error.to_string())?
                .json()
                .await
                .map_err(|error| error.to_string())?;
            let ss = statement["SoftwareStatementId"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .map_err(|error| error.to_string())?;
            let mut params = rcgen::CertificateParams::default();
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationalUnitName, org.as_str());
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, ss.as_str());
            let csr = params
                .serialize_request(&key)
                .and_then(|csr| csr.pem())
                .map_err(|error| error.to_string())?;
            let certificate: Value = admin(plain.post(format!(
                "{}/organisations/{org}/softwarestatements/{ss}/certificates/transport",
                self.directory
            )))
            .header("content-type", "application/pkcs10")
            .body(csr)
            .send()
            .await
            .map_err(|error| error.to_string())?
            .json()
            .await
            .map_err(|error| error.to_string())?;
            let identity = format!(
                "{}{}",
                certificate["Certificate"].as_str().unwrap_or_default(),
                key.serialize_pem()
            );
            let mtls = http_client(&self.ca_pem, Some(&identity), true)?;
            let rc: Value = mtls
                .post(&rc_endpoint)
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("scope", "directory:software"),
                    ("client_id", ss.as_str()),
                ])
                .send()
                .await
                .map_err(|error| error.to_string())?
                .json()
                .await
                .map_err(|error| error.to_string())?;
            let ssa = mtls
                .get(format!(
                    "{}/organisations/{org}/softwarestatements/{ss}/assertion",
                    rc_endpoint.trim_end_matches("/token")
                ))
                .bearer_auth(rc["access_token"].as_str().unwrap_or_default())
                .send()
                .await
                .map_err(|error| error.to_string())?
                .text()
                .await
                .map_err(|error| error.to_string())?;
            prepared.push((identity, ssa));
        }
        let ca_pem = self.ca_pem.clone();
        let endpoint = self.registration_endpoint.clone();
        let mut prepared = prepared.into_iter();
        Ok(vec![Box::new(move || {
            let (identity, ssa) = prepared.next()?;
            let http = http_client(&ca_pem, Some(&identity), false).ok()?;
            Some(
                http.post(&endpoint)
                    .json(&json!({"software_statement": ssa})),
            )
        })])
    }

    /// The crypto floor of a token request, seconds.
    pub(crate) fn token_floor(&self) -> Result<f64, String> {
        let client = self.clients.first().ok_or("no clients")?;
        let assertion = client
            .session
            .assertion(&self.issuer)
            .map_err(|error| error.to_string())?;
        let signing = std::fs::read_to_string(client.session.dir().join("signing.pem"))
            .map_err(|error| error.to_string())?;
        let key = verification_key_of(&signing)?;
        let client_id = client.session.profile.client_id.clone().unwrap_or_default();
        crate::floor::token(
            &assertion,
            &key,
            &client_id,
            &self.issuer,
            certbound_client::now(),
        )
    }

    /// The crypto floor of a Cards API read, seconds.
    pub(crate) async fn cards_floor(&self) -> Result<f64, String> {
        let client = self.clients.first().ok_or("no clients")?;
        let mut session = Session::open(client.session.dir()).map_err(|error| error.to_string())?;
        let token = session
            .access_token(false)
            .await
            .map_err(|error| error.to_string())?;
        let http = http_client(&self.ca_pem, None, true)?;
        let jwks: Value = http
            .get(format!("{}/.well-known/jwks.json", self.issuer))
            .send()
            .await
            .map_err(|error| error.to_string())?
            .json()
            .await
            .map_err(|error| error.to_string())?;
        let keys: Vec<VerificationKey> = jwks["keys"]
            .as_array()
            .map(|keys| {
                keys.iter()
                    .filter_map(|key| VerificationKey::from_jwk_json(key).ok())
                    .collect()
            })
            .unwrap_or_default();
        let transport = std::fs::read_to_string(client.session.dir().join("transport.pem"))
            .map_err(|error| error.to_string())?;
        let der = first_certificate_der(&transport)?;
        crate::floor::cards(&token, &keys, &self.issuer, &der, certbound_client::now())
    }
}

pub(crate) fn first_certificate_der(pem: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    let body: String = pem
        .split("-----END CERTIFICATE-----")
        .next()
        .unwrap_or_default()
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|error| error.to_string())
}

/// The JWK of a certificate's key, as the keystore publishes it.
pub(crate) fn verification_key_of(chain_pem: &str) -> Result<VerificationKey, String> {
    let der = first_certificate_der(chain_pem)?;
    let jwk = certbound_pki::Jwk::from_certificate_chain(&[&der], "sig", Some("PS256"))
        .map_err(|error| error.0)?;
    VerificationKey::from_jwk_json(&serde_json::to_value(&jwk).map_err(|error| error.to_string())?)
        .map_err(|error| error.to_string())
}
