//! The interface every identity format implements ([`IdentityFormat`]), what a format writes
//! from ([`WriteContext`]) and why writing can fail ([`IdentityError`]). Below every format
//! file; imports none of them.

use std::borrow::Cow;

use http::{HeaderMap, HeaderValue};

use super::peer::{PeerIdentity, ViewHeaders};
use crate::clock::UnixTime;
use crate::config::{IdentityFormatName, RouteConfig};

/// A header name a format owns: a client must never set it, whichever formats its route
/// sends. Lower-case, `-` between words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedName {
    /// Exactly this name.
    Exact(Cow<'static, str>),
    /// Every name starting with this (a namespace such as `x-certgate-`).
    Prefix(&'static str),
}

/// What a format writes its headers from.
#[derive(Debug, Clone, Copy)]
pub struct WriteContext<'a> {
    /// The caller, checked live.
    pub identity: &'a PeerIdentity,
    /// Values made once per status view and connection.
    pub view_headers: &'a ViewHeaders,
    /// The route the request goes to (its upstream, its format settings).
    pub route: &'a RouteConfig,
    pub now: UnixTime,
}

/// One way of telling an upstream who the caller is. A new format is one file implementing
/// this, plus its name in [`IdentityFormatName`] and a line in `IdentityFormats::new`.
pub trait IdentityFormat: Send + Sync + std::fmt::Debug {
    /// Its name in `[[route]] identity`.
    fn name(&self) -> IdentityFormatName;

    /// Every header name it may write. Asked once, at start: these names are stripped from
    /// every request.
    fn owned_names(&self) -> Vec<OwnedName>;

    /// Writes its headers for `cx.identity`, replacing any of the same name.
    fn write(&self, headers: &mut HeaderMap, cx: &WriteContext<'_>) -> Result<(), IdentityError>;
}

/// Why identity headers could not be written.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("the value of {0} cannot be sent in a header")]
    Value(&'static str),
    #[error("the {format} identity cannot be made")]
    Format {
        format: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// `v` as the value of header `name`.
pub(super) fn header_value(name: &'static str, v: &str) -> Result<HeaderValue, IdentityError> {
    HeaderValue::from_bytes(v.as_bytes()).map_err(|_| IdentityError::Value(name))
}
