//! A webhook delivery as a receiver gets it: Signature-Input, Signature, Content-Digest and Date
//! (one per line), then the body; checked by the client's receiver-side verification.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(5, '\n');
    let mut headers = std::collections::HashMap::new();
    for name in ["signature-input", "signature", "content-digest", "date"] {
        headers.insert(name.to_owned(), parts.next().unwrap_or_default().to_owned());
    }
    let body = parts.next().unwrap_or_default();
    let jwks = serde_json::json!({"keys": [{"kid": "k", "use": "sig", "kty": "RSA", "n": "AQAB", "e": "AQAB"}]});
    let _ = certbound_client::webhooks::verify_delivery(
        "POST",
        "https://localhost/events",
        &headers,
        body.as_bytes(),
        &jwks,
        1_764_514_800,
    );
});
