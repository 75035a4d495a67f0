//! TLS policy (BCP 195), checked with OpenSSL's own client on every listener: TLS 1.0/1.1
//! refused, TLS 1.2 only with forward-secret AEAD suites, TLS 1.3 accepted.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use std::process::{Command, Stdio};

use certbound_testkit::TestStack;

fn s_client(port: &str, ca: &std::path::Path, args: &[&str]) -> (bool, String) {
    // `Q` on stdin makes s_client quit once the handshake is done; `timeout` guards against a
    // server that keeps the connection open anyway.
    let command = format!(
        "echo Q | timeout 10 openssl s_client -brief -connect 127.0.0.1:{port} -CAfile '{}' {}",
        ca.display(),
        args.join(" ")
    );
    let output = Command::new("sh")
        .args(["-c", &command])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let negotiated = text.lines().any(|line| line.starts_with("Ciphersuite:"));
    (negotiated, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_tls12_with_forward_secret_aead_and_tls13() {
    let stack = TestStack::start().await;
    let ca = stack.data_dir().join("ca.pem");
    let urls = [
        stack.stack.directory_url.clone().unwrap(),
        stack.stack.directory_mtls_url.clone().unwrap(),
        stack.stack.authz_url.clone().unwrap(),
        stack.stack.cards_url.clone().unwrap(),
    ];
    for url in urls {
        let port = url
            .trim_start_matches("https://localhost:")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let refused: [&[&str]; 4] = [
            &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"],
            &["-tls1", "-cipher", "DEFAULT@SECLEVEL=0"],
            &["-tls1_2", "-cipher", "AES128-SHA@SECLEVEL=0"],
            &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA@SECLEVEL=0"],
        ];
        for args in refused {
            let (negotiated, text) = s_client(&port, &ca, args);
            assert!(!negotiated, "{url} accepted {args:?}:\n{text}");
        }
        let accepted: [&[&str]; 3] = [
            &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"],
            &["-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"],
            &["-tls1_3"],
        ];
        for args in accepted {
            let (negotiated, text) = s_client(&port, &ca, args);
            assert!(negotiated, "{url} refused {args:?}:\n{text}");
            assert!(text.contains("Verification: OK"), "{text}");
        }
    }
    stack.stop().await;
}
