//! Integration tests against a real SoftHSM2 token (one process per test under nextest).

mod audit_anchor;
mod browser;
mod cli;
mod config_audit;
mod crl_kinds;
mod crl_scale;
mod deploy;
mod enablement;
mod enroll_host;
mod enumeration;
mod est_strict;
mod faults;
mod fixture;
mod grace;
mod hostile;
mod hsm;
mod instances;
mod keystore;
mod lifecycle;
mod limits;
mod notices;
mod ops;
mod pss;
mod request_ids;
mod signatures;
mod slot_daemon;
mod staff_browser;
mod staff_cli;
mod staff_console;
mod status_agreement;
mod support;
mod trace_export;
mod tunnels;

/// The SMTP sink process shared with the notice tests in `tests/`.
#[path = "../tests/support/smtp/sink.rs"]
#[allow(dead_code)]
mod sink;
