//! # certgate
//!
//! certgate is the authentication gateway of a bank's corporate internet banking and the CA
//! for the client certificates it accepts. A customer reaches the banking apps behind it only
//! from a PC holding the certificate issued to their login ID.
//!
//! ## How data flows
//! ```text
//! browser ──TLS(+client cert)──▶ tls (rustls) ──▶ status (live check per request) ──▶ proxy
//!    proxy ─ public:      web (landing, obtain, EST, CRL, OCSP)
//!          ─ certificate: web (renewal, contract admin), upstream banking apps (hyper)
//! lifecycle (the scheme's rules) ──▶ ca (profiles, CSR checks) ──▶ hsm (PKCS#11 signer)
//! lifecycle ──▶ store (SQLite or PostgreSQL) ──▶ status cache
//! notify (expiry notices) ──▶ SMTP;  every security event ──▶ audit (hash chain)
//! ```
//!
//! ## Modules, one concern each, in layers
//! Each module uses only modules of lower layers (checked by a test in `app::layers`).
//! - Leaves: [`clock`] (time, injectable), [`telemetry`] (metrics, error chains),
//!   [`http_common`] (bodies, escaping, the stop signal), [`sd_notify`] (readiness and
//!   watchdog for systemd).
//! - [`config`]: the TOML configuration, checked, with secrets kept out of it.
//! - [`keys`]: the key seam: [`keys::KeyBackend`] signs, [`keys::KeyStore`] opens, describes
//!   and creates keys; PKCS#11 in [`hsm`] is its implementation.
//! - [`hsm`]: the only code that talks to PKCS#11 (cryptoki).
//! - [`ca`]: certificate profiles, CSR checks, signing through a [`keys::KeyBackend`];
//!   [`store`]: persistence (sqlx), migrations for SQLite and PostgreSQL.
//! - [`audit`]: the append-only, hash-chained audit log.
//! - [`lifecycle`]: the rules of the scheme (who may obtain, renew, re-issue, revoke);
//!   [`status`]: the live certificate status cache (fail closed).
//! - [`tls`]: rustls listeners' configuration and the status-aware client verifier.
//! - [`identity`]: the verified caller, the identity header formats (certgate, RFC 9440,
//!   XFCC, JWT) and the stripping of spoofable headers.
//! - What serves: [`proxy`] (the gateway: routing, forwarding, refusals, reload), [`web`]
//!   (certgate's own pages, API, EST, CRL, OCSP, the staff console's API), [`staff`] (the
//!   staff console's listener), [`admin`] (`/healthz`, `/readyz`, `/metrics`), [`notify`] (expiry notices, each sent exactly once), [`demo`]
//!   (the sample banking app of the demo).
//! - [`app`]: the composition root, the one place that builds and wires the parts.
//! - [`cli`]: the `certgate` command line for bank staff and operators.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod audit;
pub mod ca;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod hsm;
pub mod http_common;
pub mod identity;
pub mod keys;
pub mod lifecycle;
pub mod locale;
pub mod notify;
pub mod proxy;
pub mod sd_notify;
pub mod staff;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod web;
