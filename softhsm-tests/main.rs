//! Integration tests against a real SoftHSM2 token (one process per test under nextest).

mod cli;
mod fixture;
mod hsm;
mod ops;
mod support;
