//! `certbound up` as a process: first start creates the data dir and prints the URLs, every
//! listener answers `/healthz`, SIGTERM drains and exits 0, a second start reuses the data.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

struct Up {
    child: Child,
    lines: Vec<String>,
}

fn start(data_dir: &std::path::Path) -> Up {
    let mut child = Command::new(env!("CARGO_BIN_EXE_certbound"))
        .args([
            "up",
            "--listen-directory",
            "127.0.0.1:0",
            "--listen-directory-mtls",
            "127.0.0.1:0",
            "--listen-authz",
            "127.0.0.1:0",
            "--listen-cards",
            "127.0.0.1:0",
            "--listen-ops",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "certbound up exited early: {lines:?}"
        );
        let done = line.starts_with("Stop with Ctrl-C");
        lines.push(line.trim_end().to_owned());
        if done {
            break;
        }
    }
    std::thread::spawn(move || for _ in reader.lines() {});
    Up { child, lines }
}

fn url(up: &Up, label: &str) -> String {
    let line = up
        .lines
        .iter()
        .find(|line| line.trim_start().starts_with(label))
        .unwrap();
    line.split_whitespace().last().unwrap().to_owned()
}

fn curl(ca: &std::path::Path, url: &str) -> (bool, String) {
    let output = Command::new("curl")
        .args(["-s", "--fail", "--cacert"])
        .arg(ca)
        .arg(url)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

fn stop(mut up: Up) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &up.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    up.child.wait().unwrap()
}

#[test]
fn up_creates_serves_drains_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let up = start(&data);
    assert_eq!(up.lines[0], "certbound is up");
    let public = url(&up, "directory ");
    let mtls = url(&up, "directory mTLS");
    assert!(public.starts_with("https://localhost:"), "{public}");
    for file in ["ca.pem", "admin.token", "master.key", "certbound.db"] {
        assert!(data.join(file).exists(), "{file}");
    }
    let ca = data.join("ca.pem");
    assert_eq!(
        curl(&ca, &format!("{public}/healthz")),
        (true, "ok".to_owned())
    );
    let (ok, discovery) = curl(&ca, &format!("{public}/.well-known/openid-configuration"));
    assert!(
        ok && discovery.contains(&format!("\"issuer\":\"{public}\"")),
        "{discovery}"
    );
    // The mTLS port answers probes without a certificate, and refuses everything else.
    assert_eq!(
        curl(&ca, &format!("{mtls}/healthz")),
        (true, "ok".to_owned())
    );
    let output = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-XPOST",
            "--cacert",
        ])
        .arg(&ca)
        .arg(format!("{mtls}/token"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "401");
    let status = stop(up);
    assert!(
        status.success(),
        "SIGTERM must drain and exit 0, got {status}"
    );

    // A publish delay shorter than the instances need to see the key is refused.
    let output = Command::new(env!("CARGO_BIN_EXE_certbound"))
        .args(["keys", "rotate", "--publish-delay", "0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("use --publish-delay 20 or more"),
        "{stderr}"
    );

    // Rotate the token signing key while the stack is down: published at the next start. The
    // token lifetime comes from the stack's config file.
    let config = dir.path().join("certbound.toml");
    std::fs::write(&config, "token_lifetime_seconds = 1234\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_certbound"))
        .args(["keys", "rotate", "--publish-delay", "20", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("1234 s after that, the token lifetime of the config file"),
        "{stdout}"
    );
    let kid = stdout
        .strip_prefix("new token signing key ")
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .to_owned();

    let ca_before = std::fs::read_to_string(&ca).unwrap();
    let up = start(&data);
    assert_eq!(
        std::fs::read_to_string(&ca).unwrap(),
        ca_before,
        "a second start reuses the CA"
    );
    let (ok, jwks) = curl(&ca, &format!("{}/.well-known/jwks.json", url(&up, "authz")));
    assert!(ok && jwks.contains(&kid), "{jwks}");
    assert!(stop(up).success());
}

#[test]
fn rotate_without_a_data_dir_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_certbound"))
        .args(["keys", "rotate", "--data-dir"])
        .arg(dir.path().join("missing"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("run `certbound up` first"), "{stderr}");
}

#[test]
fn bad_configuration_is_explained() {
    let output = Command::new(env!("CARGO_BIN_EXE_certbound"))
        .args(["up", "--role", "cardz"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unknown role `cardz`: use directory, authz or cards"),
        "{stderr}"
    );
}

#[test]
fn a_busy_port_fails_the_start_before_anything_is_written() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let output = Command::new(env!("CARGO_BIN_EXE_certbound"))
        .args([
            "up",
            "--listen-directory",
            "127.0.0.1:0",
            "--listen-directory-mtls",
            "127.0.0.1:0",
            "--listen-authz",
            "127.0.0.1:0",
            "--listen-cards",
        ])
        .arg(port.to_string())
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {port}")),
        "{stderr}"
    );
    assert!(
        !data.exists(),
        "the data dir was created before the bind failed"
    );
}

/// Issue 14 item 6: `config check` reports every error of a file, each with its key, and exits 1;
/// a good file is `ok`; `up --print-config` prints the effective configuration, the database
/// password redacted, and starts nothing.
#[test]
fn config_check_names_every_error_and_print_config_redacts() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "token_lifetime_seconds = \"ten\"\ntokn = 1\nroles = [\"authz\", \"cardz\"]\n\
         [limits]\nidle_timeout = 5\n[ops]\nlisten = \"nowhere\"\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_certbound"))
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "token_lifetime_seconds: invalid type: string \"ten\"",
        "tokn: unknown field `tokn`",
        "roles: unknown variant `cardz`",
        "limits.idle_timeout: unknown field `idle_timeout`",
        "ops.listen: invalid socket address syntax",
        "5 problems in",
    ] {
        assert!(stderr.contains(expected), "{expected} in {stderr}");
    }
    let range = dir.path().join("range.toml");
    std::fs::write(&range, "token_lifetime_seconds = 5\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_certbound"))
        .args(["config", "check"])
        .arg(&range)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("token_lifetime_seconds must be between 30 and 86400")
    );

    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "database_url = \"postgres://app:s3cret@db.example:5432/certbound\"\n[ops]\nenabled = false\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_certbound"))
        .args(["config", "check"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).ends_with(": ok\n"));
    let output = Command::new(env!("CARGO_BIN_EXE_certbound"))
        .args([
            "up",
            "--print-config",
            "--token-lifetime",
            "300",
            "--config",
        ])
        .arg(&good)
        .arg("--data-dir")
        .arg(dir.path().join("never-made"))
        .output()
        .unwrap();
    assert!(output.status.success());
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(!printed.contains("s3cret"), "{printed}");
    assert!(
        printed.contains("database_url = \"postgres://app:REDACTED@db.example:5432/certbound\""),
        "{printed}"
    );
    assert!(
        printed.contains("token_lifetime_seconds = 300"),
        "{printed}"
    );
    assert!(printed.contains("[ops]\nenabled = false"), "{printed}");
    assert!(!dir.path().join("never-made").exists(), "nothing started");
}

/// Issue 14 item 2: `--log-format json` writes one JSON object per line with timestamp, level
/// and message, and a request's lines carry its part and trace id.
#[test]
fn json_logs_carry_the_part_and_trace_id() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_certbound"))
        .args([
            "up",
            "--log-format",
            "json",
            "--listen-directory",
            "127.0.0.1:0",
            "--listen-directory-mtls",
            "127.0.0.1:0",
            "--listen-authz",
            "127.0.0.1:0",
            "--listen-cards",
            "127.0.0.1:0",
            "--no-ops",
            "--data-dir",
        ])
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut directory = String::new();
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "up exited early");
        if line.trim_start().starts_with("directory ") && !line.contains("mTLS") {
            directory = line.split_whitespace().last().unwrap().to_owned();
        }
        if line.starts_with("Stop with Ctrl-C") {
            break;
        }
    }
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let created = Command::new("curl")
        .args(["-s", "--fail", "--cacert"])
        .arg(data.join("ca.pem"))
        .args(["-H", &format!("Authorization: Bearer {}", token.trim())])
        .args(["-H", "Content-Type: application/json"])
        .args(["-d", r#"{"OrganisationName":"Json Logs Ltd"}"#])
        .arg(format!("{directory}/organisations"))
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    let text = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    assert!(!lines.is_empty());
    for line in &lines {
        assert!(
            line["timestamp"].is_string() && line["level"].is_string(),
            "{line}"
        );
        assert!(line["fields"]["message"].is_string(), "{line}");
    }
    let created = lines
        .iter()
        .find(|line| line["fields"]["message"] == "organisation created")
        .unwrap_or_else(|| panic!("no request line in {text}"));
    assert_eq!(created["level"], "INFO");
    let request = created["spans"]
        .as_array()
        .and_then(|spans| spans.iter().find(|span| span["name"] == "request"))
        .unwrap_or_else(|| panic!("no request span in {created}"));
    assert_eq!(request["part"], "directory", "{created}");
    assert_eq!(
        request["trace_id"].as_str().unwrap_or_default().len(),
        36,
        "{created}"
    );
}
