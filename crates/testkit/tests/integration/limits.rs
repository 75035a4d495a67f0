//! Connection limits: a client that dribbles its headers is cut off (slowloris), and connections
//! over the limit are closed at once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use std::process::{Command, Stdio};
use std::time::Duration;

use certbound_testkit::TestStack;
use tokio::io::AsyncReadExt as _;

fn port(url: &str) -> u16 {
    url.trim_start_matches("https://localhost:")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let stack = TestStack::start_with(
        dir,
        certbound_testkit::fresh_database_url().await,
        |config| {
            config.limits.header_read_timeout_seconds = 1;
        },
    )
    .await;
    let port = port(stack.stack.directory_url.as_deref().unwrap());
    let ca = stack.data_dir().join("ca.pem");
    // Half a request, then silence for 6 s: the server must hang up long before. The pipeline
    // lasts as long as its `sleep`, so s_client's own lifetime is measured inside it.
    let command = format!(
        "(printf 'GET /healthz HTTP/1.1\\r\\nHost: localhost\\r\\n'; sleep 6) | \
         (s=$(date +%s%N); timeout 8 openssl s_client -quiet -connect 127.0.0.1:{port} -CAfile '{}' >/dev/null 2>&1; \
          e=$(date +%s%N); echo ELAPSED_MS $(((e - s) / 1000000)))",
        ca.display()
    );
    let output = tokio::task::spawn_blocking(move || {
        Command::new("sh")
            .args(["-c", &command])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let elapsed: u64 = stdout
        .trim()
        .strip_prefix("ELAPSED_MS ")
        .and_then(|ms| ms.parse().ok())
        .expect(&stdout);
    assert!(elapsed < 4000, "the connection stayed open {elapsed} ms");
    // A complete request is still served.
    assert_eq!(
        stack
            .client()
            .get(stack.public("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let stack = TestStack::start_with(
        dir,
        certbound_testkit::fresh_database_url().await,
        |config| {
            config.limits.max_connections = 2;
            config.limits.handshake_timeout_seconds = 30;
        },
    )
    .await;
    let address = format!(
        "127.0.0.1:{}",
        port(stack.stack.directory_url.as_deref().unwrap())
    );
    // Two idle connections hold the two slots (no TLS handshake: they just wait).
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(tokio::net::TcpStream::connect(&address).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for stream in &mut held {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_millis(300), stream.read(&mut byte)).await;
        assert!(read.is_err(), "a connection within the limit stays open");
    }
    // The third is closed at once.
    let mut third = tokio::net::TcpStream::connect(&address).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(2), third.read(&mut byte))
        .await
        .expect("closed, not left hanging");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // Freed slots are usable again.
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        stack
            .client()
            .get(stack.public("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    stack.stop().await;
}

#[tokio::test]
async fn oversized_bodies_are_413_on_every_part() {
    let stack = TestStack::start().await;
    let big = "x".repeat(100 * 1024);
    let (software, token) = stack.client_with_token(&["programme-manager"]).await;
    let responses = [
        stack
            .admin(reqwest::Method::POST, "/organisations")
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await
            .unwrap(),
        stack
            .admin(
                reqwest::Method::POST,
                &format!(
                    "/organisations/{}/softwarestatements/{}/certificates/transport",
                    software.organisation_id, software.software_statement_id
                ),
            )
            .header("content-type", "application/pkcs10")
            .body(big.clone())
            .send()
            .await
            .unwrap(),
        stack
            .mtls_client(&software.transport)
            .post(stack.mtls("/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(big.clone())
            .send()
            .await
            .unwrap(),
        stack
            .mtls_client(&software.transport)
            .post(stack.authz("/oauth2/register"))
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await
            .unwrap(),
        stack
            .mtls_client(&software.transport)
            .post(stack.authz("/oauth2/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(big.clone())
            .send()
            .await
            .unwrap(),
        stack
            .mtls_client(&software.transport)
            .post(stack.cards("/cards"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await
            .unwrap(),
    ];
    for response in responses {
        assert_eq!(response.status(), 413, "{}", response.url());
        // In the service's own JSON shape, not axum's plain text.
        let url = response.url().to_string();
        let body: serde_json::Value = response.json().await.unwrap();
        if url.contains("/api/v1/") {
            assert_eq!(body["status"], 413, "{url}: {body}");
            assert!(body["errors"]["body"][0].is_string(), "{url}: {body}");
        } else {
            assert_eq!(body["error"], "invalid_request", "{url}: {body}");
            assert!(
                body["error_description"]
                    .as_str()
                    .unwrap()
                    .starts_with("the request body is too large"),
                "{url}: {body}"
            );
        }
    }
    // A method a path does not take: 405 with the Allow header, in each service's shape.
    let response = stack
        .admin(reqwest::Method::DELETE, "/organisations")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert!(response.headers().contains_key("allow"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request", "{body}");
    let response = stack
        .mtls_client(&software.transport)
        .delete(stack.cards("/cards"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], 405, "{body}");
    assert!(body["errors"]["request"][0].is_string(), "{body}");
    // One trace id per request, made at the edge: the error body, X-Trace-Id and the audit
    // record carry the same one, on every part (the Cards API's `traceId` included).
    let refusals = [
        stack
            .client()
            .post(stack.authz("/oauth2/token"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap(),
        stack
            .client()
            .post(stack.public("/organisations"))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap(),
        stack
            .mtls_client(&software.transport)
            .get(stack.cards("/cards/123456789"))
            .send()
            .await
            .unwrap(),
    ];
    let mut ids = Vec::new();
    for response in refusals {
        assert_eq!(response.status(), 401, "{}", response.url());
        let header = response.headers()["x-trace-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let body: serde_json::Value = response.json().await.unwrap();
        let in_body = body
            .get("trace_id")
            .or_else(|| body.get("traceId"))
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        assert_eq!(in_body, header, "{body}");
        ids.push(header);
    }
    let audit = stack.audit_trail();
    for trace_id in &ids {
        assert!(
            audit
                .lines()
                .any(|line| line.contains(&format!("\"trace_id\":\"{trace_id}\""))),
            "{trace_id} not in {audit}"
        );
    }
    // Answers that are not refusals carry one too.
    let response = stack
        .client()
        .get(stack.public("/healthz"))
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("x-trace-id"));
    stack.stop().await;
}

/// One refusal case: where, as whom, what body, and what must arrive.
struct Refusal {
    name: &'static str,
    url: String,
    /// curl arguments that choose the identity and the headers.
    curl: Vec<String>,
    body_size: usize,
    status: u16,
    /// A piece of the JSON body that must arrive.
    expect: &'static str,
}

/// Runs `tries` curl --http2 requests of one case in one shell; returns the failures.
fn curl_failures(case: &Refusal, dir: &std::path::Path, tries: usize) -> Vec<String> {
    let body = dir.join(format!("body-{}", case.body_size));
    std::fs::write(&body, "x".repeat(case.body_size)).unwrap();
    let args = case
        .curl
        .iter()
        .map(|arg| format!("'{arg}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let out = dir.join("out");
    let script = format!(
        "for i in $(seq 1 {tries}); do \
           code=$(curl -s --http2 -o '{out}' -w '%{{http_code}} %{{http_version}}' {args} \
             --data-binary @'{body}' '{url}'); rc=$?; \
           if [ $rc -ne 0 ] || [ \"$code\" != '{status} 2' ] || ! grep -q '{expect}' '{out}'; then \
             echo \"try $i: curl exit $rc, status $code, body $(head -c 200 '{out}')\"; fi; \
           rm -f '{out}'; \
         done",
        out = out.display(),
        body = body.display(),
        url = case.url,
        status = case.status,
        expect = case.expect,
    );
    let output = Command::new("sh").args(["-c", &script]).output().unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A refusal sent before the server reads the body arrives whole over HTTP/2: status and JSON,
/// for bodies from empty to the body limit (and the 413 past it), with curl (100 tries a case)
/// and with a Rust HTTP/2 client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_arrive_whole_over_http2() {
    let stack = TestStack::start().await;
    let (software, _token) = stack.client_with_token(&["programme-manager"]).await;
    let files = tempfile::tempdir().unwrap();
    let ca = stack.data_dir().join("ca.pem");
    let key = files.path().join("transport.key");
    let chain = files.path().join("transport.pem");
    std::fs::write(&key, &software.transport.key_pem).unwrap();
    std::fs::write(&chain, &software.transport.chain_pem).unwrap();
    let ca = ca.display().to_string();
    let identity = vec![
        "--cacert".to_owned(),
        ca.clone(),
        "--cert".to_owned(),
        chain.display().to_string(),
        "--key".to_owned(),
        key.display().to_string(),
    ];
    let limit = 64 * 1024;
    let mut cases = Vec::new();
    for body_size in [0, 1024, limit] {
        cases.push(Refusal {
            name: "wrong admin token on POST /organisations",
            url: stack.public("/organisations"),
            curl: vec![
                "--cacert".into(),
                ca.clone(),
                "-H".into(),
                "Authorization: Bearer wrong".into(),
                "-H".into(),
                "Content-Type: application/json".into(),
            ],
            body_size,
            status: 401,
            expect: "the admin token is wrong",
        });
        cases.push(Refusal {
            name: "no access token on POST /cards",
            url: stack.cards("/cards"),
            curl: [
                identity.clone(),
                vec!["-H".into(), "Content-Type: application/json".into()],
            ]
            .concat(),
            body_size,
            status: 401,
            expect: "\"status\":401",
        });
        cases.push(Refusal {
            name: "no client certificate on POST 8442/token",
            url: stack.mtls("/token"),
            curl: vec![
                "--cacert".into(),
                ca.clone(),
                "-H".into(),
                "Content-Type: application/x-www-form-urlencoded".into(),
            ],
            body_size,
            status: 401,
            expect: "invalid_client",
        });
    }
    cases.push(Refusal {
        name: "a body past the limit on POST /organisations",
        url: stack.public("/organisations"),
        curl: vec![
            "--cacert".into(),
            ca.clone(),
            "-H".into(),
            format!("Authorization: Bearer {}", stack.stack.admin_token),
            "-H".into(),
            "Content-Type: application/json".into(),
        ],
        body_size: limit + 1,
        status: 413,
        expect: "the request body is too large",
    });

    let dir = files.path().to_owned();
    let report = tokio::task::spawn_blocking(move || {
        cases
            .iter()
            .map(|case| {
                (
                    format!("{} ({} bytes)", case.name, case.body_size),
                    curl_failures(case, &dir, 100),
                )
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let failed: Vec<_> = report
        .iter()
        .filter(|(_, failures)| !failures.is_empty())
        .map(|(name, failures)| {
            format!(
                "{name}: {} of 100 failed, first: {}",
                failures.len(),
                failures[0]
            )
        })
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");

    // The same with a Rust HTTP/2 client (hyper's h2 under reqwest), new and reused connections.
    let h2 = |identity: Option<&certbound_testkit::Credential>| {
        let builder = reqwest::Client::builder()
            .tls_certs_only([
                reqwest::Certificate::from_pem(stack.stack.ca_pem.as_bytes()).unwrap(),
            ])
            .http2_prior_knowledge();
        match identity {
            Some(credential) => builder.identity(
                reqwest::Identity::from_pem(
                    format!("{}{}", credential.chain_pem, credential.key_pem).as_bytes(),
                )
                .unwrap(),
            ),
            None => builder,
        }
        .build()
        .unwrap()
    };
    for body_size in [0, 1024, limit] {
        let body = "x".repeat(body_size);
        for round in 0..100 {
            let plain = h2(None);
            let mtls = h2(Some(&software.transport));
            let answers = [
                (
                    plain
                        .post(stack.public("/organisations"))
                        .bearer_auth("wrong")
                        .body(body.clone())
                        .send()
                        .await,
                    "the admin token is wrong",
                ),
                (
                    mtls.post(stack.cards("/cards"))
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await,
                    "\"status\":401",
                ),
                (
                    plain
                        .post(stack.mtls("/token"))
                        .body(body.clone())
                        .send()
                        .await,
                    "invalid_client",
                ),
            ];
            for (answer, expect) in answers {
                let response = answer.unwrap_or_else(|error| {
                    panic!("round {round}, {body_size} bytes: no answer: {error:?}")
                });
                assert_eq!(response.version(), reqwest::Version::HTTP_2);
                assert_eq!(response.status(), 401, "{}", response.url());
                let text = response.text().await.unwrap();
                assert!(text.contains(expect), "{body_size} bytes: {text}");
            }
        }
    }
    stack.stop().await;
}

/// How long `openssl s_client` stays connected to `port` while `feed` (a shell command) writes
/// its input, in milliseconds (the feed's own duration bounds it from above).
async fn connected_ms(stack: &TestStack, port: u16, feed: &str, options: &str) -> u64 {
    let ca = stack.data_dir().join("ca.pem");
    let command = format!(
        "({feed}) | (s=$(date +%s%N); timeout 12 openssl s_client -quiet {options} -connect 127.0.0.1:{port} -CAfile '{}' >/dev/null 2>&1; \
          e=$(date +%s%N); echo ELAPSED_MS $(((e - s) / 1000000)))",
        ca.display()
    );
    let output = tokio::task::spawn_blocking(move || {
        Command::new("sh")
            .args(["-c", &command])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .trim()
        .strip_prefix("ELAPSED_MS ")
        .and_then(|ms| ms.parse().ok())
        .expect(&stdout)
}

/// Every idle phase ends (abuse review item 2): a connection that completes TLS and sends
/// nothing, an HTTP/2 connection idle after its preface, and a request body trickled a byte at a
/// time are all closed within their timeouts, while a steady client is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_and_trickled_bodies_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let stack = TestStack::start_with(
        dir,
        certbound_testkit::fresh_database_url().await,
        |config| {
            config.limits.idle_timeout_seconds = 1;
            config.limits.body_timeout_seconds = 2;
        },
    )
    .await;
    let public = port(stack.stack.directory_url.as_deref().unwrap());
    let authz = port(&stack.authz(""));
    // TLS, then silence for 8 s.
    let silent = connected_ms(&stack, public, "sleep 8", "").await;
    assert!(silent < 5000, "a silent connection stayed open {silent} ms");
    // HTTP/2: the preface and an empty SETTINGS frame, then silence.
    let preface = "printf 'PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n\\000\\000\\000\\004\\000\\000\\000\\000\\000'; sleep 8";
    let h2 = connected_ms(&stack, public, preface, "-alpn h2").await;
    assert!(h2 < 5000, "an idle HTTP/2 connection stayed open {h2} ms");
    // A body of 100 bytes, one byte every half second: 'activity', but no request.
    let trickle = "printf 'POST /oauth2/token HTTP/1.1\\r\\nHost: localhost\\r\\nContent-Type: application/x-www-form-urlencoded\\r\\nContent-Length: 100\\r\\n\\r\\n'; \
                   for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; do printf a; sleep 0.5; done";
    let trickled = connected_ms(&stack, authz, trickle, "").await;
    assert!(
        trickled < 6000,
        "a trickled body kept its connection {trickled} ms"
    );
    // A normal client is served, twice on one kept-alive connection.
    let client = stack.client();
    for _ in 0..2 {
        let response = client.get(stack.public("/healthz")).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    stack.stop().await;
}

/// One host cannot take a listener for itself (abuse review item 2): its connections beyond the
/// per-address cap are closed at once, while another address still connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holds_at_most_its_share_of_connections() {
    let dir = tempfile::tempdir().unwrap();
    let stack = TestStack::start_with(
        dir,
        certbound_testkit::fresh_database_url().await,
        |config| {
            config.limits.max_connections_per_address = 3;
            config.limits.handshake_timeout_seconds = 30;
        },
    )
    .await;
    let port = port(stack.stack.directory_url.as_deref().unwrap());
    let target: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let from = |source: [u8; 4]| async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(std::net::SocketAddr::from((source, 0)))
            .unwrap();
        socket.connect(target).await.unwrap()
    };
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(from([127, 0, 0, 2]).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let is_open = |mut stream: tokio::net::TcpStream| async move {
        let mut byte = [0u8; 1];
        tokio::time::timeout(Duration::from_millis(500), stream.read(&mut byte))
            .await
            .is_err()
    };
    assert!(
        !is_open(from([127, 0, 0, 2]).await).await,
        "a fourth from one address is closed"
    );
    assert!(
        is_open(from([127, 0, 0, 3]).await).await,
        "another address still connects"
    );
    let response = stack
        .client()
        .get(stack.public("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    drop(held);
    stack.stop().await;
}
