//! Tunnels (WebSocket over HTTP/1.1 Upgrade) through the gateway over real TLS to a real
//! echo app: the idle and absolute timeouts, the connection permit a tunnel keeps, the
//! live status check closing a tunnel whose certificate is revoked, superseded past its
//! overlap or expired, or whose user or contract is disabled, shutdown, and the tunnel
//! metrics.

#[path = "support/db.rs"]
#[allow(dead_code)]
mod db;
#[path = "support/gateway/mod.rs"]
#[allow(dead_code)]
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use support::Harness;
use support::pki::ClientCert;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

type Ws = WebSocketStream<TlsStream<tokio::net::TcpStream>>;

/// Generous: each close is expected within about a second; this only bounds a hang.
const DEADLINE: Duration = Duration::from_secs(15);

async fn open(h: &Harness, addr: SocketAddr, path: &str) -> Ws {
    open_as(h, &h.alice, addr, path).await
}

async fn open_as(h: &Harness, cert: &ClientCert, addr: SocketAddr, path: &str) -> Ws {
    let stream = support::client::tls(addr, h.client_config(Some(cert)))
        .await
        .unwrap();
    let (ws, resp) = tokio_tungstenite::client_async(format!("wss://localhost{path}"), stream)
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    ws
}

/// Sends `text` and reads its echo.
async fn echo(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
    let back = tokio::time::timeout(DEADLINE, ws.next())
        .await
        .expect("no echo")
        .expect("tunnel ended")
        .expect("tunnel failed");
    assert_eq!(back.into_text().unwrap().as_str(), text);
}

/// Waits until the tunnel ends as the client sees it: end of stream, an error, or a close
/// frame. Panics when it is still open at the deadline.
async fn ended(ws: &mut Ws) {
    let waited = tokio::time::timeout(DEADLINE, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(waited.is_ok(), "the tunnel is still open");
}

/// Waits until the metric sample starting with `prefix` reaches `want`.
async fn metric_reaches(h: &Harness, prefix: &str, want: f64) {
    let reached = tokio::time::timeout(DEADLINE, async {
        loop {
            if h.metric(prefix).await == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        reached.is_ok(),
        "{prefix} is {} not {want}",
        h.metric(prefix).await
    );
}

/// The audit entry a staff member's change is stored with.
fn staff_audit(action: &str, subject: &str) -> certgate::store::NewAudit {
    certgate::store::NewAudit {
        at: support::now(),
        actor: "staff:test".into(),
        action: action.into(),
        subject: subject.into(),
        outcome: "ok".into(),
        detail: serde_json::json!({}),
    }
}

fn closed(route: &str, reason: &str) -> String {
    format!("certgate_tunnels_closed_total{{route=\"{route}\",reason=\"{reason}\"}}")
}

fn open_gauge(route: &str) -> String {
    format!("certgate_tunnels_open{{route=\"{route}\"}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_tunnel_is_closed_and_a_busy_one_is_not() {
    let h = Harness::sqlite().await;
    let mut ws = open(&h, h.optional, "/ws-idle/feed").await;
    // Traffic more often than the route's 1 s idle limit keeps it open past that limit.
    for i in 0..8 {
        echo(&mut ws, &format!("tick {i}")).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(h.metric(&open_gauge("/ws-idle")).await, 1.0);
    ended(&mut ws).await;
    metric_reaches(&h, &closed("/ws-idle", "idle"), 1.0).await;
    metric_reaches(&h, &open_gauge("/ws-idle"), 0.0).await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_tunnel_is_closed_at_its_maximum_age() {
    let h = Harness::sqlite().await;
    let mut ws = open(&h, h.optional, "/ws-max/feed").await;
    let kept_busy = tokio::time::timeout(DEADLINE, async {
        let mut i = 0;
        loop {
            if ws.send(Message::text(format!("tick {i}"))).await.is_err() {
                return;
            }
            match ws.next().await {
                Some(Ok(Message::Text(_))) => {}
                _ => return,
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(kept_busy.is_ok(), "the tunnel outlived its maximum age");
    metric_reaches(&h, &closed("/ws-max", "max_age"), 1.0).await;
    assert_eq!(h.metric(&closed("/ws-max", "idle")).await, 0.0);
    h.shutdown().await;
}

/// On a listener with `max_connections = 1`, an open tunnel holds the one permit: another
/// client is answered 503 until the tunnel closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_keeps_its_connection_permit() {
    let h = Harness::sqlite().await;
    let mut ws = open(&h, h.single, "/ws").await;
    echo(&mut ws, "holding the slot").await;
    let cfg = h.client_config(Some(&h.alice));
    let mut other = support::client::Conn::h1(h.single, cfg.clone())
        .await
        .unwrap();
    assert_eq!(other.get("/page").await.unwrap().status, 503);
    echo(&mut ws, "still here").await;

    ws.close(None).await.unwrap();
    ended(&mut ws).await;
    // The close handshake is done; the client's connection goes too.
    drop(ws);
    let served = tokio::time::timeout(DEADLINE, async {
        loop {
            if let Ok(mut c) = support::client::Conn::h1(h.single, cfg.clone()).await
                && let Ok(a) = c.get("/page").await
                && a.status == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(served.is_ok(), "the permit was not given back");
    metric_reaches(&h, &open_gauge("/"), 0.0).await;
    let by_a_side = h.metric(&closed("/", "client_closed")).await
        + h.metric(&closed("/", "upstream_closed")).await;
    assert_eq!(by_a_side, 1.0);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_the_certificate_closes_its_tunnel() {
    let h = Harness::sqlite().await;
    let mut ws = open(&h, h.optional, "/ws").await;
    echo(&mut ws, "before").await;
    assert_eq!(h.metric(&open_gauge("/")).await, 1.0);
    h.store
        .revoke(&h.alice.serial, "keyCompromise", support::now())
        .await
        .unwrap();
    ended(&mut ws).await;
    metric_reaches(&h, &closed("/", "revoked"), 1.0).await;
    metric_reaches(&h, &open_gauge("/"), 0.0).await;
    // And no new tunnel opens with it.
    let stream = support::client::tls(h.optional, h.client_config(Some(&h.alice)))
        .await
        .unwrap();
    assert!(
        tokio_tungstenite::client_async("wss://localhost/ws", stream)
            .await
            .is_err()
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_the_user_closes_the_tunnel() {
    let h = Harness::sqlite().await;
    let mut ws = open(&h, h.optional, "/ws").await;
    echo(&mut ws, "before").await;
    let audit = staff_audit("user.disable", "alice");
    assert!(
        h.store
            .set_user_enabled_audited("alice", false, &audit)
            .await
            .unwrap()
    );
    ended(&mut ws).await;
    metric_reaches(&h, &closed("/", "user_disabled"), 1.0).await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_the_contract_closes_the_tunnel() {
    let h = Harness::sqlite().await;
    let mut ws = open(&h, h.optional, "/ws").await;
    echo(&mut ws, "before").await;
    let audit = staff_audit("contract.disable", "c1");
    assert!(
        h.store
            .set_contract_enabled_audited("c1", false, &audit)
            .await
            .unwrap()
    );
    ended(&mut ws).await;
    metric_reaches(&h, &closed("/", "contract_disabled"), 1.0).await;
    h.shutdown().await;
}

/// A renewal announces the change, but the renewed certificate still passes during the
/// overlap (`[renewal] overlap_days`, 7 by default): its tunnel stays open, and is closed
/// when the overlap ends, with nothing announced then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_keeps_its_tunnel_until_the_overlap_ends() {
    const OVERLAP: i64 = 7 * 86_400;
    let h = Harness::sqlite().await;
    let mut ws = open(&h, h.optional, "/ws").await;
    echo(&mut ws, "before").await;
    // The renewal is dated so that the overlap ends three seconds from now.
    let t = support::now();
    let renewed_at = t - OVERLAP + 3;
    let new = h.ca.client("alice", "c1", renewed_at, t + 30 * 86_400);
    let record = certgate::store::CertRecord {
        serial: new.serial.clone(),
        login: "alice".into(),
        contract_id: "c1".into(),
        ca_id: h.ca_id,
        der: new.der.to_vec(),
        sha256: new.sha256.clone(),
        spki_sha256: format!("spki-{}", new.serial),
        not_before: new.not_before,
        not_after: new.not_after,
        status: certgate::store::CertStatus::Current,
        superseded_at: None,
        revoked_at: None,
        revocation_reason: None,
        first_used_at: None,
        created_at: renewed_at,
    };
    h.store
        .complete_renewal(&h.alice.serial, &record, renewed_at)
        .await
        .unwrap();
    assert_eq!(
        h.store
            .certificate(&h.alice.serial)
            .await
            .unwrap()
            .unwrap()
            .status,
        certgate::store::CertStatus::Superseded
    );
    // Inside the overlap: the announced change left the tunnel open.
    echo(&mut ws, "during the overlap").await;
    ended(&mut ws).await;
    metric_reaches(&h, &closed("/", "superseded"), 1.0).await;
    h.shutdown().await;
}

/// Expiry changes no row: the tunnel re-checks its certificate at the moment the rule's
/// answer changes, without any announcement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_is_closed_when_its_certificate_expires() {
    let h = Harness::sqlite().await;
    h.add_user("erin", certgate::store::Role::General).await;
    let t = support::now();
    let erin = h.ca.client("erin", "c1", t - 60, t + 5);
    h.register(&erin, "erin").await;
    let mut ws = open_as(&h, &erin, h.optional, "/ws").await;
    echo(&mut ws, "before expiry").await;
    ended(&mut ws).await;
    metric_reaches(&h, &closed("/", "expired"), 1.0).await;
    h.shutdown().await;
}

/// At shutdown an open tunnel is closed (and waited for), not left to the end of the
/// process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_open_tunnels() {
    let h = Harness::sqlite().await;
    let mut ws = open(&h, h.optional, "/ws").await;
    echo(&mut ws, "before").await;
    let stopping = tokio::spawn(h.shutdown());
    ended(&mut ws).await;
    tokio::time::timeout(DEADLINE, stopping)
        .await
        .expect("the drain waited past the deadline")
        .unwrap();
}
