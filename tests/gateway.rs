//! The gateway over real TLS: rustls and curl clients with client certificates, a real
//! store (SQLite; PostgreSQL where noted, required under CI=true), an echo upstream.

#[path = "support/db.rs"]
#[allow(dead_code)]
mod db;
#[path = "support/gateway/mod.rs"]
#[allow(dead_code)]
mod support;
#[path = "support/xfcc_consumer.rs"]
mod xfcc_consumer;

use std::time::Duration;

use certgate::clock::DAY;
use support::client::Conn;
use support::pki::TestCa;
use support::{Harness, now};

const IDENTITY: [&str; 7] = [
    "x-certgate-user",
    "x-certgate-contract",
    "x-certgate-role",
    "x-certgate-cert-serial",
    "x-certgate-cert-sha256",
    "x-certgate-cert-not-after",
    "x-certgate-renewal-due",
];

fn header<'a>(seen: &'a serde_json::Value, name: &str) -> Vec<&'a str> {
    seen["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0] == name)
        .map(|h| h[1].as_str().unwrap())
        .collect()
}

fn names(seen: &serde_json::Value) -> Vec<String> {
    seen["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h[0].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_gets_exactly_the_identity_headers_and_no_spoofed_ones() {
    let h = Harness::sqlite().await;
    let mut c = h.h1(Some(&h.alice)).await;
    let spoofed = [
        ("x-certgate-user", "mallory"),
        ("X_Certgate_User", "mallory"),
        ("X-CertGate-Role", "admin"),
        ("x_certgate_contract", "other"),
        ("X-Certgate_Cert-Serial", "00"),
        ("Client-Cert", ":AAAA:"),
        ("x_forwarded_client_cert", "Hash=00"),
        ("X-Forwarded-For", "10.9.9.9"),
        ("x-app-header", "kept"),
    ];
    let a = c.send("GET", "/ib/top?x=1", &spoofed, "").await.unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    let seen = a.json();
    assert_eq!(seen["path"], "/ib/top?x=1");
    assert_eq!(header(&seen, "x-certgate-user"), ["alice"]);
    assert_eq!(header(&seen, "x-certgate-contract"), ["c1"]);
    assert_eq!(header(&seen, "x-certgate-role"), ["general"]);
    assert_eq!(
        header(&seen, "x-certgate-cert-serial"),
        [h.alice.serial.as_str()]
    );
    assert_eq!(
        header(&seen, "x-certgate-cert-sha256"),
        [h.alice.sha256.as_str()]
    );
    let not_after = time::OffsetDateTime::from_unix_timestamp(h.alice.not_after)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    assert_eq!(
        header(&seen, "x-certgate-cert-not-after"),
        [not_after.as_str()]
    );
    assert_eq!(header(&seen, "x-certgate-renewal-due"), ["false"]);
    assert_eq!(header(&seen, "x-app-header"), ["kept"]);
    assert_eq!(header(&seen, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(header(&seen, "x-forwarded-proto"), ["https"]);
    // Nothing else that looks like identity, whatever its spelling.
    let identityish: Vec<String> = names(&seen)
        .into_iter()
        .map(|n| n.to_ascii_lowercase().replace('_', "-"))
        .filter(|n| n.starts_with("x-certgate-") || n.contains("client-cert"))
        .collect();
    let mut expected: Vec<String> = IDENTITY.iter().map(|s| s.to_string()).collect();
    expected.sort();
    let mut got = identityish.clone();
    got.sort();
    assert_eq!(got, expected);

    // A public route gets no identity, and spoofed headers are still removed.
    let a = c.send("GET", "/public/info", &spoofed, "").await.unwrap();
    assert_eq!(a.status, 200);
    let seen = a.json();
    assert!(
        names(&seen)
            .iter()
            .all(|n| !n.replace('_', "-").starts_with("x-certgate-")),
        "{seen}"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_is_due_from_thirty_days_before_expiry() {
    let h = Harness::sqlite().await;
    h.add_user("carol", certgate::store::Role::Approver).await;
    let t = now();
    let carol = h.ca.client("carol", "c1", t - 300 * DAY, t + 29 * DAY);
    h.register(&carol, "carol").await;
    let mut c = h.h1(Some(&carol)).await;
    let seen = c.get("/").await.unwrap().json();
    assert_eq!(header(&seen, "x-certgate-renewal-due"), ["true"]);
    assert_eq!(header(&seen, "x-certgate-role"), ["approver"]);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_foreign_or_revoked_certificate_reaches_the_app() {
    let h = Harness::sqlite().await;
    let t = now();
    // No certificate: JSON for an API client, HTML for a browser.
    let mut c = h.h1(None).await;
    let a = c.get("/ib/top").await.unwrap();
    assert_eq!(a.status, 401);
    assert_eq!(a.json()["error"], "no_certificate");
    let a = c
        .send("GET", "/ib/top", &[("accept", "text/html,*/*")], "")
        .await
        .unwrap();
    assert_eq!(a.status, 401);
    assert!(
        a.body.contains("<html") && a.body.contains("No client certificate"),
        "{}",
        a.body
    );

    // A certificate from another CA.
    let foreign = TestCa::new("Someone Else CA").client("alice", "c1", t - 60, t + DAY);
    let mut c = h.h1(Some(&foreign)).await;
    let a = c.get("/ib/top").await.unwrap();
    assert_eq!(a.status, 403);
    assert_eq!(a.json()["error"], "foreign_ca");

    // Our CA, but not a certificate the store knows.
    let stray = h.ca.client("alice", "c1", t - 60, t + DAY);
    let mut c = h.h1(Some(&stray)).await;
    assert_eq!(
        c.get("/").await.unwrap().json()["error"],
        "unknown_certificate"
    );

    // Revoked.
    h.add_user("dave", certgate::store::Role::General).await;
    let dave = h.ca.client("dave", "c1", t - 60, t + DAY);
    h.register(&dave, "dave").await;
    h.store
        .revoke(&dave.serial, "keyCompromise", now())
        .await
        .unwrap();
    let mut c = h.h1(Some(&dave)).await;
    let a = c.get("/ib/top").await.unwrap();
    assert_eq!(a.status, 403);
    assert_eq!(a.json()["error"], "revoked");

    // On the `required` listener, the handshake itself refuses them.
    for cert in [None, Some(&foreign), Some(&dave)] {
        let refused = match Conn::h1(h.required, h.client_config(cert)).await {
            Err(_) => true,
            Ok(mut c) => c.get("/").await.is_err(),
        };
        assert!(refused);
    }
    assert_eq!(h.upstream.hits(), 0, "nothing reached the app");
    assert!(
        h.metric("certgate_refusals_total{reason=\"revoked\"}")
            .await
            >= 1.0
    );
    assert!(
        h.metric("certgate_refusals_total{reason=\"foreign_ca\"}")
            .await
            >= 1.0
    );
    // Counted after the client saw the refusal: polled, not read once.
    metric_reaches(&h, "certgate_handshake_failures_total", |v| v >= 3.0).await;
    h.shutdown().await;
}

/// A certificate the CA signed and then discarded (never handed out) is refused as revoked,
/// as OCSP and the CRL answer for it, not as unknown; the discard reaches a gateway that
/// had already looked the serial up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discarded_certificate_is_refused_as_revoked() {
    use certgate::store::{NewAudit, SignatureIntent};
    let h = Harness::sqlite().await;
    let t = now();
    let copy = h.ca.client("alice", "c1", t - 60, t + DAY);
    let mut c = h.h1(Some(&copy)).await;
    assert_eq!(
        c.get("/ib/top").await.unwrap().json()["error"],
        "unknown_certificate"
    );
    let audit = |action: &str| NewAudit {
        at: t,
        actor: "staff:test".into(),
        action: action.into(),
        subject: copy.serial.clone(),
        outcome: "ok".into(),
        detail: serde_json::json!({}),
    };
    let intent = SignatureIntent::open(
        &copy.serial,
        h.ca_id,
        "client",
        "alice",
        "spki",
        t - 60,
        t + DAY,
    );
    h.store
        .record_intent_audited(&intent, &audit("signature.intent"))
        .await
        .unwrap();
    h.store
        .discard_intent_audited(
            &copy.serial,
            "lost_redemption_race",
            None,
            t,
            &audit("signature.discarded"),
        )
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let answer = loop {
        let mut c = h.h1(Some(&copy)).await;
        let a = c.get("/ib/top").await.unwrap();
        if a.json()["error"] != "unknown_certificate" || std::time::Instant::now() > deadline {
            break a;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(answer.status, 403);
    assert_eq!(answer.json()["error"], "revoked");
    assert_eq!(h.upstream.hits(), 0, "nothing reached the app");
    h.shutdown().await;
}

async fn revocation_stops_an_open_connection(h: Harness) {
    let mut c = h.h1(Some(&h.alice)).await;
    assert_eq!(c.get("/one").await.unwrap().status, 200);
    assert_eq!(c.get("/two").await.unwrap().status, 200);
    h.store
        .revoke(&h.alice.serial, "keyCompromise", now())
        .await
        .unwrap();
    // Same kept-alive connection, next request.
    let a = c.get("/three").await.unwrap();
    assert_eq!(a.status, 403, "{}", a.body);
    assert_eq!(a.json()["error"], "revoked");
    assert_eq!(h.upstream.hits(), 2);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_stops_the_next_request_on_a_kept_alive_connection_sqlite() {
    revocation_stops_an_open_connection(Harness::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_stops_the_next_request_on_a_kept_alive_connection_postgres() {
    let Some(h) = Harness::postgres().await else {
        return;
    };
    revocation_stops_an_open_connection(h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_passes_with_identity() {
    let h = Harness::sqlite().await;
    let cfg = support::client::config(&h.server_ca.der, Some(&h.alice), &[b"h2", b"http/1.1"]);
    let mut c = Conn::h2(h.optional, cfg).await.unwrap();
    for _ in 0..3 {
        let a = c.get("/h2").await.unwrap();
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(header(&a.json(), "x-certgate-user"), ["alice"]);
    }
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_passes() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let h = Harness::sqlite().await;
    let stream = support::client::tls(h.optional, h.client_config(Some(&h.alice)))
        .await
        .unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async("wss://localhost/ws", stream)
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("hello bank")).await.unwrap();
    let echoed = ws.next().await.unwrap().unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), "hello bank");
    // Without a certificate the upgrade is refused before the app.
    let stream = support::client::tls(h.optional, h.client_config(None))
        .await
        .unwrap();
    assert!(
        tokio_tungstenite::client_async("wss://localhost/ws", stream)
            .await
            .is_err()
    );
    assert_eq!(h.upstream.hits(), 1);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_kb_header_is_refused_and_the_gateway_keeps_serving() {
    let h = Harness::sqlite().await;
    let big = "a".repeat(200 * 1024);
    let mut c = h.h1(Some(&h.alice)).await;
    match c.send("GET", "/", &[("x-big", &big)], "").await {
        Ok(a) => assert_eq!(a.status, 431),
        Err(e) => eprintln!("connection closed on the large header: {e}"),
    }
    let cfg = support::client::config(&h.server_ca.der, Some(&h.alice), &[b"h2"]);
    let mut c2 = Conn::h2(h.optional, cfg).await.unwrap();
    let refused = match c2.send("GET", "/", &[("x-big", &big)], "").await {
        Ok(a) => a.status.is_client_error(),
        Err(_) => true,
    };
    assert!(refused);
    let mut c = h.h1(Some(&h.alice)).await;
    assert_eq!(c.get("/after").await.unwrap().status, 200);
    assert_eq!(h.upstream.hits(), 1);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_1_is_refused() {
    let h = Harness::sqlite().await;
    let addr = h.optional.to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &addr,
                "-tls1_1",
                "-cipher",
                "DEFAULT@SECLEVEL=0",
            ])
            .stdin(std::process::Stdio::null())
            .output()
    })
    .await
    .unwrap()
    .expect("openssl is installed");
    assert!(!out.status.success(), "TLS 1.1 handshake succeeded");
    // The refusal came from the gateway (it saw the ClientHello), not from the client.
    assert!(h.metric("certgate_handshake_failures_total").await >= 1.0);
    let addr = h.optional.to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-sk", "--tls-max", "1.1", &format!("https://{addr}/")])
            .output()
    })
    .await
    .unwrap()
    .expect("curl is installed");
    assert!(!out.status.success());
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_with_a_client_certificate_gets_through() {
    let h = Harness::sqlite().await;
    let dir = h.dir.path();
    std::fs::write(dir.join("alice.pem"), &h.alice.cert_pem).unwrap();
    std::fs::write(dir.join("alice.key"), &h.alice.key_pem).unwrap();
    std::fs::write(dir.join("server-ca.pem"), &h.server_ca.pem).unwrap();
    let port = h.required.port();
    let d = dir.to_path_buf();
    let run = move |with_cert: bool| {
        let mut cmd = std::process::Command::new("curl");
        cmd.arg("-s")
            .arg("--cacert")
            .arg(d.join("server-ca.pem"))
            .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
            .args(["-H", "X_Certgate_User: mallory"]);
        if with_cert {
            cmd.arg("--cert")
                .arg(d.join("alice.pem"))
                .arg("--key")
                .arg(d.join("alice.key"));
        }
        cmd.arg(format!("https://localhost:{port}/curl"))
            .output()
            .unwrap()
    };
    let out = tokio::task::spawn_blocking({
        let run = run.clone();
        move || run(true)
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(header(&seen, "x-certgate-user"), ["alice"]);
    assert!(names(&seen).iter().all(|n| n != "x_certgate_user"));
    let out = tokio::task::spawn_blocking(move || run(false))
        .await
        .unwrap();
    assert!(
        !out.status.success(),
        "required listener let curl in without a certificate"
    );
    assert_eq!(h.upstream.hits(), 1);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_answer() {
    let h = Harness::sqlite().await;
    assert_eq!(h.admin_get("/healthz").await.0, 200);
    let (status, body) = h.admin_get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    let mut c = h.h1(Some(&h.alice)).await;
    c.get("/m").await.unwrap();
    c.get("/m").await.unwrap();
    let (status, text) = h.admin_get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        text.contains("certgate_requests_total{route=\"/\",status=\"200\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("certgate_upstream_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains("certgate_status_cache_lookups_total{result=\"hit\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("certgate_status_cache_lookups_total{result=\"miss\"} 1"),
        "{text}"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_and_host_must_agree() {
    let h = Harness::sqlite().await;
    let mut c = h.h1(Some(&h.alice)).await;
    let a = c
        .send("GET", "/", &[("host", "other.example")], "")
        .await
        .unwrap();
    assert_eq!(a.status, 421);
    assert_eq!(h.upstream.hits(), 0);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_change_on_disk_is_picked_up_without_restart() {
    let h = Harness::sqlite().await;
    let first = support::client::tls(h.optional, h.client_config(Some(&h.alice)))
        .await
        .unwrap();
    let first_cert = first.get_ref().1.peer_certificates().unwrap()[0].clone();
    let mut old = h.h1(Some(&h.alice)).await;
    assert_eq!(old.get("/before").await.unwrap().status, 200);

    // A bad key is refused and the running certificate kept.
    std::fs::write(h.dir.path().join("server.key"), "not a key").unwrap();
    let (cert_pem, key_pem, new_der) = h.server_ca.server();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let still = support::client::tls(h.optional, h.client_config(Some(&h.alice)))
        .await
        .unwrap();
    assert_eq!(
        still.get_ref().1.peer_certificates().unwrap()[0],
        first_cert
    );

    std::fs::write(h.dir.path().join("server.key"), key_pem).unwrap();
    std::fs::write(h.dir.path().join("server.pem"), cert_pem).unwrap();
    let mut seen_new = false;
    for _ in 0..100 {
        let s = support::client::tls(h.optional, h.client_config(Some(&h.alice)))
            .await
            .unwrap();
        if s.get_ref().1.peer_certificates().unwrap()[0] == new_der {
            seen_new = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(seen_new, "the new server certificate was never served");
    // The connection opened before the change still works.
    assert_eq!(old.get("/after").await.unwrap().status, 200);
    assert!(
        h.metric("certgate_reloads_total{outcome=\"refused\"}")
            .await
            >= 1.0
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_formats_and_a_verifiable_assertion() {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let h = Harness::sqlite().await;
    let mut c = h.h1(Some(&h.alice)).await;
    let seen = c.get("/extras/page").await.unwrap().json();
    let cc = header(&seen, "client-cert");
    assert_eq!(
        cc,
        [format!(":{}:", STANDARD.encode(&h.alice.der)).as_str()]
    );
    let xfcc = header(&seen, "x-forwarded-client-cert");
    assert!(
        xfcc[0].starts_with(&format!("Hash={};Cert=", h.alice.sha256)),
        "{xfcc:?}"
    );
    let jwt = header(&seen, "x-certgate-assertion")[0].to_string();

    let jwks = c.get(certgate::identity::JWKS_PATH).await.unwrap().json();
    let key = &jwks["keys"][0];
    let mut point = vec![4u8];
    point.extend(URL_SAFE_NO_PAD.decode(key["x"].as_str().unwrap()).unwrap());
    point.extend(URL_SAFE_NO_PAD.decode(key["y"].as_str().unwrap()).unwrap());
    let (signed, sig) = jwt.rsplit_once('.').unwrap();
    let pk = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
        &point,
    );
    pk.verify(signed.as_bytes(), &URL_SAFE_NO_PAD.decode(sig).unwrap())
        .expect("the assertion verifies with the published key");
    let claims: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(signed.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["cert_serial"], h.alice.serial.as_str());
    let ttl = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert!(ttl > 0 && ttl <= 60);
    // A tampered token does not verify.
    let mut bad = signed.as_bytes().to_vec();
    bad[10] ^= 1;
    assert!(
        pk.verify(&bad, &URL_SAFE_NO_PAD.decode(sig).unwrap())
            .is_err()
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_sends_exactly_the_formats_it_lists() {
    use base64::Engine;
    let h = Harness::sqlite().await;
    let client_cert = format!(
        ":{}:",
        base64::engine::general_purpose::STANDARD.encode(&h.alice.der)
    );
    // Names of formats the route does not send are removed too.
    let answer = h
        .h1(Some(&h.alice))
        .await
        .send(
            "GET",
            "/formats/page",
            &[
                ("X-Certgate-User", "mallory"),
                ("x_certgate_assertion", "e30.e30.x"),
                ("Client_Cert", ":AAAA:"),
                ("X-Forwarded-Client-Cert", "Hash=00;Subject=\"CN=mallory\""),
            ],
            "",
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    let seen = answer.json();
    let certgate_names: Vec<String> = names(&seen)
        .into_iter()
        .filter(|n| n.replace('_', "-").starts_with("x-certgate-"))
        .collect();
    assert!(certgate_names.is_empty(), "{seen}");
    assert_eq!(header(&seen, "client-cert"), [client_cert.as_str()]);
    let xfcc = header(&seen, "x-forwarded-client-cert");
    assert_eq!(xfcc.len(), 1, "{xfcc:?}");
    let elements = xfcc_consumer::consume(xfcc[0]);
    assert_eq!(elements.len(), 1, "{xfcc:?}");
    let e = &elements[0];
    let one = |k: &str| -> &str {
        assert_eq!(e[k].len(), 1, "{k}: {xfcc:?}");
        &e[k][0]
    };
    assert_eq!(one("By"), "spiffe://bank.example/certgate");
    assert_eq!(one("Hash"), h.alice.sha256);
    assert_eq!(
        xfcc_consumer::certificates(one("Cert")),
        std::slice::from_ref(&h.alice.der)
    );
    assert_eq!(xfcc_consumer::certificates(one("Chain"))[0], h.alice.der);
    assert_eq!(one("Subject"), "OU=c1,CN=alice");
    // The test certificate has no SANs, so no URI or DNS pair.
    assert!(!e.contains_key("URI") && !e.contains_key("DNS"), "{xfcc:?}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_form_for_another_id_is_refused() {
    let h = Harness::sqlite().await;
    let form = [
        ("content-type", "application/x-www-form-urlencoded"),
        ("accept", "text/html"),
    ];
    let mut c = h.h1(Some(&h.alice)).await;
    let a = c
        .send("POST", "/extras/login", &form, "loginId=bob&password=x")
        .await
        .unwrap();
    assert_eq!(a.status, 403);
    assert!(a.body.contains("not the one this PC"), "{}", a.body);
    let a = c
        .send("POST", "/extras/login", &form, "loginId=alice&loginId=bob")
        .await
        .unwrap();
    assert_eq!(a.status, 403);
    let json = [("content-type", "application/json")];
    let a = c
        .send("POST", "/extras/login", &json, "{\"loginId\":\"bob\"}")
        .await
        .unwrap();
    assert_eq!(a.status, 403);
    // A body the gateway cannot read is refused, not passed.
    let text = [("content-type", "text/plain")];
    let a = c
        .send("POST", "/extras/login", &text, "loginId=bob")
        .await
        .unwrap();
    assert_eq!(a.status, 415);
    assert_eq!(h.upstream.hits(), 0);
    // A refusal before the body was read closes the connection: open another.
    let mut c = h.h1(Some(&h.alice)).await;
    let a = c
        .send("POST", "/extras/login", &form, "loginId=alice&password=x")
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["body_len"], 24);
    // Bodies past the route's limit are refused before the app.
    let big = "a".repeat(200_000);
    // The gateway answers 413 as soon as it sees the length and closes the connection; a
    // client still writing the body may see the close first. Either way the app never
    // receives it.
    if let Ok(a) = c.send("POST", "/extras/upload", &[], &big).await {
        assert_eq!(a.status, 413);
    }
    assert_eq!(h.upstream.hits(), 1);
    assert!(
        h.metric("certgate_refusals_total{reason=\"login_id_mismatch\"}")
            .await
            >= 2.0
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_status_fails_closed() {
    let h = Harness::sqlite().await;
    // Make the store unreachable: the status of a certificate never seen cannot be known.
    h.source.set_down(true);
    let mut c = h.h1(Some(&h.alice)).await;
    let a = c.get("/").await.unwrap();
    assert_eq!(a.status, 503, "{}", a.body);
    assert_eq!(a.json()["error"], "status_unavailable");
    assert_eq!(h.admin_get("/readyz").await.0, 503);
    assert_eq!(h.upstream.hits(), 0);
    h.source.set_down(false);
    assert_eq!(c.get("/").await.unwrap().status, 200);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_route_cannot_be_used_to_climb_into_a_protected_one() {
    let h = Harness::sqlite().await;
    // Dot segments are resolved before routing: the climb lands on the certificate route
    // (401); what cannot be resolved without guessing is refused (400).
    for (path, want) in [
        ("/public/../ib/top", 401),
        ("/public/%2e%2e/ib/top", 401),
        ("/public/..%2Fib", 400),
        ("/public/..;/ib/top", 400),
    ] {
        let mut c = h.h1(None).await;
        let a = c.get(path).await.unwrap();
        assert_eq!(a.status, want, "{path}");
    }
    assert_eq!(h.upstream.hits(), 0);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_use_is_recorded_in_the_store() {
    let h = Harness::sqlite().await;
    let mut c = h.h1(Some(&h.alice)).await;
    assert_eq!(c.get("/").await.unwrap().status, 200);
    let mut recorded = None;
    for _ in 0..50 {
        recorded = h
            .store
            .certificate(&h.alice.serial)
            .await
            .unwrap()
            .unwrap()
            .first_used_at;
        if recorded.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recorded.is_some(), "first use was never recorded");
    h.shutdown().await;
}

/// Another instance sharing PostgreSQL revokes: LISTEN/NOTIFY reaches this gateway's cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_another_instance_stops_requests_here() {
    let Some(h) = Harness::postgres().await else {
        return;
    };
    let mut c = h.h1(Some(&h.alice)).await;
    assert_eq!(c.get("/").await.unwrap().status, 200);
    let other = certgate::store::Store::connect(&h.db.url).await.unwrap();
    other
        .revoke(&h.alice.serial, "keyCompromise", now())
        .await
        .unwrap();
    let mut refused = false;
    for _ in 0..100 {
        let a = c.get("/").await.unwrap();
        if a.status == 403 {
            assert_eq!(a.json()["error"], "revoked");
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "the other instance's revocation never arrived");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certgate_own_paths_come_first_with_the_verified_identity() {
    let h = Harness::sqlite().await;
    let spoof = [("x_certgate_user", "mallory")];
    let mut c = h.h1(Some(&h.alice)).await;
    let me = c
        .send("GET", "/certgate/me", &spoof, "")
        .await
        .unwrap()
        .json();
    assert_eq!(me["login"], "alice");
    assert_eq!(me["spoofed_header_seen"], false);
    let mut anon = h.h1(None).await;
    let page = anon.get("/certgate/obtain").await.unwrap().json();
    assert_eq!(page["login"], serde_json::Value::Null);
    assert_eq!(page["presented"], false);
    let mut anon = h.h1(None).await;
    assert_eq!(anon.get("/certgate/me").await.unwrap().status, 401);
    assert_eq!(h.upstream.hits(), 0, "local paths never reach the app");
    h.shutdown().await;
}

/// Polls a metric until `ok` holds, for up to ten seconds.
async fn metric_reaches(h: &Harness, name: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let mut last = 0.0;
    for _ in 0..100 {
        last = h.metric(name).await;
        if ok(last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} stayed at {last}");
}

/// Reads one HTTP/1.1 response (with Content-Length) from a raw stream: (status, body).
async fn read_response(
    s: &mut (impl tokio::io::AsyncRead + Unpin),
    buf: &mut Vec<u8>,
) -> (u16, String) {
    use tokio::io::AsyncReadExt;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let status: u16 = head[9..12].parse().unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            while buf.len() < end + 4 + len {
                let mut chunk = [0u8; 4096];
                let n = s.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed inside a response");
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
            buf.drain(..end + 4 + len);
            return (status, body);
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before a response");
        buf.extend_from_slice(&chunk[..n]);
    }
}

const PARKED: &str = "certgate_parked_connections";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_gives_its_buffers_back_and_serves_its_next_request() {
    let h = Harness::sqlite().await;
    let mut c = h.h1(Some(&h.alice)).await;
    assert_eq!(c.get("/before").await.unwrap().status, 200);
    metric_reaches(&h, PARKED, |v| v == 1.0).await;
    // The same connection, woken by the next request, with the identity as before.
    let a = c.get("/after").await.unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(header(&a.json(), "x-certgate-user"), ["alice"]);
    assert_eq!(h.metric("certgate_open_connections").await, 1.0);
    let build = format!(
        "certgate_build_info{{version=\"{}\",profile=\"debug\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(h.metric(&build).await, 1.0, "{build}");
    // Parked again once quiet, and again woken.
    metric_reaches(&h, PARKED, |v| v == 1.0).await;
    assert_eq!(c.get("/again").await.unwrap().status, 200);
    assert_eq!(h.upstream.hits(), 3);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_split_or_pipelined_around_a_parked_wait_are_answered_in_order() {
    use tokio::io::AsyncWriteExt;
    let h = Harness::sqlite().await;
    // No ALPN: the gateway tells HTTP/1.1 from HTTP/2 by the first bytes.
    let cfg = support::client::config(&h.server_ca.der, Some(&h.alice), &[]);
    let mut s = support::client::tls(h.optional, cfg).await.unwrap();
    let mut buf = Vec::new();
    let req = |path: &str| format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n");
    s.write_all(req("/one").as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut s, &mut buf).await.0, 200);
    metric_reaches(&h, PARKED, |v| v == 1.0).await;
    // Half a request head wakes the connection; the rest comes after a longer pause than
    // the parking delay, and the head is still read as one.
    let two = req("/two");
    let (first, rest) = two.split_at(10);
    s.write_all(first.as_bytes()).await.unwrap();
    metric_reaches(&h, PARKED, |v| v == 0.0).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.write_all(rest.as_bytes()).await.unwrap();
    let (status, body) = read_response(&mut s, &mut buf).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("/two"), "{body}");
    // Two pipelined requests in one write after another parked wait: both answered, in order.
    metric_reaches(&h, PARKED, |v| v == 1.0).await;
    s.write_all(format!("{}{}", req("/three"), req("/four")).as_bytes())
        .await
        .unwrap();
    let (s3, b3) = read_response(&mut s, &mut buf).await;
    let (s4, b4) = read_response(&mut s, &mut buf).await;
    assert_eq!((s3, s4), (200, 200));
    assert!(b3.contains("/three") && b4.contains("/four"), "{b3} {b4}");
    assert_eq!(h.upstream.hits(), 4);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_connection_is_closed_after_the_idle_limit_and_at_shutdown() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::sqlite().await;
    let req = b"GET /x HTTP/1.1\r\nhost: localhost\r\n\r\n";
    // The `required` listener allows 4 s between requests (header_read_timeout_secs).
    let mut idle = support::client::tls(h.required, h.client_config(Some(&h.alice)))
        .await
        .unwrap();
    idle.write_all(req).await.unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_response(&mut idle, &mut buf).await.0, 200);
    metric_reaches(&h, PARKED, |v| v >= 1.0).await;
    // Closed (with close_notify, so a clean end of stream) once the limit passes; the bound
    // only keeps a broken build from hanging.
    let mut rest = Vec::new();
    let end = tokio::time::timeout(Duration::from_secs(30), idle.read_to_end(&mut rest)).await;
    assert!(matches!(end, Ok(Ok(0))), "{end:?}");
    metric_reaches(&h, PARKED, |v| v == 0.0).await;

    // A parked connection does not hold up a shutdown: it is closed at once.
    let mut parked = support::client::tls(h.optional, h.client_config(Some(&h.alice)))
        .await
        .unwrap();
    parked.write_all(req).await.unwrap();
    assert_eq!(read_response(&mut parked, &mut buf).await.0, 200);
    metric_reaches(&h, PARKED, |v| v == 1.0).await;
    let closed = tokio::spawn(async move {
        let mut rest = Vec::new();
        parked.read_to_end(&mut rest).await
    });
    h.shutdown().await;
    let end = tokio::time::timeout(Duration::from_secs(30), closed).await;
    assert!(matches!(end, Ok(Ok(Ok(0)))), "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_without_alpn_is_told_by_its_preface() {
    let h = Harness::sqlite().await;
    let cfg = support::client::config(&h.server_ca.der, Some(&h.alice), &[]);
    let stream = support::client::tls(h.optional, cfg).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), None);
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("https://localhost/h2-no-alpn")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_a_large_answer_slowly_keeps_its_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::sqlite().await;
    // The `required` listener allows 4 s for a request head (header_read_timeout_secs): the
    // answer below takes longer than that to read, and the next request must still be
    // served, since the limit counts from when the answer was sent, not from when it began.
    let mut s = support::client::tls(h.required, h.client_config(Some(&h.alice)))
        .await
        .unwrap();
    const SIZE: usize = 32 << 20;
    // A small answer first, so the connection has answered a request when the large one
    // stalls (a connection becomes a candidate for parking only then).
    s.write_all(
        format!(
            "GET /warm HTTP/1.1\r\nhost: localhost\r\n\r\n\
             GET /big/{SIZE} HTTP/1.1\r\nhost: localhost\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_response(&mut s, &mut buf).await.0, 200);
    // Far more than the socket buffers hold: the gateway's writes wait on the client.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut head = std::mem::take(&mut buf);
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        head.push(s.read_u8().await.unwrap());
    }
    let end = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(!text.contains("connection: close"), "{text}");
    let mut body = vec![0u8; SIZE - (head.len() - end)];
    // Half now, then a pause past the head limit while the gateway waits to write the rest.
    let half = body.len() / 2;
    s.read_exact(&mut body[..half]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(4500)).await;
    s.read_exact(&mut body[half..]).await.unwrap();
    // The same connection serves the next request.
    s.write_all(b"GET /next HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let (status, body) = read_response(&mut s, &mut buf).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("/next"), "{body}");
    h.shutdown().await;
}

/// An app that closes each connection after one answer (as one whose keep-alive ran out
/// does) sends no `Connection: close`: the gateway notices the pooled connection is gone and
/// every request still gets through, each on a new connection, none answered 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_closing_each_connection_still_answers_every_request() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let h = Harness::sqlite().await;
    let app = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_addr = app.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let seen = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = app.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tcp
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nclosed")
                    .await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    let route = format!(
        "[[route]]\nprefix = \"/closing\"\nupstream = \"http://{app_addr}\"\nauth = \"public\"\n"
    );
    h.add_routes(&route, "/closing/x", |s| s == 200).await;
    let mut conn = h.h1(None).await;

    let before = connections.load(Ordering::SeqCst);
    for i in 0..20 {
        let a = conn.get(&format!("/closing/{i}")).await.unwrap();
        assert_eq!(
            (a.status.as_u16(), a.body.as_str()),
            (200, "closed"),
            "request {i}"
        );
        // As between a person's clicks: the pooled connection's task reads the app's close
        // before the next request (one written into a closing socket fails, as anywhere).
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(connections.load(Ordering::SeqCst) - before, 20);
    h.shutdown().await;
}

/// An https app is reached only after its certificate checks out against `ca_file`; with a
/// wrong trust anchor, or without the client certificate an mTLS app requires, the answer
/// is 502, counted by reason, and the app never sees a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_apps_are_verified_and_mtls_apps_get_the_gateways_certificate() {
    use support::tls_app::TlsApp;
    let h = Harness::sqlite().await;
    let app_ca = TestCa::new("Bank App CA");
    let other_ca = TestCa::new("Some Other CA");
    let gateway_ca = TestCa::new("Bank Gateway Client CA");
    let (cert, key, _) = app_ca.server();
    let app = TlsApp::start(&cert, &key, None).await;
    let mtls_app = TlsApp::start(&cert, &key, Some(&gateway_ca.der)).await;
    let gw = gateway_ca.client("certgate-gateway", "ops", now() - 60, now() + DAY);
    let dir = h.dir.path();
    std::fs::write(dir.join("app-ca.pem"), &app_ca.pem).unwrap();
    std::fs::write(dir.join("other-ca.pem"), &other_ca.pem).unwrap();
    std::fs::write(dir.join("gw.pem"), &gw.cert_pem).unwrap();
    std::fs::write(dir.join("gw.key"), &gw.key_pem).unwrap();
    let routes = format!(
        r#"
[[route]]
prefix = "/tls"
upstream = "https://localhost:{port}"
auth = "public"
[route.upstream_tls]
ca_file = "app-ca.pem"

[[route]]
prefix = "/tls-wrong-ca"
upstream = "https://localhost:{port}"
auth = "public"
[route.upstream_tls]
ca_file = "other-ca.pem"

[[route]]
prefix = "/tls-wrong-name"
upstream = "https://127.0.0.1:{port}"
auth = "public"
[route.upstream_tls]
ca_file = "app-ca.pem"
server_name = "app.bank.example"

[[route]]
prefix = "/mtls"
upstream = "https://127.0.0.1:{mport}"
auth = "public"
[route.upstream_tls]
ca_file = "app-ca.pem"
client_cert = "gw.pem"
client_key = "gw.key"

[[route]]
prefix = "/mtls-no-cert"
upstream = "https://127.0.0.1:{mport}"
auth = "public"
[route.upstream_tls]
ca_file = "app-ca.pem"

[[route]]
prefix = "/pair"
upstream = ["https://127.0.0.1:{mport}", "https://127.0.0.1:{port}"]
auth = "public"
[route.upstream_tls]
ca_file = "app-ca.pem"
server_name = "localhost"
"#,
        port = app.addr.port(),
        mport = mtls_app.addr.port()
    );
    h.add_routes(&routes, "/tls/x", |s| s == 200).await;
    let mut conn = h.h1(None).await;

    let ok = conn.get("/tls/a").await.unwrap();
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body, "tls app, client certificate: false");
    let seen = app.requests();
    for path in ["/tls-wrong-ca/a", "/tls-wrong-name/a"] {
        let a = conn.get(path).await.unwrap();
        assert_eq!(a.status, 502, "{path}");
    }
    assert_eq!(
        app.requests(),
        seen,
        "a request reached the app over an unverified TLS hop"
    );
    // The app counts a refused handshake when it reads the gateway's alert, which may come
    // after the gateway has answered 502.
    let counted = tokio::time::timeout(Duration::from_secs(10), async {
        while app.failed_handshakes() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        counted.is_ok(),
        "{} failed handshakes",
        app.failed_handshakes()
    );
    let tls_failures = h
        .metric("certgate_upstream_failures_total{route=\"/tls-wrong-ca\",reason=\"tls\"}")
        .await;
    assert!(tls_failures >= 1.0, "{tls_failures}");

    let m = conn.get("/mtls/a").await.unwrap();
    assert_eq!(
        (m.status.as_u16(), m.body.as_str()),
        (200, "tls app, client certificate: true")
    );
    let seen = mtls_app.requests();
    assert_eq!(conn.get("/mtls-no-cert/a").await.unwrap().status, 502);
    assert_eq!(mtls_app.requests(), seen);
    // Under TLS 1.3 that refusal arrives as an alert after the request was written: it is
    // still a TLS failure, not a failed exchange.
    let refused = h
        .metric("certgate_upstream_failures_total{route=\"/mtls-no-cert\",reason=\"tls\"}")
        .await;
    assert_eq!(refused, 1.0);

    // Two endpoints, the first of which refuses the gateway at TLS: GETs go on to the other
    // one, and once the refusing endpoint is left out no POST is lost on it.
    for _ in 0..4 {
        let a = conn.get("/pair/g").await.unwrap();
        assert_eq!(
            (a.status.as_u16(), a.body.as_str()),
            (200, "tls app, client certificate: false")
        );
    }
    for i in 0..6 {
        let a = conn
            .send("POST", "/pair/p", &[], "amount=100")
            .await
            .unwrap();
        assert_eq!(a.status, 200, "POST {i}: {}", a.body);
    }
    assert_eq!(mtls_app.requests(), seen);
    // The refusing endpoint is left out; the other one shows as up (so the label read is
    // the right one).
    for (port, up) in [(mtls_app.addr.port(), 0.0), (app.addr.port(), 1.0)] {
        let name = format!(
            "certgate_upstream_endpoint_up{{route=\"/pair\",endpoint=\"127.0.0.1:{port}\"}}"
        );
        assert_eq!(h.metric(&name).await, up, "{name}");
    }
    h.shutdown().await;
}

/// `Upgrade: h2c` never reaches the app: the request goes on as a plain HTTP/1.1 request,
/// its Upgrade, Connection and HTTP2-Settings removed, and no tunnel is opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_upgrade_is_never_tunnelled() {
    let h = Harness::sqlite().await;
    let mut conn = h.h1(None).await;
    let a = conn
        .send(
            "GET",
            "/public/h2c",
            &[
                ("upgrade", "h2c"),
                ("connection", "Upgrade, HTTP2-Settings"),
                ("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"),
            ],
            "",
        )
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    let seen = a.json();
    let names: Vec<&str> = seen["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_str().unwrap())
        .collect();
    for hop in ["upgrade", "connection", "http2-settings"] {
        assert!(!names.contains(&hop), "the app got {hop}: {names:?}");
    }
    assert_eq!(seen["path"], "/public/h2c");
    // The connection still speaks HTTP/1.1 with the gateway.
    assert_eq!(conn.get("/public/after").await.unwrap().status, 200);
    h.shutdown().await;
}

/// The `certgate_upstream_endpoint_up` sample of one endpoint.
fn endpoint_up(route: &str, app: &support::named_app::NamedApp) -> String {
    format!(
        "certgate_upstream_endpoint_up{{route=\"{route}\",endpoint=\"{}\"}}",
        app.addr
    )
}

/// Two endpoints share a route's requests; when one dies mid-run (listener and open
/// connections closed), every GET is still answered 200 by the other, the dead one is left
/// out and shown down in the metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_endpoints_share_the_load_and_one_dying_loses_no_get() {
    use support::named_app::NamedApp;

    let h = Harness::sqlite().await;
    let a = NamedApp::start("a").await;
    let mut b = NamedApp::start("b").await;
    let routes = format!(
        "[[route]]\nprefix = \"/lb\"\nupstream = [\"{}\", \"{}\"]\nauth = \"public\"\n",
        a.url(),
        b.url()
    );
    h.add_routes(&routes, "/lb/probe", |s| s == 200).await;
    let mut conn = h.h1(None).await;

    let (a0, b0) = (a.hits(), b.hits());
    for i in 0..20 {
        let r = conn.get(&format!("/lb/{i}")).await.unwrap();
        assert_eq!(r.status, 200, "request {i}");
    }
    let (a1, b1) = (a.hits() - a0, b.hits() - b0);
    assert_eq!(a1 + b1, 20);
    assert!(a1 >= 5 && b1 >= 5, "round-robin spread: a {a1}, b {b1}");

    b.stop().await;
    let before_a = a.hits();
    for i in 0..20 {
        let r = conn.get(&format!("/lb/after/{i}")).await.unwrap();
        assert_eq!(
            (r.status.as_u16(), r.body.as_str()),
            (200, "a"),
            "request {i}"
        );
    }
    assert_eq!(a.hits() - before_a, 20);
    metric_reaches(&h, &endpoint_up("/lb", &b), |v| v == 0.0).await;
    assert_eq!(h.metric(&endpoint_up("/lb", &a)).await, 1.0);
    h.shutdown().await;
}

/// With `[route.health]`, an endpoint that stops is left out by its check, and brought back
/// by it once it listens again on the same port (long before `eject_secs` ran out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_check_brings_a_restarted_endpoint_back() {
    use support::named_app::NamedApp;

    let h = Harness::sqlite().await;
    let a = NamedApp::start("a").await;
    let mut b = NamedApp::start("b").await;
    let routes = format!(
        "[[route]]\nprefix = \"/hc\"\nupstream = [\"{}\", \"{}\"]\nauth = \"public\"\n\
         eject_secs = 3600\n[route.health]\npath = \"/health\"\ninterval_secs = 1\n",
        a.url(),
        b.url()
    );
    h.add_routes(&routes, "/hc/probe", |s| s == 200).await;

    b.stop().await;
    metric_reaches(&h, &endpoint_up("/hc", &b), |v| v == 0.0).await;
    let mut conn = h.h1(None).await;
    for i in 0..6 {
        let r = conn.get(&format!("/hc/down/{i}")).await.unwrap();
        assert_eq!(
            (r.status.as_u16(), r.body.as_str()),
            (200, "a"),
            "request {i}"
        );
    }

    b.restart().await;
    metric_reaches(&h, &endpoint_up("/hc", &b), |v| v == 1.0).await;
    let before_b = b.hits();
    for i in 0..6 {
        let r = conn.get(&format!("/hc/up/{i}")).await.unwrap();
        assert_eq!(r.status, 200, "request {i}");
    }
    assert!(
        b.hits() > before_b,
        "the restarted endpoint took no request"
    );
    h.shutdown().await;
}

/// When no endpoint of a route can be connected to, the answer is the gateway's 502 page,
/// counted as connect failures, not a wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_down_is_a_502_page() {
    let h = Harness::sqlite().await;
    // Two ports nobody listens on.
    let mut urls = Vec::new();
    for _ in 0..2 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        urls.push(format!("\"http://{}\"", l.local_addr().unwrap()));
    }
    let routes = format!(
        "[[route]]\nprefix = \"/down\"\nupstream = [{}]\nauth = \"public\"\n",
        urls.join(", ")
    );
    h.add_routes(&routes, "/down/probe", |s| s == 502).await;
    let mut conn = h.h1(None).await;
    for i in 0..3 {
        let r = tokio::time::timeout(Duration::from_secs(30), conn.get(&format!("/down/{i}")))
            .await
            .expect("a request to a route with every endpoint down hung")
            .unwrap();
        assert_eq!(r.status, 502, "request {i}");
        assert!(r.body.contains("unavailable"), "{}", r.body);
    }
    let connect = h
        .metric("certgate_upstream_failures_total{route=\"/down\",reason=\"connect\"}")
        .await;
    assert!(connect >= 6.0, "{connect}");
    h.shutdown().await;
}

/// An endpoint that reads each request and closes without answering: a written GET goes
/// again to the other endpoint, a written POST never does (its body was streamed once), so
/// the app behind it sees it once at most and the client gets the 502 page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sent_get_is_retried_elsewhere_and_a_sent_post_never() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use support::named_app::NamedApp;
    use tokio::io::AsyncReadExt;

    let h = Harness::sqlite().await;
    let swallow = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let swallow_addr = swallow.local_addr().unwrap();
    let swallowed = Arc::new(AtomicUsize::new(0));
    let seen = swallowed.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = swallow.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    if let Some(end) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&req[..end]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if req.len() >= end + 4 + len {
                            break;
                        }
                    }
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                seen.fetch_add(1, Ordering::SeqCst);
                // Closed with no answer.
            });
        }
    });
    let b = NamedApp::start("b").await;
    let routes = format!(
        "[[route]]\nprefix = \"/rt\"\nupstream = [\"http://{swallow_addr}\", \"{}\"]\n\
         auth = \"public\"\n",
        b.url()
    );
    h.add_routes(&routes, "/rt/probe", |s| s == 200).await;
    let mut conn = h.h1(None).await;

    for i in 0..6 {
        let r = conn.get(&format!("/rt/get/{i}")).await.unwrap();
        assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "b"), "GET {i}");
    }
    let (swallowed_before, b_before) = (swallowed.load(Ordering::SeqCst), b.hits());
    let mut refused = 0;
    for i in 0..6 {
        let r = h
            .h1(None)
            .await
            .send("POST", &format!("/rt/post/{i}"), &[], "amount=100")
            .await
            .unwrap();
        match r.status.as_u16() {
            200 => assert_eq!(r.body, "b"),
            502 => refused += 1,
            s => panic!("POST {i}: {s}"),
        }
    }
    assert!(
        refused >= 1,
        "no POST went to the endpoint that never answers"
    );
    // Each refused POST was sent exactly once, to the endpoint that swallowed it.
    assert_eq!(swallowed.load(Ordering::SeqCst) - swallowed_before, refused);
    assert_eq!(b.hits() - b_before, 6 - refused);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_is_kept_only_from_a_trusted_listener_and_only_when_plain() {
    let h = Harness::sqlite().await;
    let id_of = |a: &support::client::Answer| {
        let seen = a.json();
        let to_app: Vec<String> = header(&seen, "x-request-id")
            .into_iter()
            .map(str::to_owned)
            .collect();
        assert_eq!(to_app.len(), 1, "{seen}");
        assert_eq!(a.headers.get_all("x-request-id").iter().count(), 1);
        assert_eq!(
            a.headers["x-request-id"],
            to_app[0].as_str(),
            "the same both ways"
        );
        to_app[0].clone()
    };
    // `trust_request_id = true` (the single-connection listener): a plain token is kept.
    let mut trusted = Conn::h1(h.single, h.client_config(Some(&h.alice)))
        .await
        .unwrap();
    let own = [("X-Request-Id", "fe-2026-0001")];
    let a = trusted.send("GET", "/ib", &own, "").await.unwrap();
    assert_eq!(id_of(&a), "fe-2026-0001");
    for sent in [
        &[("X-Request-Id", "has space")][..],
        &[("X-Request-Id", "{\"level\":\"ERROR\"}")][..],
        &[("X-Request-Id", "one"), ("X-Request-Id", "two")][..],
    ] {
        let a = trusted.send("GET", "/ib", sent, "").await.unwrap();
        let id = id_of(&a);
        assert!(sent.iter().all(|(_, v)| *v != id), "{sent:?} kept");
    }
    drop(trusted);
    // Elsewhere the client's own is replaced, on HTTP/1.1 and HTTP/2, and each request
    // gets its own.
    let mut h1 = h.h1(Some(&h.alice)).await;
    let first = id_of(&h1.send("GET", "/ib", &own, "").await.unwrap());
    assert_ne!(first, "fe-2026-0001");
    let h2_cfg = support::client::config(&h.server_ca.der, Some(&h.alice), &[b"h2"]);
    let mut h2 = Conn::h2(h.optional, h2_cfg).await.unwrap();
    let second = id_of(&h2.send("GET", "/ib", &own, "").await.unwrap());
    assert_ne!(second, "fe-2026-0001");
    assert_ne!(first, second);
    // A refusal carries one as well.
    let mut anonymous = h.h1(None).await;
    let refused = anonymous.get("/ib").await.unwrap();
    assert!(refused.status.is_client_error(), "{}", refused.status);
    assert_eq!(refused.headers.get_all("x-request-id").iter().count(), 1);
}
