//! The `certbound` binary as a client, against `certbound up`: onboard (and again, reusing),
//! token (cached), call, pkcs12 (read back by OpenSSL), the errors a person gets, and the demo.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

struct Up {
    child: Child,
    urls: Vec<(String, String)>,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Up {
    fn url(&self, label: &str) -> String {
        self.urls
            .iter()
            .find(|(name, _)| name == label)
            .map(|(_, url)| url.clone())
            .unwrap()
    }
}

fn up(data: &Path) -> Up {
    up_at(data, [0; 5])
}

/// `certbound up` on `ports` (directory, directory mTLS, authz, cards, ops; 0 for any free one).
fn up_at(data: &Path, ports: [u16; 5]) -> Up {
    let address = |n: usize| format!("127.0.0.1:{}", ports[n]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_certbound"))
        .arg("up")
        .args(["--listen-directory", &address(0)])
        .args(["--listen-directory-mtls", &address(1)])
        .args(["--listen-authz", &address(2)])
        .args(["--listen-cards", &address(3)])
        .args(["--listen-ops", &address(4)])
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut urls = Vec::new();
    loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "certbound up exited early"
        );
        if line.starts_with("Stop with Ctrl-C") {
            break;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        if let Some(url) = parts.last().filter(|url| url.starts_with("https://")) {
            urls.push((parts[..parts.len() - 1].join(" "), (*url).to_owned()));
        }
    }
    std::thread::spawn(move || for _ in reader.lines() {});
    Up { child, urls }
}

fn certbound(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_certbound"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// `certbound onboard` against `stack` (data dir `data`) with `roles`, into `work/out`.
fn onboard(stack: &Up, data: &Path, work: &Path, roles: &str, out: &str) -> Output {
    certbound(
        &[
            "onboard",
            "--directory",
            &stack.url("directory"),
            "--authz",
            &stack.url("authz"),
            "--cards",
            &stack.url("cards"),
            "--admin-token-file",
            data.join("admin.token").to_str().unwrap(),
            "--ca",
            data.join("ca.pem").to_str().unwrap(),
            "--roles",
            roles,
            "--out",
            out,
        ],
        work,
    )
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Issue 13: the assertion of an acknowledged token is refused after `kill -9` and a restart, on
/// the same ports (so the assertion's audience still names the issuer and the refusal can only be
/// the replay): the used `jti` was written before the token was answered and is loaded at start.
/// (The page cache outlives a killed process; that the write also reached stable storage before
/// the answer rests on `O_DSYNC`, which no test here can cut the power under.)
#[test]
fn an_acknowledged_assertion_is_refused_after_kill_9_and_a_restart() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let ports: [u16; 5] = std::array::from_fn(|_| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    });
    let mut stack = up_at(&data, ports);
    let output = onboard(&stack, &data, work.path(), "card-reader", "client");
    assert!(output.status.success(), "{:?}", text(&output));
    let profile = work.path().join("client");
    let session = certbound_client::Session::open(&profile).unwrap();
    let issuer = session.profile.authz.clone();
    let client_id = session.profile.client_id.clone().unwrap();
    let assertion = session.assertion(&issuer).unwrap();
    let discovery: serde_json::Value = serde_json::from_slice(
        &Command::new("curl")
            .args(["-s", "--fail", "--cacert"])
            .arg(data.join("ca.pem"))
            .arg(format!("{issuer}/.well-known/openid-configuration"))
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let endpoint = discovery["mtls_endpoint_aliases"]["token_endpoint"]
        .as_str()
        .or(discovery["token_endpoint"].as_str())
        .unwrap()
        .to_owned();
    let file = |value: &Option<String>| profile.join(value.as_deref().unwrap());
    let token_request = || -> serde_json::Value {
        let output = Command::new("curl")
            .args(["-s", "--cacert"])
            .arg(data.join("ca.pem"))
            .arg("--cert")
            .arg(file(&session.profile.transport_certificate))
            .arg("--key")
            .arg(file(&session.profile.transport_key))
            .args(["-d", "grant_type=client_credentials"])
            .args(["--data-urlencode", &format!("client_id={client_id}")])
            .args([
                "-d",
                "client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ])
            .args(["-d", &format!("client_assertion={assertion}")])
            .arg(&endpoint)
            .output()
            .unwrap();
        serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|_| panic!("not JSON: {:?}", text(&output)))
    };
    let issued = token_request();
    assert!(issued["access_token"].is_string(), "{issued}");

    // kill -9: no shutdown, no flush, nothing but what was on disk when the token was answered.
    Command::new("kill")
        .args(["-KILL", &stack.child.id().to_string()])
        .status()
        .unwrap();
    stack.child.wait().unwrap();
    drop(stack);
    let _restarted = up_at(&data, ports);
    let replayed = token_request();
    assert_eq!(replayed["error"], "invalid_client", "{replayed}");
    assert_eq!(
        replayed["error_description"], "client assertion jti has already been used",
        "{replayed}"
    );
}

#[test]
fn onboard_token_call_and_pkcs12_through_the_binary() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let stack = up(&data);
    let onboard = |out: &str| onboard(&stack, &data, work.path(), "programme-manager", out);
    let output = onboard("client");
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    for step in [
        "[1/9] Raidiam Connect Well-Known",
        "[2/9] Cloudentity Well-Known",
        "[3/9] Create an Application",
        "Prepare the New Certificate (transport)",
        "Prepare the New Certificate (signing)",
        "[6/9] 2.1 RC Access Token",
        "[7/9] 2.2 Get RC SSA",
        "[8/9] 2.3 Dynamic Client Registration",
        "[9/9] Get Access Token",
    ] {
        assert!(stdout.contains(step), "missing `{step}` in:\n{stdout}");
    }
    let client = work.path().join("client");
    let profile = std::fs::read_to_string(client.join("profile.toml")).unwrap();
    for field in [
        "org_id",
        "ssa_id",
        "kid",
        "client_id",
        "directory",
        "authz",
        "cards",
        "registration_client_uri",
    ] {
        assert!(
            profile.contains(&format!("{field} = ")),
            "profile lacks {field}:\n{profile}"
        );
    }
    for file in ["profile.toml", "transport.key", "signing.key"] {
        let mode = std::fs::metadata(client.join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
    assert!(client.join("transport.pem").exists() && client.join("signing.pem").exists());

    // Again with the same --out: nothing is created twice.
    let output = onboard("client");
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("already registered: not registering twice"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(client.join("profile.toml"))
            .unwrap()
            .lines()
            .find(|l| l.starts_with("org_id")),
        profile.lines().find(|l| l.starts_with("org_id"))
    );

    // token: cached until 30 s before expiry.
    let (stdout, _) = text(&certbound(&["token", "--profile", "client"], work.path()));
    assert!(stdout.starts_with("Get Access Token (cached)"), "{stdout}");
    let (stdout, _) = text(&certbound(
        &["token", "--profile", "client", "--refresh"],
        work.path(),
    ));
    assert!(stdout.starts_with("Get Access Token\n"), "{stdout}");

    // call: a card from a data file, then read back.
    std::fs::write(
        work.path().join("card.json"),
        r#"{"cardType":"Virtual","cardProduct":"10003","customerReference":"cli-1",
            "cardHolder":{"firstName":"Grace","lastName":"Hopper","dateOfBirth":"1906-12-09"},
            "address":{"addressLine1":"1 Navy Way","city":"Arlington","postCode":"22202","country":"USA"}}"#,
    )
    .unwrap();
    let output = certbound(
        &[
            "call",
            "--profile",
            "client",
            "POST",
            "/cards",
            "--data",
            "@card.json",
        ],
        work.path(),
    );
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    // The body alone on stdout (so `| jq` works), the status on stderr.
    assert_eq!(stderr.trim(), "HTTP 201 Created", "{stderr}");
    let body: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let card = body["publicToken"].as_str().unwrap();
    let output = certbound(&["cards", "--profile", "client", "get", card], work.path());
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stderr.trim(), "HTTP 200 OK");
    let body: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(body["balance"]["currencyCode"], "USD", "{stdout}");
    // The ledger and the sandbox's network through the binary: exact decimals in, balances out.
    let json_of = |args: &[&str]| {
        let output = certbound(args, work.path());
        let (stdout, stderr) = text(&output);
        assert!(output.status.success(), "{args:?}: {stdout}{stderr}");
        serde_json::from_str::<serde_json::Value>(&stdout).unwrap()
    };
    let loaded = json_of(&[
        "cards",
        "--profile",
        "client",
        "load",
        card,
        "--amount",
        "100.10",
        "--currency",
        "USD",
    ]);
    assert_eq!(loaded["balance"]["cardBalance"], 100.1, "{loaded}");
    let authorised = json_of(&[
        "sandbox",
        "--profile",
        "client",
        "authorise",
        card,
        "--amount",
        "20",
        "--currency",
        "USD",
    ]);
    assert_eq!(authorised["responseCode"], "00", "{authorised}");
    let id = authorised["authorisationId"].as_str().unwrap();
    let cleared = json_of(&["sandbox", "--profile", "client", "clear", card, id]);
    assert_eq!(cleared["balance"]["availableBalance"], 80.1, "{cleared}");
    let balance = json_of(&["cards", "--profile", "client", "balance", card]);
    assert_eq!(balance["cardBalance"], 80.1);
    let lines = json_of(&["cards", "--profile", "client", "transactions", card]);
    let codes: Vec<&str> = lines
        .as_array()
        .unwrap()
        .iter()
        .map(|line| line["type"]["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["L", "A", "P"]);
    let refused = certbound(
        &[
            "cards",
            "--profile",
            "client",
            "unload",
            card,
            "--amount",
            "1000",
            "--currency",
            "USD",
        ],
        work.path(),
    );
    let (stdout, stderr) = text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("more than the available balance"),
        "{stdout}"
    );
    assert!(stderr.contains("HTTP 422"), "{stderr}");

    // `jq` reads it, as a person would pipe it.
    let piped = Command::new("sh")
        .args([
            "-c",
            "\"$0\" call --profile client GET /cards/$1 | jq -er .publicToken",
        ])
        .arg(env!("CARGO_BIN_EXE_certbound"))
        .arg(card)
        .current_dir(work.path())
        .output()
        .unwrap();
    if piped.status.code() != Some(127) {
        assert_eq!(
            String::from_utf8_lossy(&piped.stdout).trim(),
            card,
            "{piped:?}"
        );
    }
    // The whole path, a whole URL, and the profile named by its file all reach the same card.
    let cards_url = stack.url("cards");
    for (profile, path) in [
        ("client/profile.toml", format!("/api/v1/cards/{card}")),
        ("client", format!("{cards_url}/cards/{card}")),
        ("./client/profile.toml", format!("cards/{card}")),
    ] {
        let output = certbound(&["call", "--profile", profile, "GET", &path], work.path());
        let (stdout, stderr) = text(&output);
        assert!(output.status.success(), "{profile} {path}: {stderr}");
        let body: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(body["publicToken"], card, "{profile} {path}");
    }

    // pkcs12, read back by OpenSSL with its password.
    let output = certbound(
        &[
            "pkcs12",
            "--profile",
            "client",
            "--out",
            "client.p12",
            "--password",
            "s3cret",
        ],
        work.path(),
    );
    assert!(output.status.success(), "{:?}", text(&output));
    // It holds the transport private key: owner-only, like every key file.
    let mode = {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(work.path().join("client.p12"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode, 0o600, "client.p12 is {mode:o}");
    let read = Command::new("openssl")
        .args([
            "pkcs12",
            "-in",
            "client.p12",
            "-passin",
            "pass:s3cret",
            "-nodes",
        ])
        .current_dir(work.path())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&read);
    assert!(read.status.success(), "{stderr}");
    assert!(
        stdout.contains("BEGIN PRIVATE KEY") && stdout.matches("BEGIN CERTIFICATE").count() == 2,
        "{stdout}"
    );
    let wrong = Command::new("openssl")
        .args([
            "pkcs12",
            "-in",
            "client.p12",
            "-passin",
            "pass:wrong",
            "-nodes",
        ])
        .current_dir(work.path())
        .output()
        .unwrap();
    assert!(!wrong.status.success());

    // Scopes (issue 16): onboarding wrote the registered scopes into the profile, and token
    // requests ask for them; `token --scope` asks for fewer, and a call that needs another scope
    // says which ones the token has.
    let written = std::fs::read_to_string(client.join("profile.toml")).unwrap();
    assert!(
        written
            .lines()
            .any(|line| line.starts_with("scope = ") && line.contains("cards.write")),
        "{written}"
    );
    let (stdout, _) = text(&certbound(
        &["token", "--profile", "client", "--scope", "cards.read"],
        work.path(),
    ));
    assert!(
        stdout
            .lines()
            .any(|line| line.split_whitespace().collect::<Vec<_>>() == ["scope", "cards.read"]),
        "{stdout}"
    );
    let output = certbound(
        &[
            "call",
            "--profile",
            "client",
            "POST",
            "/cards",
            "--data",
            "@card.json",
        ],
        work.path(),
    );
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("HTTP 403 Forbidden")
            && stderr.contains("the token has the scopes `cards.read`")
            && stderr.contains("certbound token --scope"),
        "{stderr}"
    );
    let (stdout, _) = text(&certbound(
        &["token", "--profile", "client", "--refresh"],
        work.path(),
    ));
    assert!(stdout.contains("cards.write"), "{stdout}");

    // Errors a person can act on, without a backtrace.
    let output = certbound(
        &["call", "--profile", "client", "GET", "/no/such/path"],
        work.path(),
    );
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "exit 1 for a non-2xx answer");
    assert_eq!(stderr.trim(), "HTTP 404 Not Found", "{stderr}");
    let body: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(body["status"], 404, "{stdout}");
    let output = certbound(&["token", "--profile", "nowhere"], work.path());
    let (_, stderr) = text(&output);
    assert!(
        stderr.contains("run `certbound onboard --out nowhere` first"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"));
    // A host nobody listens on.
    std::fs::create_dir_all(work.path().join("offline")).unwrap();
    for file in [
        "transport.pem",
        "transport.key",
        "signing.pem",
        "signing.key",
        "ca.pem",
    ] {
        std::fs::copy(client.join(file), work.path().join("offline").join(file)).unwrap();
    }
    let offline = profile
        .lines()
        .filter(|line| !line.starts_with("access_token"))
        .map(|line| {
            if line.starts_with("authz = ") {
                "authz = \"https://localhost:1\"".to_owned()
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(work.path().join("offline/profile.toml"), offline).unwrap();
    let (_, stderr) = text(&certbound(&["token", "--profile", "offline"], work.path()));
    assert!(
        stderr.contains("cannot reach https://localhost:1")
            && stderr.contains("is certbound running there?"),
        "{stderr}"
    );
    // A profile without a signing key (a `kid` is optional: a server with one key per client
    // needs none).
    let partial: String = profile
        .lines()
        .filter(|line| !line.starts_with("signing_key"))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(work.path().join("offline/profile.toml"), partial).unwrap();
    let (_, stderr) = text(&certbound(
        &["rc-token", "--profile", "offline"],
        work.path(),
    ));
    assert!(
        stderr.contains("has no `signing_key`") && stderr.contains("certbound onboard"),
        "{stderr}"
    );
}

/// The first mistakes a person makes with `onboard` read as one clear error each, with no raw
/// library log line and no colour codes in a file, and leave no half-made profile behind.
#[test]
fn onboarding_mistakes_read_cleanly_and_leave_nothing() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let stack = up(&data);
    let wrong_token = work.path().join("wrong.token");
    std::fs::write(&wrong_token, "not-the-token\n").unwrap();
    let onboard = |ca: Option<&Path>, token: &Path, out: &str, log: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_certbound"));
        command
            .args(["onboard", "--directory", &stack.url("directory")])
            .args([
                "--authz",
                &stack.url("authz"),
                "--cards",
                &stack.url("cards"),
            ])
            .arg("--admin-token-file")
            .arg(token)
            .args(["--out", out])
            .current_dir(work.path());
        if let Some(ca) = ca {
            command.arg("--ca").arg(ca);
        }
        if let Some(log) = log {
            command.env("CERTBOUND_LOG", log);
        }
        command.output().unwrap()
    };

    // `--ca` forgotten: the hint, and no `ERROR rustls_platform_verifier ...` line before it.
    let output = onboard(None, &data.join("admin.token"), "no-ca", None);
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("pass the stack's ca.pem with --ca"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("ERROR") && !stderr.contains("rustls_platform_verifier"),
        "{stderr}"
    );
    assert_eq!(
        stderr
            .lines()
            .filter(|line| line.starts_with("error:"))
            .count(),
        1
    );
    assert!(
        !work.path().join("no-ca").exists(),
        "a half-made profile was left"
    );

    // A wrong admin token: said once, with what to do.
    let output = onboard(
        Some(&data.join("ca.pem")),
        &wrong_token,
        "wrong-token",
        None,
    );
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr.matches("admin token is wrong").count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("DATA_DIR/admin.token"), "{stderr}");
    assert!(!work.path().join("wrong-token").exists());

    // Logs asked for and sent to a file carry no colour codes.
    let output = onboard(None, &data.join("admin.token"), "logged", Some("debug"));
    let (_, stderr) = text(&output);
    assert!(stderr.contains("DEBUG"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes off a terminal: {stderr:?}"
    );
}

#[test]
fn demo_runs_and_leaves_nothing() {
    let work = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_certbound"))
        .arg("demo")
        .env("TMPDIR", work.path())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    for line in [
        "[9/9] Get Access Token",
        "POST /cards",
        "GET /cards/bulk                    Complete",
        "HTTP 409 (a lost card never comes back)",
    ] {
        assert!(stdout.contains(line), "missing `{line}`:\n{stdout}");
    }
    assert_eq!(
        std::fs::read_dir(work.path()).unwrap().count(),
        0,
        "the demo left files behind"
    );
}

/// A hostile server's error cannot drive the terminal: control characters in its
/// `error_description` reach stderr as visible escapes.
#[test]
fn a_hostile_servers_error_is_printed_inert() {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = [0u8; 8192];
            let _ = stream.read(&mut request);
            let body = r#"{"error":"invalid_request","error_description":"\u001b]0;pwned\u0007\u001b[2Jgone"}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let work = tempfile::tempdir().unwrap();
    let profile = work.path().join("hostile");
    std::fs::create_dir(&profile).unwrap();
    std::fs::write(
        profile.join("profile.toml"),
        format!("directory = \"{url}\"\nauthz = \"{url}\"\ncards = \"{url}\"\n"),
    )
    .unwrap();
    let output = certbound(&["discover", "--profile", "hostile"], work.path());
    let (_, stderr) = text(&output);
    assert!(!output.status.success());
    assert!(
        stderr.contains("pwned") && stderr.contains("gone"),
        "{stderr}"
    );
    assert!(
        !stderr
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t'),
        "a control character reached the terminal: {stderr:?}"
    );
}
