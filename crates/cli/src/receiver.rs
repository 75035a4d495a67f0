//! The demo's webhook receiver: what a programme manager runs to receive the Cards API's events.
//! HTTPS on a free loopback port with a certificate from a CA of its own (the demo's stack trusts
//! it through `[webhooks] ca_file`); every delivery is checked with
//! `certbound_client::webhooks::verify_delivery` against the Cards API's `GET /keys` and kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;

/// One delivery as received: its event code, its payload, and whether it verified.
#[derive(Clone, Debug)]
pub(crate) struct Delivery {
    pub(crate) event_code: String,
    pub(crate) payload: Value,
    pub(crate) verified: Result<(), String>,
}

#[derive(Default)]
struct State {
    jwks: Option<Value>,
    deliveries: Vec<Delivery>,
}

/// A running receiver.
pub(crate) struct Receiver {
    state: Arc<Mutex<State>>,
    /// The URL events are sent to.
    pub(crate) url: String,
    /// The PEM of its CA, for `[webhooks] ca_file`.
    pub(crate) ca_pem: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Receiver {
    /// Starts one on a free port.
    pub(crate) async fn start() -> Result<Self, String> {
        let error = |what: &str, error: &dyn std::fmt::Display| {
            format!("webhook receiver: {what}: {error}")
        };
        let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| error("key", &e))?;
        let mut ca_params =
            rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| error("CA", &e))?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(
            rcgen::DnType::CommonName,
            "certbound demo webhook receiver CA",
        );
        let ca = ca_params
            .self_signed(&ca_key)
            .map_err(|e| error("CA", &e))?;
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| error("key", &e))?;
        let certificate = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .and_then(|params| params.signed_by(&key, &issuer))
            .map_err(|e| error("certificate", &e))?;
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![certificate.der().clone()],
                rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .map_err(|e| error("TLS", &e))?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| error("listen", &e))?;
        let port = listener
            .local_addr()
            .map_err(|e| error("listen", &e))?
            .port();
        let url = format!("https://localhost:{port}/events");
        let state = Arc::new(Mutex::new(State::default()));
        let router = axum::Router::new()
            .route("/events", axum::routing::post(receive))
            .with_state((state.clone(), url.clone()));
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, router) = (acceptor.clone(), router.clone());
                connections.spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = hyper_util::service::TowerToHyperService::new(router);
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
                });
            }
        });
        Ok(Self {
            state,
            url,
            ca_pem: ca.pem(),
            task,
        })
    }

    /// The Cards API's JWKS (`GET /keys`) the deliveries are checked against.
    pub(crate) fn trust(&self, jwks: Value) {
        lock(&self.state).jwks = Some(jwks);
    }

    /// What arrived so far.
    pub(crate) fn deliveries(&self) -> Vec<Delivery> {
        lock(&self.state).deliveries.clone()
    }
}

async fn receive(
    axum::extract::State((state, url)): axum::extract::State<(Arc<Mutex<State>>, String)>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    let headers: HashMap<String, String> = headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                value.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let mut state = lock(&state);
    let verified = match &state.jwks {
        Some(jwks) => certbound_client::webhooks::verify_delivery(
            "POST",
            &url,
            &headers,
            &body,
            jwks,
            certbound_client::now(),
        )
        .map_err(|refused| refused.to_string()),
        None => Err("no JWKS to check it against yet".to_owned()),
    };
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let refused = verified.is_err();
    state.deliveries.push(Delivery {
        event_code: parsed
            .pointer("/context/eventCode")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        payload: parsed.get("payload").cloned().unwrap_or(Value::Null),
        verified,
    });
    if refused {
        axum::http::StatusCode::UNAUTHORIZED
    } else {
        axum::http::StatusCode::NO_CONTENT
    }
}
