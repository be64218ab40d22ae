//! The composition root: the one place that builds certgate's parts and hands each what it
//! needs. No other module builds a sibling; each takes its parts from here.
//!
//! ```text
//! cli ─▶ app ─▶ open:   configuration, store, HSM key store, CAs (checked against their keys)
//!            ─▶ serve:  lifecycle, CRL/OCSP responder, web, notices, retirement task
//!            ─▶ server: status cache, metrics, assertion signer, bound sockets
//!                       ─▶ proxy::Gateway (listeners) and admin (health, metrics)
//!            ─▶ web_service: certgate's own paths behind the gateway's LocalService seam
//! ```
//!
//! Layers point one way (see `docs/architecture.md` and the `layers` test below): the
//! command line calls this module, this module calls the serving modules, and those call
//! the domain modules under them.

mod config_audit;
mod expiry_watch;
pub mod open;
pub mod serve;
pub mod server;
mod staff_service;
pub mod tally_flush;
mod web_service;

#[cfg(test)]
mod layers;

pub use server::{Server, ServerDeps, ServerError};
pub use web_service::WebService;
