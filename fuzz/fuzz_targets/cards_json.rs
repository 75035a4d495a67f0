//! Every Cards API JSON body.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| certbound_cards::fuzzing::bodies(data));
