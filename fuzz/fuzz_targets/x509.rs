//! X.509 certificates and chains from peers and proxies.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = certbound_pki::CertificateInfo::parse(data);
    let _ = certbound_pki::Jwk::from_certificate_chain(&[data], "tls", None);
    let half = data.len() / 2;
    let _ = certbound_pki::Jwk::from_certificate_chain(&[&data[..half], &data[half..]], "sig", Some("PS256"));
});
