//! Integration tests against a real SoftHSM2 token (`cargo nextest run --test softhsm`).
//! Each test runs in its own process (nextest) with its own throwaway token.

mod hsm;
mod support;
