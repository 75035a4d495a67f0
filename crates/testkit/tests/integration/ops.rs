//! The operations listener: `/metrics` counts what the seed flow did, `/livez` and `/readyz`
//! answer probes, and `/readyz` follows the database.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use certbound_testkit::{TestStack, card_body};
use serde_json::json;

pub(crate) async fn scrape(stack: &TestStack) -> String {
    let ops = stack
        .stack
        .ops_url
        .as_deref()
        .expect("the ops listener runs");
    let response = reqwest::get(format!("{ops}/metrics")).await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    response.text().await.unwrap()
}

/// The value of the sample named exactly `name` (with its labels), if any.
pub(crate) fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (key, value) = line.rsplit_once(' ')?;
        (key == name).then(|| value.parse().ok())?
    })
}

async fn probe(stack: &TestStack, path: &str) -> (u16, String) {
    let ops = stack
        .stack
        .ops_url
        .as_deref()
        .expect("the ops listener runs");
    let response = reqwest::get(format!("{ops}{path}")).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn metrics_count_the_seed_flow_exactly() {
    let stack = TestStack::start().await;
    assert_eq!(probe(&stack, "/livez").await, (200, "live\n".into()));
    assert_eq!(probe(&stack, "/readyz").await, (200, "ready\n".into()));

    // The seed flow: organisation, software statement, transport and signing certificates,
    // a directory token for the SSA, registration, an access token; then a card, its status,
    // and a refused call.
    let (software, token) = stack.client_with_token(&["programme-manager"]).await;
    let client = stack.mtls_client(&software.transport);
    let created = client
        .post(stack.cards("/cards"))
        .bearer_auth(&token)
        .json(&card_body("metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let public_token = created.json::<serde_json::Value>().await.unwrap()["publicToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let status = client
        .put(stack.cards(&format!("/cards/{public_token}/status")))
        .bearer_auth(&token)
        .json(&json!({"cardStatusCode": "41"}))
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 200);
    for _ in 0..2 {
        let read = client
            .get(stack.cards(&format!("/cards/{public_token}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(read.status(), 200);
    }
    let refused = client
        .get(stack.cards(&format!("/cards/{public_token}")))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    let metrics = scrape(&stack).await;
    for (name, expected) in [
        (
            r#"certbound_tokens_issued_total{auth_method="private_key_jwt",part="directory"}"#,
            1.0,
        ),
        (
            r#"certbound_tokens_issued_total{auth_method="private_key_jwt",part="authz"}"#,
            1.0,
        ),
        (
            r#"certbound_certificates_total{action="issued",certificate_type="transport"}"#,
            1.0,
        ),
        (
            r#"certbound_certificates_total{action="issued",certificate_type="signing"}"#,
            1.0,
        ),
        (r#"certbound_registrations_total{action="registered"}"#, 1.0),
        ("certbound_cards_created_total", 1.0),
        (r#"certbound_card_status_changes_total{status="41"}"#, 1.0),
        (
            r#"certbound_refusals_total{part="cards",reason="invalid_token"}"#,
            1.0,
        ),
        (
            r#"certbound_http_requests_total{part="cards",route="/api/v1/cards",status="201"}"#,
            1.0,
        ),
        (
            r#"certbound_http_requests_total{part="cards",route="/api/v1/cards/{public_token}",status="200"}"#,
            2.0,
        ),
        (
            r#"certbound_http_request_duration_seconds_count{part="cards",route="/api/v1/cards/{public_token}"}"#,
            3.0,
        ),
        (
            r#"certbound_audit_events_total{event="organisation_created",part="directory"}"#,
            1.0,
        ),
        (r#"certbound_bulk_jobs{state="Pending"}"#, 0.0),
        // The token's signature was verified once, on the first call (a miss), and found
        // remembered by the status change and both reads; the garbage token was a miss too.
        (
            r#"certbound_cache_lookups_total{cache="cards_verified_tokens",result="miss"}"#,
            2.0,
        ),
        (
            r#"certbound_cache_lookups_total{cache="cards_verified_tokens",result="hit"}"#,
            3.0,
        ),
    ] {
        assert_eq!(
            sample(&metrics, name),
            Some(expected),
            "{name} in\n{metrics}"
        );
    }
    assert!(
        sample(&metrics, r#"certbound_database_connections{state="max"}"#).unwrap_or(0.0) >= 1.0,
        "{metrics}"
    );
    assert!(
        sample(&metrics, "certbound_database_pool_waits_total").is_some(),
        "{metrics}"
    );
    // Each client assertion's id was committed as used once, whichever committed it.
    let committed: f64 = ["request", "task", "thread"]
        .iter()
        .filter_map(|by| {
            sample(
                &metrics,
                &format!(r#"certbound_jti_committed_total{{committer="{by}"}}"#),
            )
        })
        .sum();
    assert_eq!(committed, 2.0, "{metrics}");
    // No label carries request text: the refused path is counted by its route template.
    assert!(!metrics.contains("not-a-token"));
    assert!(!metrics.contains(&public_token));
}

#[tokio::test]
async fn an_unmatched_path_is_counted_by_no_path_of_its_own() {
    let stack = TestStack::start().await;
    for n in 0..3 {
        let response = stack
            .client()
            .get(stack.public(&format!("/no/such/path/{n}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
    }
    let metrics = scrape(&stack).await;
    assert_eq!(
        sample(
            &metrics,
            r#"certbound_http_requests_total{part="directory",route="unmatched",status="404"}"#
        ),
        Some(3.0),
        "{metrics}"
    );
    assert!(!metrics.contains("/no/such/path"));
}

/// A TCP forwarder to PostgreSQL that the test can cut and restore: "the database is
/// unreachable" without stopping the machine's PostgreSQL.
struct Forwarder {
    address: std::net::SocketAddr,
    upstream: String,
    tasks: std::sync::Arc<std::sync::Mutex<tokio::task::JoinSet<()>>>,
}

impl Forwarder {
    async fn start(upstream: &str) -> Self {
        let forwarder = Self {
            address: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            upstream: upstream.to_owned(),
            tasks: Default::default(),
        };
        forwarder.listen().await
    }

    async fn listen(mut self) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(self.address).unwrap();
        let listener = socket.listen(64).unwrap();
        self.address = listener.local_addr().unwrap();
        let (upstream, tasks) = (self.upstream.clone(), self.tasks.clone());
        self.tasks.lock().unwrap().spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                tasks.lock().unwrap().spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        self
    }

    /// Closes the port and every forwarded connection.
    fn cut(&self) {
        self.tasks.lock().unwrap().abort_all();
    }
}

async fn ready_within(stack: &TestStack, status: u16, seconds: u64) -> (u16, String) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        let answer = probe(stack, "/readyz").await;
        if answer.0 == status || std::time::Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn readyz_is_503_while_postgresql_is_unreachable_and_200_when_it_is_back() {
    let stack = TestStack::start().await;
    let Some(url) = Some(stack.database_url.clone()).filter(|url| url.starts_with("postgres"))
    else {
        eprintln!("SQLite: the database cannot become unreachable; this test runs on PostgreSQL");
        return;
    };
    let (before, rest) = url.split_once('@').unwrap();
    let (server, database) = rest.split_once('/').unwrap();
    let forwarder = Forwarder::start(server).await;
    let through = format!("{before}@{}/{database}", forwarder.address);
    let stack = stack
        .restart_with(|config| config.database_url = Some(through))
        .await;
    assert_eq!(ready_within(&stack, 200, 5).await, (200, "ready\n".into()));

    forwarder.cut();
    let (status, reason) = ready_within(&stack, 503, 10).await;
    assert_eq!(status, 503, "{reason}");
    assert!(
        reason.starts_with("not ready: the database does not answer"),
        "{reason}"
    );
    assert_eq!(probe(&stack, "/livez").await.0, 200);

    let _forwarder = forwarder.listen().await;
    assert_eq!(ready_within(&stack, 200, 15).await, (200, "ready\n".into()));
}

/// Issue 14 item 5: `master-key rotate` seals every secret anew (nothing in the database opens
/// under the old key any more), keeps the old key as a dated 0600 backup, the stack starts on the
/// new key with every secret intact, and a start with the old key fails with a message.
#[tokio::test]
async fn the_master_key_rotates_and_every_secret_still_opens() {
    use std::os::unix::fs::PermissionsExt as _;
    let stack = TestStack::start().await;
    let (software, token) = stack.client_with_token(&["programme-manager"]).await;
    let client = stack.mtls_client(&software.transport);
    let created: serde_json::Value = client
        .post(stack.cards("/cards"))
        .bearer_auth(&token)
        .json(&card_body("rotation"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let public_token = created["publicToken"].as_str().unwrap().to_owned();
    let pin = client
        .post(stack.cards(&format!("/cards/{public_token}/pin")))
        .bearer_auth(&token)
        .json(&json!({"pin": "4321"}))
        .send()
        .await
        .unwrap();
    assert_eq!(pin.status(), 204);
    // The stack comes back on the same ports: the registration's jwks_uri names the directory's.
    let ports = stack.ports();
    let (dir, url) = stack.stop().await;
    let url = Some(url).filter(|url| url.starts_with("postgres"));
    let old_key = std::fs::read_to_string(dir.path().join("master.key")).unwrap();

    let config = certbound_testkit::config(dir.path(), url.clone());
    let rotation = certbound_server::rotate_master_key(&config, certbound_testkit::now())
        .await
        .unwrap();
    // Key material (CA, SSA signer, cards keys, TLS, admin token), a token signing key, and the
    // card's PAN, CVV and PIN.
    assert!(rotation.resealed >= 8, "{}", rotation.resealed);
    let new_key = std::fs::read_to_string(dir.path().join("master.key")).unwrap();
    assert_ne!(new_key, old_key);
    assert_eq!(std::fs::read_to_string(&rotation.backup).unwrap(), old_key);
    assert!(
        rotation
            .backup
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("master.key.20")
    );
    for file in [dir.path().join("master.key"), rotation.backup.clone()] {
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
    assert!(!dir.path().join("master.key.new").exists());
    // Nothing stored opens under the old key; everything under the new one.
    let database = certbound_store::Database::connect(&config.database_url())
        .await
        .unwrap();
    let pin_sealed: String =
        sqlx::query_scalar("SELECT pin_sealed FROM cards WHERE public_token = $1")
            .bind(&public_token)
            .fetch_one(database.pool())
            .await
            .unwrap();
    let name = certbound_cards::sealed_name(&public_token, "pin");
    let old = certbound_store::MasterKey::parse(&old_key).unwrap();
    let new = certbound_store::MasterKey::parse(&new_key).unwrap();
    assert!(old.open(&name, &pin_sealed).is_err());
    assert_eq!(&new.open(&name, &pin_sealed).unwrap()[..], b"4321");
    database.pool().close().await;

    // The stack starts on the new key and every secret is there.
    let stack = TestStack::start_with(dir, url.clone(), |config| {
        certbound_testkit::on_ports(config, ports)
    })
    .await;
    let token = stack.access_token(&software).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let client = stack.mtls_client(&software.transport);
    let shown: serde_json::Value = client
        .get(stack.cards(&format!("/cards/{public_token}/pin")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["pin"], "4321");
    let cvv = client
        .get(stack.cards(&format!("/cards/{public_token}/cvv")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(cvv.status(), 200);
    let (dir, _) = stack.stop().await;

    // The old key no longer opens this database: a clear refusal, not a panic.
    std::fs::write(dir.path().join("master.key"), &old_key).unwrap();
    let error = certbound_server::start(certbound_testkit::config(dir.path(), url))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("master key") && error.contains("does not open"),
        "{error}"
    );
}

/// Issue 14 item 4: a backup taken while cards are being created restores into a new data dir
/// (with the master key, which the backup does not hold) that starts and has every
/// organisation, certificate, client, card and used `jti` of before the backup: the assertion
/// of a token issued before it is still refused.
#[tokio::test]
async fn a_backup_under_load_restores_whole_and_still_refuses_a_replay() {
    use std::os::unix::fs::PermissionsExt as _;
    let stack = TestStack::start().await;
    if stack.database_url.starts_with("postgres") {
        eprintln!("PostgreSQL is backed up with pg_dump (README); `certbound backup` is SQLite's");
        return;
    }
    let (software, token) = stack.client_with_token(&["programme-manager"]).await;
    let used = stack.authz_assertion(&software, |_| {});
    let issued = stack
        .authz_token_request(&software.transport, &used, &[])
        .await;
    assert_eq!(issued.status(), 200);
    let client = stack.mtls_client(&software.transport);
    let mut before = Vec::new();
    for n in 0..5 {
        let created: serde_json::Value = client
            .post(stack.cards("/cards"))
            .bearer_auth(&token)
            .json(&card_body(&format!("backup-{n}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        before.push(created["publicToken"].as_str().unwrap().to_owned());
    }
    // Load: cards go on being created while the backup runs.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (client, url, token, stop) = (
            client.clone(),
            stack.cards("/cards"),
            token.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut made = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let response = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&card_body("under-load"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 201);
                made += 1;
            }
            made
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("certbound-backup.db");
    let config = certbound_testkit::config(stack.dir.path(), None);
    let size = certbound_server::backup(&config, &out).await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let made = load.await.unwrap();
    assert!(made > 0, "no load ran");
    assert!(size > 0);
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // A second backup to the same file is refused rather than overwriting it.
    assert!(certbound_server::backup(&config, &out).await.is_err());

    let ports = stack.ports();
    let (old_dir, _) = stack.stop().await;
    let restored = tempfile::tempdir().unwrap();
    // The wrong key is refused and leaves nothing behind.
    let wrong = work.path().join("wrong.key");
    std::fs::write(&wrong, format!("{}\n", "ab".repeat(32))).unwrap();
    let error = certbound_server::restore(&out, restored.path(), &wrong)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("does not open the backup"), "{error}");
    certbound_server::restore(&out, restored.path(), &old_dir.path().join("master.key"))
        .await
        .unwrap();
    let stack = TestStack::start_with(restored, None, |config| {
        certbound_testkit::on_ports(config, ports)
    })
    .await;

    let organisation = stack
        .admin(
            reqwest::Method::GET,
            &format!("/organisations/{}", software.organisation_id),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(organisation.status(), 200);
    let certificates: serde_json::Value = stack
        .admin(
            reqwest::Method::GET,
            &format!(
                "/organisations/{}/softwarestatements/{}/certificates",
                software.organisation_id, software.software_statement_id
            ),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        certificates
            .to_string()
            .contains(&software.transport.certificate_id),
        "{certificates}"
    );
    // The used jti is still used; the client is still registered.
    let replay = stack
        .authz_token_request(&software.transport, &used, &[])
        .await;
    assert_eq!(replay.status(), 401);
    let body: serde_json::Value = replay.json().await.unwrap();
    assert_eq!(
        body["error_description"],
        "client assertion jti has already been used"
    );
    let token = stack.access_token(&software).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let client = stack.mtls_client(&software.transport);
    for public_token in &before {
        let card = client
            .get(stack.cards(&format!("/cards/{public_token}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(card.status(), 200, "card {public_token}");
    }
}
