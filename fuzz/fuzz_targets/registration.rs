//! DCR request bodies (JSON, and the claims of a signed request).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| certbound_authz::fuzzing::registration(data));
