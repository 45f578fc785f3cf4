//! `cargo fuzz run selectors`: see `server::fuzz_checks::selectors`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| server::fuzz_checks::selectors(data));
