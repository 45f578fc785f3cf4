//! `cargo fuzz run stream_request_head`: see `server::fuzz_checks::stream_request_head`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| server::fuzz_checks::stream_request_head(data));
