//! cargo-fuzz entry point; the checks live in `certgate_fuzz::csr`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| certgate_fuzz::csr(data));
