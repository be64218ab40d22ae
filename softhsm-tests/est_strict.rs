//! EST, OCSP GET and configuration reload as strict clients see them, against the real
//! binary over real TLS: the strict RFC 7030 client of `support::est_strict` on HTTP/1.1 and
//! HTTP/2, re-enrollment with the same key (refused by default, accepted when configured),
//! a `[renewal]` change put in force by a reload, and OCSP GET in both encodings.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;

use crate::fixture::{Db, Fixture, Running, key_and_der_csr, sh};
use crate::support::est_strict::{
    Client, Reply, Version, asn1parse, certs_only, check_base64_der, check_headers, folded, pem,
};

const PKCS7: &str = "application/pkcs7-mime";
const PKCS10: (&str, &str) = ("Content-Type", "application/pkcs10");

fn serial_of(cert: &Path) -> String {
    let s = sh(Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(cert));
    s.trim().trim_start_matches("serial=").to_lowercase()
}

/// A DER CSR for an existing key file.
fn der_csr_for_key(fx: &Fixture, key: &Path, name: &str) -> PathBuf {
    let out = fx.path(name);
    sh(Command::new("openssl")
        .args([
            "req",
            "-new",
            "-subj",
            "/CN=device",
            "-outform",
            "DER",
            "-key",
        ])
        .arg(key)
        .arg("-out")
        .arg(&out));
    out
}

/// `simplereenroll` with the current certificate; the reply as the strict client saw it.
fn reenroll(run: &Running, version: Version, cert: &Path, key: &Path, csr: &Path) -> Reply {
    let client = Client::new(run.https, version, &run.ca, Some((cert, key)));
    let body = folded(&std::fs::read(csr).unwrap());
    client.send(
        "POST",
        "/.well-known/est/simplereenroll",
        &[PKCS10],
        body.as_bytes(),
    )
}

/// The one certificate of a successful enrollment, written as PEM to `name`.
fn enrolled(fx: &Fixture, version: Version, reply: &Reply, name: &str) -> PathBuf {
    let der = check_base64_der(version, reply, PKCS7, fx.dir.path());
    let certs = certs_only(&der);
    assert_eq!(
        certs.len(),
        1,
        "an enrollment returns the new certificate alone"
    );
    let file = fx.path(name);
    std::fs::write(&file, pem(&certs[0])).unwrap();
    file
}

fn strict_client_on(version: Version) {
    // 30-day certificates with the default 30-day window: renewal is open from issuance.
    let Some(fx) = Fixture::with_config(Db::Sqlite, |t| {
        *t = t.replace("validity_days = 365", "validity_days = 30");
    }) else {
        return;
    };
    fx.init_with_users();
    let run = fx.serve();
    let anonymous = Client::new(run.https, version, &run.ca, None);
    let dir = fx.dir.path();

    // cacerts: certs-only PKCS#7 holding the CA, base64 folded at 64.
    let reply = anonymous.send("GET", "/.well-known/est/cacerts", &[], b"");
    let der = check_base64_der(version, &reply, PKCS7, dir);
    let ca_der = std::fs::read_to_string(&run.ca).unwrap();
    let certs = certs_only(&der);
    assert!(
        certs.iter().any(|c| ca_der.contains(&pem(c))),
        "cacerts does not hold the CA certificate"
    );
    // OpenSSL's base64 BIO (what libest decodes with) reads the whole body, not a prefix.
    let body = fx.path("cacerts.b64");
    std::fs::write(&body, &reply.body).unwrap();
    let decoded = fx.path("cacerts.der");
    sh(Command::new("openssl")
        .args(["base64", "-d", "-in"])
        .arg(&body)
        .arg("-out")
        .arg(&decoded));
    assert_eq!(std::fs::read(&decoded).unwrap(), der, "openssl base64 -d");

    // csrattrs: valid DER naming the key and signature the CA prefers.
    let reply = anonymous.send("GET", "/.well-known/est/csrattrs", &[], b"");
    let der = check_base64_der(version, &reply, "application/csrattrs", dir);
    let parsed = asn1parse(&der, dir);
    for want in ["ecdsa-with-SHA256", "id-ecPublicKey", "prime256v1"] {
        assert!(parsed.contains(want), "{parsed}");
    }

    // A wrong method: 405 with Allow.
    let reply = anonymous.send("GET", "/.well-known/est/simpleenroll", &[], b"");
    check_headers(version, &reply);
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("POST"));

    // No credentials: 401 with a Basic challenge.
    let (key, csr) = key_and_der_csr(&fx, "carol");
    let body = folded(&std::fs::read(&csr).unwrap());
    let reply = anonymous.send(
        "POST",
        "/.well-known/est/simpleenroll",
        &[PKCS10],
        body.as_bytes(),
    );
    check_headers(version, &reply);
    assert_eq!(reply.status, 401);
    assert!(
        reply
            .header("www-authenticate")
            .is_some_and(|v| v.starts_with("Basic ")),
        "{:?}",
        reply.headers
    );

    // simpleenroll with the issuance code; the request body folded at 64 with CRLF.
    let code = fx.authorize("carol");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("carol:{code}"));
    let auth = format!("Basic {basic}");
    let reply = anonymous.send(
        "POST",
        "/.well-known/est/simpleenroll",
        &[PKCS10, ("Authorization", &auth)],
        body.as_bytes(),
    );
    let cert = enrolled(&fx, version, &reply, "carol-est.pem");
    let verify = sh(Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&run.ca)
        .arg(&cert));
    assert!(verify.contains("OK"), "{verify}");

    // Re-enrollment with the same key is refused by default ([renewal] allow_same_key).
    let same = der_csr_for_key(&fx, &key, "carol-same.der");
    let reply = reenroll(&run, version, &cert, &key, &same);
    check_headers(version, &reply);
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert!(reply.text().contains("new key pair"), "{}", reply.text());

    // With a new key it is accepted: a new certificate.
    let (_, fresh) = key_and_der_csr(&fx, "carol-new");
    let reply = reenroll(&run, version, &cert, &key, &fresh);
    let renewed = enrolled(&fx, version, &reply, "carol-renewed.pem");
    assert_ne!(serial_of(&renewed), serial_of(&cert));
}

/// The strict client over HTTP/1.1: header names as sent are checked too.
#[test]
fn est_strict_client_http1() {
    strict_client_on(Version::Http1);
}

/// The strict client over HTTP/2.
#[test]
fn est_strict_client_http2() {
    strict_client_on(Version::Http2);
}

/// A `[renewal]` change reaches renewals after a reload (here by a change of the file), and
/// `allow_same_key = true` lets a device re-enroll with its current key: a new certificate,
/// the old one superseded.
#[test]
fn renewal_settings_follow_a_reload_and_same_key_can_be_allowed() {
    // 60-day certificates, renewal from 30 days before expiry: not open after issuance.
    let Some(fx) = Fixture::with_config(Db::Sqlite, |t| {
        *t = t.replace("validity_days = 365", "validity_days = 60");
        t.push_str("\n[renewal]\nwindow_days = 30\n");
    }) else {
        return;
    };
    fx.init_with_users();
    let run = fx.serve();
    let (cert, key) = fx.obtain("carol");
    let same = der_csr_for_key(&fx, &key, "carol-same.der");
    let reply = reenroll(&run, Version::Http1, &cert, &key, &same);
    assert_eq!(reply.status, 409, "{}", reply.text());
    assert!(
        reply.text().contains("renewal opens on"),
        "{}",
        reply.text()
    );

    // Open the window from issuance and allow the same key; the file change reloads.
    let text = std::fs::read_to_string(&fx.config).unwrap();
    let reloads_before = run.log().matches("reloaded configuration").count();
    std::fs::write(
        &fx.config,
        text.replace(
            "window_days = 30",
            "window_days = 60\nallow_same_key = true",
        ),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while run.log().matches("reloaded configuration").count() == reloads_before {
        assert!(
            std::time::Instant::now() < deadline,
            "no reload seen:\n{}",
            run.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let log = run.log();
    assert!(
        log.contains("needs_restart") && log.contains("[issuance]; [renewal]"),
        "the reload line names what it applied and what needs a restart:\n{log}"
    );
    // The audit log has the configuration serve started with and the reload, naming the
    // section that changed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let audit = fx.ok(&["audit", "export"]);
        let reload = audit
            .lines()
            .find(|l| l.contains("\"action\":\"config.reload\""));
        if let Some(line) = reload {
            // The detail is a JSON document inside the line's JSON.
            assert!(line.contains(r#"\"changed\":[\"renewal\"]"#), "{line}");
            assert!(audit.contains("\"action\":\"config.start\""), "{audit}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no config.reload in the audit log:\n{audit}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    let reply = reenroll(&run, Version::Http1, &cert, &key, &same);
    let renewed = enrolled(&fx, Version::Http1, &reply, "carol-renewed.pem");
    assert_ne!(serial_of(&renewed), serial_of(&cert));
    let spki = |c: &Path| {
        sh(Command::new("openssl")
            .args(["x509", "-noout", "-pubkey", "-in"])
            .arg(c))
    };
    assert_eq!(
        spki(&renewed),
        spki(&cert),
        "the same key was certified again"
    );
    let list = fx.ok(&["cert", "list", "--login", "carol"]);
    assert!(
        list.contains("\tsuperseded\t") && list.contains("\tcurrent\t"),
        "{list}"
    );
}

/// An OCSP request for `cert` as openssl makes it, written to `out`: with a fresh nonce, or
/// none.
fn openssl_ocsp_request(run: &Running, cert: &Path, out: &Path, nonce: bool) {
    let mut c = Command::new("openssl");
    c.arg("ocsp");
    if !nonce {
        c.arg("-no_nonce");
    }
    sh(c.arg("-issuer")
        .arg(&run.ca)
        .arg("-cert")
        .arg(cert)
        .arg("-reqout")
        .arg(out));
}

/// What openssl makes of the OCSP answer `answer` for `cert`, its signature checked against
/// the CA; with `request`, its nonce checked too.
fn openssl_ocsp_reading(
    fx: &Fixture,
    run: &Running,
    cert: &Path,
    answer: &[u8],
    request: Option<&Path>,
) -> String {
    let file = fx.path("ocsp-answer.der");
    std::fs::write(&file, answer).unwrap();
    let mut c = Command::new("openssl");
    c.args(["ocsp", "-respin"]).arg(&file);
    if let Some(r) = request {
        // -no_nonce: add none of its own to the request given.
        c.arg("-reqin").arg(r).arg("-no_nonce");
    }
    sh(c.arg("-issuer")
        .arg(&run.ca)
        .arg("-cert")
        .arg(cert)
        .arg("-CAfile")
        .arg(&run.ca)
        .arg("-verify_other")
        .arg(&run.ca))
}

/// OCSP GET (RFC 6960 A.1): the base64 request in the path, raw and percent-encoded
/// (`%2F`, `%2B`, `%3D`), both answered with a signed response openssl accepts.
#[test]
fn ocsp_get_is_answered_raw_and_percent_encoded() {
    let Some(fx) = Fixture::new(Db::Sqlite) else {
        return;
    };
    fx.init_with_users();
    let run = fx.serve();
    let (cert, _) = fx.obtain("carol");
    // Requests with a fresh nonce each, until one's base64 holds a '/' (most do).
    let request = fx.path("ocsp-req.der");
    let mut found = None;
    for _ in 0..64 {
        openssl_ocsp_request(&run, &cert, &request, true);
        let der = std::fs::read(&request).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
        if b64.contains('/') {
            found = Some(b64);
            break;
        }
    }
    let b64 = found.expect("an OCSP request whose base64 holds a '/'");
    let encoded = b64
        .replace('/', "%2F")
        .replace('+', "%2B")
        .replace('=', "%3D");
    assert!(encoded.contains("%2F"));
    for version in [Version::Http1, Version::Http2] {
        let client = Client::new(run.https, version, &run.ca, None);
        for form in [&b64, &encoded] {
            let reply = client.send("GET", &format!("/ocsp/{form}"), &[], b"");
            check_headers(version, &reply);
            assert_eq!(reply.status, 200, "{form}: {}", reply.text());
            assert_eq!(
                reply.header("content-type"),
                Some("application/ocsp-response")
            );
            let text = openssl_ocsp_reading(&fx, &run, &cert, &reply.body, Some(&request));
            assert!(text.contains(": good"), "{form}: {text}");
        }
    }
    // Anything else encoded in the OCSP path is still refused at the edge.
    let client = Client::new(run.https, Version::Http1, &run.ca, None);
    let reply = client.send("GET", "/ocsp/abc%2E%2E/x", &[], b"");
    assert_eq!(reply.status, 400);
}

/// An OCSP GET without a nonce is the same answer for every relying party, so it carries
/// what an HTTP cache needs (RFC 5019 §6.2): `public` with a bounded `max-age`, an `ETag`,
/// `Last-Modified` and `Expires`; the same question with that tag in `If-None-Match` gets
/// 304 and no body. An answer to a request with a nonce is `no-store`.
#[test]
fn ocsp_get_without_a_nonce_is_cacheable_and_revalidates() {
    let Some(fx) = Fixture::new(Db::Sqlite) else {
        return;
    };
    fx.init_with_users();
    let run = fx.serve();
    let (cert, _) = fx.obtain("carol");
    let request = fx.path("ocsp-plain.der");
    openssl_ocsp_request(&run, &cert, &request, false);
    let b64 = base64::engine::general_purpose::STANDARD
        .encode(std::fs::read(&request).unwrap())
        .replace('/', "%2F")
        .replace('+', "%2B")
        .replace('=', "%3D");
    let path = format!("/ocsp/{b64}");
    // carol's issuance reaches the running instance through the store's change feed, and
    // its arrival drops a cached answer: wait until the same question gets the same
    // answer twice, so that the checks below see the cache, not that late invalidation.
    let settle = Client::new(run.https, Version::Http1, &run.ca, None);
    crate::faults::eventually(15, "the OCSP answer stays cached", || {
        let a = settle.send("GET", &path, &[], b"");
        let b = settle.send("GET", &path, &[], b"");
        a.status == 200 && a.header("etag").is_some() && a.header("etag") == b.header("etag")
    });
    for version in [Version::Http1, Version::Http2] {
        let client = Client::new(run.https, version, &run.ca, None);
        let first = client.send("GET", &path, &[], b"");
        check_headers(version, &first);
        assert_eq!(first.status, 200, "{}", first.text());
        let cache = first.header("cache-control").unwrap_or_default();
        assert!(
            cache.contains("public")
                && cache.contains("no-transform")
                && cache.contains("must-revalidate"),
            "{cache}"
        );
        let max_age: u64 = cache
            .split(',')
            .find_map(|d| d.trim().strip_prefix("max-age="))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no max-age in {cache}"));
        assert!((1..=300).contains(&max_age), "{cache}");
        let date = |name: &str| {
            let v = first
                .header(name)
                .unwrap_or_else(|| panic!("no {name}: {:?}", first.headers));
            httpdate::parse_http_date(v).unwrap_or_else(|e| panic!("{name}: {v}: {e}"))
        };
        let (signed, expires) = (date("last-modified"), date("expires"));
        let now = std::time::SystemTime::now();
        assert!(signed <= now + std::time::Duration::from_secs(1));
        assert!(expires > signed && expires <= now + std::time::Duration::from_secs(301));
        let tag = first.header("etag").expect("an ETag").to_owned();
        let text = openssl_ocsp_reading(&fx, &run, &cert, &first.body, None);
        assert!(text.contains(": good"), "{text}");

        let again = client.send("GET", &path, &[("if-none-match", &tag)], b"");
        assert_eq!(again.status, 304, "{:?}", again.headers);
        assert!(again.body.is_empty());
        assert_eq!(again.header("etag"), Some(tag.as_str()));
        let other = client.send("GET", &path, &[("if-none-match", "\"elsewhere\"")], b"");
        assert_eq!(other.status, 200);
        assert_eq!(other.body, first.body, "the cached answer is served again");
    }
    // With a nonce the answer is this request's alone.
    openssl_ocsp_request(&run, &cert, &request, true);
    let client = Client::new(run.https, Version::Http1, &run.ca, None);
    let reply = client.send(
        "POST",
        "/ocsp",
        &[("content-type", "application/ocsp-request")],
        &std::fs::read(&request).unwrap(),
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert!(reply.header("etag").is_none(), "{:?}", reply.headers);
}

/// `[revocation] http_addr` serves the OCSP responder and the CRLs over plain HTTP, and
/// `[ca] status_url` makes new certificates name it: openssl follows the certificate's own
/// OCSP and CRL URLs there, a revocation shows there, and nothing else is served there.
#[test]
fn ocsp_and_crls_over_plain_http_where_certificates_name_them() {
    let plain = crate::fixture::free_port();
    let base = format!("http://127.0.0.1:{plain}");
    let Some(fx) = Fixture::with_config(Db::Sqlite, |t| {
        t.push_str(&format!(
            "status_url = \"{base}\"\n\n[revocation]\nhttp_addr = \"127.0.0.1:{plain}\"\n"
        ));
    }) else {
        return;
    };
    fx.init_with_users();
    let run = fx.serve();
    let (cert, _) = fx.obtain("carol");

    // The certificate names the plain-HTTP responder and CRL.
    let ocsp_url = sh(Command::new("openssl")
        .args(["x509", "-noout", "-ocsp_uri", "-in"])
        .arg(&cert));
    let ocsp_url = ocsp_url.trim();
    assert_eq!(ocsp_url, format!("{base}/ocsp"));
    let ext = sh(Command::new("openssl")
        .args(["x509", "-noout", "-ext", "crlDistributionPoints", "-in"])
        .arg(&cert));
    let crl_url = ext
        .lines()
        .find_map(|l| l.trim().strip_prefix("URI:"))
        .expect("a CRL distribution point")
        .to_owned();
    assert!(crl_url.starts_with(&format!("{base}/crl/")), "{ext}");

    // openssl asks there, over http, and checks the answer against the CA.
    let ask = || {
        sh(Command::new("openssl")
            .args(["ocsp", "-issuer"])
            .arg(&run.ca)
            .arg("-cert")
            .arg(&cert)
            .args(["-url", ocsp_url, "-CAfile"])
            .arg(&run.ca))
    };
    assert!(ask().contains(": good"), "{}", ask());
    // The CRL from its distribution point is the CA's, signed and current.
    let crl = fx.path("plain.crl");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-o"])
        .arg(&crl)
        .args(["-w", "%{http_code} %{content_type}", &crl_url])
        .output()
        .expect("curl runs");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.starts_with("200 application/pkix-crl"), "{said}");
    let out = Command::new("openssl")
        .args(["crl", "-inform", "DER", "-noout", "-verify", "-CAfile"])
        .arg(&run.ca)
        .arg("-in")
        .arg(&crl)
        .output()
        .expect("openssl runs");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("verify OK"), "{text}");

    // A revocation shows there as on the TLS listener.
    let serial = serial_of(&cert);
    fx.ok(&["cert", "revoke", &serial, "--reason", "keyCompromise"]);
    crate::faults::eventually(10, "the revocation over plain HTTP", || {
        ask().contains(": revoked")
    });

    // Nothing else is served on that port: not the pages, EST, the API or an app.
    let plain_get = |method: &str, path: &str| {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--path-as-is",
                "--max-time",
                "20",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .args(["-X", method, &format!("{base}{path}")])
            .output()
            .expect("curl runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for path in [
        "/",
        "/certgate/",
        "/.well-known/est/cacerts",
        "/api/v1/users",
        "/app/x",
        "/crl/../certgate/",
        "/ocsp/../certgate/",
        "/ocspx",
    ] {
        assert_eq!(plain_get("GET", path), "404", "{path}");
    }
    assert_eq!(plain_get("PUT", "/ocsp"), "405");
    assert_eq!(plain_get("TRACE", "/ocsp"), "400");

    // One address cannot hold the port: past 16 silent connections of its own, its next one
    // is closed unanswered; once they go, it is answered again.
    let silent: Vec<std::net::TcpStream> = (0..16)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", plain)).expect("connect"))
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(plain_get("GET", "/ocsp"), "000");
    drop(silent);
    crate::faults::eventually(10, "the port answers again", || {
        plain_get("GET", &crl_url[base.len()..]) == "200"
    });
}
