//! Integration tests against a real SoftHSM2 token (one process per test under nextest).

mod browser;
mod cli;
mod faults;
mod fixture;
mod hostile;
mod hsm;
mod lifecycle;
mod ops;
mod support;
