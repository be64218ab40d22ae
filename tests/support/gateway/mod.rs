//! The gateway under test: a real store (SQLite file, or PostgreSQL when reachable), a test
//! PKI, the echo upstream, the gateway itself in-process on 127.0.0.1 port 0, and its
//! configuration written to a temp folder.

pub mod client;
pub mod named_app;
pub mod pki;
pub mod tls_app;
pub mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use certgate::app::{Server, ServerDeps};
use certgate::clock::{DAY, SystemClock};
use certgate::config::RouteAuth;
use certgate::http_common::body::ProxyBody;
use certgate::proxy::{LocalContext, LocalService};
use certgate::store::{CertRecord, CertStatus, Contract, Role, Store, User};
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::oneshot;

use certgate::status::StatusSource;
use certgate::store::{CertChange, CertStatusView, StoreError};
use futures_util::future::BoxFuture;
use rustls_pki_types::CertificateDer;

use super::db::TestDb;
use client::Conn;
use pki::{ClientCert, TestCa};
use upstream::Upstream;

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub db: TestDb,
    pub store: Store,
    pub ca_id: i64,
    pub ca: TestCa,
    pub server_ca: TestCa,
    pub upstream: Upstream,
    /// Listener 0: `client_auth = optional`; listener 1: `required`.
    pub optional: SocketAddr,
    pub required: SocketAddr,
    /// Listener 2: PROXY protocol from 127.0.0.1 or ::1; listener 3: PROXY protocol with
    /// only 10.0.0.0/8 trusted (so the tests' own connections are not).
    pub proxied: SocketAddr,
    pub proxied_untrusted: SocketAddr,
    /// Listener 4: `max_connections = 1`, so a test can see what holds the one permit.
    pub single: SocketAddr,
    pub admin: SocketAddr,
    pub alice: ClientCert,
    /// The store as the gateway sees it, with a switch to make it unreachable.
    pub source: Arc<Switchable>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl Harness {
    /// A gateway over SQLite.
    pub async fn sqlite() -> Self {
        Self::start(TestDb::sqlite()).await
    }

    /// A gateway over a fresh PostgreSQL database, or `None` when unreachable (not CI).
    pub async fn postgres() -> Option<Self> {
        Some(Self::start(TestDb::postgres().await?).await)
    }

    async fn start(db: TestDb) -> Self {
        certgate::tls::install_default_provider();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&db.url).await.unwrap();
        store.migrate().await.unwrap();
        let ca = TestCa::new("certgate Test Customer CA");
        let server_ca = TestCa::new("certgate Test Server CA");
        let t = now();
        let ca_id = store
            .insert_ca("test-ca", &ca.der, "", true, t)
            .await
            .unwrap()
            .id;
        store
            .insert_contract(&Contract {
                id: "c1".into(),
                name: "Example Trading KK".into(),
                enabled: true,
                created_at: t,
            })
            .await
            .unwrap();
        let (cert_pem, key_pem, _) = server_ca.server();
        std::fs::write(dir.path().join("server.pem"), cert_pem).unwrap();
        std::fs::write(dir.path().join("server.key"), key_pem).unwrap();
        let upstream = Upstream::start().await;
        let config_path = dir.path().join("certgate.toml");
        std::fs::write(&config_path, config_text(&upstream.url())).unwrap();

        let mut h = Self {
            alice: ca.client("alice", "c1", t - 60, t + 365 * DAY),
            dir,
            config_path: config_path.clone(),
            db,
            store: store.clone(),
            ca_id,
            ca,
            server_ca,
            upstream,
            optional: "0.0.0.0:0".parse().unwrap(),
            required: "0.0.0.0:0".parse().unwrap(),
            proxied: "0.0.0.0:0".parse().unwrap(),
            proxied_untrusted: "0.0.0.0:0".parse().unwrap(),
            single: "0.0.0.0:0".parse().unwrap(),
            admin: "0.0.0.0:0".parse().unwrap(),
            stop: None,
            task: None,
            source: Arc::new(Switchable {
                store: store.clone(),
                down: AtomicBool::new(false),
            }),
        };
        h.add_user("alice", Role::General).await;
        let alice = h.alice.clone();
        h.register(&alice, "alice").await;

        let mut deps = ServerDeps::new(
            config_path,
            store.clone(),
            Arc::new(EchoLocal),
            Arc::new(SystemClock),
        );
        deps.source = h.source.clone();
        let gateway = Server::bind(deps).await.unwrap();
        let addrs = gateway.listener_addrs();
        h.optional = addrs[0];
        h.required = addrs[1];
        h.proxied = addrs[2];
        h.proxied_untrusted = addrs[3];
        h.single = addrs[4];
        h.admin = gateway.admin_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        h.task = Some(tokio::spawn(async move {
            gateway
                .serve(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        }));
        h.stop = Some(tx);
        h
    }

    pub async fn add_user(&self, login: &str, role: Role) {
        self.store
            .insert_user(&User {
                login: login.into(),
                contract_id: "c1".into(),
                role,
                email: format!("{login}@example.com"),
                enabled: true,
                created_at: now(),
            })
            .await
            .unwrap();
    }

    /// Records `cert` as the current certificate of `login`, the way issuance does.
    pub async fn register(&self, cert: &ClientCert, login: &str) {
        let t = now();
        let code_hash = format!("test-code-{}", cert.serial);
        self.store
            .set_code(login, &code_hash, t, t + DAY)
            .await
            .unwrap();
        let rec = CertRecord {
            serial: cert.serial.clone(),
            login: login.into(),
            contract_id: "c1".into(),
            ca_id: self.ca_id,
            der: cert.der.to_vec(),
            sha256: cert.sha256.clone(),
            spki_sha256: format!("spki-{}", cert.serial),
            not_before: cert.not_before,
            not_after: cert.not_after,
            status: CertStatus::Current,
            superseded_at: None,
            revoked_at: None,
            revocation_reason: None,
            first_used_at: None,
            created_at: t,
        };
        self.store
            .complete_issue(&code_hash, &rec, t)
            .await
            .unwrap();
    }

    pub fn client_config(&self, cert: Option<&ClientCert>) -> Arc<rustls::ClientConfig> {
        client::config(&self.server_ca.der, cert, &[b"http/1.1"])
    }

    /// Adds `routes` (TOML `[[route]]` tables) to the running gateway's file and waits until
    /// `probe` is answered by the new configuration (`ok` says when).
    pub async fn add_routes(&self, routes: &str, probe: &str, ok: impl Fn(u16) -> bool) {
        let text = std::fs::read_to_string(&self.config_path).unwrap();
        std::fs::write(
            &self.config_path,
            text.replace("[admin]", &format!("{routes}\n[admin]")),
        )
        .unwrap();
        let mut conn = self.h1(None).await;
        for _ in 0..50 {
            if ok(conn.get(probe).await.unwrap().status.as_u16()) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        panic!("the new routes were never served");
    }

    /// An HTTP/1.1 connection to the `optional` listener.
    pub async fn h1(&self, cert: Option<&ClientCert>) -> Conn {
        Conn::h1(self.optional, self.client_config(cert))
            .await
            .unwrap()
    }

    /// GET on the admin listener (plain HTTP): (status, body).
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        let tcp = tokio::net::TcpStream::connect(self.admin).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake::<
            _,
            http_body_util::Empty<bytes::Bytes>,
        >(hyper_util::rt::TokioIo::new(tcp))
        .await
        .unwrap();
        tokio::spawn(conn);
        let req = http::Request::get(path)
            .header("host", "admin")
            .body(http_body_util::Empty::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        use http_body_util::BodyExt;
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// The value of one metric sample line starting with `prefix`, summed over matches.
    pub async fn metric(&self, prefix: &str) -> f64 {
        let (_, text) = self.admin_get("/metrics").await;
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Stops the gateway and waits for it to drain.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
    }
}

fn config_text(upstream: &str) -> String {
    format!(
        r#"
[hsm]
token_label = "unused-by-the-gateway"

[ca]
subject = "CN=certgate Test Customer CA,O=Example Bank"
public_url = "https://127.0.0.1:8443"

[[listener]]
addr = "127.0.0.1:0"
cert = "server.pem"
key = "server.key"
client_auth = "optional"

[[listener]]
addr = "127.0.0.1:0"
cert = "server.pem"
key = "server.key"
client_auth = "required"
# Short, so a test can watch an idle (parked) connection being closed.
header_read_timeout_secs = 4

[[listener]]
addr = "127.0.0.1:0"
cert = "server.pem"
key = "server.key"
proxy_protocol = true
trusted_proxies = ["127.0.0.1/32", "::1"]
max_connections_per_address = 2

[[listener]]
addr = "127.0.0.1:0"
cert = "server.pem"
key = "server.key"
proxy_protocol = true
trusted_proxies = ["10.0.0.0/8"]

[[listener]]
addr = "127.0.0.1:0"
cert = "server.pem"
key = "server.key"
max_connections = 1
# Stands for a front end of the bank's that numbers requests itself.
trust_request_id = true

[[route]]
prefix = "/"
upstream = "{upstream}"
auth = "certificate"

[[route]]
prefix = "/extras"
upstream = "{upstream}"
auth = "certificate"
client_cert_header = true
xfcc = true
assertion = true
max_body_bytes = 100000
[route.login_binding]
path = "/extras/login"
field = "loginId"

# The formats as a list: no X-Certgate-* headers, every XFCC key.
[[route]]
prefix = "/formats"
upstream = "{upstream}"
auth = "certificate"
identity = ["xfcc", "rfc9440"]
xfcc_fields = ["DNS", "URI", "Subject", "Chain", "Cert", "Hash", "By"]
xfcc_by = "spiffe://bank.example/certgate"

# Tunnels with tiny timeouts.
[[route]]
prefix = "/ws-idle"
upstream = "{upstream}"
auth = "certificate"
tunnel_idle_secs = 1

[[route]]
prefix = "/ws-max"
upstream = "{upstream}"
auth = "certificate"
tunnel_max_secs = 2

[[route]]
prefix = "/public"
upstream = "{upstream}"
auth = "public"

[[route]]
prefix = "/forwarded"
upstream = "{upstream}"
auth = "public"
forwarding = ["x-forwarded", "forwarded"]

[admin]
addr = "127.0.0.1:0"

[gateway]
reload_poll_secs = 1
"#
    )
}

/// The real store, with a switch that makes every call fail as if the database were down.
pub struct Switchable {
    store: Store,
    down: AtomicBool,
}

impl Switchable {
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
    fn up(&self) -> Result<&Store, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable(sqlx::Error::PoolClosed))
        } else {
            Ok(&self.store)
        }
    }
}

impl StatusSource for Switchable {
    fn status<'a>(
        &'a self,
        serial: &'a str,
    ) -> BoxFuture<'a, Result<Option<CertStatusView>, StoreError>> {
        Box::pin(async move { StatusSource::status(self.up()?, serial).await })
    }
    fn changes(&self) -> tokio::sync::broadcast::Receiver<CertChange> {
        self.store.subscribe_changes()
    }
    fn trust_anchors(&self) -> BoxFuture<'_, Result<Vec<CertificateDer<'static>>, StoreError>> {
        Box::pin(async move { self.up()?.trust_anchors().await })
    }
    fn mark_first_used<'a>(
        &'a self,
        serial: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move { StatusSource::mark_first_used(self.up()?, serial, now).await })
    }
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move { StatusSource::ping(self.up()?).await })
    }
}

/// Stands in for certgate's own pages: `/certgate/me` needs a certificate, the rest of
/// `/certgate/` is public; answers with what the gateway told it.
pub struct EchoLocal;

impl LocalService for EchoLocal {
    fn owns(&self, path: &str) -> Option<RouteAuth> {
        if path == "/certgate/me" {
            Some(RouteAuth::Certificate)
        } else if path.starts_with("/certgate/") {
            Some(RouteAuth::Public)
        } else {
            None
        }
    }

    fn call(
        &self,
        req: http::Request<ProxyBody>,
        ctx: LocalContext,
    ) -> BoxFuture<'static, http::Response<ProxyBody>> {
        let spoofed = req
            .headers()
            .keys()
            .any(|k| k.as_str().replace('_', "-").starts_with("x-certgate-"));
        let body = serde_json::json!({
            "login": ctx.identity.as_ref().map(|i| i.login().to_owned()),
            "presented": ctx.presented.is_some(),
            "spoofed_header_seen": spoofed,
            // What certgate's own pages record as the requester (audit log).
            "remote": ctx.remote_addr.to_string(),
        });
        Box::pin(
            async move { http::Response::new(certgate::http_common::body::full(body.to_string())) },
        )
    }
}
