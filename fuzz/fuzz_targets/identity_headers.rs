//! cargo-fuzz entry point; the checks live in `certgate_fuzz::identity_headers`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| certgate_fuzz::identity_headers(data));
