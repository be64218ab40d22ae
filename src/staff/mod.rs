//! The staff console's listener (`[staff] addr`): TLS with a client certificate required at
//! the handshake, and on every request the live check of [`caller`]: only a current
//! certificate of an enabled staff member gets through, with the role the store gives them
//! now. Nothing here routes to a banking app: this listener has no routes, so a staff
//! certificate can reach only the console. What the console answers is a [`StaffService`]
//! (`web::staff`), plugged in by `app`. A second, optional listener (`[staff] obtain_addr`,
//! no client certificate) serves only the page where a staff member obtains a first
//! certificate with a one-time code.

mod caller;
mod listener;

pub use caller::{CallerRefusal, resolve};
pub use listener::{Door, StaffListener, serve};

use std::net::SocketAddr;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::Response;

use crate::identity::StaffCaller;

/// A request that passed the staff check, its body read within the size limit.
#[derive(Debug)]
pub struct StaffHttpRequest {
    pub parts: http::request::Parts,
    pub body: Bytes,
    pub caller: StaffCaller,
    pub remote: SocketAddr,
}

/// A request on the obtain listener: no client certificate, so no caller.
#[derive(Debug)]
pub struct PublicHttpRequest {
    pub parts: http::request::Parts,
    pub body: Bytes,
    pub remote: SocketAddr,
}

/// What answers the staff console's requests.
pub trait StaffService: Send + Sync {
    /// A request of a verified staff member on the console listener.
    fn call(&self, req: StaffHttpRequest) -> BoxFuture<'static, Response<Bytes>>;
    /// A request on the obtain listener (`[staff] obtain_addr`).
    fn call_public(&self, req: PublicHttpRequest) -> BoxFuture<'static, Response<Bytes>>;
}

/// Largest request body the console reads (its JSON calls are small).
pub const MAX_BODY: usize = 64 * 1024;
