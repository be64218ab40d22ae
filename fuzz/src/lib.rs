//! The checks behind each fuzz target: feed untrusted bytes to one of certgate's parsers and
//! assert what must hold for every input (no panic, and the properties named per function).
//!
//! Shared by the cargo-fuzz binaries in `fuzz_targets/` and by a plain test that replays
//! the committed corpus (`tests/hostile_gateway.rs`), so the corpus runs in every test run
//! even where libFuzzer cannot. Depends only on certgate, `http` and `bytes`; must not do
//! I/O.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use certgate::ca::csr::{self, ClientKeyKind, CsrError};
use certgate::ca::ocsp::{self, MAX_CERTS_PER_REQUEST, MAX_REQUEST_BYTES};
use certgate::config::GatewayConfig;
use certgate::identity::{AssertionSigner, IdentityFormats, ReservedNames};
use certgate::proxy::canonical::canonicalize;
use certgate::proxy::prefix_matches;
use certgate::web::WebRequest;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

/// CSR parsing and validation: an accepted request names a supported key whose hash is the
/// hash of the key kept; a refusal has a message (shown to customers) without raw input.
pub fn csr(data: &[u8]) {
    match csr::check(data) {
        Ok(c) => {
            assert_eq!(c.spki_sha256, csr::sha256_hex(&c.spki_der));
            if let ClientKeyKind::Rsa(bits) = c.key_kind {
                assert!((2048..=8192).contains(&bits), "RSA-{bits} accepted");
            }
            assert!(data.len() <= csr::MAX_CSR_BYTES);
        }
        Err(e) => {
            let text = e.to_string();
            assert!(!text.is_empty());
            if data.len() > csr::MAX_CSR_BYTES {
                assert_eq!(e, CsrError::TooLarge);
            }
        }
    }
}

/// EST body decoding: the first byte picks a content type, the rest is the body. Whatever
/// decodes is handed to the CSR checks, as `simpleenroll` does.
pub fn est_body(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    const TYPES: [&str; 6] = [
        "application/pkcs10",
        "APPLICATION/PKCS10; charset=binary",
        "application/pkcs10 ;",
        "text/plain",
        "application/x-www-form-urlencoded",
        "",
    ];
    let mut headers = HeaderMap::new();
    let ctype = TYPES[usize::from(pick) % TYPES.len()];
    if !ctype.is_empty() {
        headers.insert("content-type", HeaderValue::from_static(ctype));
    }
    // The body's first line doubles as an Authorization value, as a hostile client sends it.
    let first_line = body.split(|b| *b == b'\n').next().unwrap_or_default();
    if let Ok(v) = HeaderValue::from_bytes(first_line) {
        headers.insert("authorization", v);
    }
    let req = WebRequest {
        method: Method::POST,
        path: "/.well-known/est/simpleenroll".into(),
        query: None,
        headers,
        body: Bytes::copy_from_slice(body),
        peer: None,
        remote: "127.0.0.1:1".into(),
        origin: "https://localhost".into(),
    };
    if let Some((user, _code)) = certgate::web::enroll::est::basic_credentials(&req) {
        assert!(!user.contains(':'), "the login ID ends at the first colon");
    }
    match certgate::web::enroll::est::csr_from_body(&req) {
        Ok(der) => {
            assert!(ctype.to_ascii_lowercase().starts_with("application/pkcs10"));
            csr(&der);
        }
        Err(resp) => assert!(resp.status().is_client_error()),
    }
}

/// OCSP request parsing: an accepted request is within the size limit and asks about 1 to
/// [`MAX_CERTS_PER_REQUEST`] certificates.
pub fn ocsp_request(data: &[u8]) {
    match ocsp::parse_request(data) {
        Ok(p) => {
            assert!(data.len() <= MAX_REQUEST_BYTES);
            assert!((1..=MAX_CERTS_PER_REQUEST).contains(&p.cert_ids.len()));
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
        }
    }
}

/// Identity headers: once the gateway's reserved names are stripped, no header a client
/// sent may pass for an identity or forwarding header, however it is spelled. Input:
/// `name: value` lines.
pub fn identity_headers(data: &[u8]) {
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.trim_ascii()),
            HeaderValue::from_bytes(value),
        ) else {
            continue;
        };
        headers.append(n, v);
    }
    let kept_before: Vec<HeaderName> = headers
        .keys()
        .filter(|n| !spoofable(n.as_str()))
        .cloned()
        .collect();
    reserved_names().strip(&mut headers);
    for name in headers.keys() {
        assert!(!spoofable(name.as_str()), "{name} survived stripping");
    }
    // Nothing else is removed.
    for n in kept_before {
        assert!(headers.contains_key(&n), "{n} was removed");
    }
}

/// The names the gateway strips with the default `[gateway]` settings, derived once.
fn reserved_names() -> &'static ReservedNames {
    static NAMES: OnceLock<ReservedNames> = OnceLock::new();
    NAMES.get_or_init(|| {
        let signer = AssertionSigner::from_config(&GatewayConfig::default(), None)
            .expect("a signer with a fresh key");
        IdentityFormats::new(Arc::new(signer)).reserved().clone()
    })
}

/// An independent statement of which header names a client must never set.
fn spoofable(name: &str) -> bool {
    // Any punctuation reads as `-`: CGI-style readers turn `_`, `.`, `~` alike into `_`.
    let n: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    n.starts_with("x-certgate-")
        || n.starts_with("x-forwarded-")
        || n.starts_with("x-envoy-")
        || n.starts_with("x-ssl-")
        || n.starts_with("ssl-")
        || n.starts_with("x-tls-")
        || n.starts_with("x-cert-")
        || n.starts_with("x-client-cert")
        || n.starts_with("client-cert-")
        || n.starts_with("x-client-dn")
        || n.starts_with("x-client-ip")
        || n.starts_with("x-original-")
        || n.starts_with("x-forward-")
        || n.starts_with("x-forwarder-")
        || n.starts_with("x-real-")
        || n.starts_with("remote-")
        || n.starts_with("x-jwt-")
        || n.starts_with("x-amzn-mtls-")
        || n.starts_with("x-auth-request-")
        || n.starts_with("x-amzn-oidc-")
        || n.starts_with("x-ms-client-principal")
        || n.starts_with("x-remote-")
        || n.starts_with("x-webauth-")
        || n.starts_with("x-ms-token-")
        || n.starts_with("x-goog-authenticated-user-")
        || n.starts_with("cf-access-")
        || n.starts_with("x-pomerium-")
        || n.starts_with("x-consumer-")
        || n.starts_with("oidc-")
        || [
            "client-cert",
            "client-cert-chain",
            "forwarded",
            "forwarded-for",
            "x-forwarded",
            "x-real-ip",
            "x-client-ip",
            "true-client-ip",
            "cf-connecting-ip",
            "x-cluster-client-ip",
            "x-original-forwarded-for",
            "client-ip",
            "x-originating-ip",
            "x-remote-ip",
            "x-remote-addr",
            "x-proxyuser-ip",
            "fastly-client-ip",
            "akamai-client-ip",
            "x-azure-clientip",
            "x-azure-socketip",
            "x-appengine-user-ip",
            "x-host",
            "x-original-host",
            "x-client-cert",
            "x-client-verify",
            "x-client-dn",
            "x-ssl-cert",
            "x-original-url",
            "x-original-uri",
            "x-rewrite-url",
            "x-arr-clientcert",
            "remote-user",
            "x-user",
            "x-auth-user",
            "x-auth-username",
            "x-authenticated-user",
            "x-authenticated-userid",
            "x-ssl-user",
            "x-goog-iap-jwt-assertion",
            "x-id-token",
            "x-userinfo",
            "x-https",
            "https",
            "x-arr-ssl",
            "sm-user",
            "sm-userdn",
            "sm-universalid",
            "auth-user",
            "x-proxy-user",
            "x-client-port",
            "http-client-ip",
            "origin-ip",
            "cluster-client-ip",
            "x-true-ip",
            "x-http-method-override",
            "x-http-method",
            "x-method-override",
            "front-end-https",
            "x-url-scheme",
            "x-scheme",
            "proxy",
        ]
        .contains(&n.as_str())
}

/// Route prefixes the canonical path is matched against (`canonical_path`).
const PREFIXES: [&str; 6] = ["/", "/ib", "/ib/", "/public", "/ib/login", "/a.b"];

/// The path canonicaliser: its output is canonical (idempotent, no `..`, `//`, `;`, encoded
/// separator, control character or non-ASCII), and every route prefix matches the output
/// exactly when it matches the path an app that decodes everything would serve (Tomcat:
/// `;` parameters stripped, IIS: decoded twice, `\` as `/`, trailing dots dropped, any
/// case). So the route chosen is the route the app serves.
pub fn canonical_path(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(c) = canonicalize(raw) else {
        return;
    };
    let path = c.path();
    assert!(path.starts_with('/'), "{raw:?} -> {path:?}");
    assert!(
        !path.contains("//") && !path.contains(';'),
        "{raw:?} -> {path:?}"
    );
    assert!(
        path.bytes()
            .all(|b| (0x21..0x7f).contains(&b) && b != b'\\'),
        "{raw:?} -> {path:?}"
    );
    assert!(
        path.split('/').all(|s| s != "." && s != ".."),
        "{raw:?} -> {path:?}"
    );
    let upper = path.to_ascii_uppercase();
    for bad in ["%2F", "%5C", "%3B", "%00", "%252", "%2E"] {
        assert!(!upper.contains(bad), "{raw:?} -> {path:?}");
    }
    // Idempotent, parameters included.
    let again = canonicalize(path).expect("the output is canonical");
    assert!(
        again.is_unchanged(),
        "{raw:?} -> {path:?} -> {:?}",
        again.path()
    );
    let forwarded = c.forwarded(true);
    let again = canonicalize(&forwarded).expect("the forwarded path is canonical");
    assert_eq!((again.path(), again.params()), (path, c.params()));
    // Routed as the app reads it.
    let app = app_view(&forwarded);
    for p in PREFIXES {
        assert_eq!(
            prefix_matches(p, path),
            prefix_matches(p, &app),
            "{p}: {raw:?} -> {path:?}, the app reads {app:?}"
        );
    }
}

/// The path a lenient app serves for `forwarded`: decoded twice, `\` as `/`, `;` parameters
/// and trailing dots dropped from each segment, dot segments resolved.
fn app_view(forwarded: &str) -> String {
    let decoded = percent_decode(&percent_decode(forwarded.as_bytes()));
    // Java's equalsIgnoreCase and lower-casing apps read `ſ` as `s`, `K` (Kelvin) as `k`.
    let text: String = String::from_utf8_lossy(&decoded)
        .chars()
        .map(|c| match c {
            '\\' => '/',
            c if !c.is_ascii() => {
                let mut folded = c.to_uppercase().chain(c.to_lowercase());
                folded.find(char::is_ascii).unwrap_or(c)
            }
            c => c,
        })
        .collect();
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = text.split('/').skip(1).collect();
    for (i, seg) in segments.iter().enumerate() {
        let name = seg.split(';').next().unwrap_or_default();
        let name = if name == "." || name == ".." {
            name
        } else {
            name.trim_end_matches(['.', ' '])
        };
        match name {
            "." => {}
            ".." => {
                out.pop();
            }
            n if n.is_empty() && i + 1 < segments.len() => {}
            n => out.push(n),
        }
    }
    let mut app = format!("/{}", out.join("/"));
    if segments.last().is_some_and(|s| *s == "." || *s == "..") && !app.ends_with('/') {
        app.push('/');
    }
    app
}

fn percent_decode(b: &[u8]) -> Vec<u8> {
    let hex = |c: u8| char::from(c).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(u8::try_from(h << 4 | l).unwrap_or(0));
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}
