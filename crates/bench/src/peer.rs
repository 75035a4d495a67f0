//! The side-by-side peer: node-oidc-provider behind Node's https server with the same flow
//! (`bench/peers/oidc-provider/server.mjs`): the same onboarded clients (their signing keys as
//! static client JWKS), the same CA for mutual TLS, PS256 assertions pre-generated the same way,
//! ES256 JWT access tokens bound to the certificate. Same load generator, same invocation.

// `serde_json::Value["key"]` answers `Null` for a missing key; it never panics. Bench code.
#![allow(clippy::indexing_slicing)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::certbound::{Stack, first_certificate_der};
use crate::server::Server;
use crate::{Args, Row, measure};

fn peer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/peers/oidc-provider")
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|error| error.to_string())?;
    Ok(listener
        .local_addr()
        .map_err(|error| error.to_string())?
        .port())
}

/// Runs the token scenarios against oidc-provider.
pub(crate) async fn run(stack: &Stack, args: &Args, work: &Path) -> Result<Vec<Row>, String> {
    let dir = peer_dir();
    if !dir.join("node_modules/oidc-provider").exists() {
        return Err(format!(
            "install the peer first: (cd {} && npm install)",
            dir.display()
        ));
    }
    let port = free_port()?;
    let issuer = format!("https://localhost:{port}");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|error| error.to_string())?;
    let certificate = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .and_then(|params| params.self_signed(&key))
        .map_err(|error| error.to_string())?;
    let mut clients = Vec::new();
    for client in &stack.clients {
        let signing = std::fs::read_to_string(client.session.dir().join("signing.pem"))
            .map_err(|error| error.to_string())?;
        let der = first_certificate_der(&signing)?;
        let mut jwk = serde_json::to_value(
            certbound_pki::Jwk::from_certificate_chain(&[&der], "sig", Some("PS256"))
                .map_err(|error| error.0)?,
        )
        .map_err(|error| error.to_string())?;
        if let Value::Object(map) = &mut jwk {
            map.remove("x5c");
            map.remove("x5t#S256");
        }
        let transport = std::fs::read_to_string(client.session.dir().join("transport.pem"))
            .map_err(|error| error.to_string())?;
        let subject = certbound_pki::CertificateInfo::parse(&first_certificate_der(&transport)?)
            .map_err(|error| error.0)?
            .subject;
        clients.push(json!({
            "client_id": client.session.profile.client_id,
            "jwks": {"keys": [jwk]},
            "subject_dn": subject,
        }));
    }
    let config = json!({
        "port": port,
        "issuer": issuer,
        "key": key.serialize_pem(),
        "cert": certificate.pem(),
        "ca": stack.ca_pem,
        "scopes": ["cards.read", "cards.write", "pin.read", "pin.write", "cvv.read", "cvv.write", "bulkcard.read", "bulkcard.write", "cards.encrypted"],
        "clients": clients,
    });
    let config_path = work.join("oidc-provider.json");
    std::fs::write(&config_path, config.to_string()).map_err(|error| error.to_string())?;
    println!("Starting node-oidc-provider ({}) ...", dir.display());
    let mut child = Command::new("node")
        .arg("server.mjs")
        .arg(&config_path)
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|error| format!("cannot start node: {error}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let server = Server::peer(child);
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|error| error.to_string())?;
    if !line.starts_with("ready") {
        return Err(format!("oidc-provider did not start: {line}"));
    }
    std::thread::spawn(move || for _ in reader.lines() {});

    let trust = format!("{}{}", stack.ca_pem, certificate.pem());
    // Node's https server requires a client certificate on every connection, discovery too.
    let first = stack.clients.first().ok_or("no clients")?;
    let discovery: Value = crate::certbound::http_client(&trust, Some(&first.identity_pem), true)?
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .send()
        .await
        .map_err(|error| error.to_string())?
        .json()
        .await
        .map_err(|error| error.to_string())?;
    let token_endpoint = discovery["token_endpoint"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut rows = Vec::new();
    for scenario in ["token-keepalive", "token-newconn"] {
        if !args.scenarios.iter().any(|wanted| wanted == scenario) {
            continue;
        }
        let generators = stack
            .token_generators_for(
                &token_endpoint,
                &issuer,
                &trust,
                args.assertions,
                scenario == "token-keepalive",
            )
            .await?;
        let (stats, cpu) = measure(
            &[server.pid()],
            generators,
            Duration::from_secs(args.duration),
            args.rate,
            crate::load::Expected::Success,
        )
        .await;
        rows.push(Row {
            server: "oidc-provider".into(),
            scenario: scenario.into(),
            round: None,
            stats,
            cpu_per_request_us: cpu,
            floor_us: None,
            details: None,
        });
    }
    Ok(rows)
}
