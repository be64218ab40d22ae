//! A WebSocket through a running `certgate serve` process, opened with a certificate the
//! SoftHSM2 CA issued, is closed once staff revoke that certificate from the command line:
//! the gateway learns of it from the store's change feed (SQLite's change log, PostgreSQL's
//! NOTIFY) and closes the tunnel; on PostgreSQL a tunnel through a second instance too.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::faults::eventually;
use crate::fixture::{Db, Fixture, Running, sh};

type Ws = WebSocketStream<TlsStream<tokio::net::TcpStream>>;

/// Generous: a revoked tunnel is expected to close within about a second.
const DEADLINE: Duration = Duration::from_secs(20);

/// A WebSocket echo app on a free loopback port.
async fn echo_app() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// The route to the echo app, added beside the fixture's own.
fn ws_route(port: u16) -> String {
    format!(
        "\n[[route]]\nprefix = \"/ws\"\nupstream = \"http://127.0.0.1:{port}\"\nauth = \"certificate\"\n"
    )
}

fn client_config(ca: &Path, cert: &Path, key: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(certgate::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    Arc::new(cfg)
}

async fn open(port: u16, cfg: Arc<rustls::ClientConfig>) -> Ws {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (ws, resp) = tokio_tungstenite::client_async("wss://localhost/ws/feed", tls)
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    ws
}

async fn echo(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
    let back = tokio::time::timeout(DEADLINE, ws.next())
        .await
        .expect("no echo")
        .expect("tunnel ended")
        .expect("tunnel failed");
    assert_eq!(back.into_text().unwrap().as_str(), text);
}

/// True when the tunnel ended (end of stream, error or close frame) before the deadline.
async fn ends(ws: &mut Ws) -> bool {
    tokio::time::timeout(DEADLINE, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .is_ok()
}

fn serial_of(cert: &Path) -> String {
    let out = sh(Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(cert));
    out.trim().trim_start_matches("serial=").to_owned()
}

fn revoking_closes_open_tunnels(db: Db) {
    let Some(fx) = Fixture::new(db) else {
        return;
    };
    fx.init_with_users();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(echo_app());
    let a = fx.serve_with(&ws_route(app));
    let b: Option<Running> =
        (db == Db::Postgres).then(|| fx.serve_another_with("instance-b.toml", &ws_route(app)));
    let (alice, alice_key) = fx.obtain("alice");
    let (carol, carol_key) = fx.obtain("carol");
    let alice_cfg = client_config(&a.ca, &alice, &alice_key);
    let carol_cfg = client_config(&a.ca, &carol, &carol_key);

    let mut on_a = rt.block_on(open(a.https, alice_cfg.clone()));
    let mut bystander = rt.block_on(open(a.https, carol_cfg));
    let mut on_b = b.as_ref().map(|b| rt.block_on(open(b.https, alice_cfg)));
    rt.block_on(echo(&mut on_a, "before"));
    if let Some(ws) = on_b.as_mut() {
        rt.block_on(echo(ws, "before, on b"));
    }

    fx.ok(&[
        "cert",
        "revoke",
        &serial_of(&alice),
        "--reason",
        "keyCompromise",
    ]);
    assert!(
        rt.block_on(ends(&mut on_a)),
        "the tunnel outlived its revoked certificate:\n{}",
        a.log()
    );
    if let (Some(ws), Some(b)) = (on_b.as_mut(), &b) {
        assert!(
            rt.block_on(ends(ws)),
            "instance B kept the tunnel open:\n{}",
            b.log()
        );
        // Closed by B for the certificate's sake (the line follows the close).
        eventually(10, "instance B logs tunnel_closed", || {
            b.log().contains("tunnel_closed")
        });
    }
    // Another user's tunnel is untouched.
    rt.block_on(echo(&mut bystander, "still open"));
    eventually(
        10,
        "instance A logs tunnel_closed for the revocation",
        || {
            a.log()
                .lines()
                .any(|l| l.contains("tunnel_closed") && l.contains("revoked"))
        },
    );
}

#[test]
fn revoking_closes_open_tunnels_sqlite() {
    revoking_closes_open_tunnels(Db::Sqlite);
}

/// Two instances on one PostgreSQL database: the tunnel through each is closed.
#[test]
fn revoking_closes_open_tunnels_on_every_instance_postgres() {
    revoking_closes_open_tunnels(Db::Postgres);
}
