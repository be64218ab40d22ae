//! Integration tests against a real SoftHSM2 token (one process per test under nextest).

mod browser;
mod cli;
mod fixture;
mod hsm;
mod instances;
mod lifecycle;
mod notices;
mod ops;
mod support;
