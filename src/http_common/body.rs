//! The one body type every HTTP surface passes around (boxed, streaming), and small
//! constructors.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};

/// Errors carried by bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streaming body, boxed so local pages, refusals and upstream answers share one type.
pub type ProxyBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// A body of known bytes.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> ProxyBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

/// A hyper body (request or upstream response) as a [`ProxyBody`].
pub fn from_incoming(b: hyper::body::Incoming) -> ProxyBody {
    b.map_err(box_error).boxed()
}

fn box_error(e: hyper::Error) -> BoxError {
    Box::new(e)
}

/// A request body cut off with an error past `limit` bytes.
pub fn limited(b: hyper::body::Incoming, limit: usize) -> ProxyBody {
    http_body_util::Limited::new(b, limit).boxed()
}

/// How much of a too-large body is read and thrown away before answering 413. Closing a
/// connection with unread data makes the kernel send a reset, which can reach the client
/// before the 413 does; draining a bounded amount lets ordinary clients see the answer.
const DRAIN_LIMIT: usize = 1024 * 1024;

/// Reads a whole body of at most `limit` bytes. `Ok(None)` when it is longer; the rest of
/// such a body is drained (up to [`DRAIN_LIMIT`] more bytes, never kept) before returning.
pub async fn collect_limited(mut b: ProxyBody, limit: usize) -> Result<Option<Bytes>, BoxError> {
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = b.frame().await {
        if let Ok(data) = frame?.into_data() {
            if buf.len() + data.len() > limit {
                drain(b, data.len()).await;
                return Ok(None);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Some(buf.freeze()))
}

async fn drain(mut b: ProxyBody, mut seen: usize) {
    while seen < DRAIN_LIMIT {
        match b.frame().await {
            Some(Ok(frame)) => seen += frame.data_ref().map_or(0, Bytes::len),
            _ => return,
        }
    }
}
