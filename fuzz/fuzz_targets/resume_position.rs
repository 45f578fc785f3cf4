//! `cargo fuzz run resume_position`: see `server::fuzz_checks::resume_position`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| server::fuzz_checks::resume_position(data));
