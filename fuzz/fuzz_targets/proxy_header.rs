//! The proxy certificate headers: nginx's URL-encoded PEM and envoy's XFCC.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = certbound_server::forwarded_certificates(Some(&text), None);
    let _ = certbound_server::forwarded_certificates(None, Some(&text));
});
