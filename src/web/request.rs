//! What a handler knows about a request: method, path, headers, the body (already read with
//! a size limit by the listener) and the verified client certificate, if any.

use bytes::Bytes;
use http::{HeaderMap, Method};

/// The client certificate the TLS layer verified and the status check accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCert {
    /// Lowercase hex serial, as the store keeps it.
    pub serial: String,
    /// The login ID the certificate was issued to.
    pub login: String,
}

/// A request as the web handlers see it.
#[derive(Debug, Clone)]
pub struct WebRequest {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub peer: Option<PeerCert>,
    /// The client's address (for the audit log of anonymous callers).
    pub remote: String,
    /// `scheme://host[:port]` this request was addressed to, for same-origin checks.
    pub origin: String,
}

impl WebRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A query parameter's raw value.
    pub fn query_param(&self, key: &str) -> Option<&str> {
        self.query
            .as_deref()?
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find_map(|(k, v)| (k == key).then_some(v))
    }
}
