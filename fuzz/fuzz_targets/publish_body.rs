//! `cargo fuzz run publish_body`: see `server::fuzz_checks::publish_body`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| server::fuzz_checks::publish_body(data));
