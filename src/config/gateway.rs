//! Configuration of the gateway side: listeners, routes and the admin listener.

use serde::Deserialize;

use super::{Config, ConfigError};

/// `[[listener]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    pub addr: std::net::SocketAddr,
    /// Server certificate chain, PEM.
    pub cert: std::path::PathBuf,
    /// Server private key, PEM.
    pub key: std::path::PathBuf,
    #[serde(default)]
    pub client_auth: ClientAuth,
}

/// Whether a listener asks for a client certificate at the handshake.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    None,
    #[default]
    Optional,
    Required,
}

/// `[[route]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub prefix: String,
    pub upstream: String,
    #[serde(default)]
    pub auth: RouteAuth,
}

/// Who may use a route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteAuth {
    Public,
    #[default]
    Certificate,
}

/// `[admin]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub addr: std::net::SocketAddr,
}

pub(super) fn check(cfg: &Config) -> Result<(), ConfigError> {
    for r in &cfg.routes {
        if !r.prefix.starts_with('/') {
            return Err(ConfigError::Invalid(format!(
                "[[route]] prefix {:?} must start with /",
                r.prefix
            )));
        }
    }
    Ok(())
}
