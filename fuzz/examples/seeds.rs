//! Writes the seed corpora of every fuzz target from code: `cargo run --example seeds -- corpus`.
use std::path::Path;

use base64::Engine as _;

fn write(root: &Path, target: &str, name: &str, data: &[u8]) {
    let dir = root.join(target);
    std::fs::create_dir_all(&dir).expect("corpus directory");
    std::fs::write(dir.join(name), data).expect("seed file");
}

fn main() {
    let root = std::env::args().nth(1).unwrap_or_else(|| "corpus".into());
    let root = Path::new(&root);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params.distinguished_name.push(rcgen::DnType::OrganizationalUnitName, "org");
    params.distinguished_name.push(rcgen::DnType::CommonName, "software");
    let csr = params.serialize_request(&key).expect("csr");
    write(root, "csr", "pem", csr.pem().expect("pem").as_bytes());
    write(root, "csr", "der", csr.der());
    let certificate = params.self_signed(&key).expect("certificate");
    write(root, "x509", "der", certificate.der());
    write(root, "proxy_header", "nginx", certificate.pem().replace('\n', "%0A").replace('+', "%2B").replace('/', "%2F").as_bytes());
    write(root, "proxy_header", "envoy", format!("By=spiffe://a;Hash=h;Cert=\"{}\"", certificate.pem().replace('\n', "%0A")).as_bytes());
    let b64 = |value: serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string());
    let jws = format!(
        "{}.{}.{}",
        b64(serde_json::json!({"alg": "ES256", "kid": "k"})),
        b64(serde_json::json!({"iss": "c", "sub": "c", "aud": "https://localhost:8443", "exp": 1_790_000_060, "jti": "j"})),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 64])
    );
    write(root, "jws", "assertion", jws.as_bytes());
    write(root, "jws", "none", format!("{}.{}.", b64(serde_json::json!({"alg": "none"})), b64(serde_json::json!({}))).as_bytes());
    write(root, "registration", "json", br#"{"software_statement":"a.b.c","redirect_uris":["https://example.com/cb"],"scope":"cards.read","token_endpoint_auth_method":"private_key_jwt","jwks":null}"#);
    write(root, "cards_json", "create", br#"{"cardType":"Virtual","cardProduct":"10001","customerReference":"r","cardHolder":{"firstName":"A","lastName":"B","dateOfBirth":"1990-01-01"},"address":{"addressLine1":"1","city":"c","postCode":"p","country":"GBR"}}"#);
    write(root, "cards_json", "status", br#"{"cardStatusCode":"41","description":"lost"}"#);
    write(root, "cards_json", "pin", br#"{"pin":"1234"}"#);
    write(root, "cards_json", "bulk", br#"{"cardProduct":"10001","cardType":"Virtual","quantity":5}"#);
    write(root, "cards_json", "load", br#"{"transactionType":"TransferFunds","amount":"10.50","currencyCode":"GBP","toPublicToken":"123456789","feeAmount":0.5}"#);
    write(root, "cards_json", "authorise", br#"{"amount":20,"currencyCode":"GBP","merchant":{"name":"Shop","mcc":"5411","country":"GBR"}}"#);
    write(root, "cards_json", "replace", br#"{"moveBalance":true,"expiryDate":"2031-05"}"#);
    write(root, "webhook", "delivery", b"sig1=(\"@method\" \"@target-uri\" \"content-digest\" \"date\");created=1764514800;keyid=\"k\";alg=\"rsa-pss-sha512\"\nsig1=:AAAA:\nsha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:\nSun, 30 Nov 2025 15:00:00 GMT\n");
    write(root, "form", "token", b"grant_type=client_credentials&client_id=abc&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=a.b.c");
}
