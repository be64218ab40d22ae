//! Header names written in their registered spelling on HTTP/1.1.
//!
//! certgate's HTTP/1.1 listeners write header names title-cased (`Content-Type`), because
//! EST clients such as libest compare names case-sensitively. Title-casing makes
//! `Www-Authenticate` and `Etag`, and libest looks for `WWW-Authenticate` only: without
//! it, it never sends its credentials and every `simpleenroll` ends in 401.
//!
//! hyper writes a name as the response's `HeaderCaseMap` extension spells it, and only
//! its own parser makes such a map (the type is private to hyper). So the map is read
//! once, from a canned answer parsed by a hyper client with `preserve_header_case`, and
//! copied onto the answers that carry one of the names it spells. HTTP/2 ignores it.

use std::sync::OnceLock;

use bytes::Bytes;
use http::header::{ETAG, WWW_AUTHENTICATE};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The names written in a spelling title-casing cannot make, as the canned answer spells
/// them. Each is written so once per answer, which is all certgate sends of either.
const CANNED_ANSWER: &[u8] =
    b"HTTP/1.1 204 No Content\r\nWWW-Authenticate: x\r\nETag: \"x\"\r\n\r\n";

static SPELLINGS: OnceLock<Option<http::Extensions>> = OnceLock::new();

/// Reads the spellings now rather than on the first answer that needs them (the first
/// read runs a small runtime on a thread of its own). Returns whether they were read.
pub fn prepare() -> bool {
    spellings().is_some()
}

/// Makes HTTP/1.1 write `WWW-Authenticate` and `ETag` in their registered spelling in this
/// answer. Answers without either header are left alone (two lookups).
pub fn registered_spellings<B>(resp: &mut http::Response<B>) {
    let h = resp.headers();
    if !h.contains_key(WWW_AUTHENTICATE) && !h.contains_key(ETAG) {
        return;
    }
    if let Some(spellings) = spellings() {
        resp.extensions_mut().extend(spellings.clone());
    }
}

fn spellings() -> Option<&'static http::Extensions> {
    SPELLINGS
        .get_or_init(|| {
            // A thread of its own: this may be called on a runtime's worker, where
            // another runtime cannot block.
            let read = std::thread::spawn(read_spellings).join().ok().flatten();
            if read.is_none() {
                tracing::warn!(
                    "cannot prepare header spellings: HTTP/1.1 answers will say \
                     Www-Authenticate and Etag"
                );
            }
            read
        })
        .as_ref()
}

fn read_spellings() -> Option<http::Extensions> {
    let rt = tokio::runtime::Builder::new_current_thread().build().ok()?;
    rt.block_on(async {
        let (client, mut server) = tokio::io::duplex(4096);
        let (mut send, conn) = hyper::client::conn::http1::Builder::new()
            .preserve_header_case(true)
            .handshake::<_, Empty<Bytes>>(TokioIo::new(client))
            .await
            .ok()?;
        let driver = tokio::spawn(conn);
        let answer = tokio::spawn(async move {
            let mut head = Vec::new();
            let mut buf = [0u8; 512];
            while !head.ends_with(b"\r\n\r\n") {
                let n = server.read(&mut buf).await.ok()?;
                if n == 0 {
                    return None;
                }
                head.extend_from_slice(&buf[..n]);
            }
            server.write_all(CANNED_ANSWER).await.ok()
        });
        let request = http::Request::get("/")
            .header(http::header::HOST, "localhost")
            .body(Empty::new())
            .ok()?;
        let response = send.send_request(request).await.ok()?;
        answer.await.ok()??;
        driver.abort();
        Some(response.into_parts().0.extensions)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    /// Writes `resp` through a hyper HTTP/1.1 server set up as certgate's listeners are
    /// (title case) and returns the bytes of its head.
    async fn written_head(resp: http::Response<Full<Bytes>>) -> String {
        let (client, server) = tokio::io::duplex(8192);
        let resp = std::sync::Mutex::new(Some(resp));
        let service = hyper::service::service_fn(move |_req| {
            let r = resp.lock().ok().and_then(|mut r| r.take());
            async move { r.ok_or("asked twice") }
        });
        tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .title_case_headers(true)
                .keep_alive(false)
                .serve_connection(TokioIo::new(server), service),
        );
        let mut client = client;
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8(out).unwrap();
        text.split("\r\n\r\n").next().unwrap().to_owned()
    }

    fn answer(headers: &[(&str, &str)]) -> http::Response<Full<Bytes>> {
        let mut b = http::Response::builder().status(401);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(Full::new(Bytes::from_static(b"no"))).unwrap()
    }

    #[tokio::test]
    async fn challenges_and_tags_go_out_as_registered() {
        assert!(prepare());
        let mut resp = answer(&[
            ("www-authenticate", "Basic realm=\"certgate EST\""),
            ("etag", "\"abc\""),
            ("content-type", "text/plain"),
        ]);
        registered_spellings(&mut resp);
        let head = written_head(resp).await;
        assert!(head.contains("\r\nWWW-Authenticate: Basic"), "{head}");
        assert!(head.contains("\r\nETag: \"abc\""), "{head}");
        // The other names stay title-cased.
        assert!(head.contains("\r\nContent-Type: text/plain"), "{head}");
        assert!(head.contains("\r\nContent-Length: 2"), "{head}");
    }

    #[tokio::test]
    async fn without_the_map_hyper_title_cases_them() {
        // What the map is for: this is what libest could not read.
        let head = written_head(answer(&[("www-authenticate", "Basic")])).await;
        assert!(head.contains("\r\nWww-Authenticate: Basic"), "{head}");
    }

    #[tokio::test]
    async fn answers_without_those_names_get_no_map() {
        let mut resp = answer(&[("content-type", "text/plain")]);
        registered_spellings(&mut resp);
        assert!(resp.extensions().is_empty());
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, Bytes::from_static(b"no"));
    }
}
