//! Events to the programme manager (DESIGN.md section 11, issue 18 item 5) from outside: a local
//! HTTPS receiver on its own CA (trusted through `[webhooks] ca_file`) checks every delivery's
//! `Content-Digest` and RFC 9421 signature against the key `GET /keys` publishes, goes down for a
//! while, and must still see every notification at least once, in order per card, with status
//! changes (103) and transactions (112); the undelivered list and resend work by the API.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use certbound_testkit::{CardsClient, TestStack, card_body};
use reqwest::Method;
use serde_json::{Value, json};

#[derive(Default)]
struct Received {
    /// (notificationId, eventCode, publicToken, body) in arrival order.
    deliveries: Vec<(String, String, String, Value)>,
    /// Deliveries whose signature or digest did not verify.
    forged: Vec<String>,
    /// The first verified delivery as received (headers, body).
    sample: Option<(HashMap<String, String>, Vec<u8>)>,
}

struct Receiver {
    state: Arc<ReceiverState>,
    address: SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
    acceptor: tokio_rustls::TlsAcceptor,
}

struct ReceiverState {
    received: Mutex<Received>,
    key: Mutex<Option<Value>>,
    url: String,
}

async fn hook(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let headers: HashMap<String, String> = headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                value.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let jwks = state.key.lock().unwrap().clone().unwrap();
    let verified = certbound_client::webhooks::verify_delivery(
        "POST",
        &state.url,
        &headers,
        &body,
        &jwks,
        certbound_testkit::now(),
    )
    .map_err(|refused| refused.to_string());
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut received = state.received.lock().unwrap();
    if let Err(error) = verified {
        received.forged.push(error);
        return StatusCode::UNAUTHORIZED;
    }
    if received.sample.is_none() {
        received.sample = Some((headers.clone(), body.to_vec()));
    }
    received.deliveries.push((
        parsed["context"]["notificationId"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        parsed["context"]["eventCode"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        parsed["payload"]["publicToken"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        parsed,
    ));
    StatusCode::NO_CONTENT
}

impl Receiver {
    /// A receiver on a free port with a server certificate from a CA of its own; the CA's PEM.
    async fn start() -> (Self, String) {
        let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "webhook receiver test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let certificate = params.signed_by(&key, &issuer).unwrap();
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![certificate.der().clone()],
                rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let state = Arc::new(ReceiverState {
            received: Mutex::default(),
            key: Mutex::default(),
            url: format!("https://localhost:{}/hooks/pm", address.port()),
        });
        let mut receiver = Self {
            state,
            address,
            task: None,
            acceptor,
        };
        receiver.serve(listener);
        (receiver, ca.pem())
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let router = axum::Router::new()
            .route("/hooks/pm", axum::routing::post(hook))
            .with_state(self.state.clone());
        let acceptor = self.acceptor.clone();
        self.task = Some(tokio::spawn(async move {
            // Connections live in this set: aborting the task drops them all (a receiver that
            // goes down takes its keep-alive connections with it).
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let router = router.clone();
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
        }));
    }

    /// Stops listening: deliveries fail (connection refused) until `up`.
    fn down(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    async fn up(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.address).await.unwrap();
        self.serve(listener);
    }

    fn deliveries(&self) -> Vec<(String, String, String, Value)> {
        self.state.received.lock().unwrap().deliveries.clone()
    }

    async fn wait_for(&self, count: usize, seconds: u64) -> Vec<(String, String, String, Value)> {
        for _ in 0..seconds * 10 {
            let unique: std::collections::HashSet<String> =
                self.deliveries().into_iter().map(|d| d.0).collect();
            if unique.len() >= count {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.deliveries()
    }
}

async fn post(client: &CardsClient<'_>, path: &str, body: Value) -> Value {
    let (status, answer, _) = client.call(Method::POST, path, Some(body)).await;
    assert!(status < 300, "{path}: {status} {answer}");
    answer
}

#[tokio::test]
async fn every_event_arrives_signed_in_order_and_survives_a_receiver_outage() {
    let (mut receiver, ca_pem) = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("receiver-ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let stack = TestStack::start_with(
        tempfile::tempdir().unwrap(),
        certbound_testkit::fresh_database_url().await,
        |config| config.webhooks.ca_file = Some(ca_file.clone()),
    )
    .await;
    let (client, _) = stack
        .cards_client_with_webhook(&["programme-manager"], &receiver.state.url)
        .await;
    // The receiver verifies with the signing key the Cards API publishes.
    let (_, keys, _) = client.call(Method::GET, "/keys", None).await;
    *receiver.state.key.lock().unwrap() = Some(keys);

    let (status, card, _) = client
        .call(Method::POST, "/cards", Some(card_body("hooks")))
        .await;
    assert_eq!(status, 201);
    let card = card["publicToken"].as_str().unwrap().to_owned();
    post(
        &client,
        &format!("/cards/{card}/transactions"),
        json!({"transactionType": "Load", "amount": 100, "currencyCode": "GBP"}),
    )
    .await;
    let authorised = post(
        &client,
        &format!("/sandbox/cards/{card}/authorisations"),
        json!({"amount": 20, "currencyCode": "GBP"}),
    )
    .await;
    let first = receiver.wait_for(2, 10).await;
    assert_eq!(first.len(), 2, "{first:?}");

    // The receiver goes away; events keep happening.
    receiver.down();
    let id = authorised["authorisationId"].as_str().unwrap();
    post(
        &client,
        &format!("/sandbox/cards/{card}/authorisations/{id}/clear"),
        json!({}),
    )
    .await;
    let (status, _, _) = client
        .call(
            Method::PUT,
            &format!("/cards/{card}/status"),
            Some(json!({"cardStatusCode": "05"})),
        )
        .await;
    assert_eq!(status, 200);
    post(
        &client,
        &format!("/cards/{card}/transactions"),
        json!({"transactionType": "Unload", "amount": 5, "currencyCode": "GBP"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // While it is away they are listed as undelivered, in order.
    let (status, pending, _) = client
        .call(
            Method::GET,
            "/webhooks/notifications?status=undelivered",
            None,
        )
        .await;
    assert_eq!(status, 200, "{pending}");
    let pending = pending.as_array().unwrap();
    assert_eq!(pending.len(), 3, "{pending:?}");
    assert!(pending[0]["attempts"].as_i64().unwrap() >= 1, "{pending:?}");
    assert!(pending[0]["lastError"].is_string());

    // Back: every notification arrives, none lost, in order per card, all verified.
    receiver.up().await;
    let all = receiver.wait_for(5, 20).await;
    let forged = receiver.state.received.lock().unwrap().forged.clone();
    assert!(forged.is_empty(), "{forged:?}");
    // The same check refuses a tampered body, a changed header, a stale signature, another key.
    let (headers, body) = receiver
        .state
        .received
        .lock()
        .unwrap()
        .sample
        .clone()
        .unwrap();
    let jwks = receiver.state.key.lock().unwrap().clone().unwrap();
    let now = certbound_testkit::now();
    let check =
        |target: &str, headers: &HashMap<String, String>, body: &[u8], now: i64, jwks: &Value| {
            certbound_client::webhooks::verify_delivery("POST", target, headers, body, jwks, now)
                .map_err(|refused| refused.to_string())
        };
    let url = receiver.state.url.clone();
    check(&url, &headers, &body, now, &jwks).unwrap();
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    assert!(
        check(&url, &headers, &tampered, now, &jwks)
            .unwrap_err()
            .contains("Content-Digest")
    );
    let mut moved = headers.clone();
    moved.insert("date".into(), "Mon, 01 Jan 2024 00:00:00 GMT".into());
    assert!(
        check(&url, &moved, &body, now, &jwks)
            .unwrap_err()
            .contains("does not verify")
    );
    assert!(
        check(&url, &headers, &body, now + 3600, &jwks)
            .unwrap_err()
            .contains("not fresh")
    );
    let mut other_key = jwks.clone();
    for key in other_key["keys"].as_array_mut().unwrap() {
        key["kid"] = json!("someone-else");
    }
    assert!(
        check(&url, &headers, &body, now, &other_key)
            .unwrap_err()
            .contains("no key")
    );
    // Another signature beside sig1 (a proxy's), before it: sig1 still verifies.
    let mut two = headers.clone();
    two.insert(
        "signature-input".into(),
        format!(
            "proxy=(\"@method\");created={now}, {}",
            headers["signature-input"]
        ),
    );
    two.insert(
        "signature".into(),
        format!("proxy=:AAAA:, {}", headers["signature"]),
    );
    check(&url, &two, &body, now, &jwks).unwrap();
    assert!(
        check("https://localhost:1/elsewhere", &headers, &body, now, &jwks)
            .unwrap_err()
            .contains("does not verify"),
        "a delivery meant for another URL"
    );
    let mut unique = Vec::new();
    for delivery in &all {
        if !unique
            .iter()
            .any(|(id, ..): &(String, String, String, Value)| *id == delivery.0)
        {
            unique.push(delivery.clone());
        }
    }
    let events: Vec<(&str, String)> = unique
        .iter()
        .map(|(_, code, _, body)| {
            let what = match code.as_str() {
                "112" => body["payload"]["transactionType"]["code"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                "103" => format!(
                    "{}->{}",
                    body["payload"]["oldCardStatus"].as_str().unwrap(),
                    body["payload"]["newCardStatus"].as_str().unwrap()
                ),
                other => other.to_owned(),
            };
            (code.as_str(), what)
        })
        .collect();
    assert_eq!(
        events,
        [
            ("112", "L".to_owned()),
            ("112", "A".to_owned()),
            ("112", "P".to_owned()),
            ("103", "00->05".to_owned()),
            ("112", "U".to_owned()),
        ]
    );
    let load = &unique[0].3;
    assert_eq!(load["context"]["eventVersion"], "v1");
    assert_eq!(load["payload"]["publicToken"], card.as_str());
    assert_eq!(load["payload"]["availableBalance"], 100.0);
    assert_eq!(unique[1].3["payload"]["responseCode"], "00");
    let (_, pending, _) = client
        .call(
            Method::GET,
            "/webhooks/notifications?status=undelivered",
            None,
        )
        .await;
    assert_eq!(pending, json!([]));

    // Resend: the same notificationId again (a receiver de-duplicates by it).
    let again = unique[0].0.clone();
    let (status, resent, _) = client
        .call(
            Method::POST,
            "/webhooks/notifications/resend",
            Some(json!({"notificationIds": [again]})),
        )
        .await;
    assert_eq!(status, 200, "{resent}");
    assert_eq!(resent["resent"], 1);
    for _ in 0..50 {
        if receiver
            .deliveries()
            .iter()
            .filter(|d| d.0 == again)
            .count()
            >= 2
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        receiver
            .deliveries()
            .iter()
            .filter(|d| d.0 == again)
            .count(),
        2
    );
    // Another organisation's ids are not found.
    let (other, _) = stack.cards_client(&["programme-manager"]).await;
    let (_, resent, _) = other
        .call(
            Method::POST,
            "/webhooks/notifications/resend",
            Some(json!({"notificationIds": [unique[1].0]})),
        )
        .await;
    assert_eq!(resent["resent"], 0);
    receiver.down();
}

/// A notification not yet delivered when the stack stops is delivered after it starts again:
/// the outbox is in the database, not in memory.
#[tokio::test]
async fn undelivered_notifications_survive_a_restart() {
    let (mut receiver, ca_pem) = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("receiver-ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let trust = ca_file.clone();
    let stack = TestStack::start_with(
        tempfile::tempdir().unwrap(),
        certbound_testkit::fresh_database_url().await,
        move |config| config.webhooks.ca_file = Some(trust),
    )
    .await;
    let (client, _) = stack
        .cards_client_with_webhook(&["programme-manager"], &receiver.state.url)
        .await;
    let (_, keys, _) = client.call(Method::GET, "/keys", None).await;
    *receiver.state.key.lock().unwrap() = Some(keys);
    receiver.down();
    let (status, card, _) = client
        .call(Method::POST, "/cards", Some(card_body("restart")))
        .await;
    assert_eq!(status, 201);
    let card = card["publicToken"].as_str().unwrap().to_owned();
    post(
        &client,
        &format!("/cards/{card}/transactions"),
        json!({"transactionType": "Load", "amount": 10, "currencyCode": "GBP"}),
    )
    .await;
    let (credential, token) = (client.credential.clone(), client.token.clone());
    drop(client);
    let stack = stack
        .restart_with(move |config| config.webhooks.ca_file = Some(ca_file))
        .await;
    let client = CardsClient {
        stack: &stack,
        credential,
        token,
    };
    let (_, pending, _) = client
        .call(
            Method::GET,
            "/webhooks/notifications?status=undelivered",
            None,
        )
        .await;
    assert_eq!(pending.as_array().unwrap().len(), 1, "{pending}");
    receiver.up().await;
    let delivered = receiver.wait_for(1, 20).await;
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert_eq!(delivered[0].1, "112");
    assert_eq!(delivered[0].2, card);
    let forged = receiver.state.received.lock().unwrap().forged.clone();
    assert!(forged.is_empty(), "{forged:?}");
    receiver.down();
}

/// A webhook URI the Cards API could not sign exactly as it sends it is refused when the software
/// statement is made: no credentials, no fragment (400, by field).
#[tokio::test]
async fn a_webhook_uri_with_credentials_or_a_fragment_is_refused() {
    let stack = TestStack::start().await;
    let organisation = stack.organisation("Test Company 1").await;
    for uri in [
        "https://user:secret@pm.example.com/events",
        "https://pm.example.com/events#pm1",
    ] {
        let mut body = certbound_testkit::software_statement_body(&["programme-manager"]);
        body["ApiWebhookUri"] = json!(uri);
        let response = stack
            .admin(
                Method::POST,
                &format!("/organisations/{organisation}/softwarestatements"),
            )
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{uri}");
        let refusal: Value = response.json().await.unwrap();
        assert_eq!(refusal["error"], "invalid_request");
        assert_eq!(
            refusal["error_description"],
            format!("ApiWebhookUri must carry no credentials and no #fragment, got `{uri}`")
        );
    }
}
