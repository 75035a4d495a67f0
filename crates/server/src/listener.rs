//! rustls listeners. Each accepted connection completes its TLS handshake (TLS 1.2/1.3 only,
//! aws-lc-rs), and the verified client certificate, if any, becomes a [`PeerCertificate`] in
//! every request's extensions (kanidm's `ClientCertInfo`). hyper-util serves HTTP/1.1 and h2;
//! shutdown stops accepting and lets in-flight requests finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use certbound_http::PeerCertificate;
use certbound_jose::{AlgorithmPolicy, SigningKey};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::bootstrap::{BootstrapError, TrustMaterial};
use crate::config::{ConfigError, Part, StackConfig};
use crate::idle::{Activity, ActivityIo, AddressSlots, DeadlineBody, Refusals};
use crate::proxy::{Carried, TrustedProxies};
use crate::unread_body;
use crate::verifier::{DirectoryOrSelfSigned, TransportOnly};

/// Why the stack did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data dir or database could not be prepared.
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
    /// A port could not be bound.
    #[error(
        "cannot listen on {address}: {source} (is another certbound running? choose another port in the config)"
    )]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// TLS configuration failed.
    #[error("TLS setup failed: {0}")]
    Tls(String),
}

/// A started stack: its URLs, and the handle that stops it.
#[derive(Debug)]
pub struct RunningStack {
    /// Directory public URL (issuer), e.g. `https://localhost:8441`, if the directory runs here.
    pub directory_url: Option<String>,
    /// Directory mTLS URL, e.g. `https://localhost:8442`.
    pub directory_mtls_url: Option<String>,
    /// Authorization server issuer, e.g. `https://localhost:8443`, if it runs here.
    pub authz_url: Option<String>,
    /// Cards API base URL, e.g. `https://localhost:8444/api/v1`, if it runs here.
    pub cards_url: Option<String>,
    /// The operations listener, e.g. `http://127.0.0.1:9464`, unless it is off.
    pub ops_url: Option<String>,
    /// The data dir.
    pub data_dir: std::path::PathBuf,
    /// The store, for tests and tools running in the same process.
    pub database: Arc<certbound_store::Database>,
    /// The master key, for tools running in the same process.
    pub master_key: Arc<certbound_store::MasterKey>,
    /// The operator's admin token.
    pub admin_token: String,
    /// The root CA, PEM.
    pub ca_pem: String,
    /// The routers the listeners serve, for tests that send requests straight to a part (with
    /// the peer certificate as a request extension), without TLS.
    pub routers: Routers,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    audit: certbound_http::AuditLog,
}

impl RunningStack {
    /// Waits until every refusal record queued for the audit trail's thread is in
    /// `DATA_DIR/audit.jsonl`.
    pub fn flush_audit(&self) {
        self.audit.flush();
    }

    /// Stops accepting, drains in-flight requests (up to the grace period), and returns.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
        // The refusal records still queued for the audit trail's thread: nothing is lost.
        self.audit.flush();
        self.database.stop_serving();
    }
}

/// Releases the embedded database's lock when a start fails after it was taken.
struct ReleaseOnFailure(Option<Arc<certbound_store::Database>>);

impl Drop for ReleaseOnFailure {
    fn drop(&mut self) {
        if let Some(database) = self.0.take() {
            database.stop_serving();
        }
    }
}

/// The router of each listener that runs here.
#[derive(Clone, Debug, Default)]
pub struct Routers {
    /// Port 8441.
    pub directory: Option<Router>,
    /// Port 8442.
    pub directory_mtls: Option<Router>,
    /// Port 8443.
    pub authz: Option<Router>,
    /// Port 8444.
    pub cards: Option<Router>,
}

/// The client webhook deliveries go out with: the system's roots, and `[webhooks] ca_file`'s
/// certificates too; no redirects (a receiver names its own URL); bounded connection time.
fn webhook_client(settings: &crate::config::Webhooks) -> Result<reqwest::Client, StartError> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(5));
    if let Some(path) = &settings.ca_file {
        let pem = std::fs::read(path).map_err(|error| {
            StartError::Tls(format!(
                "cannot read [webhooks] ca_file {}: {error}",
                path.display()
            ))
        })?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|error| {
            StartError::Tls(format!(
                "[webhooks] ca_file {} holds no PEM certificate: {error}",
                path.display()
            ))
        })?;
        builder = builder.tls_certs_merge(certificates);
    }
    builder.build().map_err(tls_error)
}

fn tls_error<E: std::fmt::Display>(error: E) -> StartError {
    StartError::Tls(error.to_string())
}

/// How a listener treats client certificates.
#[derive(Clone, Copy, Debug)]
enum ClientCertificates {
    /// Directory public port.
    NotRequested,
    /// Directory mTLS and cards: a presented certificate must chain to the directory CA; a
    /// connection without one reaches only what does not need one (`/healthz`).
    DirectoryCa,
    /// Authorization server: directory certificates, and self-signed ones for RFC 8705 §2.2.
    DirectoryOrSelfSigned,
}

/// A TLS acceptor and, where self-signed certificates are let in, the check that classifies them;
/// with trusted-proxy mode on, the proxies whose certificate headers count.
#[derive(Clone)]
struct Acceptor {
    tls: TlsAcceptor,
    classify: Option<Arc<DirectoryOrSelfSigned>>,
    proxies: Option<Arc<TrustedProxies>>,
    /// Trusted proxies carry everyone's traffic: no per-address connection cap for them.
    uncapped: Arc<[ipnet::IpNet]>,
}

fn acceptor(
    material: &TrustMaterial,
    client_certificates: ClientCertificates,
    trusted_proxies: &[String],
) -> Result<Acceptor, StartError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(tls_error)?;
    let directory_verifier =
        || -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, StartError> {
            let mut roots = RootCertStore::empty();
            roots
                .add(CertificateDer::from(material.ca.root_der().to_vec()))
                .map_err(tls_error)?;
            // A connection without a certificate is let through so that `/healthz` answers probes
            // and every other endpoint refuses with an error that says what to do.
            let webpki =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .allow_unauthenticated()
                    .build()
                    .map_err(tls_error)?;
            Ok(Arc::new(TransportOnly::new(webpki)))
        };
    let mut classify = None;
    let uncapped = crate::proxy::parse_networks(trusted_proxies)
        .map_err(StartError::Tls)?
        .into();
    // Only listeners that take client certificates take them from a trusted proxy's header too.
    let proxies = match (client_certificates, trusted_proxies.is_empty()) {
        (ClientCertificates::NotRequested, _) | (_, true) => None,
        _ => {
            let issuing = CertificateDer::from(material.ca.issuing_der().to_vec());
            Some(Arc::new(
                TrustedProxies::new(trusted_proxies, directory_verifier()?, issuing)
                    .map_err(StartError::Tls)?,
            ))
        }
    };
    let builder = match client_certificates {
        ClientCertificates::NotRequested => builder.with_no_client_auth(),
        ClientCertificates::DirectoryCa => builder.with_client_cert_verifier(directory_verifier()?),
        ClientCertificates::DirectoryOrSelfSigned => {
            let verifier = Arc::new(DirectoryOrSelfSigned::new(directory_verifier()?));
            classify = Some(verifier.clone());
            builder.with_client_cert_verifier(verifier)
        }
    };
    let chain = material
        .tls
        .chain_der
        .iter()
        .map(|der| CertificateDer::from(der.clone()))
        .collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        material.tls.key.pkcs8_der().to_vec(),
    ));
    let mut config = builder.with_single_cert(chain, key).map_err(tls_error)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Acceptor {
        tls: TlsAcceptor::from(Arc::new(config)),
        classify,
        proxies,
        uncapped,
    })
}

async fn bind(address: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| StartError::Bind { address, source })
}

fn url_of(listener: &TcpListener, host: &str) -> Result<String, StartError> {
    let port = listener.local_addr().map_err(tls_error)?.port();
    Ok(format!("https://{host}:{port}"))
}

/// The bound sockets of the configured parts.
struct Sockets {
    directory: Option<(TcpListener, TcpListener)>,
    authz: Option<TcpListener>,
    cards: Option<TcpListener>,
    ops: Option<TcpListener>,
}

impl Sockets {
    /// Binds every listener of the configured parts, before anything touches the disk: a busy
    /// port fails the start with nothing created.
    async fn bind(config: &StackConfig) -> Result<Self, StartError> {
        let directory = if config.roles.contains(&Part::Directory) {
            Some((
                bind(config.listen.directory).await?,
                bind(config.listen.directory_mtls).await?,
            ))
        } else {
            None
        };
        let authz = if config.roles.contains(&Part::Authz) {
            Some(bind(config.listen.authz).await?)
        } else {
            None
        };
        let cards = if config.roles.contains(&Part::Cards) {
            Some(bind(config.listen.cards).await?)
        } else {
            None
        };
        let ops = if config.ops.enabled {
            Some(bind(config.ops.listen).await?)
        } else {
            None
        };
        Ok(Self {
            directory,
            authz,
            cards,
            ops,
        })
    }
}

/// Binds every listener of the configured parts, prepares the data dir and database, and serves.
pub async fn start(config: StackConfig) -> Result<RunningStack, StartError> {
    config.validate()?;
    let mut sockets = Sockets::bind(&config).await?;
    let (shutdown, watcher) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let metrics = certbound_http::Metrics::new();
    let ops = crate::ops::Ops::new(metrics.clone());
    let mut ops_url = None;
    if let Some(listener) = sockets.ops.take() {
        let address = listener.local_addr().map_err(tls_error)?;
        ops_url = Some(format!("http://{address}"));
        tasks.spawn(ops.clone().serve(listener, watcher.clone()));
    }
    let mut caches: Vec<crate::ops::CacheLookups> = Vec::new();
    let (database, master_key, material) = crate::bootstrap::open(&config).await?;
    // Should anything below fail, the embedded database is free again at once (a start in the
    // same process may follow), whatever handles of the store are still ending.
    let mut release = ReleaseOnFailure(Some(database.clone()));
    let limits = Limits::of(&config);
    let audit_path = config.data_dir.join("audit.jsonl");
    let rotation = certbound_http::Rotation {
        max_bytes: config.audit.max_bytes.max(1),
        max_age_seconds: config.audit.max_age_seconds.max(1),
        keep: config.audit.keep,
    };
    let on_failure = match config.audit.on_failure {
        crate::config::AuditFailure::Continue => certbound_http::OnFailure::Continue,
        crate::config::AuditFailure::Refuse => certbound_http::OnFailure::Refuse,
    };
    let audit = certbound_http::AuditLog::open_rotating(&audit_path, rotation, on_failure)
        .map_err(|source| {
            StartError::Bootstrap(BootstrapError::File {
                path: audit_path.display().to_string(),
                source,
            })
        })?
        .with_metrics(metrics);
    let algorithms = if config.allow_rs256 {
        AlgorithmPolicy::with_rs256()
    } else {
        AlgorithmPolicy::default()
    };

    let mut routers = Routers::default();
    let mut directory_url = None;
    let mut directory_mtls_url = None;
    if let Some((public, mtls)) = sockets.directory {
        let public_url = url_of(&public, &config.public_host)?;
        let mtls_url = url_of(&mtls, &config.public_host)?;

        let signer_pem = material.ssa_signer.key.pkcs8_pem();
        let ssa_signer = SigningKey::rsa_pem(
            "signer",
            certbound_jose::Algorithm::PS256,
            signer_pem.as_bytes(),
        )
        .map_err(tls_error)?;
        let signer_chain: Vec<&[u8]> = material
            .ssa_signer
            .chain_der
            .iter()
            .map(Vec::as_slice)
            .collect();
        let mut signer_jwk =
            certbound_pki::Jwk::from_certificate_chain(&signer_chain, "sig", Some("PS256"))
                .map_err(tls_error)?;
        signer_jwk.kid = "signer".into();
        let directory = certbound_directory::Directory::new(
            certbound_directory::DirectoryConfig {
                issuer: public_url.clone(),
                mtls_base: mtls_url.clone(),
                token_lifetime: config.token_lifetime_seconds,
                algorithms: algorithms.clone(),
                assertion_max_lifetime: config.assertion_max_lifetime_seconds,
            },
            database.clone(),
            material.ca.clone(),
            ssa_signer,
            signer_jwk,
            &material.admin_token,
            audit.clone(),
        );
        tasks.spawn(serve(
            public,
            acceptor(
                &material,
                ClientCertificates::NotRequested,
                &config.trusted_proxies,
            )?,
            routers.directory.insert(directory.public_router()).clone(),
            watcher.clone(),
            limits,
        ));
        tasks.spawn(serve(
            mtls,
            acceptor(
                &material,
                ClientCertificates::DirectoryCa,
                &config.trusted_proxies,
            )?,
            routers
                .directory_mtls
                .insert(directory.mtls_router())
                .clone(),
            watcher.clone(),
            limits,
        ));
        tracing::info!(%public_url, %mtls_url, "directory listening");
        directory_url = Some(public_url);
        directory_mtls_url = Some(mtls_url);
    }

    let mut authz_url = None;
    // Where this process's authorization server answers directly (not through a proxy).
    let mut authz_local = None;
    if let Some(listener) = sockets.authz {
        authz_local = Some(format!(
            "{}{}",
            url_of(&listener, &config.public_host)?,
            config.issuer_path
        ));
        let issuer = match &config.authz_issuer {
            Some(issuer) => issuer.trim_end_matches('/').to_owned(),
            None => format!(
                "{}{}",
                url_of(&listener, &config.public_host)?,
                config.issuer_path
            ),
        };
        let trusted_directory = directory_url
            .clone()
            .or_else(|| config.directory_url.clone())
            .unwrap_or_else(|| "https://localhost:8441".to_owned());
        let mut scopes: Vec<String> = Vec::new();
        for role in certbound_directory::ROLES {
            for scope in role.scopes {
                if !scopes.iter().any(|known| known == scope) {
                    scopes.push((*scope).to_owned());
                }
            }
        }
        let key_source = certbound_trust::fetch::HttpsKeySource::new(&material.ca.root_pem())
            .map_err(tls_error)?;
        let authz = certbound_authz::Authz::new(
            certbound_authz::AuthzConfig {
                issuer: issuer.clone(),
                directory_jwks_uri: format!("{trusted_directory}/jwks"),
                directory_issuer: trusted_directory,
                token_lifetime: config.token_lifetime_seconds,
                algorithms: algorithms.clone(),
                assertion_max_lifetime: config.assertion_max_lifetime_seconds,
                strict_audience: config.strict_audience,
                scopes_supported: scopes,
                rate_limits: certbound_authz::RateLimits {
                    token_per_client: config.rate_limits.token_per_client,
                    token_per_address: config.rate_limits.token_per_address,
                    register_per_address: config.rate_limits.register_per_address,
                },
            },
            database.clone(),
            master_key.clone(),
            Box::new(key_source),
            audit.clone(),
        )
        .await
        .map_err(|error| StartError::Tls(error.to_string()))?;
        let lookups = authz.clone();
        caches.push(Box::new(move || lookups.cache_lookups()));
        tasks.spawn(serve(
            listener,
            acceptor(
                &material,
                ClientCertificates::DirectoryOrSelfSigned,
                &config.trusted_proxies,
            )?,
            routers.authz.insert(authz.router()).clone(),
            watcher.clone(),
            limits,
        ));
        tracing::info!(%issuer, "authorization server listening");
        authz_url = Some(issuer);
    }

    let mut cards_url = None;
    if let Some(listener) = sockets.cards {
        let base = format!("{}/api/v1", url_of(&listener, &config.public_host)?);
        let issuer = authz_url
            .clone()
            .or_else(|| config.authz_issuer.clone())
            .unwrap_or_else(|| format!("https://localhost:8443{}", config.issuer_path));
        let keys = certbound_cards::crypto::CardKeys::new(
            material.cards_encryption.key.pkcs8_der(),
            &material.cards_encryption.chain_der,
            material.cards_signing.key.pkcs8_der(),
            &material.cards_signing.chain_der,
        )
        .map_err(tls_error)?;
        let key_source = certbound_trust::fetch::HttpsKeySource::new(&material.ca.root_pem())
            .map_err(tls_error)?;
        let cards = certbound_cards::Cards::new(
            certbound_cards::CardsConfig {
                jwks_uri: format!(
                    "{}/.well-known/jwks.json",
                    authz_local.as_deref().unwrap_or(&issuer)
                ),
                issuer,
                products: certbound_cards::model::default_products(),
                bulk_jobs_per_organisation: config.bulk_jobs_per_organisation.max(1),
                card_network: config.sandbox.card_network,
                webhook_client: webhook_client(&config.webhooks)?,
                webhook_retry_seconds: config.webhooks.retry_seconds.max(1),
            },
            database.clone(),
            master_key.clone(),
            keys,
            Box::new(key_source),
            audit.clone(),
        );
        tasks.spawn(cards.clone().run_bulk_worker(watcher.clone()));
        tasks.spawn(cards.clone().run_webhook_worker(watcher.clone()));
        let lookups = cards.clone();
        caches.push(Box::new(move || lookups.cache_lookups()));
        let store = database.clone();
        caches.push(Box::new(move || {
            vec![("cards_records", store.card_lookups())]
        }));
        tasks.spawn(serve(
            listener,
            acceptor(
                &material,
                ClientCertificates::DirectoryCa,
                &config.trusted_proxies,
            )?,
            routers.cards.insert(cards.router()).clone(),
            watcher.clone(),
            limits,
        ));
        tracing::info!(%base, "cards API listening");
        cards_url = Some(base);
    }

    ops.started(crate::ops::Started {
        database: database.clone(),
        caches,
    });
    release.0 = None;
    if let Some(url) = &ops_url {
        tracing::info!(%url, "operations listener: /metrics, /livez, /readyz");
    }
    Ok(RunningStack {
        directory_url,
        directory_mtls_url,
        authz_url,
        cards_url,
        ops_url,
        data_dir: config.data_dir.clone(),
        database,
        master_key,
        admin_token: material.admin_token.clone(),
        ca_pem: material.ca.root_pem(),
        routers,
        shutdown,
        tasks,
        audit,
    })
}

/// What each connection of a listener may use.
#[derive(Clone, Copy, Debug)]
struct Limits {
    max_connections: usize,
    max_connections_per_address: usize,
    handshake_timeout: Duration,
    header_read_timeout: Duration,
    idle_timeout: Duration,
    body_timeout: Duration,
    grace: Duration,
}

impl Limits {
    fn of(config: &StackConfig) -> Self {
        Self {
            max_connections: config.limits.max_connections.max(1),
            max_connections_per_address: config.limits.max_connections_per_address.max(1),
            idle_timeout: Duration::from_secs(config.limits.idle_timeout_seconds.max(1)),
            body_timeout: Duration::from_secs(config.limits.body_timeout_seconds.max(1)),
            handshake_timeout: Duration::from_secs(config.limits.handshake_timeout_seconds.max(1)),
            header_read_timeout: Duration::from_secs(
                config.limits.header_read_timeout_seconds.max(1),
            ),
            grace: Duration::from_secs(config.shutdown_grace_seconds),
        }
    }
}

async fn serve(
    listener: TcpListener,
    acceptor: Acceptor,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
    limits: Limits,
) {
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let per_address = AddressSlots::new(limits.max_connections_per_address);
    let refusals = Refusals::new(
        listener
            .local_addr()
            .map(|address| address.to_string())
            .unwrap_or_default(),
    );
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        // Over a limit: close at once rather than queue.
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            refusals.note(remote.ip(), "the listener's connection limit");
            drop(tcp);
            continue;
        };
        let address_slot = if acceptor
            .uncapped
            .iter()
            .any(|network| network.contains(&remote.ip()))
        {
            None
        } else {
            let Some(slot) = per_address.acquire(remote.ip()) else {
                refusals.note(remote.ip(), "the per-address connection limit");
                drop(tcp);
                continue;
            };
            Some(slot)
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let _address_slot = address_slot;
            let _ = tcp.set_nodelay(true);
            let stream = match tokio::time::timeout(
                limits.handshake_timeout,
                acceptor.tls.accept(tcp),
            )
            .await
            {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(%remote, %error, "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%remote, "TLS handshake timed out");
                    return;
                }
            };
            let peer = stream.get_ref().1.peer_certificates().and_then(|chain| {
                let leaf = chain.first()?;
                Some(PeerCertificate {
                    thumbprint: certbound_pki::thumbprint_sha256(leaf.as_ref()).into(),
                    der: leaf.as_ref().into(),
                    issued_by_directory: acceptor
                        .classify
                        .as_ref()
                        .is_none_or(|classify| classify.issued_by_directory(chain)),
                })
            });
            let proxies = acceptor.proxies.clone();
            let activity = Activity::new();
            let requests = activity.clone();
            let service = hyper::service::service_fn(
                move |mut request: hyper::Request<hyper::body::Incoming>| {
                    let in_flight = requests.begin();
                    let address =
                        certbound_http::ClientAddress(proxies.as_ref().map_or(remote, |proxies| {
                            proxies.client_address(remote, request.headers())
                        }));
                    let carried = match proxies.as_ref() {
                        Some(proxies) => proxies.take(remote.ip(), request.headers_mut()),
                        None => Carried::Own,
                    };
                    let certificate = match carried {
                        Carried::Own => peer.clone(),
                        Carried::Forwarded(forwarded) => forwarded,
                    };
                    if let Some(certificate) = certificate {
                        request.extensions_mut().insert(certificate);
                    }
                    request.extensions_mut().insert(address);
                    let (parts, body) = request.into_parts();
                    let (body, held) = if parts.version == hyper::Version::HTTP_2 {
                        let (body, held) = unread_body::share(body);
                        let body = DeadlineBody::new(body, limits.body_timeout);
                        (axum::body::Body::new(body), Some(held))
                    } else {
                        let body = DeadlineBody::new(body, limits.body_timeout);
                        (axum::body::Body::new(body), None)
                    };
                    let response = router
                        .clone()
                        .oneshot(hyper::Request::from_parts(parts, body));
                    async move {
                        let response = response.await?;
                        drop(in_flight);
                        Ok::<_, std::convert::Infallible>(
                            response.map(|body| unread_body::ResponseBody::new(body, held)),
                        )
                    }
                },
            );
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(64 * 1024);
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_concurrent_streams(64)
                .max_header_list_size(32 * 1024);
            let stream = ActivityIo::new(stream, activity.clone());
            let connection = watcher.watch(builder.serve_connection(TokioIo::new(stream), service));
            tokio::pin!(connection);
            let check =
                (limits.idle_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
            loop {
                tokio::select! {
                    ended = &mut connection => {
                        if let Err(error) = ended {
                            tracing::debug!(%remote, %error, "connection ended with an error");
                        }
                        break;
                    }
                    () = tokio::time::sleep(check) => {
                        if activity.idle_for(limits.idle_timeout) {
                            tracing::debug!(%remote, "idle connection closed");
                            break;
                        }
                    }
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period elapsed with connections still open");
    }
}
