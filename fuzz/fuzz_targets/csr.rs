//! CSRs as the directory receives them: PEM, and DER (wrapped as `application/pkcs10` is).
#![no_main]
use base64::Engine as _;
use certbound_pki::{CsrSubject, check_csr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let subject = CsrSubject { organisational_unit: "org".into(), common_name: "software".into() };
    let _ = check_csr(data, &subject);
    let pem = format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        base64::engine::general_purpose::STANDARD.encode(data)
    );
    let _ = check_csr(pem.as_bytes(), &subject);
});
