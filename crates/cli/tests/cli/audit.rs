//! The audit trail from outside: the seed flow and a set of refusals through `certbound up`,
//! then the events in DATA_DIR/audit.jsonl, and no secret in the audit trail or the server's own
//! log output (at debug level).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

fn certbound(args: &[&str], dir: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_certbound"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn curl(args: &[&str]) -> String {
    let output = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn security_events_are_recorded_and_secrets_are_not() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let log = std::fs::File::create(work.path().join("server.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_certbound"))
        .arg("up")
        .args([
            "--listen-directory",
            "127.0.0.1:0",
            "--listen-directory-mtls",
            "127.0.0.1:0",
        ])
        .args([
            "--listen-authz",
            "127.0.0.1:0",
            "--listen-cards",
            "127.0.0.1:0",
            "--listen-ops",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&data)
        .env("CERTBOUND_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut urls = std::collections::HashMap::new();
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0);
        if line.starts_with("Stop with Ctrl-C") {
            break;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        if let Some(url) = parts.last().filter(|url| url.starts_with("https://")) {
            urls.insert(parts[..parts.len() - 1].join(" "), (*url).to_owned());
        }
    }
    let ca = data.join("ca.pem");
    let ca = ca.to_str().unwrap();

    // The seed flow, a card with a PIN, a CVV lookup.
    certbound(
        &[
            "onboard",
            "--directory",
            &urls["directory"],
            "--authz",
            &urls["authz"],
            "--cards",
            &urls["cards"],
            "--admin-token-file",
            data.join("admin.token").to_str().unwrap(),
            "--ca",
            ca,
            "--roles",
            "programme-manager",
            "--out",
            "client",
        ],
        work.path(),
    );
    let created = certbound(&["cards", "--profile", "client", "create"], work.path());
    let card = created
        .split("\"publicToken\": \"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    certbound(
        &[
            "cards",
            "--profile",
            "client",
            "pin",
            &card,
            "--set",
            "975318642097",
        ],
        work.path(),
    );
    let cvv_output = certbound(&["cards", "--profile", "client", "cvv", &card], work.path());
    let cvv = cvv_output
        .split("\"cvv\": \"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    certbound(
        &[
            "cards",
            "--profile",
            "client",
            "status",
            &card,
            "--set",
            "41",
        ],
        work.path(),
    );

    // Refusals: no certificate at the token endpoint, a wrong admin token, a garbage token.
    let client = work.path().join("client");
    assert_eq!(
        curl(&[
            "--cacert",
            ca,
            "-X",
            "POST",
            "-d",
            "grant_type=client_credentials",
            &format!("{}/oauth2/token", urls["authz"])
        ]),
        "401"
    );
    assert_eq!(
        curl(&[
            "--cacert",
            ca,
            "-H",
            "Authorization: Bearer not-the-admin-token",
            &format!("{}/organisations", urls["directory"])
        ]),
        "401"
    );
    assert_eq!(
        curl(&[
            "--cacert",
            ca,
            "--cert",
            client.join("transport.pem").to_str().unwrap(),
            "--key",
            client.join("transport.key").to_str().unwrap(),
            "-H",
            "Authorization: Bearer garbage",
            &format!("{}/cards/{card}", urls["cards"])
        ]),
        "401"
    );

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());

    let audit = std::fs::read_to_string(data.join("audit.jsonl")).unwrap();
    let events: Vec<serde_json::Value> = audit
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let has = |event: &str, check: &dyn Fn(&serde_json::Value) -> bool| {
        events.iter().any(|e| e["event"] == event && check(e))
    };
    for event in [
        "organisation_created",
        "software_statement_created",
        "directory_token_issued",
        "ssa_issued",
        "client_registered",
    ] {
        assert!(has(event, &|_| true), "no {event} in:\n{audit}");
    }
    assert!(has("certificate_issued", &|e| e["certificate_type"]
        == "transport"
        && e["thumbprint"].is_string()));
    assert!(has("certificate_issued", &|e| e["certificate_type"]
        == "signing"));
    assert!(has("token_issued", &|e| e["client_id"].is_string()
        && e["thumbprint"].is_string()
        && e["jti"].is_string()));
    assert!(has("card_status_changed", &|e| e["status"] == "41"
        && e["public_token"] == card.as_str()));
    assert!(has("refused", &|e| e["part"] == "authz"
        && e["reason"] == "invalid_client"
        && e["status"] == 401));
    assert!(has("refused", &|e| e["part"] == "directory"
        && e["reason"] == "unauthorized"));
    assert!(has("refused", &|e| e["part"] == "cards"
        && e["reason"] == "invalid_token"
        && e["thumbprint"].is_string()));

    // No secret anywhere: not in the audit trail, not in the server's debug log.
    let profile = std::fs::read_to_string(client.join("profile.toml")).unwrap();
    let value_of = |key: &str| {
        profile
            .lines()
            .find(|line| line.starts_with(&format!("{key} = ")))
            .unwrap()
            .split('"')
            .nth(1)
            .unwrap()
            .to_owned()
    };
    let mut secrets = vec![
        value_of("access_token"),
        value_of("registration_access_token"),
        std::fs::read_to_string(data.join("admin.token"))
            .unwrap()
            .trim()
            .to_owned(),
        std::fs::read_to_string(data.join("master.key"))
            .unwrap()
            .trim()
            .to_owned(),
        // Twelve digits: a shorter PIN turns up by chance inside the trace ids (hex UUIDs) that
        // every debug line of a request carries.
        "975318642097".to_owned(),
        format!("\"{cvv}\""),
    ];
    for key in ["transport.key", "signing.key"] {
        let pem = std::fs::read_to_string(client.join(key)).unwrap();
        secrets.extend(
            pem.lines()
                .filter(|line| !line.starts_with("-----"))
                .take(3)
                .map(str::to_owned),
        );
    }
    let server_log = std::fs::read_to_string(work.path().join("server.log")).unwrap();
    assert!(server_log.len() > 1000, "the server logged at debug level");
    for secret in &secrets {
        assert!(
            !audit.contains(secret.as_str()),
            "a secret is in the audit trail: {secret}"
        );
        assert!(
            !server_log.contains(secret.as_str()),
            "a secret is in the server log: {secret}"
        );
    }
}
