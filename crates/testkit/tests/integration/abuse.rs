//! The attacks of the abuse review, performed from outside, each asserting its defence
//! (docs/threat-model.md names the limit each one exercises).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use certbound_testkit::{Software, TestStack};
use reqwest::Method;
use serde_json::{Value, json};

/// A client of the Cards API with a token for the whole programme-manager scope set.
struct Caller {
    client: reqwest::Client,
    token: String,
    base: String,
}

impl Caller {
    async fn new(stack: &TestStack) -> (Self, Software) {
        let (software, token) = stack.client_with_token(&["programme-manager"]).await;
        let caller = Self {
            client: stack.mtls_client(&software.transport),
            token,
            base: stack.cards(""),
        };
        (caller, software)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: &Value,
        key: Option<&str>,
    ) -> (u16, Value, bool) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body);
        if let Some(key) = key {
            request = request.header("IdempotencyKey", key);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let replayed = response.headers().contains_key("idempotent-replayed");
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body, replayed)
    }

    async fn new_card(&self) -> String {
        let (status, created, _) = self.send(Method::POST, "/cards", &card(), None).await;
        assert_eq!(status, 201, "{created}");
        created["publicToken"].as_str().unwrap().to_owned()
    }

    async fn status_of(&self, token: &str) -> String {
        let (_, shown, _) = self
            .send(
                Method::GET,
                &format!("/cards/{token}/status"),
                &Value::Null,
                None,
            )
            .await;
        shown["cardStatusCode"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

fn card() -> Value {
    certbound_testkit::card_body("abuse-0001")
}

/// Item 7: sixteen concurrent `POST /cards` with one `IdempotencyKey` make one card, and every
/// copy answers with it.
#[tokio::test]
async fn concurrent_copies_of_one_idempotency_key_act_once() {
    let stack = TestStack::start().await;
    let (caller, software) = Caller::new(&stack).await;
    let key = uuid::Uuid::new_v4().to_string();
    let body = card();
    let copies = (0..16).map(|_| caller.send(Method::POST, "/cards", &body, Some(&key)));
    let answers = futures_join_all(copies).await;
    let tokens: std::collections::BTreeSet<String> = answers
        .iter()
        .map(|(status, body, _)| {
            assert_eq!(*status, 201, "{body}");
            body["publicToken"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(tokens.len(), 1, "every copy answers with the one card");
    assert_eq!(
        answers.iter().filter(|(_, _, replayed)| !replayed).count(),
        1,
        "one request acted"
    );
    assert_eq!(
        stack.cards_of(&software.organisation_id).await,
        1,
        "one card exists"
    );
    stack.stop().await;
}

/// Item 8: a retry of `PUT status 41` with the same key and body replays the first answer, though
/// the card is now Lost (a fresh request would be 409).
#[tokio::test]
async fn a_retried_status_change_replays_its_first_answer() {
    let stack = TestStack::start().await;
    let (caller, _) = Caller::new(&stack).await;
    let token = caller.new_card().await;
    let key = uuid::Uuid::new_v4().to_string();
    let lost = json!({"cardStatusCode": "41"});
    let path = format!("/cards/{token}/status");
    let (status, first, replayed) = caller.send(Method::PUT, &path, &lost, Some(&key)).await;
    assert_eq!((status, replayed), (200, false), "{first}");
    let (status, again, replayed) = caller.send(Method::PUT, &path, &lost, Some(&key)).await;
    assert_eq!((status, replayed), (200, true), "{again}");
    assert_eq!(again, first);
    let (status, fresh, _) = caller.send(Method::PUT, &path, &lost, None).await;
    assert_eq!(status, 409, "{fresh}");
    stack.stop().await;
}

/// Item 6: a status change racing a PIN set and a PATCH: whatever the order, the card ends Lost,
/// and a Lost card accepts no further change.
#[tokio::test]
async fn concurrent_card_writes_do_not_overwrite_each_other() {
    let stack = TestStack::start().await;
    let (caller, _) = Caller::new(&stack).await;
    for round in 0..6 {
        let token = caller.new_card().await;
        let status_path = format!("/cards/{token}/status");
        let pin_path = format!("/cards/{token}/pin");
        let card_path = format!("/cards/{token}");
        let lost = json!({"cardStatusCode": "41"});
        let pin = json!({"pin": "4921"});
        let patch = json!({"customerReference": format!("round-{round}")});
        let ((lost_status, body, _), (pin_status, _, _), (patch_status, _, _)) = tokio::join!(
            caller.send(Method::PUT, &status_path, &lost, None),
            caller.send(Method::POST, &pin_path, &pin, None),
            caller.send(Method::PATCH, &card_path, &patch, None),
        );
        assert_eq!(lost_status, 200, "{body}");
        assert!([204, 409].contains(&pin_status), "PIN: {pin_status}");
        assert!([204, 409].contains(&patch_status), "PATCH: {patch_status}");
        assert_eq!(
            caller.status_of(&token).await,
            "41",
            "round {round}: the card came back"
        );
        for (method, path, body) in [
            (Method::POST, &pin_path, &pin),
            (Method::PATCH, &card_path, &patch),
            (
                Method::POST,
                &format!("/cards/{token}/cvv/status"),
                &json!({"status": "Blocked"}),
            ),
        ] {
            let (status, refused, _) = caller.send(method, path, body, None).await;
            assert_eq!(status, 409, "a Lost card took a change: {refused}");
            assert!(
                refused["errors"]["card"][0]
                    .as_str()
                    .unwrap_or_default()
                    .contains("terminal"),
                "{refused}"
            );
        }
    }
    stack.stop().await;
}

/// Item 4: an idempotency record of a PIN set holds no unsalted digest of the body: the PIN cannot
/// be brute-forced from the database without the master key.
#[tokio::test]
async fn idempotency_records_keep_no_bare_digest_of_a_pin() {
    let stack = TestStack::start().await;
    let (caller, software) = Caller::new(&stack).await;
    let token = caller.new_card().await;
    let key = uuid::Uuid::new_v4().to_string();
    let body = json!({"pin": "493817"});
    let (status, _, _) = caller
        .send(
            Method::POST,
            &format!("/cards/{token}/pin"),
            &body,
            Some(&key),
        )
        .await;
    assert_eq!(status, 204);
    let database = certbound_store::Database::connect(&stack.database_url)
        .await
        .unwrap();
    let stored: String =
        sqlx::query_scalar("SELECT request_hash FROM idempotency_keys WHERE id = $1")
            .bind(format!("{}|{key}", software.organisation_id))
            .fetch_one(database.pool())
            .await
            .unwrap();
    let sent = serde_json::to_vec(&body).unwrap();
    let bare = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &sent);
    let bare: String = bare
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    assert_eq!(stored.len(), 64);
    assert_ne!(stored, bare, "the record is the body's bare SHA-256");
    // A brute force over every 6-digit PIN finds nothing either.
    let stored_bytes: Vec<u8> = (0..stored.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&stored[at..at + 2], 16).unwrap())
        .collect();
    let found = (0..1_000_000).find(|pin| {
        let guess = format!("{{\"pin\":\"{pin:06}\"}}");
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, guess.as_bytes()).as_ref()
            == stored_bytes.as_slice()
    });
    assert_eq!(found, None);
    stack.stop().await;
}

/// `futures::future::join_all` without the crate: spawn each and await them in order.
pub(crate) async fn futures_join_all<F, T>(futures: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T>,
{
    let futures: Vec<_> = futures.map(Box::pin).collect();
    let mut outputs = Vec::with_capacity(futures.len());
    let mut pending: Vec<_> = futures.into_iter().map(Some).collect();
    // Poll all of them together so the copies really are concurrent.
    std::future::poll_fn(|context| {
        let mut done = true;
        for slot in pending.iter_mut() {
            if let Some(future) = slot {
                match future.as_mut().poll(context) {
                    std::task::Poll::Ready(output) => {
                        outputs.push(output);
                        *slot = None;
                    }
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs
}

/// The data dir and every file in it, with their modes.
fn modes(dir: &std::path::Path) -> Vec<(String, u32)> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut modes = vec![(
        ".".to_owned(),
        std::fs::metadata(dir).unwrap().permissions().mode() & 0o777,
    )];
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
            modes.push((entry.file_name().to_string_lossy().into_owned(), mode));
        }
    }
    modes
}

/// Item 5: the data dir is 0700 and every file in it 0600 (the database and its WAL included),
/// and a start fixes an older installation's 0755 dir and 0644 files.
#[tokio::test]
async fn the_data_dir_is_private_and_every_start_closes_it_up() {
    use std::os::unix::fs::PermissionsExt as _;
    let stack = TestStack::start().await;
    let (caller, _) = Caller::new(&stack).await;
    caller.new_card().await;
    let dir = stack.data_dir();
    let check = |when: &str| {
        let modes = modes(&dir);
        assert!(modes.len() > 3, "{modes:?}");
        for (name, mode) in modes {
            let wanted = if name == "." { 0o700 } else { 0o600 };
            assert_eq!(mode, wanted, "{when}: {name} is {mode:o}");
        }
    };
    check("first start");
    if stack.database_url.starts_with("sqlite") {
        assert!(dir.join("certbound.db-wal").exists());
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for (name, _) in modes(&dir).into_iter().skip(1) {
        std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let stack = stack.restart().await;
    check("a start after an older version");
    stack.stop().await;
}

/// Item 12: every answer that carries card data says `Cache-Control: no-store`.
#[tokio::test]
async fn card_data_is_never_cacheable() {
    let stack = TestStack::start().await;
    let (caller, _) = Caller::new(&stack).await;
    let token = caller.new_card().await;
    let (status, _, _) = caller
        .send(
            Method::POST,
            &format!("/cards/{token}/pin"),
            &json!({"pin": "1234"}),
            None,
        )
        .await;
    assert_eq!(status, 204);
    for path in ["", "/pin", "/cvv", "/status"] {
        let response = caller
            .client
            .get(format!("{}/cards/{token}{path}", caller.base))
            .bearer_auth(&caller.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["cache-control"], "no-store", "{path}");
    }
    let response = caller
        .client
        .post(format!("{}/cards/{token}/encrypted", caller.base))
        .bearer_auth(&caller.token)
        .json(&json!({"key": "not base64 of a wrapped key"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["cache-control"], "no-store");
    stack.stop().await;
}

/// Item 10: the issued certificate's subject is the directory's truth. A CSR asking for
/// `O=Bank of England, C=US, emailAddress=...` gets the organisation's own name and country, and
/// nothing else.
#[tokio::test]
async fn the_ca_issues_the_directorys_subject_not_the_requesters() {
    let stack = TestStack::start().await;
    let organisation_id = stack.organisation("Honest Payments Ltd").await;
    let (software_id, _) = stack
        .software_statement(&organisation_id, &["programme-manager"])
        .await;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut name = rcgen::DistinguishedName::new();
    name.push(rcgen::DnType::CountryName, "US");
    name.push(rcgen::DnType::OrganizationName, "Bank of England");
    name.push(
        rcgen::DnType::OrganizationalUnitName,
        organisation_id.as_str(),
    );
    name.push(rcgen::DnType::CommonName, software_id.as_str());
    name.push(
        rcgen::DnType::CustomDnType(vec![1, 2, 840, 113_549, 1, 9, 1]),
        "ceo@bankofengland.example",
    );
    params.distinguished_name = name;
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    let response = stack
        .admin(
            Method::POST,
            &format!(
                "/organisations/{organisation_id}/softwarestatements/{software_id}/certificates/transport"
            ),
        )
        .header("content-type", "application/pkcs10")
        .body(csr)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let issued: Value = response.json().await.unwrap();
    let pem = issued["Certificate"].as_str().unwrap();
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
        .map(|der: rustls_pki_types::CertificateDer<'static>| der.to_vec())
        .unwrap();
    let info = certbound_pki::CertificateInfo::parse(&der).unwrap();
    assert!(
        info.subject.contains("O=Honest Payments Ltd"),
        "{}",
        info.subject
    );
    assert!(info.subject.contains("C=GB"), "{}", info.subject);
    assert!(
        !info.subject.contains("Bank of England"),
        "{}",
        info.subject
    );
    assert!(!info.subject.contains("US"), "{}", info.subject);
    assert!(!info.subject.contains("bankofengland"), "{}", info.subject);
    assert_eq!(
        info.organisational_unit.as_deref(),
        Some(organisation_id.as_str())
    );
    assert_eq!(info.common_name.as_deref(), Some(software_id.as_str()));
    stack.stop().await;
}

/// Item 11: an anonymous `GET /crl` writes nothing: the same CRL (same number) is served until a
/// revocation changes it.
#[tokio::test]
async fn crl_requests_do_not_write() {
    let stack = TestStack::start().await;
    let software = stack.onboard(&["programme-manager"]).await;
    let fetch = || async {
        let response = stack
            .client()
            .get(stack.public("/crl"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap().to_vec()
    };
    let counter = || async {
        let database = certbound_store::Database::connect(&stack.database_url)
            .await
            .unwrap();
        sqlx::query_scalar::<_, i64>("SELECT value FROM counters WHERE name = 'crl_number'")
            .fetch_optional(database.pool())
            .await
            .unwrap()
    };
    let first = fetch().await;
    let number = counter().await;
    for _ in 0..20 {
        assert_eq!(fetch().await, first, "a GET made a new CRL");
    }
    assert_eq!(counter().await, number, "a GET wrote the CRL number");
    let response = stack
        .admin(
            Method::DELETE,
            &format!(
                "/organisations/{}/softwarestatements/{}/certificates/{}",
                software.organisation_id,
                software.software_statement_id,
                software.signing.certificate_id
            ),
        )
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let after = fetch().await;
    assert_ne!(after, first, "a revocation makes a new CRL");
    assert!(counter().await > number);
    stack.stop().await;
}

/// A token request with `client_assertion` for `software`, sent by `client`, with extra headers.
async fn token_request(
    stack: &TestStack,
    client: &reqwest::Client,
    software: &Software,
    headers: &[(&str, &str)],
) -> u16 {
    let assertion = stack.authz_assertion(software, |_| {});
    let mut request = client.post(stack.authz("/oauth2/token")).form(&[
        ("grant_type", "client_credentials"),
        ("client_id", software.client_id.as_str()),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", assertion.as_str()),
    ]);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap().status().as_u16()
}

/// Item 3: junk requests naming a client (no certificate, so they cannot authenticate) do not
/// spend its budget; its own authenticated requests do.
#[tokio::test]
async fn nobody_can_lock_a_client_out_by_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = certbound_testkit::fresh_database_url().await;
    let stack = TestStack::start_with(dir, url, |config| {
        config.rate_limits.token_per_client = 3;
        config.rate_limits.token_per_address = 1_000;
    })
    .await;
    let victim = stack.onboard(&["card-reader"]).await;
    stack.register(&victim, json!({})).await;
    let attacker = stack.client();
    for _ in 0..40 {
        assert_eq!(token_request(&stack, &attacker, &victim, &[]).await, 401);
    }
    let own = stack.mtls_client(&victim.transport);
    for _ in 0..3 {
        assert_eq!(
            token_request(&stack, &own, &victim, &[]).await,
            200,
            "the victim is locked out"
        );
    }
    assert_eq!(
        token_request(&stack, &own, &victim, &[]).await,
        429,
        "its own budget still holds"
    );
    stack.stop().await;
}

/// Item 3, behind a trusted proxy: unauthenticated traffic is limited by the client address the
/// proxy forwards, so one abusive client does not exhaust the budget of everyone behind the proxy.
#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_is_limited() {
    let dir = tempfile::tempdir().unwrap();
    let url = certbound_testkit::fresh_database_url().await;
    let stack = TestStack::start_with(dir, url, |config| {
        config.trusted_proxies = vec!["127.0.0.1/32".into()];
        config.rate_limits.token_per_address = 3;
    })
    .await;
    let software = stack.onboard(&["card-reader"]).await;
    let proxy = stack.client();
    let abusive = [("X-Forwarded-For", "198.51.100.7, 203.0.113.9")];
    for _ in 0..3 {
        assert_eq!(
            token_request(&stack, &proxy, &software, &abusive).await,
            401
        );
    }
    assert_eq!(
        token_request(&stack, &proxy, &software, &abusive).await,
        429
    );
    // Another client behind the proxy is not affected, nor is the leftmost (client-written)
    // entry what counts.
    let other = [("X-Forwarded-For", "198.51.100.7, 203.0.113.10")];
    assert_eq!(token_request(&stack, &proxy, &software, &other).await, 401);
    let real_ip = [("X-Real-IP", "203.0.113.11")];
    assert_eq!(
        token_request(&stack, &proxy, &software, &real_ip).await,
        401
    );
    stack.stop().await;
}

/// Item 1: an anonymous request with a 48 KiB path adds at most a bounded record to the audit
/// trail (hyper refuses it with 431 before the audited edge: none); a
/// token request with a 60 KiB `client_id` stores nothing of it and echoes a bounded description.
#[tokio::test]
async fn anonymous_input_is_never_stored_or_echoed_unbounded() {
    let stack = TestStack::start().await;
    let audit = stack.data_dir().join("audit.jsonl");
    let size = || {
        stack.stack.flush_audit();
        std::fs::metadata(&audit).map(|m| m.len()).unwrap_or(0)
    };
    let before = size();
    let long_path = format!("/{}", "a".repeat(48 * 1024));
    for _ in 0..10 {
        let response = stack
            .client()
            .get(stack.public(&long_path))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_client_error(), "{}", response.status());
    }
    let grown = size() - before;
    assert!(
        grown < 10 * 2048,
        "ten 48 KiB paths added {grown} bytes to the audit trail"
    );

    let long_client = "c".repeat(60 * 1024);
    let response = stack
        .client()
        .post(stack.authz("/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", long_client.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body = response.text().await.unwrap();
    assert!(body.len() < 2048, "a {}-byte error body", body.len());
    let database = certbound_store::Database::connect(&stack.database_url)
        .await
        .unwrap();
    let longest: Option<i64> = sqlx::query_scalar("SELECT MAX(LENGTH(key)) FROM rate_limits")
        .fetch_one(database.pool())
        .await
        .unwrap();
    assert!(
        longest.unwrap_or(0) < 512,
        "a rate-limit key of {longest:?} bytes"
    );
    stack.stop().await;
}

/// Item 13: one organisation's queue of large bulk jobs does not hold up another's small one
/// (fair share), and an organisation may queue only so many.
#[tokio::test]
async fn bulk_jobs_share_the_worker_fairly_and_queues_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let url = certbound_testkit::fresh_database_url().await;
    let stack =
        TestStack::start_with(dir, url, |config| config.bulk_jobs_per_organisation = 3).await;
    let (busy, busy_software) = Caller::new(&stack).await;
    let (small, small_software) = Caller::new(&stack).await;
    let bulk = |quantity: u32| json!({"cardProduct": "10001", "cardType": "Virtual", "quantity": quantity});
    // The busy organisation's queue (three large jobs) and the small one's 5-card job, put in
    // the store together so the worker's next round finds them all: through the API, the worker
    // could finish a 50-card job before the small one is even asked for.
    let database = certbound_store::Database::connect(&stack.database_url)
        .await
        .unwrap();
    let now = certbound_testkit::now();
    let job = |software: &certbound_testkit::Software, quantity: i64, created_at: i64| {
        certbound_store::BulkJobRecord {
            id: uuid::Uuid::new_v4().to_string(),
            organisation_id: software.organisation_id.clone(),
            client_id: software.client_id.clone(),
            request: bulk(u32::try_from(quantity).unwrap()).to_string(),
            quantity,
            status: "Pending".into(),
            public_tokens: "[]".into(),
            created_at,
            updated_at: created_at,
            idempotency_id: None,
        }
    };
    // The busy jobs are larger than the API allows (1000 cards), so that none can finish in the
    // moments between the small job's completion and the look at the first busy one.
    let mut jobs: Vec<_> = (0..3)
        .map(|n| job(&busy_software, 1000, now - 10 + n))
        .collect();
    jobs.push(job(&small_software, 5, now));
    for record in &jobs {
        certbound_store::CardsStore::insert_bulk_job(&database, record)
            .await
            .unwrap();
    }
    let busy_jobs: Vec<String> = jobs.iter().take(3).map(|job| job.id.clone()).collect();
    let small_job = jobs[3].id.clone();
    let (status, accepted, _) = small
        .send(Method::POST, "/cards/bulk", &bulk(1), None)
        .await;
    assert_eq!(
        status, 202,
        "another organisation is not capped by the first: {accepted}"
    );
    let (status, refused, _) = busy.send(Method::POST, "/cards/bulk", &bulk(1), None).await;
    assert_eq!(status, 429, "a fourth queued job: {refused}");
    assert!(
        refused["errors"]["request"][0]
            .as_str()
            .unwrap()
            .contains("unfinished"),
        "{refused}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let shown = bulk_job(&small, &small_job).await;
        if shown["status"] == "Complete" {
            assert_eq!(shown["publicTokens"].as_array().unwrap().len(), 5);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the small job never completed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let first = bulk_job(&busy, &busy_jobs[0]).await;
    assert_ne!(
        first["status"], "Complete",
        "the small job waited for a large job: {first}"
    );
    assert!(["Pending", "Processing"].contains(&first["status"].as_str().unwrap()));
    stack.stop().await;
}

async fn bulk_job(caller: &Caller, id: &str) -> Value {
    let path = format!("/cards/bulk?bulkCardRequestId={id}");
    caller.send(Method::GET, &path, &Value::Null, None).await.1
}

/// Item 13: `updatedBy` is the client's free text; the audit trail records who authenticated.
#[tokio::test]
async fn the_audit_trail_records_the_authenticated_client_whatever_updated_by_says() {
    let stack = TestStack::start().await;
    let (caller, software) = Caller::new(&stack).await;
    let token = caller.new_card().await;
    let (status, changed, _) = caller
        .send(
            Method::PUT,
            &format!("/cards/{token}/status"),
            &json!({"cardStatusCode": "05", "updatedBy": "someone-else@bank.example"}),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(changed["updatedBy"], "someone-else@bank.example");
    let audit = stack.audit_trail();
    let record: Value = audit
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|record| {
            record["event"] == "card_status_changed" && record["public_token"] == token.as_str()
        })
        .expect("the status change is audited");
    assert_eq!(record["client_id"], software.client_id.as_str());
    assert_eq!(record["updated_by"], "someone-else@bank.example");
    stack.stop().await;
}

/// Item 13: a client assertion may live at most 5 minutes (configurable), at the authorization
/// server and at the directory alike: its `jti` must be remembered that long.
#[tokio::test]
async fn long_lived_client_assertions_are_refused() {
    let stack = TestStack::start().await;
    let software = stack.onboard(&["card-reader"]).await;
    stack.register(&software, json!({})).await;
    let now = certbound_testkit::now();
    let long = |claims: &mut Value| {
        claims["iat"] = json!(now);
        claims["exp"] = json!(now + 3600);
    };
    let response = stack
        .authz_token_request(
            &software.transport,
            &stack.authz_assertion(&software, long),
            &[],
        )
        .await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("longer than 300 s"),
        "{body}"
    );
    let response = stack
        .token_request(&software, &stack.assertion(&software, long))
        .await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("longer than 300 s"),
        "{body}"
    );
    // Five minutes exactly is accepted.
    let five = |claims: &mut Value| {
        claims["iat"] = json!(now);
        claims["exp"] = json!(now + 300);
    };
    let response = stack
        .authz_token_request(
            &software.transport,
            &stack.authz_assertion(&software, five),
            &[],
        )
        .await;
    assert_eq!(response.status(), 200);
    stack.stop().await;
}
