//! Expiry notices against a real SMTP server process (the sink in `support/smtp/sink.py`)
//! and real databases: every case runs on SQLite (a temp file) and on PostgreSQL (a fresh
//! database). Time is a `ManualClock`; the last test drives the real binary on the system
//! clock.

#[allow(dead_code)]
#[path = "support/db.rs"]
mod db;
#[path = "support/smtp/sink.rs"]
mod sink;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use certgate::clock::{Clock, DAY, ManualClock};
use certgate::config::Config;
use certgate::notify::{NotifyContext, run_forever, run_once};
use certgate::store::{
    CertRecord, CertStatus, CodeClaim, Contract, OutboxState, Role, Store, User,
};
use db::TestDb;
use sink::Sink;

/// When every test certificate of the main user expires.
const END: i64 = 1_800_000_000;
const ISSUED: i64 = END - 365 * DAY;

macro_rules! on_both {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = super::TestDb::sqlite();
                    super::$case(&db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(db) = super::TestDb::postgres().await else { return };
                    super::$case(&db).await;
                }
            )*
        }
    };
}

on_both!(
    thirty_and_ten_days_once_each_across_restarts,
    catch_up_sends_only_the_most_urgent,
    concurrent_passes_send_once,
    queued_while_the_relay_is_down_arrives_later,
    renewed_revoked_and_reissued_get_no_more,
    permanent_refusal_is_failed_and_listed_temporary_is_retried,
    a_killed_pass_loses_none_and_doubles_at_most_two_groups,
    with_the_relay_down_a_pass_says_how_many_due_notices_it_left,
    a_slow_relay_cannot_make_a_batch_outlast_its_claim,
);

// ---------------------------------------------------------------- helpers

fn config_text(db_url: &str, smtp_port: u16, language: &str) -> String {
    config_with(
        db_url,
        &format!("smtp://127.0.0.1:{smtp_port}"),
        language,
        "",
    )
}

/// A configuration whose `[notify]` section talks to `smtp_url`, plus `extra` lines.
fn config_with(db_url: &str, smtp_url: &str, language: &str, extra: &str) -> String {
    format!(
        r#"
[database]
url = "{db_url}"
[hsm]
token_label = "certgate"
[ca]
subject = "CN=Test CA,O=Example Bank"
public_url = "https://gw.bank.example"
[notify]
smtp_url = "{smtp_url}"
from = "Example Bank <certgate@bank.example>"
language = "{language}"
retry_initial_secs = 60
retry_max_secs = 3600
timeout_secs = 10
{extra}
"#
    )
}

fn context(
    db: &TestDb,
    store: Store,
    clock: &Arc<ManualClock>,
    port: u16,
    lang: &str,
) -> NotifyContext {
    context_from(&config_text(&db.url, port, lang), store, clock)
}

fn context_from(text: &str, store: Store, clock: &Arc<ManualClock>) -> NotifyContext {
    let cfg = Config::parse(text, "test", Path::new("/tmp")).expect("config");
    let clock: Arc<dyn Clock> = clock.clone();
    NotifyContext::from_config(&cfg, store, clock)
        .expect("notify context")
        .expect("[notify] is set")
}

async fn open(db: &TestDb) -> Store {
    let s = Store::connect(&db.url).await.expect("connect");
    s.migrate().await.expect("migrate");
    s
}

/// Contract `c1` and an active CA; returns the CA id.
async fn setup(s: &Store) -> i64 {
    s.insert_contract(&Contract {
        id: "c1".into(),
        name: "Yamada Trading Co.".into(),
        enabled: true,
        created_at: ISSUED,
    })
    .await
    .unwrap();
    s.insert_ca("certgate-ca", b"ca-der", "", true, ISSUED)
        .await
        .unwrap()
        .id
}

async fn add_user(s: &Store, login: &str, email: &str) {
    s.insert_user(&User {
        login: login.into(),
        contract_id: "c1".into(),
        role: Role::General,
        email: email.into(),
        enabled: true,
        created_at: ISSUED,
    })
    .await
    .unwrap();
}

fn cert(serial: &str, login: &str, ca_id: i64, not_after: i64) -> CertRecord {
    CertRecord {
        serial: serial.into(),
        login: login.into(),
        contract_id: "c1".into(),
        ca_id,
        der: vec![0x30, 0x03, 0x02, 0x01, 0x01],
        sha256: format!("sha-of-{serial}"),
        spki_sha256: format!("spki-{serial}"),
        not_before: not_after - 365 * DAY,
        not_after,
        status: CertStatus::Current,
        superseded_at: None,
        revoked_at: None,
        revocation_reason: None,
        first_used_at: None,
        created_at: not_after - 365 * DAY,
    }
}

/// Issues a certificate through a code, as obtaining does (fake DER is fine for notices).
async fn issue(s: &Store, c: &CertRecord) {
    let code = format!("code-{}", c.serial);
    s.set_code(&c.login, &code, c.created_at, c.created_at + DAY)
        .await
        .unwrap();
    assert_eq!(
        s.claim_code(&c.login, &code, &c.spki_sha256, c.created_at, 5)
            .await
            .unwrap(),
        CodeClaim::Fresh
    );
    s.complete_issue(&code, c, c.created_at).await.unwrap();
}

/// A user `login` with one current certificate `serial` expiring at `not_after`.
async fn user_with_cert(s: &Store, ca: i64, login: &str, serial: &str, not_after: i64) {
    add_user(s, login, &format!("{login}@customer.example")).await;
    issue(s, &cert(serial, login, ca, not_after)).await;
}

fn mails_to(sink: &Sink, addr: &str) -> Vec<sink::Mail> {
    sink.messages()
        .into_iter()
        .filter(|m| m.rcpt_to.iter().any(|r| r == addr))
        .collect()
}

// ---------------------------------------------------------------- cases

async fn thirty_and_ten_days_once_each_across_restarts(db: &TestDb) {
    let sink = Sink::start();
    let s = open(db).await;
    let ca = setup(&s).await;
    user_with_cert(&s, ca, "alice", "a1", END).await;
    let clock = ManualClock::new(END - 65 * DAY);
    let ctx = context(db, s.clone(), &clock, sink.port, "ja");

    // 65 days before: nothing.
    let r = run_once(&ctx).await.unwrap();
    assert_eq!((r.scheduled, r.sent), (0, 0));
    assert!(sink.messages().is_empty());
    assert!(s.outbox(None).await.unwrap().is_empty());

    // 31 days and a second before: still nothing.
    clock.set(END - 30 * DAY - 1);
    run_once(&ctx).await.unwrap();
    assert!(sink.messages().is_empty());

    // 30 days before: one mail, in Japanese, naming the login, contract and what to do.
    clock.set(END - 30 * DAY);
    let r = run_once(&ctx).await.unwrap();
    assert_eq!((r.scheduled, r.sent), (1, 1));
    let mails = sink.messages();
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert_eq!(m.rcpt_to, vec!["alice@customer.example".to_owned()]);
    assert_eq!(m.mail_from, "certgate@bank.example");
    assert!(
        m.subject.contains("有効期限") && m.subject.contains("alice"),
        "{}",
        m.subject
    );
    for needle in [
        "alice",
        "Yamada Trading Co.",
        "c1",
        "残り30日",
        // The expiry in the [branding] zone of Japanese (Asia/Tokyo by default), as on the
        // pages: END is 08:00 UTC.
        "2027年1月15日 17:00（JST）",
        "https://gw.bank.example/certgate/renew",
        "ログイン画面",
    ] {
        assert!(
            m.body.contains(needle),
            "{needle:?} missing from {}",
            m.body
        );
    }

    // Repeated passes, and a "restart" (new store handle and context): never again.
    for _ in 0..3 {
        run_once(&ctx).await.unwrap();
    }
    drop(ctx);
    let s2 = open(db).await;
    let ctx2 = context(db, s2.clone(), &clock, sink.port, "ja");
    let r = run_once(&ctx2).await.unwrap();
    assert_eq!((r.scheduled, r.sent), (0, 0));
    clock.set(END - 11 * DAY);
    run_once(&ctx2).await.unwrap();
    assert_eq!(sink.messages().len(), 1);

    // 10 days before: the second mail, once.
    clock.set(END - 10 * DAY);
    let r = run_once(&ctx2).await.unwrap();
    assert_eq!((r.scheduled, r.sent), (1, 1));
    for _ in 0..3 {
        run_once(&ctx2).await.unwrap();
    }
    let s3 = open(db).await;
    let ctx3 = context(db, s3, &clock, sink.port, "ja");
    clock.set(END - DAY);
    run_once(&ctx3).await.unwrap();
    // After expiry: nothing either.
    clock.set(END + DAY);
    run_once(&ctx3).await.unwrap();

    let mails = mails_to(&sink, "alice@customer.example");
    assert_eq!(mails.len(), 2, "{mails:#?}");
    assert!(mails[1].body.contains("残り10日"), "{}", mails[1].body);
    let rows = s2.outbox(None).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|r| r.state == OutboxState::Sent && r.attempts == 1)
    );
    assert_eq!(
        rows.iter().map(|r| r.notice_days).collect::<Vec<_>>(),
        vec![30, 10]
    );
    assert_eq!(
        s2.notice_decisions("a1").await.unwrap(),
        vec![(10, "scheduled".to_owned()), (30, "scheduled".to_owned())]
    );
}

async fn catch_up_sends_only_the_most_urgent(db: &TestDb) {
    let sink = Sink::start();
    let s = open(db).await;
    let ca = setup(&s).await;
    user_with_cert(&s, ca, "alice", "a1", END).await;
    // A certificate that expired while the service was down gets nothing.
    user_with_cert(&s, ca, "bob", "b1", END - 6 * DAY).await;
    // The service was down from 40 days before expiry until 5 days before.
    let clock = ManualClock::new(END - 5 * DAY);
    let ctx = context(db, s.clone(), &clock, sink.port, "en");

    let r = run_once(&ctx).await.unwrap();
    assert_eq!((r.scheduled, r.sent), (1, 1));
    let mails = sink.messages();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].rcpt_to, vec!["alice@customer.example".to_owned()]);
    assert!(mails[0].body.contains("5 days left"), "{}", mails[0].body);
    assert!(
        mails[0].body.contains("2027-01-15 17:00 JST"),
        "{}",
        mails[0].body
    );
    assert_eq!(
        s.notice_decisions("a1").await.unwrap(),
        vec![(10, "scheduled".to_owned()), (30, "skipped".to_owned())]
    );
    assert!(s.notice_decisions("b1").await.unwrap().is_empty());
    let rows = s.outbox(None).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].notice_days, 10);

    run_once(&ctx).await.unwrap();
    assert_eq!(sink.messages().len(), 1);
}

async fn concurrent_passes_send_once(db: &TestDb) {
    let sink = Sink::start();
    let s1 = open(db).await;
    let ca = setup(&s1).await;
    const N: usize = 12;
    for i in 0..N {
        user_with_cert(
            &s1,
            ca,
            &format!("user{i:02}"),
            &format!("c{i:02}"),
            END + i as i64,
        )
        .await;
    }
    let s2 = open(db).await;
    let clock = ManualClock::new(END - 30 * DAY + 100);
    let a = context(db, s1.clone(), &clock, sink.port, "en");
    let b = context(db, s2, &clock, sink.port, "en");

    for _ in 0..2 {
        let (ra, rb) = tokio::join!(run_once(&a), run_once(&b));
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert_eq!(ra.lost_claims + rb.lost_claims, 0);
    }
    let mails = sink.messages();
    assert_eq!(
        mails.len(),
        N,
        "each notice exactly once: {:?}",
        mails.iter().map(|m| &m.rcpt_to).collect::<Vec<_>>()
    );
    for i in 0..N {
        assert_eq!(
            mails_to(&sink, &format!("user{i:02}@customer.example")).len(),
            1
        );
    }
    let sent = a.metrics().snapshot().sent_total + b.metrics().snapshot().sent_total;
    assert_eq!(sent, N as u64);
    let counts = s1.outbox_counts().await.unwrap();
    assert_eq!((counts.sent, counts.pending), (N as u64, 0));
}

async fn queued_while_the_relay_is_down_arrives_later(db: &TestDb) {
    let mut sink = Sink::down();
    let s = open(db).await;
    let ca = setup(&s).await;
    user_with_cert(&s, ca, "alice", "a1", END).await;
    user_with_cert(&s, ca, "bob", "b1", END + DAY).await;
    let clock = ManualClock::new(END - 30 * DAY + DAY);
    let ctx = context(db, s.clone(), &clock, sink.port, "en");

    // The relay refuses connections: both stay pending with the error recorded.
    let r = run_once(&ctx).await.unwrap();
    assert_eq!((r.scheduled, r.sent, r.retried), (2, 0, 2));
    let rows = s.outbox(None).await.unwrap();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert_eq!(row.state, OutboxState::Pending);
        assert_eq!(row.attempts, 1);
        assert_eq!(row.next_attempt_at, clock.now() + 60);
        assert!(row.last_error.as_deref().is_some_and(|e| !e.is_empty()));
    }
    assert_eq!(ctx.metrics().snapshot().pending, 2);

    // Still down after the first wait: the next wait doubles.
    clock.advance(60);
    run_once(&ctx).await.unwrap();
    let rows = s.outbox(None).await.unwrap();
    assert!(
        rows.iter()
            .all(|r| r.attempts == 2 && r.next_attempt_at == clock.now() + 120)
    );

    // Back up, but before the wait is over: nothing is tried yet.
    sink.resume();
    run_once(&ctx).await.unwrap();
    assert!(sink.messages().is_empty());

    // After the wait: both arrive, once.
    clock.advance(120);
    let r = run_once(&ctx).await.unwrap();
    assert_eq!(r.sent, 2);
    run_once(&ctx).await.unwrap();
    assert_eq!(mails_to(&sink, "alice@customer.example").len(), 1);
    assert_eq!(mails_to(&sink, "bob@customer.example").len(), 1);
    let rows = s.outbox(None).await.unwrap();
    assert!(
        rows.iter()
            .all(|r| r.state == OutboxState::Sent && r.attempts == 3)
    );
}

async fn renewed_revoked_and_reissued_get_no_more(db: &TestDb) {
    let mut sink = Sink::start();
    let s = open(db).await;
    let ca = setup(&s).await;
    user_with_cert(&s, ca, "alice", "a1", END).await;
    user_with_cert(&s, ca, "bob", "b1", END).await;
    user_with_cert(&s, ca, "carol", "k1", END).await;
    let clock = ManualClock::new(END - 30 * DAY);
    let ctx = context(db, s.clone(), &clock, sink.port, "en");
    run_once(&ctx).await.unwrap();
    assert_eq!(sink.messages().len(), 3);

    // Alice renews 20 days before expiry: her old certificate gets no 10-day notice, the
    // new one nothing yet.
    clock.set(END - 20 * DAY);
    s.complete_renewal("a1", &cert("a2", "alice", ca, END + 345 * DAY), clock.now())
        .await
        .unwrap();

    // 10 days before, with the relay down: bob's and carol's notices are queued.
    sink.stop();
    clock.set(END - 10 * DAY);
    let r = run_once(&ctx).await.unwrap();
    assert_eq!((r.scheduled, r.sent), (2, 0));

    // Bob's certificate is revoked and carol's re-issued before the relay is back.
    s.revoke("b1", "keyCompromise", clock.now()).await.unwrap();
    s.reissue(
        "carol",
        "superseded",
        "new-code",
        clock.now(),
        clock.now() + DAY,
    )
    .await
    .unwrap();
    sink.resume();
    clock.advance(3600);
    let r = run_once(&ctx).await.unwrap();
    assert_eq!((r.sent, r.cancelled), (0, 2));
    clock.set(END - DAY);
    run_once(&ctx).await.unwrap();

    for who in ["alice", "bob", "carol"] {
        assert_eq!(
            mails_to(&sink, &format!("{who}@customer.example")).len(),
            1,
            "{who}"
        );
    }
    let cancelled = s.outbox(Some(OutboxState::Cancelled)).await.unwrap();
    assert_eq!(
        cancelled
            .iter()
            .map(|r| r.serial.as_str())
            .collect::<Vec<_>>(),
        vec!["b1", "k1"]
    );
    assert!(cancelled.iter().all(|r| {
        r.last_error
            .as_deref()
            .is_some_and(|e| e.contains("revoked"))
    }));
    assert!(s.notice_decisions("a1").await.unwrap().len() == 1);
    assert!(s.notice_decisions("a2").await.unwrap().is_empty());
    assert_eq!(ctx.metrics().snapshot().cancelled_total, 2);
}

async fn permanent_refusal_is_failed_and_listed_temporary_is_retried(db: &TestDb) {
    let sink = Sink::start();
    let s = open(db).await;
    let ca = setup(&s).await;
    add_user(&s, "gone", "reject-gone@customer.example").await;
    issue(&s, &cert("g1", "gone", ca, END)).await;
    add_user(&s, "busy", "defer-busy@customer.example").await;
    issue(&s, &cert("d1", "busy", ca, END)).await;
    add_user(&s, "bad", "not an address").await;
    issue(&s, &cert("x1", "bad", ca, END)).await;
    let clock = ManualClock::new(END - 29 * DAY);
    let ctx = context(db, s.clone(), &clock, sink.port, "en");

    let r = run_once(&ctx).await.unwrap();
    assert_eq!((r.scheduled, r.sent, r.failed, r.retried), (3, 0, 2, 1));
    let failed = s.outbox(Some(OutboxState::Failed)).await.unwrap();
    assert_eq!(failed.len(), 2);
    let g = failed.iter().find(|r| r.serial == "g1").unwrap();
    assert!(g.last_error.as_deref().unwrap().contains("550"), "{g:?}");
    let x = failed.iter().find(|r| r.serial == "x1").unwrap();
    assert!(
        x.last_error.as_deref().unwrap().contains("address"),
        "{x:?}"
    );
    let pending = s.outbox(Some(OutboxState::Pending)).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert!(pending[0].last_error.as_deref().unwrap().contains("451"));
    let m = ctx.metrics().snapshot();
    assert_eq!((m.failed_total, m.failed_in_outbox, m.pending), (2, 2, 1));

    // Failed rows are never tried again; the deferred one is, after its wait.
    clock.advance(7200);
    let r = run_once(&ctx).await.unwrap();
    assert_eq!((r.failed, r.retried), (0, 1));
    let d = &s.outbox(Some(OutboxState::Pending)).await.unwrap()[0];
    assert_eq!(d.attempts, 2);
    assert!(sink.messages().is_empty());
}

/// The periodic runner `serve` uses: it passes at once, and stops when told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_forever_passes_and_stops_on_shutdown() {
    let sink = Sink::start();
    let db = TestDb::sqlite();
    let s = open(&db).await;
    let ca = setup(&s).await;
    user_with_cert(&s, ca, "alice", "a1", END).await;
    let clock = ManualClock::new(END - 30 * DAY);
    let ctx = context(&db, s.clone(), &clock, sink.port, "en");
    let metrics = ctx.metrics();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(run_forever(ctx, Duration::from_secs(3600), stopped));

    // Bounded wait for the first pass (a lost pass fails instead of hanging).
    let wait = async {
        while metrics.snapshot().sent_total == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .expect("the first pass runs at once");
    assert_eq!(sink.messages().len(), 1);
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("run_forever stops on shutdown")
        .unwrap();
}

/// Shutdown mid-pass: the pass ends after the batch in hand is recorded (no cut between the
/// relay's 250 and the record), so the sink holds exactly the e-mails the outbox has as
/// sent, the rest stays pending, and the pass says how many it left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_forever_stops_mid_pass_after_recording_its_batch() {
    const N: u64 = 3000;
    let sink = Sink::start();
    let db = TestDb::sqlite();
    let s = open(&db).await;
    let ca = setup(&s).await;
    seed_bulk(&db, ca, N as i64, END).await;
    let clock = ManualClock::new(END - 20 * DAY);
    let ctx = context(&db, s.clone(), &clock, sink.port, "en");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(run_forever(ctx.clone(), Duration::from_secs(3600), stopped));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while sink.messages().len() < 100 {
        assert!(std::time::Instant::now() < deadline, "no mails after 60 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("run_forever stops")
        .unwrap();
    let counts = s.outbox_counts().await.unwrap();
    assert!(counts.pending > 0, "the pass had ended before the stop");
    assert_eq!(counts.sent + counts.pending, N);
    assert_eq!(
        sink.messages().len() as u64,
        counts.sent,
        "every e-mail the relay took is recorded as sent, and only those"
    );
    assert_eq!(ctx.metrics().snapshot().left_due, counts.pending);
}

// ---------------------------------------------------------------- relay sessions

/// One kept session per pass, whatever the relay offers: a relay without PIPELINING gets one
/// command at a time (the sink answers 503 and hangs up on a pipelined one), and a relay
/// that ends a session after 3 messages (421) gets the rest over new sessions. Either way
/// the 8 notices arrive once each and none is deferred.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_without_pipelining_or_with_a_message_limit_per_session() {
    for args in [&["--no-pipelining"][..], &["--max-per-session", "3"]] {
        let sink = Sink::start_with(args);
        let db = TestDb::sqlite();
        let s = open(&db).await;
        let ca = setup(&s).await;
        for i in 0..8 {
            user_with_cert(&s, ca, &format!("u{i}"), &format!("s{i}"), END + i).await;
        }
        let clock = ManualClock::new(END - 30 * DAY + 100);
        let ctx = context(&db, s.clone(), &clock, sink.port, "en");
        let r = run_once(&ctx).await.unwrap();
        assert_eq!((r.sent, r.retried, r.failed), (8, 0, 0), "{args:?}");
        let mails = sink.messages();
        assert_eq!(mails.len(), 8, "{args:?}");
        let ids: std::collections::HashSet<&str> =
            mails.iter().map(|m| m.message_id.as_str()).collect();
        assert_eq!(ids.len(), 8, "{args:?}");
        for row in s.outbox(None).await.unwrap() {
            let id = certgate::notify::message_id(row.id, &row.serial, "bank.example");
            assert!(ids.contains(id.as_str()), "{id} in {ids:?}");
        }
    }
}

// ---------------------------------------------------------------- TLS relays

/// A CA and a relay certificate for 127.0.0.1 signed by it: (CA PEM, relay PEM, key PEM).
fn relay_pki() -> (String, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Test relay CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "relay");
    let leaf = params.signed_by(&key, &ca).unwrap();
    (ca.pem(), leaf.pem(), key.serialize_pem())
}

/// STARTTLS and smtps:// with authentication: a wrong password and an untrusted relay
/// certificate leave the notice pending (nothing lost), the right set-up delivers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_relays_with_authentication() {
    let pki = tempfile::tempdir().unwrap();
    let (ca_pem, relay_pem, key_pem) = relay_pki();
    let path = |name: &str| pki.path().join(name).display().to_string();
    std::fs::write(path("ca.pem"), ca_pem).unwrap();
    std::fs::write(path("relay.pem"), relay_pem).unwrap();
    std::fs::write(path("relay.key"), key_pem).unwrap();
    std::fs::write(path("good-pw"), "s3cret-pw\n").unwrap();
    std::fs::write(path("bad-pw"), "guess\n").unwrap();

    for mode in ["starttls", "wrapper"] {
        let sink = Sink::start_with(&[
            "--tls",
            mode,
            "--cert",
            &path("relay.pem"),
            "--key",
            &path("relay.key"),
            "--auth",
            "certgate:s3cret-pw",
        ]);
        let url = match mode {
            "starttls" => format!("smtp://127.0.0.1:{}?tls=starttls", sink.port),
            _ => format!("smtps://127.0.0.1:{}", sink.port),
        };
        let db = TestDb::sqlite();
        let s = open(&db).await;
        let ca = setup(&s).await;
        user_with_cert(&s, ca, "alice", "a1", END).await;
        let clock = ManualClock::new(END - 30 * DAY);
        let with = |pw: &str, ca_file: bool| {
            let mut extra = format!("user = \"certgate\"\npassword_file = \"{}\"\n", path(pw));
            if ca_file {
                extra.push_str(&format!("ca_file = \"{}\"\n", path("ca.pem")));
            }
            context_from(&config_with(&db.url, &url, "en", &extra), s.clone(), &clock)
        };

        let r = run_once(&with("bad-pw", true)).await.unwrap();
        assert_eq!((r.sent, r.retried, r.failed), (0, 1, 0), "{mode}");
        let row = &s.outbox(None).await.unwrap()[0];
        assert_eq!(row.state, OutboxState::Pending);
        let err = row.last_error.clone().unwrap();
        assert!(err.contains("535"), "{mode}: {err}");
        assert!(!err.contains("guess") && !err.contains("s3cret"), "{err}");

        clock.advance(3600);
        let r = run_once(&with("good-pw", false)).await.unwrap();
        assert_eq!(
            (r.sent, r.retried),
            (0, 1),
            "{mode}: relay certificate not trusted"
        );

        clock.advance(3600);
        let r = run_once(&with("good-pw", true)).await.unwrap();
        assert_eq!((r.sent, r.retried), (1, 0), "{mode}");
        let mails = sink.messages();
        assert_eq!(mails.len(), 1, "{mode}");
        assert!(mails[0].tls, "{mode}");
        assert_eq!(mails[0].auth_user.as_deref(), Some("certgate"));
        assert_eq!(s.outbox(None).await.unwrap()[0].attempts, 3);
    }
}

/// No cap hides due notices: with the relay down, the first claimed batch (50) is put back
/// with backoff, the pass stops trying and reports the other 30 as left (and the metric
/// says so); once the relay is back, one pass sends all 80.
async fn with_the_relay_down_a_pass_says_how_many_due_notices_it_left(db: &TestDb) {
    let mut sink = Sink::down();
    let s = open(db).await;
    let ca = setup(&s).await;
    seed_bulk(db, ca, 80, END).await;
    let clock = ManualClock::new(END - 20 * DAY);
    let ctx = context(db, s.clone(), &clock, sink.port, "en");

    let r = run_once(&ctx).await.unwrap();
    assert_eq!((r.scheduled, r.sent, r.retried), (80, 0, 50));
    assert_eq!(r.left_due, 30);
    assert_eq!(ctx.metrics().snapshot().left_due, 30);
    assert_eq!(r.outbox.pending, 80);

    sink.resume();
    clock.advance(3600);
    let r = run_once(&ctx).await.unwrap();
    assert_eq!((r.sent, r.retried, r.left_due), (80, 0, 0));
    assert_eq!(ctx.metrics().snapshot().left_due, 0);
    assert_eq!(sink.messages().len(), 80);
}

/// A relay slow enough that a batch would outlast its claim: no send starts in the last
/// `2 * timeout_secs` of the lease (here the clock jumps there mid-batch), the e-mails sent
/// so far are recorded, the rest stay pending and are counted as left, and a later pass
/// (after the lease) sends them: every notice arrives exactly once, none is lost.
async fn a_slow_relay_cannot_make_a_batch_outlast_its_claim(db: &TestDb) {
    const N: usize = 20;
    let sink = Sink::start_with(&["--delay-ms", "100"]);
    let s = open(db).await;
    let ca = setup(&s).await;
    seed_bulk(db, ca, N as i64, END).await;
    let clock = ManualClock::new(END - 20 * DAY);
    // timeout 10 s: no send may start in the last 20 s of a 60 s lease.
    let text = config_with(
        &db.url,
        &format!("smtp://127.0.0.1:{}", sink.port),
        "en",
        "lease_secs = 60\nbatch = 50\n",
    );
    let ctx = context_from(&text, s.clone(), &clock);
    let pass = tokio::spawn({
        let ctx = ctx.clone();
        async move { run_once(&ctx).await }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while sink.messages().len() < 3 {
        assert!(std::time::Instant::now() < deadline, "no mails after 30 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // 45 s into the claim: 15 s of lease left, less than the 20 s a send may need.
    clock.advance(45);
    let r = pass.await.unwrap().unwrap();
    let sent = sink.messages().len();
    assert!(
        (3..N).contains(&sent),
        "the batch went on past its claim: {sent} sent"
    );
    assert_eq!(
        r.sent as usize, sent,
        "every e-mail the relay took is recorded as sent"
    );
    assert_eq!(r.lost_claims, 0);
    assert_eq!(r.left_due as usize, N - sent);
    assert_eq!(r.outbox.pending as usize, N - sent);

    // Still claimed: a pass before the lease ends sends nothing again.
    let r = run_once(&ctx).await.unwrap();
    assert_eq!(r.sent, 0);
    assert_eq!(sink.messages().len(), sent);

    clock.advance(16);
    let r = run_once(&ctx).await.unwrap();
    assert_eq!(r.sent as usize, N - sent);
    assert_eq!(r.left_due, 0);
    let mails = sink.messages();
    assert_eq!(mails.len(), N);
    let mut ids: Vec<_> = mails.iter().map(|m| m.message_id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), N, "a notice arrived twice");
}

// ---------------------------------------------------------------- the real binary

/// `n` users `bulk1..` each with a current certificate expiring at `not_after`, written with
/// two statements (the store's issuing path would take minutes for thousands).
async fn seed_bulk(db: &TestDb, ca: i64, n: i64, not_after: i64) {
    const USERS: &str = "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < $1) \
        INSERT INTO users (login, contract_id, role, email, enabled, created_at) \
        SELECT 'bulk' || i, 'c1', 'general', 'bulk' || i || '@customer.example', TRUE, $2 FROM seq";
    const CERTS: &str = "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < $1) \
        INSERT INTO certificates (serial, login, contract_id, ca_id, der, sha256, spki_sha256, \
        not_before, not_after, status, created_at) \
        SELECT 'b' || i, 'bulk' || i, 'c1', $2, $3, 'sha-b' || i, 'spki-b' || i, $4, $5, \
        'current', $4 FROM seq";
    let issued = not_after - 365 * DAY;
    let der = vec![0x30_u8, 0x00];
    macro_rules! run {
        ($pool:expr) => {{
            let pool = $pool;
            sqlx::query(USERS)
                .bind(n)
                .bind(issued)
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query(CERTS)
                .bind(n)
                .bind(ca)
                .bind(der)
                .bind(issued)
                .bind(not_after)
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }};
    }
    match db.kind {
        db::Kind::Sqlite => run!(sqlx::SqlitePool::connect(&db.url).await.unwrap()),
        db::Kind::Postgres => run!(sqlx::PgPool::connect(&db.url).await.unwrap()),
    }
}

/// `certgate notify run` is SIGKILLed in the middle of a pass over 3,000 due notices, then
/// run again: at the SMTP sink every notice has arrived (none lost), and the only copies are
/// of e-mails the killed process had sent but not yet recorded: at most two groups of
/// `record_every` (one committing, one being sent), each recognisable by its Message-ID.
async fn a_killed_pass_loses_none_and_doubles_at_most_two_groups(db: &TestDb) {
    const N: usize = 3000;
    const RECORD_EVERY: usize = 5;
    let sink = Sink::start();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    {
        let s = open(db).await;
        let ca = setup(&s).await;
        seed_bulk(db, ca, N as i64, now + 20 * DAY).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("certgate.toml");
    // A short lease, so that the rows the killed process held are free again soon.
    let extra = format!("lease_secs = 3\nbatch = 50\nrecord_every = {RECORD_EVERY}\n");
    let text = config_with(
        &db.url,
        &format!("smtp://127.0.0.1:{}", sink.port),
        "en",
        &extra,
    )
    .replace("timeout_secs = 10", "timeout_secs = 1");
    std::fs::write(&cfg, text).unwrap();
    let certgate = || {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_certgate"));
        c.arg("--config")
            .arg(&cfg)
            .args(["notify", "run"])
            .env("RUST_LOG", "warn")
            .env_remove("CERTGATE_HSM_PIN");
        c
    };

    let mut first = certgate()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start certgate");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let got = sink.messages().len();
        if got >= N / 3 {
            break;
        }
        assert!(
            first.try_wait().unwrap().is_none(),
            "the pass ended before it could be killed ({got} mails)"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "only {got} mails after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().unwrap(); // SIGKILL: no chance to record anything more
    first.wait().unwrap();
    let at_kill = sink.messages().len();
    assert!(at_kill < N, "the pass had ended before the kill");

    // The killed process's claims run out (3 s), then a new pass sends the rest.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let out = certgate().output().expect("run certgate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("{N} sent, 0 failed")), "{stdout}");

    let s = open(db).await;
    let rows = s.outbox(None).await.unwrap();
    assert_eq!(rows.len(), N);
    assert!(rows.iter().all(|r| r.state == OutboxState::Sent));
    let mails = sink.messages();
    let mut seen = std::collections::HashMap::<&str, usize>::new();
    for m in &mails {
        *seen.entry(m.message_id.as_str()).or_default() += 1;
    }
    let lost: Vec<i64> = rows
        .iter()
        .filter(|r| {
            !seen.contains_key(
                certgate::notify::message_id(r.id, &r.serial, "bank.example").as_str(),
            )
        })
        .map(|r| r.id)
        .collect();
    assert!(lost.is_empty(), "never arrived: {lost:?}");
    assert_eq!(seen.len(), N, "mails with unknown Message-IDs");
    let doubled = mails.len() - N;
    assert!(
        doubled <= 2 * RECORD_EVERY,
        "{doubled} duplicates, more than two groups of {RECORD_EVERY} ({at_kill} mails at the kill)"
    );
    assert!(seen.values().all(|n| *n <= 2));
    eprintln!("{at_kill} e-mails at the kill, {doubled} sent twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_notify_run_and_list() {
    let sink = Sink::start();
    let db = TestDb::sqlite();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    {
        let s = open(&db).await;
        let ca = setup(&s).await;
        user_with_cert(&s, ca, "alice", "a1", now + 20 * DAY).await;
        add_user(&s, "gone", "reject@customer.example").await;
        issue(&s, &cert("g1", "gone", ca, now + 5 * DAY)).await;
        user_with_cert(&s, ca, "later", "l1", now + 200 * DAY).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("certgate.toml");
    std::fs::write(&cfg, config_text(&db.url, sink.port, "en")).unwrap();

    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_certgate"))
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .env_remove("CERTGATE_HSM_PIN")
            .output()
            .expect("run certgate");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "certgate {args:?} failed:\n{stdout}\n{stderr}"
        );
        stdout
    };

    let out = run(&["notify", "run"]);
    assert!(out.contains("scheduled 2 sent 1"), "{out}");
    assert!(out.contains("1 failed"), "{out}");
    let out = run(&["notify", "run"]);
    assert!(out.contains("scheduled 0 sent 0"), "{out}");

    let mails = sink.messages();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].rcpt_to, vec!["alice@customer.example".to_owned()]);
    assert!(mails[0].subject.contains("alice"), "{}", mails[0].subject);
    assert!(mails[0].body.contains("/certgate/renew"));

    let list = run(&["notify", "list"]);
    let a = list.lines().find(|l| l.contains("\ta1\t")).expect(&list);
    assert!(a.contains("\tsent\t1\t"), "{a}");
    let failed = run(&["notify", "list", "--state", "failed"]);
    let g = failed
        .lines()
        .find(|l| l.contains("\tg1\t"))
        .expect(&failed);
    assert!(
        g.contains("reject@customer.example") && g.contains("550"),
        "{g}"
    );
    assert!(!failed.contains("\ta1\t"));
}
