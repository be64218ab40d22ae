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
//! ## Modules, one concern each
//! - [`config`]: the TOML configuration, checked, with secrets kept out of it.
//! - [`keys`]: the key seam: [`keys::KeyBackend`] signs, [`keys::KeyStore`] opens, describes
//!   and creates keys; PKCS#11 in [`hsm`] is its implementation.
//! - [`hsm`]: the only code that talks to PKCS#11 (cryptoki).
//! - [`ca`]: certificate profiles, CSR checks, signing through a [`keys::KeyBackend`].
//! - [`store`]: persistence (sqlx), migrations for SQLite and PostgreSQL.
//! - [`lifecycle`]: the rules of the scheme (who may obtain, renew, re-issue, revoke).
//! - [`audit`]: the append-only, hash-chained audit log.
//! - [`notify`]: expiry notices by e-mail, each sent exactly once.
//! - [`cli`]: the `certgate` command line for bank staff and operators.
//! - [`tls`]: rustls listeners' configuration and the status-aware client verifier.
//! - [`status`]: the live certificate status cache (fail closed).
//! - [`proxy`]: the gateway: routing, identity headers, forwarding, refusals, reload.
//! - [`admin`]: `/healthz`, `/readyz`, `/metrics`.
#![forbid(unsafe_code)]

pub mod admin;
pub mod audit;
pub mod ca;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod hsm;
pub mod keys;
pub mod lifecycle;
pub mod notify;
pub mod proxy;
pub mod status;
pub mod store;
pub mod tls;
pub mod web;
