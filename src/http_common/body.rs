//! The one body type every HTTP surface passes around (boxed, streaming), and small
//! constructors.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, SizeHint};

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

/// A request body cut off with an error past `limit` bytes, without its trailers
/// ([`WithoutTrailers`]).
pub fn limited(b: hyper::body::Incoming, limit: usize) -> ProxyBody {
    http_body_util::Limited::new(WithoutTrailers(b), limit).boxed()
}

/// A body whose trailer section is dropped. Trailers are a second header section that the
/// gateway neither strips nor judges: a client's `X-Certgate-User` there would reach an
/// HTTP/2 app that reads trailers (Servlet `getTrailerFields()`, gRPC-style metadata) beside
/// the real identity headers. HTTP/1.1 apps never got request trailers through the gateway,
/// so no app loses something it could rely on.
pub struct WithoutTrailers<B>(pub B);

impl<B: Body + Unpin> Body for WithoutTrailers<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        loop {
            match ready!(Pin::new(&mut self.0).poll_frame(cx)) {
                Some(Ok(frame)) if frame.is_trailers() => {
                    tracing::debug!("request trailers dropped");
                }
                other => return Poll::Ready(other),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

/// How much of a too-large body is read and thrown away before answering 413. Closing a
/// connection with unread data makes the kernel send a reset, which can reach the client
/// before the 413 does; draining a bounded amount lets ordinary clients see the answer.
const DRAIN_LIMIT: usize = 1024 * 1024;

/// Reads a whole body of at most `limit` bytes. `Ok(None)` when it is longer; the rest of
/// such a body is drained (up to [`DRAIN_LIMIT`] more bytes, never kept) before returning.
pub async fn collect_limited(mut b: ProxyBody, limit: usize) -> Result<Option<Bytes>, BoxError> {
    // A declared length past what draining could absorb is answered before any of the body
    // is read: a client waiting on `Expect: 100-continue` then sends none and reads the 413,
    // where reading a part and closing would reset the connection under it.
    if b.size_hint().lower() > limit.saturating_add(DRAIN_LIMIT) as u64 {
        return Ok(None);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn trailers_are_dropped_and_the_data_kept() {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-certgate-user", http::HeaderValue::from_static("bob"));
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
            Ok(Frame::data(Bytes::from_static(b"hel"))),
            Ok(Frame::data(Bytes::from_static(b"lo"))),
            Ok(Frame::trailers(trailers)),
        ];
        let body = WithoutTrailers(http_body_util::StreamBody::new(futures_util::stream::iter(
            frames,
        )));
        let collected = body.collect().await.unwrap();
        assert!(collected.trailers().is_none());
        assert_eq!(collected.to_bytes(), Bytes::from_static(b"hello"));
    }
}
