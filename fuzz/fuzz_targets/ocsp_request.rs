//! cargo-fuzz entry point; the checks live in `certgate_fuzz::ocsp_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| certgate_fuzz::ocsp_request(data));
