//! Form-encoded token, introspection and revocation requests.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = certbound_http::parse_form(Some("application/x-www-form-urlencoded; charset=UTF-8"), data);
    let _ = certbound_http::clean_description(&String::from_utf8_lossy(data));
});
