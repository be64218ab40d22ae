//! The store against real databases: every case runs on SQLite (a temp file) and on
//! PostgreSQL (a fresh database, dropped afterwards).

#[path = "support/db.rs"]
mod db;

use std::time::Duration;

use certgate::store::{
    AuditRecord, CertChange, CertFilter, CertRecord, CertStatus, CodeClaim, CodeRefusal, Contract,
    GENESIS_HASH, IntentFilter, IntentState, NewAudit, Redeemed, Role, ServerCertRecord,
    SignatureIntent, StatusFacts, Store, StoreError, User, audit_hash, verify_audit_chain,
};
use db::{Kind, TestDb};

const T0: i64 = 1_750_000_000;
const DAY: i64 = 86_400;

/// Runs each named case on both backends, as separate tests.
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
    a_predecessor_goes_with_its_revoked_successor,
    migrate_twice,
    contracts_and_users,
    code_lifecycle,
    issuance_subject_reads_user_contract_and_code,
    complete_issue_revokes_previous_current,
    schema_refuses_second_current,
    concurrent_complete_issue_one_wins,
    renewal,
    revoke,
    reissue,
    retire_superseded,
    certificate_status_joins_user_and_contract,
    users_and_contracts_switch_off_and_on,
    crl_candidates,
    cas_and_crl_numbers,
    audit_chain,
    changes_announced_after_revoke,
    group_commit_concurrent_issuances,
    group_commit_isolates_a_conflicting_job,
    group_commit_isolates_a_value_the_database_refuses,
    group_commit_decides_a_set_and_falls_back_one_by_one,
    audited_changes_commit_with_their_record,
    a_wrong_code_counts_with_its_audit_entry,
    failed_group_commit_fails_every_job_and_stores_nothing,
    writer_reconnects_after_its_connection_was_closed,
    signature_intents_settle_once_and_discarded_ones_are_revoked,
    signature_counts_add_up,
);

// ---------------------------------------------------------------- helpers

async fn open(db: &TestDb) -> Store {
    let s = Store::connect(&db.url).await.expect("connect");
    s.migrate().await.expect("migrate");
    s
}

fn contract(id: &str) -> Contract {
    Contract {
        id: id.into(),
        name: format!("{id} Ltd."),
        enabled: true,
        created_at: T0,
    }
}

fn user(login: &str, contract_id: &str, role: Role) -> User {
    User {
        login: login.into(),
        contract_id: contract_id.into(),
        role,
        email: format!("{login}@example.com"),
        enabled: true,
        created_at: T0,
    }
}

fn cert(serial: &str, login: &str, ca_id: i64, spki: &str, at: i64) -> CertRecord {
    CertRecord {
        serial: serial.into(),
        login: login.into(),
        contract_id: "c1".into(),
        ca_id,
        der: vec![0x30, 0x03, 0x02, 0x01, 0x01],
        sha256: format!("sha-of-{serial}"),
        spki_sha256: spki.into(),
        not_before: at,
        not_after: at + 365 * DAY,
        status: CertStatus::Current,
        superseded_at: None,
        revoked_at: None,
        revocation_reason: None,
        first_used_at: None,
        created_at: at,
    }
}

/// A contract `c1` with users alice (admin) and bob (general), and an active CA.
async fn setup(db: &TestDb) -> (Store, i64) {
    let s = open(db).await;
    s.insert_contract(&contract("c1")).await.unwrap();
    s.insert_user(&user("alice", "c1", Role::Admin))
        .await
        .unwrap();
    s.insert_user(&user("bob", "c1", Role::General))
        .await
        .unwrap();
    let ca = s
        .insert_ca("certgate-ca", b"ca-der", "", true, T0)
        .await
        .unwrap();
    (s, ca.id)
}

/// Issues `serial` to `login` through a fresh code, as obtaining does.
async fn issue(s: &Store, login: &str, serial: &str, ca: i64, at: i64) -> Vec<String> {
    let code = format!("code-{serial}");
    s.set_code(login, &code, at, at + DAY).await.unwrap();
    let spki = format!("spki-{serial}");
    assert_eq!(
        s.claim_code(login, &code, &spki, at, 5).await.unwrap(),
        CodeClaim::Fresh
    );
    s.complete_issue(&code, &cert(serial, login, ca, &spki, at), at)
        .await
        .unwrap()
}

async fn status_of(s: &Store, serial: &str) -> CertStatus {
    s.certificate(serial).await.unwrap().unwrap().status
}

/// Waits (bounded, so a lost announcement fails instead of hanging) for `serial`.
async fn expect_change(rx: &mut tokio::sync::broadcast::Receiver<CertChange>, serial: &str) {
    let wait = async {
        loop {
            match rx.recv().await {
                Ok(c) if c.serial == serial => return,
                Ok(_) => continue,
                Err(e) => panic!("change channel: {e}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .unwrap_or_else(|_| panic!("no announcement for {serial}"));
}

// ---------------------------------------------------------------- cases

async fn migrate_twice(db: &TestDb) {
    let s = open(db).await;
    s.migrate().await.expect("second migrate is a no-op");
    // A second handle on the same database migrates too, without error.
    let again = Store::connect(&db.url).await.unwrap();
    again.migrate().await.unwrap();
    s.ping().await.unwrap();
    let want = match db.kind {
        Kind::Sqlite => "sqlite",
        Kind::Postgres => "postgres",
    };
    assert_eq!(s.backend_name(), want);
    if db.kind == Kind::Sqlite {
        // WAL mode leaves its log file next to the database while a handle is open.
        let path = db.url.trim_start_matches("sqlite://");
        assert!(std::path::Path::new(&format!("{path}-wal")).exists());
    }
    assert!(s.contracts().await.unwrap().is_empty());
}

async fn contracts_and_users(db: &TestDb) {
    let s = open(db).await;
    s.insert_contract(&contract("c1")).await.unwrap();
    let mut off = contract("c2");
    off.enabled = false;
    s.insert_contract(&off).await.unwrap();
    assert_eq!(s.contract("c2").await.unwrap(), Some(off.clone()));
    assert_eq!(s.contract("nope").await.unwrap(), None);
    assert_eq!(s.contracts().await.unwrap(), vec![contract("c1"), off]);

    match s.insert_contract(&contract("c1")).await {
        Err(StoreError::Conflict(m)) => assert_eq!(m, "contract \"c1\" already exists"),
        other => panic!("duplicate contract: {other:?}"),
    }

    let alice = user("alice", "c1", Role::Admin);
    s.insert_user(&alice).await.unwrap();
    let mut bob = user("bob", "c1", Role::Approver);
    bob.enabled = false;
    s.insert_user(&bob).await.unwrap();
    assert_eq!(s.user("alice").await.unwrap(), Some(alice.clone()));
    assert_eq!(s.user("bob").await.unwrap().unwrap().role, Role::Approver);
    assert_eq!(s.user("carol").await.unwrap(), None);
    assert_eq!(
        s.users_of_contract("c1").await.unwrap(),
        vec![alice.clone(), bob]
    );
    assert!(s.users_of_contract("c2").await.unwrap().is_empty());

    match s.insert_user(&user("alice", "c2", Role::General)).await {
        Err(StoreError::Conflict(m)) => assert_eq!(m, "login ID \"alice\" already exists"),
        other => panic!("duplicate login: {other:?}"),
    }
    // IDs differing only in case are one.
    match s.insert_user(&user("ALICE", "c2", Role::General)).await {
        Err(StoreError::Conflict(m)) => {
            assert_eq!(m, "login ID \"ALICE\" already exists as \"alice\"")
        }
        other => panic!("case-variant login: {other:?}"),
    }
    match s.insert_contract(&contract("C1")).await {
        Err(StoreError::Conflict(m)) => assert_eq!(m, "contract \"C1\" already exists as \"c1\""),
        other => panic!("case-variant contract: {other:?}"),
    }
    assert_eq!(s.user("ALICE").await.unwrap(), None);
    match s.insert_user(&user("dave", "nope", Role::General)).await {
        Err(e @ StoreError::NotFound(_)) => {
            assert_eq!(e.to_string(), "contract \"nope\" not found")
        }
        other => panic!("missing contract: {other:?}"),
    }
    assert_eq!(s.user("dave").await.unwrap(), None);
}

async fn code_lifecycle(db: &TestDb) {
    let (s, ca) = setup(db).await;
    let now = T0 + 100;

    assert_eq!(
        s.claim_code("alice", "h", "k1", now, 3).await.unwrap(),
        CodeClaim::Refused(CodeRefusal::NoCode)
    );
    match s.set_code("ghost", "h", now, now + DAY).await {
        Err(StoreError::NotFound(m)) => assert_eq!(m, "login ID \"ghost\""),
        other => panic!("code for unknown login: {other:?}"),
    }

    // Wrong tries count, are committed although refused, and lock at the maximum.
    s.set_code("alice", "right", now, now + DAY).await.unwrap();
    assert_eq!(
        s.claim_code("alice", "wrong", "k1", now, 3).await.unwrap(),
        CodeClaim::Refused(CodeRefusal::Wrong { remaining: 2 })
    );
    assert_eq!(s.code("alice").await.unwrap().unwrap().failed_attempts, 1);
    assert_eq!(
        s.claim_code("alice", "wrong", "k1", now, 3).await.unwrap(),
        CodeClaim::Refused(CodeRefusal::Wrong { remaining: 1 })
    );
    assert_eq!(
        s.claim_code("alice", "wrong", "k1", now, 3).await.unwrap(),
        CodeClaim::Refused(CodeRefusal::Locked)
    );
    let locked = s.code("alice").await.unwrap().unwrap();
    assert!(locked.locked);
    assert_eq!(locked.failed_attempts, 3);
    // Even the right code is refused now, and nothing more is counted.
    assert_eq!(
        s.claim_code("alice", "right", "k1", now, 3).await.unwrap(),
        CodeClaim::Refused(CodeRefusal::Locked)
    );
    assert_eq!(s.code("alice").await.unwrap().unwrap().failed_attempts, 3);
    match s
        .complete_issue("right", &cert("01", "alice", ca, "k1", now), now)
        .await
    {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("redeeming a locked code: {other:?}"),
    }

    // A new code replaces the locked one.
    s.set_code("alice", "right2", now, now + 10).await.unwrap();
    let fresh = s.code("alice").await.unwrap().unwrap();
    assert_eq!(
        (fresh.failed_attempts, fresh.locked, fresh.used_at),
        (0, false, None)
    );
    assert_eq!(fresh.code_hash, "right2");
    // Expired from expires_at on.
    assert_eq!(
        s.claim_code("alice", "right2", "k1", now + 10, 3)
            .await
            .unwrap(),
        CodeClaim::Refused(CodeRefusal::Expired)
    );

    // Fresh, then redeemed; the same key again gets the same certificate back.
    s.set_code("alice", "right3", now, now + DAY).await.unwrap();
    assert_eq!(
        s.claim_code("alice", "right3", "k1", now, 3).await.unwrap(),
        CodeClaim::Fresh
    );
    let issued = cert("02", "alice", ca, "k1", now);
    assert_eq!(
        s.complete_issue("right3", &issued, now).await.unwrap(),
        Vec::<String>::new()
    );
    let used = s.code("alice").await.unwrap().unwrap();
    assert_eq!(used.used_at, Some(now));
    assert_eq!(used.used_serial.as_deref(), Some("02"));
    match s
        .claim_code("alice", "right3", "k1", now + 5, 3)
        .await
        .unwrap()
    {
        CodeClaim::AlreadyIssued(c) => assert_eq!(*c, issued),
        other => panic!("retry with the same key: {other:?}"),
    }
    assert_eq!(
        s.claim_code("alice", "right3", "k2", now + 5, 3)
            .await
            .unwrap(),
        CodeClaim::Refused(CodeRefusal::Used)
    );
    assert_eq!(
        s.claim_code("alice", "wrong", "k1", now + 5, 3)
            .await
            .unwrap(),
        CodeClaim::Refused(CodeRefusal::Used)
    );
    assert_eq!(s.code("alice").await.unwrap().unwrap().failed_attempts, 0);
    // Redeeming again is a conflict and inserts nothing.
    match s
        .complete_issue("right3", &cert("03", "alice", ca, "k1", now), now)
        .await
    {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("second redemption: {other:?}"),
    }
    assert_eq!(s.certificate("03").await.unwrap(), None);
    assert_eq!(status_of(&s, "02").await, CertStatus::Current);

    // Once revoked, the certificate is no longer handed out to a retry.
    s.revoke("02", "keyCompromise", now + 6).await.unwrap();
    assert_eq!(
        s.claim_code("alice", "right3", "k1", now + 7, 3)
            .await
            .unwrap(),
        CodeClaim::Refused(CodeRefusal::Used)
    );
}

/// The one read before signing: user, contract state and code together, and a claim
/// decided on it exactly as `claim_code` decides (a wrong try still counts).
async fn issuance_subject_reads_user_contract_and_code(db: &TestDb) {
    let (s, _) = setup(db).await;
    let refused = |_: &CodeRefusal| staff_entry("code.refused", "bob");
    assert!(s.issuance_subject("nobody").await.unwrap().is_none());

    // bob: enabled, in an enabled contract, no code yet.
    let bob = s.issuance_subject("bob").await.unwrap().unwrap();
    assert_eq!(bob.user, user("bob", "c1", Role::General));
    assert_eq!(bob.contract_enabled, Some(true));
    assert_eq!(
        s.claim_subject_code(&bob, "code-bob", "k-bob", T0, 5, &refused)
            .await
            .unwrap(),
        CodeClaim::Refused(CodeRefusal::NoCode)
    );

    // With a code: the right one is accepted, a wrong one counted as in `claim_code`.
    s.set_code("bob", "code-bob", T0, T0 + DAY).await.unwrap();
    let bob = s.issuance_subject("bob").await.unwrap().unwrap();
    assert_eq!(
        s.claim_subject_code(&bob, "code-bob", "k-bob", T0 + 1, 5, &refused)
            .await
            .unwrap(),
        CodeClaim::Fresh
    );
    assert_eq!(
        s.claim_subject_code(&bob, "not-it", "k-bob", T0 + 1, 5, &refused)
            .await
            .unwrap(),
        CodeClaim::CountedAndAudited(CodeRefusal::Wrong { remaining: 4 })
    );
    assert_eq!(s.code("bob").await.unwrap().unwrap().failed_attempts, 1);
    // An expired code, read before it expired, is judged at the time of the claim.
    assert_eq!(
        s.claim_subject_code(&bob, "code-bob", "k-bob", T0 + DAY, 5, &refused)
            .await
            .unwrap(),
        CodeClaim::Refused(CodeRefusal::Expired)
    );

    // A disabled user and a user of a disabled contract are read as such.
    let mut off = user("off", "c1", Role::General);
    off.enabled = false;
    s.insert_user(&off).await.unwrap();
    let read = s.issuance_subject("off").await.unwrap().unwrap();
    assert!(!read.user.enabled);
    assert_eq!(read.contract_enabled, Some(true));
    let mut closed = contract("c2");
    closed.enabled = false;
    s.insert_contract(&closed).await.unwrap();
    s.insert_user(&user("eve", "c2", Role::General))
        .await
        .unwrap();
    let read = s.issuance_subject("eve").await.unwrap().unwrap();
    assert!(read.user.enabled);
    assert_eq!(read.contract_enabled, Some(false));
}

async fn complete_issue_revokes_previous_current(db: &TestDb) {
    let (s, ca) = setup(db).await;
    assert!(issue(&s, "alice", "0a", ca, T0).await.is_empty());
    assert_eq!(
        issue(&s, "alice", "0b", ca, T0 + 50).await,
        vec!["0a".to_owned()]
    );
    let old = s.certificate("0a").await.unwrap().unwrap();
    assert_eq!(old.status, CertStatus::Revoked);
    assert_eq!(old.revoked_at, Some(T0 + 50));
    assert_eq!(old.revocation_reason.as_deref(), Some("superseded"));
    assert_eq!(
        s.current_certificate("alice")
            .await
            .unwrap()
            .unwrap()
            .serial,
        "0b"
    );
    // Another login's certificate is untouched.
    assert!(issue(&s, "bob", "0c", ca, T0 + 60).await.is_empty());
    assert_eq!(status_of(&s, "0b").await, CertStatus::Current);

    // A duplicate serial is a conflict that leaves the code unused.
    s.set_code("bob", "dup", T0, T0 + DAY).await.unwrap();
    match s
        .complete_issue("dup", &cert("0b", "bob", ca, "k", T0 + 70), T0 + 70)
        .await
    {
        Err(StoreError::Conflict(m)) => assert!(m.contains("0b"), "{m}"),
        other => panic!("duplicate serial: {other:?}"),
    }
    assert_eq!(s.code("bob").await.unwrap().unwrap().used_at, None);
    assert_eq!(status_of(&s, "0c").await, CertStatus::Current);

    let all = s
        .certificates(&CertFilter {
            login: Some("alice".into()),
            status: None,
        })
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|c| c.serial.as_str()).collect::<Vec<_>>(),
        ["0a", "0b"]
    );
    let current = s
        .certificates(&CertFilter {
            login: None,
            status: Some(CertStatus::Current),
        })
        .await
        .unwrap();
    assert_eq!(
        current
            .iter()
            .map(|c| c.serial.as_str())
            .collect::<Vec<_>>(),
        ["0b", "0c"]
    );
    assert_eq!(
        s.certificates(&CertFilter::default()).await.unwrap().len(),
        3
    );
}

async fn schema_refuses_second_current(db: &TestDb) {
    let (s, ca) = setup(db).await;
    issue(&s, "alice", "a1", ca, T0).await;
    s.complete_renewal("a1", &cert("a2", "alice", ca, "k2", T0 + 10), T0 + 10)
        .await
        .unwrap();
    drop(s);

    // Making the superseded one current again, or inserting a second current row, bypassing
    // the store: the partial unique index refuses both.
    let e = db
        .raw("UPDATE certificates SET status = 'current' WHERE serial = 'a1'")
        .await
        .expect_err("second current by UPDATE");
    assert!(unique_violation(&e), "{e}");
    let e = db
        .raw(
            "INSERT INTO certificates (serial, login, contract_id, ca_id, der, sha256, \
             spki_sha256, not_before, not_after, status, created_at) \
             SELECT 'a3', login, contract_id, ca_id, der, 'other-sha', spki_sha256, \
             not_before, not_after, 'current', created_at FROM certificates WHERE serial = 'a2'",
        )
        .await
        .expect_err("second current by INSERT");
    assert!(unique_violation(&e), "{e}");
    // The same insert as superseded is fine: only `current` is unique per login.
    let n = db
        .raw(
            "INSERT INTO certificates (serial, login, contract_id, ca_id, der, sha256, \
             spki_sha256, not_before, not_after, status, superseded_at, created_at) \
             SELECT 'a4', login, contract_id, ca_id, der, 'other-sha', spki_sha256, \
             not_before, not_after, 'superseded', created_at, created_at \
             FROM certificates WHERE serial = 'a2'",
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    // And an unknown status is refused by the CHECK.
    assert!(
        db.raw("UPDATE certificates SET status = 'expired' WHERE serial = 'a4'")
            .await
            .is_err()
    );
}

fn unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

async fn concurrent_complete_issue_one_wins(db: &TestDb) {
    let (s1, ca) = setup(db).await;
    // A second handle (its own pool), as another gateway instance would have.
    let s2 = Store::connect(&db.url).await.unwrap();
    for round in 0..6 {
        let at = T0 + round * 100;
        let code = format!("code-{round}");
        s1.set_code("alice", &code, at, at + DAY).await.unwrap();
        let c1 = cert(&format!("{round}1"), "alice", ca, "k1", at);
        let c2 = cert(&format!("{round}2"), "alice", ca, "k2", at);
        let (a, b) = {
            let (s1, s2, code1, code2) = (s1.clone(), s2.clone(), code.clone(), code.clone());
            let t1 = tokio::spawn(async move { s1.complete_issue(&code1, &c1, at).await });
            let t2 = tokio::spawn(async move { s2.complete_issue(&code2, &c2, at).await });
            (t1.await.unwrap(), t2.await.unwrap())
        };
        let wins = [&a, &b].iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {a:?} / {b:?}");
        for r in [&a, &b] {
            if let Err(e) = r {
                assert!(matches!(e, StoreError::Conflict(_)), "round {round}: {e:?}");
            }
        }
        let current = s1.current_certificate("alice").await.unwrap().unwrap();
        let winner = if a.is_ok() { "1" } else { "2" };
        assert_eq!(current.serial, format!("{round}{winner}"));
        let loser = if a.is_ok() { "2" } else { "1" };
        assert_eq!(
            s1.certificate(&format!("{round}{loser}")).await.unwrap(),
            None
        );
        assert_eq!(
            s1.code("alice").await.unwrap().unwrap().used_serial,
            Some(current.serial)
        );
    }
    let current = s1
        .certificates(&CertFilter {
            login: Some("alice".into()),
            status: Some(CertStatus::Current),
        })
        .await
        .unwrap();
    assert_eq!(current.len(), 1);
}

async fn renewal(db: &TestDb) {
    let (s, ca) = setup(db).await;
    issue(&s, "alice", "r1", ca, T0).await;
    s.complete_renewal("r1", &cert("r2", "alice", ca, "k2", T0 + 10), T0 + 10)
        .await
        .unwrap();
    let old = s.certificate("r1").await.unwrap().unwrap();
    assert_eq!(old.status, CertStatus::Superseded);
    assert_eq!(old.superseded_at, Some(T0 + 10));
    assert_eq!(old.revoked_at, None);
    assert_eq!(
        s.current_certificate("alice")
            .await
            .unwrap()
            .unwrap()
            .serial,
        "r2"
    );

    // Renewing from a certificate that is no longer current.
    match s
        .complete_renewal("r1", &cert("r3", "alice", ca, "k3", T0 + 20), T0 + 20)
        .await
    {
        Err(StoreError::Conflict(m)) => assert_eq!(m, "certificate r1 is not current"),
        other => panic!("renewal from superseded: {other:?}"),
    }
    assert_eq!(s.certificate("r3").await.unwrap(), None);
    match s
        .complete_renewal("ff", &cert("r3", "alice", ca, "k3", T0 + 20), T0 + 20)
        .await
    {
        Err(StoreError::NotFound(m)) => assert_eq!(m, "certificate ff"),
        other => panic!("renewal from unknown: {other:?}"),
    }
    // A renewal must stay with the same login ID.
    match s
        .complete_renewal("r2", &cert("r3", "bob", ca, "k3", T0 + 20), T0 + 20)
        .await
    {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("renewal for another login: {other:?}"),
    }
    assert_eq!(status_of(&s, "r2").await, CertStatus::Current);
}

async fn revoke(db: &TestDb) {
    let (s, ca) = setup(db).await;
    match s.revoke("ff", "keyCompromise", T0).await {
        Err(StoreError::NotFound(m)) => assert_eq!(m, "certificate ff"),
        other => panic!("unknown serial: {other:?}"),
    }
    issue(&s, "alice", "v1", ca, T0).await;
    let r = s.revoke("v1", "keyCompromise", T0 + 5).await.unwrap();
    assert_eq!(r.status, CertStatus::Revoked);
    assert_eq!(r.revoked_at, Some(T0 + 5));
    assert_eq!(r.revocation_reason.as_deref(), Some("keyCompromise"));
    assert_eq!(s.certificate("v1").await.unwrap(), Some(r));
    assert_eq!(s.current_certificate("alice").await.unwrap(), None);
    match s.revoke("v1", "keyCompromise", T0 + 6).await {
        Err(StoreError::Conflict(m)) => assert_eq!(m, "certificate v1 is already revoked"),
        other => panic!("second revoke: {other:?}"),
    }
    assert_eq!(
        s.certificate("v1").await.unwrap().unwrap().revoked_at,
        Some(T0 + 5)
    );
    // A superseded certificate can be revoked too.
    issue(&s, "alice", "v2", ca, T0 + 10).await;
    s.complete_renewal("v2", &cert("v3", "alice", ca, "k", T0 + 20), T0 + 20)
        .await
        .unwrap();
    let r = s
        .revoke("v2", "cessationOfOperation", T0 + 30)
        .await
        .unwrap();
    assert_eq!(r.status, CertStatus::Revoked);
    assert_eq!(r.superseded_at, Some(T0 + 20));
}

async fn reissue(db: &TestDb) {
    let (s, ca) = setup(db).await;
    issue(&s, "bob", "e1", ca, T0).await;
    s.claim_code("bob", "wrong", "k", T0, 5).await.unwrap();
    let revoked = s
        .reissue("bob", "cessationOfOperation", "new-code", T0 + 10, T0 + DAY)
        .await
        .unwrap()
        .expect("bob had a current certificate");
    assert_eq!(revoked.serial, "e1");
    assert_eq!(revoked.status, CertStatus::Revoked);
    assert_eq!(
        revoked.revocation_reason.as_deref(),
        Some("cessationOfOperation")
    );
    assert_eq!(status_of(&s, "e1").await, CertStatus::Revoked);
    let code = s.code("bob").await.unwrap().unwrap();
    assert_eq!(code.code_hash, "new-code");
    assert_eq!(
        (
            code.created_at,
            code.expires_at,
            code.used_at,
            code.failed_attempts
        ),
        (T0 + 10, T0 + DAY, None, 0)
    );
    assert_eq!(
        s.claim_code("bob", "new-code", "k2", T0 + 11, 5)
            .await
            .unwrap(),
        CodeClaim::Fresh
    );

    // No current certificate: only the code is replaced.
    assert_eq!(
        s.reissue("alice", "cessationOfOperation", "a-code", T0, T0 + DAY)
            .await
            .unwrap(),
        None
    );
    assert_eq!(s.code("alice").await.unwrap().unwrap().code_hash, "a-code");
    match s
        .reissue("ghost", "cessationOfOperation", "x", T0, T0 + DAY)
        .await
    {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("unknown login: {other:?}"),
    }
}

/// A renewed certificate's predecessor stays good for the overlap; when the successor is
/// revoked, or the login ID re-issued, the predecessor goes with it (a thief who renewed a
/// copied certificate and never used the renewal keeps nothing).
async fn a_predecessor_goes_with_its_revoked_successor(db: &TestDb) {
    let (s, ca) = setup(db).await;
    issue(&s, "alice", "p1", ca, T0).await;
    s.complete_renewal("p1", &cert("p2", "alice", ca, "k2", T0 + 10), T0 + 10)
        .await
        .unwrap();
    issue(&s, "bob", "q1", ca, T0).await;
    s.complete_renewal("q1", &cert("q2", "bob", ca, "k4", T0 + 10), T0 + 10)
        .await
        .unwrap();
    let mut changes = s.subscribe_changes();

    s.revoke("p2", "keyCompromise", T0 + 20).await.unwrap();
    let p1 = s.certificate("p1").await.unwrap().unwrap();
    assert_eq!(p1.status, CertStatus::Revoked);
    assert_eq!(p1.revocation_reason.as_deref(), Some("superseded"));
    assert_eq!(p1.revoked_at, Some(T0 + 20));
    // Both announced (PostgreSQL's feed may still bring the renewals' changes first).
    expect_change(&mut changes, "p2").await;
    expect_change(&mut changes, "p1").await;
    // Another login ID's predecessor is left alone.
    assert_eq!(status_of(&s, "q1").await, CertStatus::Superseded);

    // A re-issue takes the current certificate and every superseded one.
    s.reissue("bob", "cessationOfOperation", "code", T0 + 30, T0 + DAY)
        .await
        .unwrap();
    assert_eq!(status_of(&s, "q2").await, CertStatus::Revoked);
    let q1 = s.certificate("q1").await.unwrap().unwrap();
    assert_eq!(q1.status, CertStatus::Revoked);
    assert_eq!(q1.revocation_reason.as_deref(), Some("superseded"));
}

async fn retire_superseded(db: &TestDb) {
    let (s, ca) = setup(db).await;
    // alice renews at T0+100; her new certificate is not used yet.
    issue(&s, "alice", "s1", ca, T0).await;
    s.complete_renewal("s1", &cert("s2", "alice", ca, "k", T0 + 100), T0 + 100)
        .await
        .unwrap();
    // bob renews at T0+200.
    issue(&s, "bob", "s3", ca, T0).await;
    s.complete_renewal("s3", &cert("s4", "bob", ca, "k", T0 + 200), T0 + 200)
        .await
        .unwrap();

    // Nothing is old enough and no successor was used.
    assert!(
        s.retire_superseded(T0 + 100, T0 + 300)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(status_of(&s, "s1").await, CertStatus::Superseded);

    // alice's successor is used: her old certificate goes at that moment, announced, not
    // at the next pass.
    let mut changes = s.subscribe_changes();
    assert!(s.mark_first_used("s2", T0 + 310).await.unwrap());
    assert!(!s.mark_first_used("s2", T0 + 320).await.unwrap());
    assert_eq!(
        s.certificate("s2").await.unwrap().unwrap().first_used_at,
        Some(T0 + 310)
    );
    let s1 = s.certificate("s1").await.unwrap().unwrap();
    assert_eq!(s1.status, CertStatus::Revoked);
    assert_eq!(s1.revocation_reason.as_deref(), Some("superseded"));
    assert_eq!(s1.revoked_at, Some(T0 + 310));
    expect_change(&mut changes, "s1").await;
    assert!(
        s.retire_superseded(T0 + 100, T0 + 330)
            .await
            .unwrap()
            .is_empty()
    );
    // Another login ID's first use leaves bob's superseded certificate alone.
    assert!(s.mark_first_used("s1", T0 + 340).await.unwrap());
    assert_eq!(status_of(&s, "s3").await, CertStatus::Superseded);

    // bob's grace ends by time.
    assert_eq!(
        s.retire_superseded(T0 + 201, T0 + 400).await.unwrap(),
        vec!["s3".to_owned()]
    );
    assert_eq!(status_of(&s, "s3").await, CertStatus::Revoked);
    assert_eq!(status_of(&s, "s4").await, CertStatus::Current);
    assert!(
        s.retire_superseded(T0 + 1000, T0 + 500)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn certificate_status_joins_user_and_contract(db: &TestDb) {
    let (s, ca) = setup(db).await;
    let mut off = contract("c2");
    off.enabled = false;
    s.insert_contract(&off).await.unwrap();
    let mut carol = user("carol", "c2", Role::Approver);
    carol.enabled = false;
    s.insert_user(&carol).await.unwrap();

    issue(&s, "alice", "d1", ca, T0).await;
    let v = s.certificate_status("d1").await.unwrap().unwrap();
    assert_eq!(v.cert, s.certificate("d1").await.unwrap().unwrap());
    assert_eq!(v.role, Role::Admin);
    assert!(v.user_enabled && v.contract_enabled);

    s.set_code("carol", "cc", T0, T0 + DAY).await.unwrap();
    let mut c = cert("d2", "carol", ca, "k", T0);
    c.contract_id = "c2".into();
    s.complete_issue("cc", &c, T0).await.unwrap();
    let v = s.certificate_status("d2").await.unwrap().unwrap();
    assert_eq!(v.role, Role::Approver);
    assert!(!v.user_enabled);
    assert!(!v.contract_enabled);
    assert_eq!(v.cert.contract_id, "c2");

    assert_eq!(s.certificate_status("ff").await.unwrap(), None);
}

async fn users_and_contracts_switch_off_and_on(db: &TestDb) {
    let (s, ca) = setup(db).await;
    issue(&s, "bob", "e1", ca, T0).await;
    let mut rx = s.subscribe_changes();
    let staff = staff_entry;
    let before = verified_log(&s).await.len();

    // Off: stored, recorded, bob's certificate announced, the gateway's view follows.
    assert!(
        s.set_user_enabled_audited("bob", false, &staff("user.disable", "bob"))
            .await
            .unwrap()
    );
    expect_change(&mut rx, "e1").await;
    assert!(!s.user("bob").await.unwrap().unwrap().enabled);
    let v = s.certificate_status("e1").await.unwrap().unwrap();
    assert!(!v.user_enabled && v.contract_enabled);
    assert_eq!(v.cert.status, CertStatus::Current);
    // When it was switched off: the hold's start for OCSP and the CRL.
    assert_eq!(
        (v.user_disabled_at, v.contract_disabled_at),
        (Some(T0), None)
    );
    // Off again: nothing changes and nothing is recorded.
    assert!(
        !s.set_user_enabled_audited("bob", false, &staff("user.disable", "bob"))
            .await
            .unwrap()
    );
    let log = verified_log(&s).await;
    assert_eq!(log.len(), before + 1);
    assert_eq!(
        (log[before].action.as_str(), log[before].subject.as_str()),
        ("user.disable", "bob")
    );
    // On: the same certificate is accepted again.
    assert!(
        s.set_user_enabled_audited("bob", true, &staff("user.enable", "bob"))
            .await
            .unwrap()
    );
    expect_change(&mut rx, "e1").await;
    let v = s.certificate_status("e1").await.unwrap().unwrap();
    assert!(v.user_enabled);
    assert_eq!(v.user_disabled_at, None);

    // Unknown names: an error, and nothing recorded.
    assert!(matches!(
        s.set_user_enabled_audited("nobody", false, &staff("user.disable", "nobody"))
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.set_contract_enabled_audited("c9", false, &staff("contract.disable", "c9"))
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(verified_log(&s).await.len(), before + 2);

    // A contract off: every cache starts over, and its users' view follows.
    assert!(
        s.set_contract_enabled_audited("c1", false, &staff("contract.disable", "c1"))
            .await
            .unwrap()
    );
    expect_change(&mut rx, CertChange::RESYNC).await;
    assert!(!s.contract("c1").await.unwrap().unwrap().enabled);
    let v = s.certificate_status("e1").await.unwrap().unwrap();
    assert!(v.user_enabled && !v.contract_enabled);
    let log = verified_log(&s).await;
    assert_eq!(log.len(), before + 3);
    assert_eq!(log[before + 2].action, "contract.disable");
}

/// The CRL's candidates through the one status rule: revoked, superseded past the overlap,
/// held (disabled login ID) and revoked server certificates; current, overlapping and
/// expired ones are not listed; each CA has its own.
async fn crl_candidates(db: &TestDb) {
    let entries = |facts: &[StatusFacts], now, overlap| -> Vec<(String, i64, Option<u8>)> {
        certgate::status::crl_entries(facts, now, overlap)
            .into_iter()
            .map(|e| (e.serial, e.revoked_at, e.reason_code))
            .collect()
    };
    let (s, ca1) = setup(db).await;
    s.insert_user(&user("carol", "c1", Role::General))
        .await
        .unwrap();
    issue(&s, "alice", "l1", ca1, T0).await; // not_after = T0 + 365 days
    issue(&s, "bob", "l2", ca1, T0 + 10 * DAY).await;
    s.revoke("l2", "keyCompromise", T0 + 11 * DAY)
        .await
        .unwrap();
    s.revoke("l1", "affiliationChanged", T0 + 12 * DAY)
        .await
        .unwrap();
    // A certificate of another CA.
    let ca2 = s.insert_ca("ca-2", b"ca2", "", true, T0).await.unwrap().id;
    issue(&s, "alice", "l3", ca2, T0 + 20 * DAY).await;
    s.revoke("l3", "keyCompromise", T0 + 21 * DAY)
        .await
        .unwrap();
    // bob renews l4 into l5 at T0+31d: l4 is good for the 7-day overlap, then superseded.
    issue(&s, "bob", "l4", ca1, T0 + 30 * DAY).await;
    s.complete_renewal(
        "l4",
        &cert("l5", "bob", ca1, "k5", T0 + 31 * DAY),
        T0 + 31 * DAY,
    )
    .await
    .unwrap();
    // carol is disabled at T0 (staff_entry's time): her certificate is on hold from then.
    issue(&s, "carol", "l6", ca1, T0 + 40 * DAY).await;
    s.set_user_enabled_audited("carol", false, &staff_entry("user.disable", "carol"))
        .await
        .unwrap();
    // A server certificate, revoked.
    let server = ServerCertRecord {
        serial: "a1".into(),
        ca_id: ca1,
        names: "gw.example".into(),
        der: vec![0x30, 0x03, 0x02, 0x01, 0x02],
        sha256: "sha-of-a1".into(),
        not_before: T0,
        not_after: T0 + 200 * DAY,
        status: CertStatus::Current,
        revoked_at: None,
        revocation_reason: None,
        created_at: T0,
    };
    s.insert_server_certificate_audited(&server, &staff_entry("server_cert.issue", "a1"))
        .await
        .unwrap();
    assert!(
        entries(
            &s.facts_for_crl(ca1, T0 + 50 * DAY).await.unwrap(),
            T0 + 50 * DAY,
            7 * DAY
        )
        .iter()
        .all(|(serial, _, _)| serial != "a1")
    );
    s.revoke_server_certificate_audited("a1", "cessationOfOperation", T0 + 60 * DAY, |_| {
        staff_entry("server_cert.revoke", "a1")
    })
    .await
    .unwrap();
    assert_eq!(
        s.status_facts("a1").await.unwrap().map(|f| f.revoked_at),
        Some(Some(T0 + 60 * DAY))
    );

    let week = 7 * DAY;
    let at = T0 + 36 * DAY; // l4 still within its overlap: not listed
    assert_eq!(
        entries(&s.facts_for_crl(ca1, at).await.unwrap(), at, week),
        vec![
            ("l6".to_owned(), T0, Some(6)),
            ("l2".to_owned(), T0 + 11 * DAY, Some(1)),
            ("l1".to_owned(), T0 + 12 * DAY, Some(3)),
            ("a1".to_owned(), T0 + 60 * DAY, Some(5)),
        ]
    );
    let at = T0 + 100 * DAY; // l4 past its overlap, a1 revoked
    assert_eq!(
        entries(&s.facts_for_crl(ca1, at).await.unwrap(), at, week),
        vec![
            ("l6".to_owned(), T0, Some(6)),
            ("l2".to_owned(), T0 + 11 * DAY, Some(1)),
            ("l1".to_owned(), T0 + 12 * DAY, Some(3)),
            ("l4".to_owned(), T0 + 38 * DAY, Some(4)),
            ("a1".to_owned(), T0 + 60 * DAY, Some(5)),
        ]
    );
    // Enabled again: carol's certificate leaves the next CRL.
    s.set_user_enabled_audited("carol", true, &staff_entry("user.enable", "carol"))
        .await
        .unwrap();
    assert!(
        entries(&s.facts_for_crl(ca1, at).await.unwrap(), at, week)
            .iter()
            .all(|(serial, _, _)| serial != "l6")
    );
    // l1 expired at T0+365d (a1 at T0+200d): dropped; l2 stays until T0+375d.
    let at = T0 + 366 * DAY;
    assert_eq!(
        entries(&s.facts_for_crl(ca1, at).await.unwrap(), at, week),
        vec![
            ("l2".to_owned(), T0 + 11 * DAY, Some(1)),
            ("l4".to_owned(), T0 + 38 * DAY, Some(4)),
        ]
    );
    assert_eq!(
        entries(&s.facts_for_crl(ca2, T0).await.unwrap(), T0, week),
        vec![("l3".to_owned(), T0 + 21 * DAY, Some(1))]
    );
    assert!(
        s.facts_for_crl(ca1, T0 + 800 * DAY)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn cas_and_crl_numbers(db: &TestDb) {
    let s = open(db).await;
    assert_eq!(s.active_ca().await.unwrap(), None);
    let a = s.insert_ca("key-a", b"der-a", "", true, T0).await.unwrap();
    assert!(a.active);
    assert_eq!(s.active_ca().await.unwrap(), Some(a.clone()));
    // An inactive CA (e.g. prepared for a rollover) leaves the active one alone.
    let b = s
        .insert_ca(
            "key-b",
            b"der-b",
            "-----BEGIN CERTIFICATE-----\n",
            false,
            T0 + 1,
        )
        .await
        .unwrap();
    assert_eq!(s.active_ca().await.unwrap().unwrap().id, a.id);
    let c = s
        .insert_ca("key-c", b"der-c", "", true, T0 + 2)
        .await
        .unwrap();
    assert_eq!(s.active_ca().await.unwrap(), Some(c.clone()));
    let all = s.cas().await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(
        all.iter().map(|x| (x.id, x.active)).collect::<Vec<_>>(),
        vec![(a.id, false), (b.id, false), (c.id, true)]
    );
    assert_eq!(all[1], b);

    let mut last = 0;
    for _ in 0..5 {
        let n = s.next_crl_number(a.id).await.unwrap();
        assert!(n > last, "{n} after {last}");
        last = n;
    }
    assert_eq!(last, 5);
    assert_eq!(s.next_crl_number(c.id).await.unwrap(), 1);
    assert_eq!(s.next_crl_number(a.id).await.unwrap(), 6);

    // Concurrent callers never get the same number.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        let id = c.id;
        tasks.push(tokio::spawn(async move { s.next_crl_number(id).await }));
    }
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap().unwrap());
    }
    got.sort();
    assert_eq!(got, (2..=9).collect::<Vec<_>>());

    match s.next_crl_number(9999).await {
        Err(StoreError::NotFound(m)) => assert_eq!(m, "CA 9999"),
        other => panic!("unknown CA: {other:?}"),
    }
}

async fn audit_chain(db: &TestDb) {
    let s = open(db).await;
    let entry = |i: i64| NewAudit {
        at: T0 + i,
        actor: "staff:ops".into(),
        action: "cert.revoke".into(),
        subject: format!("serial-{i}"),
        outcome: if i % 2 == 0 { "ok" } else { "refused" }.into(),
        detail: serde_json::json!({ "reason": "keyCompromise", "n": i }),
    };
    let first = s.append_audit(&entry(0)).await.unwrap();
    assert_eq!(first.seq, 1);
    assert_eq!(first.prev_hash, GENESIS_HASH);
    assert_eq!(first.hash, audit_hash(GENESIS_HASH, &first));
    assert_eq!(first.detail, r#"{"n":0,"reason":"keyCompromise"}"#);

    // Concurrent appends from two handles: serialized, no fork, no gap.
    let s2 = Store::connect(&db.url).await.unwrap();
    let mut tasks = Vec::new();
    for i in 1..=12 {
        let s = if i % 2 == 0 { s.clone() } else { s2.clone() };
        let e = entry(i);
        tasks.push(tokio::spawn(async move { s.append_audit(&e).await }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let records = s.audit_records(1, 100).await.unwrap();
    assert_eq!(records.len(), 13);
    assert_eq!(
        records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=13).collect::<Vec<_>>()
    );
    let last = verify_audit_chain(GENESIS_HASH, &records).expect("chain verifies");
    assert_eq!(last, records[12].hash);
    // Paging continues the chain from the previous page's last hash.
    let page = s.audit_records(5, 3).await.unwrap();
    assert_eq!(
        page.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![5, 6, 7]
    );
    verify_audit_chain(&records[3].hash, &page).unwrap();
    // A tampered copy does not verify.
    let mut forged: Vec<AuditRecord> = records.clone();
    forged[6].actor = "system".into();
    assert_eq!(
        verify_audit_chain(GENESIS_HASH, &forged).unwrap_err().seq,
        7
    );

    // The table itself refuses changes.
    assert!(
        db.raw("UPDATE audit_log SET outcome = 'ok' WHERE seq = 2")
            .await
            .is_err()
    );
    assert!(
        db.raw("DELETE FROM audit_log WHERE seq = 13")
            .await
            .is_err()
    );
    assert!(db.raw("DELETE FROM audit_log").await.is_err());
    if db.kind == Kind::Postgres {
        assert!(db.raw("TRUNCATE audit_log").await.is_err());
    }
    assert_eq!(s.audit_records(1, 100).await.unwrap(), records);
    // Appending still works and chains on.
    let next = s.append_audit(&entry(99)).await.unwrap();
    assert_eq!((next.seq, next.prev_hash.as_str()), (14, last.as_str()));
}

async fn changes_announced_after_revoke(db: &TestDb) {
    let (s, ca) = setup(db).await;
    let other = Store::connect(&db.url).await.unwrap();
    let mut rx = s.subscribe_changes();
    let mut rx_other = other.subscribe_changes();

    issue(&s, "alice", "n1", ca, T0).await;
    expect_change(&mut rx, "n1").await;
    s.revoke("n1", "keyCompromise", T0 + 1).await.unwrap();
    expect_change(&mut rx, "n1").await;

    issue(&s, "bob", "n2", ca, T0).await;
    s.complete_renewal("n2", &cert("n3", "bob", ca, "k", T0 + 5), T0 + 5)
        .await
        .unwrap();
    expect_change(&mut rx, "n2").await;
    expect_change(&mut rx, "n3").await;
    s.reissue("bob", "keyCompromise", "c", T0 + 6, T0 + DAY)
        .await
        .unwrap();
    expect_change(&mut rx, "n3").await;
    // The re-issue took bob's superseded certificate with it.
    expect_change(&mut rx, "n2").await;

    match db.kind {
        Kind::Postgres => {
            // Another instance hears about it through NOTIFY.
            expect_change(&mut rx_other, "n1").await;
            expect_change(&mut rx_other, "n3").await;
            expect_change(&mut rx_other, "n2").await;
        }
        Kind::Sqlite => {
            // One file, one instance: nothing crosses handles.
            assert!(matches!(
                rx_other.try_recv(),
                Err(tokio::sync::broadcast::error::TryRecvError::Empty)
            ));
        }
    }
}

/// The audit entry obtaining writes for `serial`.
fn obtain_entry(login: &str, serial: &str) -> NewAudit {
    NewAudit {
        at: T0,
        actor: format!("user:{login}"),
        action: "cert.obtain".into(),
        subject: login.into(),
        outcome: "ok".into(),
        detail: serde_json::json!({ "serial": serial }),
    }
}

/// An audit entry of a staff action on `subject`.
fn staff_entry(action: &str, subject: &str) -> NewAudit {
    NewAudit {
        at: T0,
        actor: "staff:ops".into(),
        action: action.into(),
        subject: subject.into(),
        outcome: "ok".into(),
        detail: serde_json::json!({}),
    }
}

/// The whole audit log, checked to chain from the genesis without a gap.
async fn verified_log(s: &Store) -> Vec<AuditRecord> {
    let records = s.audit_records(1, 100_000).await.unwrap();
    verify_audit_chain(GENESIS_HASH, &records).expect("the audit chain verifies");
    assert_eq!(
        records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=records.len() as i64).collect::<Vec<_>>()
    );
    records
}

/// The `cert.obtain` records naming `serial`.
fn obtain_records<'a>(log: &'a [AuditRecord], serial: &str) -> Vec<&'a AuditRecord> {
    let detail = serde_json::json!({ "serial": serial }).to_string();
    log.iter()
        .filter(|r| r.action == "cert.obtain" && r.detail == detail)
        .collect()
}

/// Login IDs `{prefix}0..n` in contract c1, each with the code `code-{login}`.
async fn users_with_codes(s: &Store, prefix: &str, n: usize) -> Vec<String> {
    let mut logins = Vec::new();
    for i in 0..n {
        let login = format!("{prefix}{i}");
        s.insert_user(&user(&login, "c1", Role::General))
            .await
            .unwrap();
        s.set_code(&login, &format!("code-{login}"), T0, T0 + DAY)
            .await
            .unwrap();
        logins.push(login);
    }
    logins
}

async fn group_commit_concurrent_issuances(db: &TestDb) {
    let (s1, ca) = setup(db).await;
    // A second handle has its own writer, as another gateway instance would.
    let s2 = Store::connect(&db.url).await.unwrap();
    let logins = users_with_codes(&s1, "g", 40).await;
    let mut tasks = Vec::new();
    for (i, login) in logins.iter().enumerate() {
        let s = if i % 4 == 3 { s2.clone() } else { s1.clone() };
        let login = login.clone();
        tasks.push(tokio::spawn(async move {
            let c = cert(&format!("9{i:03}"), &login, ca, &format!("k-{login}"), T0);
            let r = s
                .complete_issue_audited(
                    &format!("code-{login}"),
                    &c,
                    T0,
                    &[obtain_entry(&login, &c.serial)],
                )
                .await;
            (c, r)
        }));
    }
    // Plain audit appends share the chain (and the writer) meanwhile.
    let mut appends = Vec::new();
    for i in 0..8 {
        let s = if i % 2 == 0 { s1.clone() } else { s2.clone() };
        appends.push(tokio::spawn(async move {
            s.append_audit(&NewAudit {
                at: T0,
                actor: "system".into(),
                action: "notice.sent".into(),
                subject: format!("n{i}"),
                outcome: "ok".into(),
                detail: serde_json::json!({}),
            })
            .await
        }));
    }
    let mut issued = Vec::new();
    for t in tasks {
        let (c, r) = t.await.unwrap();
        assert_eq!(
            r.unwrap(),
            Redeemed::Stored {
                revoked: Vec::new()
            }
        );
        issued.push(c);
    }
    for t in appends {
        t.await.unwrap().unwrap();
    }

    let log = verified_log(&s1).await;
    assert_eq!(log.len(), issued.len() + 8);
    for c in &issued {
        // Stored byte for byte, the code redeemed for it, exactly one audit record.
        assert_eq!(s1.certificate(&c.serial).await.unwrap().as_ref(), Some(c));
        let code = s1.code(&c.login).await.unwrap().unwrap();
        assert_eq!(code.used_serial.as_deref(), Some(c.serial.as_str()));
        let recs = obtain_records(&log, &c.serial);
        assert_eq!(recs.len(), 1, "audit records of {}", c.serial);
        assert_eq!(recs[0].subject, c.login);
        assert_eq!(recs[0].actor, format!("user:{}", c.login));
    }
}

/// Holds the audit lock (PostgreSQL: the advisory lock; SQLite: the write lock) from a
/// connection of its own, so that jobs submitted meanwhile queue up and commit together.
enum LockHolder {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl LockHolder {
    async fn take(db: &TestDb) -> Self {
        use sqlx::Connection as _;
        match db.kind {
            Kind::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
                sqlx::query("BEGIN IMMEDIATE")
                    .execute(&mut c)
                    .await
                    .unwrap();
                Self::Sqlite(c)
            }
            Kind::Postgres => {
                let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
                sqlx::query("SELECT pg_advisory_lock(7162256626678854757)")
                    .execute(&mut c)
                    .await
                    .unwrap();
                Self::Postgres(c)
            }
        }
    }

    async fn release(self) {
        use sqlx::Connection as _;
        match self {
            Self::Sqlite(mut c) => {
                sqlx::query("ROLLBACK").execute(&mut c).await.unwrap();
                c.close().await.unwrap();
            }
            Self::Postgres(mut c) => {
                sqlx::query("SELECT pg_advisory_unlock(7162256626678854757)")
                    .execute(&mut c)
                    .await
                    .unwrap();
                c.close().await.unwrap();
            }
        }
    }
}

/// A value PostgreSQL refuses (a NUL byte in text) in one job's audit row fails that job
/// alone, as a refused value rather than "unavailable"; the other jobs of its batch commit.
/// (The audit module never builds such a row; this one bypasses it.) SQLite stores it.
async fn group_commit_isolates_a_value_the_database_refuses(db: &TestDb) {
    let (s, ca) = setup(db).await;
    let logins = users_with_codes(&s, "v", 6).await;
    let s_bad = s.clone();
    let holder = LockHolder::take(db).await;
    let first = {
        let s = s.clone();
        tokio::spawn(async move { s.append_audit(&obtain_entry("x", "none")).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut jobs = Vec::new();
    for (i, login) in logins.iter().enumerate() {
        let (s, c) = (
            s.clone(),
            cert(&format!("{login}-v"), login, ca, &format!("k-{login}"), T0),
        );
        jobs.push(tokio::spawn(async move {
            let entry = obtain_entry(&c.login, &c.serial);
            s.complete_issue_audited(&format!("code-{}", c.login), &c, T0, &[entry])
                .await
                .map(|_| ())
        }));
        if i == 2 {
            let s = s_bad.clone();
            jobs.push(tokio::spawn(async move {
                s.append_audit(&staff_entry("user.add", "nul\0x"))
                    .await
                    .map(|_| ())
            }));
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    holder.release().await;
    first.await.unwrap().unwrap();
    let results: Vec<Result<(), StoreError>> = {
        let mut out = Vec::new();
        for j in jobs {
            out.push(j.await.unwrap());
        }
        out
    };
    for (i, r) in results.iter().enumerate() {
        match (i, db.kind, r) {
            (3, Kind::Postgres, Err(e @ StoreError::InvalidValue(_))) => {
                assert!(e.to_string().contains("refused a value"), "{e}");
            }
            (3, Kind::Postgres, other) => panic!("the NUL row: {other:?}"),
            (_, _, r) => assert!(r.is_ok(), "job {i}: {r:?}"),
        }
    }
    let log = verified_log(&s).await;
    for login in &logins {
        let serial = format!("{login}-v");
        assert!(s.certificate(&serial).await.unwrap().is_some(), "{serial}");
        assert_eq!(obtain_records(&log, &serial).len(), 1, "{serial}");
    }
    let nul_rows = log.iter().filter(|r| r.action == "user.add").count();
    assert_eq!(nul_rows, usize::from(db.kind == Kind::Sqlite));
}

async fn group_commit_isolates_a_conflicting_job(db: &TestDb) {
    let (s, ca) = setup(db).await;
    let logins = users_with_codes(&s, "b", 8).await;
    // b3's code is redeemed beforehand, for another key.
    let taken = cert("b3-first", "b3", ca, "k-other", T0);
    s.complete_issue_audited("code-b3", &taken, T0, &[obtain_entry("b3", "b3-first")])
        .await
        .unwrap();
    // "twin" is requested twice at once with the same code and key (a retried request).
    s.insert_user(&user("twin", "c1", Role::General))
        .await
        .unwrap();
    s.set_code("twin", "code-twin", T0, T0 + DAY).await.unwrap();

    // While the lock is held, a first job waits inside the writer; the rest queue behind it
    // and are committed as one batch when the lock goes. (If the scheduler splits them
    // differently, every assertion below still holds.)
    let holder = LockHolder::take(db).await;
    let first = {
        let s = s.clone();
        tokio::spawn(async move { s.append_audit(&obtain_entry("x", "none")).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut jobs = Vec::new();
    let mut requests: Vec<CertRecord> = logins
        .iter()
        .map(|l| cert(&format!("{l}-new"), l, ca, &format!("k-{l}"), T0 + 1))
        .collect();
    requests.push(cert("twin-a", "twin", ca, "k-twin", T0 + 1));
    requests.push(cert("twin-b", "twin", ca, "k-twin", T0 + 1));
    for c in requests.clone() {
        let s = s.clone();
        jobs.push(tokio::spawn(async move {
            let code = format!("code-{}", c.login);
            let entry = obtain_entry(&c.login, &c.serial);
            s.complete_issue_audited(&code, &c, T0 + 1, &[entry]).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    holder.release().await;
    first.await.unwrap().unwrap();

    let mut twin_answers = Vec::new();
    for (c, job) in requests.iter().zip(jobs) {
        let r = job.await.unwrap();
        match c.login.as_str() {
            "b3" => match r {
                Err(StoreError::Conflict(m)) => assert!(m.contains("already redeemed"), "{m}"),
                other => panic!("a redeemed code redeemed again: {other:?}"),
            },
            "twin" => twin_answers.push((c.serial.clone(), r.unwrap())),
            _ => assert_eq!(
                r.unwrap(),
                Redeemed::Stored {
                    revoked: Vec::new()
                }
            ),
        }
    }

    let log = verified_log(&s).await;
    // The refused job left nothing: no certificate, no audit record, the code untouched.
    assert_eq!(s.certificate("b3-new").await.unwrap(), None);
    assert!(obtain_records(&log, "b3-new").is_empty());
    assert_eq!(
        s.code("b3").await.unwrap().unwrap().used_serial.as_deref(),
        Some("b3-first")
    );
    assert_eq!(status_of(&s, "b3-first").await, CertStatus::Current);
    // The twins: one stored, the other answered with that same certificate.
    let stored: Vec<&String> = twin_answers
        .iter()
        .filter(|(_, r)| matches!(r, Redeemed::Stored { .. }))
        .map(|(serial, _)| serial)
        .collect();
    assert_eq!(stored.len(), 1, "{twin_answers:?}");
    let winner = stored[0].clone();
    for (serial, r) in &twin_answers {
        if let Redeemed::AlreadyIssued(c) = r {
            assert_eq!(c.serial, winner);
            assert_eq!(s.certificate(serial).await.unwrap(), None);
            assert!(obtain_records(&log, serial).is_empty());
        }
    }
    // Audit record present iff certificate present, for every request.
    for c in &requests {
        let stored = s.certificate(&c.serial).await.unwrap().is_some();
        assert_eq!(
            obtain_records(&log, &c.serial).len(),
            usize::from(stored),
            "{}",
            c.serial
        );
    }
    assert_eq!(
        s.certificates(&CertFilter {
            login: None,
            status: Some(CertStatus::Current)
        })
        .await
        .unwrap()
        .len(),
        logins.len() + 1
    );
}

/// Submits `jobs` (code, certificate) while the audit lock is held elsewhere, so that they
/// queue up and the writer commits them together; returns each job's answer, in order.
async fn queued_issuances(
    db: &TestDb,
    s: &Store,
    jobs: Vec<(String, CertRecord)>,
) -> Vec<Result<Redeemed, StoreError>> {
    let holder = LockHolder::take(db).await;
    // A first job waits inside the writer for the lock; the rest queue behind it.
    let first = {
        let s = s.clone();
        tokio::spawn(async move { s.append_audit(&obtain_entry("x", "none")).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut tasks = Vec::new();
    for (code, c) in jobs {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let entry = obtain_entry(&c.login, &c.serial);
            s.complete_issue_audited(&code, &c, c.created_at, &[entry])
                .await
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    holder.release().await;
    first.await.unwrap().unwrap();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    answers
}

/// Fresh issuances of distinct login IDs are decided and written as a set; what the set
/// refuses is refused per job, and a set write that fails (here a duplicate serial) is redone
/// one job at a time, so only the culprit is refused. Either way an audit record exists iff
/// the certificate does.
async fn group_commit_decides_a_set_and_falls_back_one_by_one(db: &TestDb) {
    let (s, ca) = setup(db).await;
    let logins = users_with_codes(&s, "s", 6).await;
    // s1 already holds a current certificate; its new code is s1's usual one.
    issue(&s, "s1", "s1-old", ca, T0).await;
    s.set_code("s1", "code-s1", T0, T0 + DAY).await.unwrap();
    // "nocode" has no code at all.
    s.insert_user(&user("nocode", "c1", Role::General))
        .await
        .unwrap();

    // Batch 1: nothing in it makes the set write fail.
    let t1 = T0 + 10;
    let answers = queued_issuances(
        db,
        &s,
        vec![
            ("code-s0".into(), cert("s0-a", "s0", ca, "k-s0", t1)),
            ("code-s1".into(), cert("s1-a", "s1", ca, "k-s1", t1)),
            ("wrong-code".into(), cert("s2-a", "s2", ca, "k-s2", t1)),
            (
                "code-nocode".into(),
                cert("nocode-a", "nocode", ca, "k-n", t1),
            ),
        ],
    )
    .await;
    let mut answers = answers.into_iter();
    assert_eq!(
        answers.next().unwrap().unwrap(),
        Redeemed::Stored {
            revoked: Vec::new()
        }
    );
    assert_eq!(
        answers.next().unwrap().unwrap(),
        Redeemed::Stored {
            revoked: vec!["s1-old".into()]
        }
    );
    match answers.next().unwrap() {
        Err(StoreError::Conflict(m)) => assert!(m.contains("no longer valid"), "{m}"),
        other => panic!("a wrong code redeemed: {other:?}"),
    }
    assert!(matches!(
        answers.next().unwrap(),
        Err(StoreError::NotFound(_))
    ));
    let old = s.certificate("s1-old").await.unwrap().unwrap();
    assert_eq!(old.status, CertStatus::Revoked);
    assert_eq!(old.revoked_at, Some(t1));
    assert_eq!(old.revocation_reason.as_deref(), Some("superseded"));
    assert_eq!(status_of(&s, "s1-a").await, CertStatus::Current);
    assert_eq!(s.certificate("s2-a").await.unwrap(), None);
    assert_eq!(s.code("s2").await.unwrap().unwrap().used_at, None);

    // Batch 2: s4's certificate reuses the serial of s0's, so the set's insert fails.
    let t2 = T0 + 20;
    let answers = queued_issuances(
        db,
        &s,
        vec![
            ("code-s3".into(), cert("s3-a", "s3", ca, "k-s3", t2)),
            ("code-s4".into(), cert("s0-a", "s4", ca, "k-s4", t2)),
            ("code-s5".into(), cert("s5-a", "s5", ca, "k-s5", t2)),
        ],
    )
    .await;
    let mut answers = answers.into_iter();
    assert!(matches!(
        answers.next().unwrap(),
        Ok(Redeemed::Stored { .. })
    ));
    match answers.next().unwrap() {
        Err(StoreError::Conflict(m)) => assert!(m.contains("s0-a"), "{m}"),
        other => panic!("a duplicate serial stored: {other:?}"),
    }
    assert!(matches!(
        answers.next().unwrap(),
        Ok(Redeemed::Stored { .. })
    ));
    assert_eq!(s.certificate("s0-a").await.unwrap().unwrap().login, "s0");
    assert_eq!(s.code("s4").await.unwrap().unwrap().used_at, None);
    for (login, serial) in [("s3", "s3-a"), ("s5", "s5-a")] {
        assert_eq!(status_of(&s, serial).await, CertStatus::Current);
        let code = s.code(login).await.unwrap().unwrap();
        assert_eq!(code.used_serial.as_deref(), Some(serial));
        assert_eq!(code.used_at, Some(t2));
    }

    // One audit record per stored certificate, none for the refused ones.
    let log = verified_log(&s).await;
    for (serial, stored) in [
        ("s0-a", 1),
        ("s1-a", 1),
        ("s2-a", 0),
        ("nocode-a", 0),
        ("s3-a", 1),
        ("s5-a", 1),
    ] {
        assert_eq!(obtain_records(&log, serial).len(), stored, "{serial}");
    }
    // s0-a's one record is s0's, not the refused s4's.
    assert_eq!(obtain_records(&log, "s0-a")[0].subject, "s0");
    assert_eq!(logins.len(), 6);
}

async fn failed_group_commit_fails_every_job_and_stores_nothing(db: &TestDb) {
    let (s, ca) = setup(db).await;
    let logins = users_with_codes(&s, "f", 4).await;
    // The writer's transaction cannot get the audit lock: on SQLite its busy timeout runs
    // out; on PostgreSQL its connection is killed while it waits. Either way the batch
    // fails as a whole.
    let holder = LockHolder::take(db).await;
    let first = {
        let s = s.clone();
        tokio::spawn(async move { s.append_audit(&obtain_entry("x", "none")).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut jobs = Vec::new();
    for login in &logins {
        let (s, c) = (
            s.clone(),
            cert(&format!("{login}-x"), login, ca, &format!("k-{login}"), T0),
        );
        jobs.push(tokio::spawn(async move {
            let entry = obtain_entry(&c.login, &c.serial);
            s.complete_issue_audited(&format!("code-{}", c.login), &c, T0, &[entry])
                .await
        }));
    }
    let all = async {
        let mut out = vec![first.await.unwrap().map(|_| ())];
        for j in jobs {
            out.push(j.await.unwrap().map(|_| ()));
        }
        out
    };
    let results = match db.kind {
        Kind::Sqlite => all.await,
        Kind::Postgres => {
            let killer = async {
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let _ = db
                        .raw(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                             WHERE datname = current_database() AND wait_event_type = 'Lock' \
                             AND pid <> pg_backend_pid()",
                        )
                        .await;
                }
            };
            tokio::select! {
                r = all => r,
                _ = killer => unreachable!(),
            }
        }
    };
    holder.release().await;
    for r in &results {
        match r {
            Err(StoreError::Unavailable(_)) | Err(StoreError::Batch(_)) => {}
            other => panic!("a job of a failed batch: {other:?}"),
        }
    }
    // Nothing of any job: no certificate, no audit record, every code still unused.
    assert!(
        s.certificates(&CertFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.audit_records(1, 100).await.unwrap().is_empty());
    for login in &logins {
        assert_eq!(s.code(login).await.unwrap().unwrap().used_at, None);
    }
    // The writer carries on afterwards.
    let c = cert("f0-y", "f0", ca, "k-f0", T0);
    s.complete_issue_audited("code-f0", &c, T0, &[obtain_entry("f0", "f0-y")])
        .await
        .unwrap();
    assert_eq!(verified_log(&s).await.len(), 1);
}

async fn writer_reconnects_after_its_connection_was_closed(db: &TestDb) {
    let (s, ca) = setup(db).await;
    issue(&s, "alice", "r1", ca, T0).await;
    if db.kind == Kind::Postgres {
        // Every other session of the database ends, the issuance writer's among them, as
        // when the server restarts.
        db.raw(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .await
        .unwrap();
    }
    // Longer than the writer leaves its connection unchecked: the next batch pings it first
    // and opens a new one instead of failing.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    issue(&s, "bob", "r2", ca, T0 + 1).await;
    assert_eq!(
        s.current_certificate("bob").await.unwrap().unwrap().serial,
        "r2"
    );
}

async fn audited_changes_commit_with_their_record(db: &TestDb) {
    let (s, ca) = setup(db).await;
    issue(&s, "alice", "w1", ca, T0).await;
    let entry = staff_entry;

    // Renewal and its record.
    s.complete_renewal_audited(
        "w1",
        &cert("w2", "alice", ca, "k2", T0 + 1),
        T0 + 1,
        &[entry("cert.renew", "alice")],
    )
    .await
    .unwrap();
    // A refused renewal stores neither.
    assert!(
        s.complete_renewal_audited(
            "w1",
            &cert("w3", "alice", ca, "k3", T0 + 2),
            T0 + 2,
            &[entry("cert.renew", "refused-one")],
        )
        .await
        .is_err()
    );
    // Revocation and its record, made from the revoked certificate.
    let revoked = s
        .revoke_audited("w2", "keyCompromise", T0 + 3, |c| {
            entry("cert.revoke", &c.serial)
        })
        .await
        .unwrap();
    assert_eq!(revoked.status, CertStatus::Revoked);
    assert!(
        s.revoke_audited("w2", "keyCompromise", T0 + 4, |c| entry(
            "cert.revoke",
            &format!("again-{}", c.serial)
        ))
        .await
        .is_err()
    );
    // Re-issue and its record.
    issue(&s, "bob", "w4", ca, T0 + 5).await;
    let r = s
        .reissue_audited("bob", "superseded", "new", T0 + 6, T0 + DAY, |c| {
            entry("cert.reissue", c.map_or("none", |c| c.serial.as_str()))
        })
        .await
        .unwrap();
    assert_eq!(r.map(|c| c.serial), Some("w4".to_owned()));
    assert!(
        s.reissue_audited("ghost", "superseded", "new", T0 + 6, T0 + DAY, |_| {
            entry("cert.reissue", "ghost")
        })
        .await
        .is_err()
    );

    let log = verified_log(&s).await;
    assert_eq!(
        log.iter()
            .map(|r| (r.action.as_str(), r.subject.as_str()))
            .collect::<Vec<_>>(),
        vec![
            ("cert.renew", "alice"),
            ("cert.revoke", "w2"),
            ("cert.reissue", "w4"),
        ]
    );
    assert_eq!(s.certificate("w3").await.unwrap(), None);
}

async fn a_wrong_code_counts_with_its_audit_entry(db: &TestDb) {
    let (s, _ca) = setup(db).await;
    let now = T0 + 100;
    s.set_code("alice", "right", now, now + DAY).await.unwrap();
    let refused = |r: &CodeRefusal| NewAudit {
        outcome: "refused".into(),
        detail: serde_json::json!({ "refusal": format!("{r:?}") }),
        ..staff_entry("code.refused", "alice")
    };
    let claim = |hash: &'static str| {
        let s = &s;
        async move {
            let subject = s.issuance_subject("alice").await.unwrap().unwrap();
            s.claim_subject_code(&subject, hash, "k1", now, 2, &refused)
                .await
        }
    };

    // A wrong try: counted and audited together, in the entry the caller made.
    assert_eq!(
        claim("wrong").await.unwrap(),
        CodeClaim::CountedAndAudited(CodeRefusal::Wrong { remaining: 1 })
    );
    assert_eq!(s.code("alice").await.unwrap().unwrap().failed_attempts, 1);
    let log = verified_log(&s).await;
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].action.as_str(), log[0].outcome.as_str()),
        ("code.refused", "refused")
    );
    assert!(log[0].detail.contains("Wrong"), "{}", log[0].detail);

    // When the entry cannot be written, the try is not counted either.
    match db.kind {
        Kind::Sqlite => {
            db.raw(
                "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log \
                 BEGIN SELECT RAISE(ABORT, 'audit refused by the test'); END",
            )
            .await
            .unwrap();
        }
        Kind::Postgres => {
            db.raw(
                "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'audit refused by the test'; END $$",
            )
            .await
            .unwrap();
            db.raw(
                "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log \
                 FOR EACH ROW EXECUTE FUNCTION refuse_audit()",
            )
            .await
            .unwrap();
        }
    }
    assert!(claim("wrong again").await.is_err());
    assert_eq!(s.code("alice").await.unwrap().unwrap().failed_attempts, 1);
    assert_eq!(verified_log(&s).await.len(), 1);
    match db.kind {
        Kind::Sqlite => db.raw("DROP TRIGGER refuse_audit").await.unwrap(),
        Kind::Postgres => db
            .raw("DROP TRIGGER refuse_audit ON audit_log")
            .await
            .unwrap(),
    };

    // The try that reaches the maximum locks the code, with its entry.
    assert_eq!(
        claim("wrong").await.unwrap(),
        CodeClaim::CountedAndAudited(CodeRefusal::Locked)
    );
    assert!(s.code("alice").await.unwrap().unwrap().locked);
    // Refusals that count nothing write nothing here: the caller audits them.
    assert_eq!(
        claim("right").await.unwrap(),
        CodeClaim::Refused(CodeRefusal::Locked)
    );
    assert_eq!(verified_log(&s).await.len(), 2);
}

/// PostgreSQL only: when the listener's connection dies, it comes back, announces a resync,
/// and forwards notifications again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_listener_resyncs_after_connection_loss() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let (s, ca) = setup(&db).await;
    let listener = Store::connect(&db.url).await.unwrap();
    let mut rx = listener.subscribe_changes();

    // Kill every LISTEN connection of this database (the listeners of both handles).
    let killed = db
        .raw(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%' \
             AND pid <> pg_backend_pid()",
        )
        .await
        .unwrap();
    assert!(killed >= 1, "no listener connection found");
    expect_change(&mut rx, CertChange::RESYNC).await;

    issue(&s, "alice", "z1", ca, T0).await;
    expect_change(&mut rx, "z1").await;
}

async fn signature_intents_settle_once_and_discarded_ones_are_revoked(db: &TestDb) {
    let (s, ca) = setup(db).await;
    let mut rx = s.subscribe_changes();
    let intent = |serial: &str| {
        SignatureIntent::open(serial, ca, "client", "alice", "spki", T0, T0 + 30 * DAY)
    };
    for serial in ["i1", "i2", "i3"] {
        s.record_intent_audited(&intent(serial), &staff_entry("signature.intent", serial))
            .await
            .unwrap();
    }
    // One serial, one intent.
    assert!(matches!(
        s.record_intent_audited(&intent("i1"), &staff_entry("signature.intent", "i1"))
            .await,
        Err(StoreError::Conflict(_))
    ));
    // i1 is stored, which completes its intent in the same transaction: handed out, so it
    // can no longer be discarded, nor completed again.
    issue(&s, "alice", "i1", ca, T0).await;
    let i1 = s.signature_intent("i1").await.unwrap().unwrap();
    assert_eq!(
        (i1.state, i1.settled_at),
        (IntentState::Completed, Some(T0))
    );
    assert!(
        !s.complete_intent("i1", T0 + 2).await.unwrap(),
        "settled once"
    );
    assert!(matches!(
        s.discard_intent_audited("i1", "store_failed", None, T0 + 2, &staff_entry("d", "i1"))
            .await,
        Err(StoreError::Conflict(_))
    ));
    // i2 lost a race: discarded with the validity it was signed with, announced, revoked.
    let validity = Some((T0, T0 + 10 * DAY));
    let d = s
        .discard_intent_audited(
            "i2",
            "lost_redemption_race",
            validity,
            T0 + 3,
            &staff_entry("signature.discard", "i2"),
        )
        .await
        .unwrap();
    assert_eq!(d.state, IntentState::Discarded);
    assert_eq!(d.not_after, T0 + 10 * DAY);
    expect_change(&mut rx, "i2").await;
    assert!(matches!(
        s.discard_intent_audited("i2", "x", None, T0 + 4, &staff_entry("d", "i2"))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.discard_intent_audited("nope", "x", None, T0 + 4, &staff_entry("d", "nope"))
            .await,
        Err(StoreError::NotFound(_))
    ));
    let facts = s
        .status_facts("i2")
        .await
        .unwrap()
        .expect("a discarded serial has facts");
    assert_eq!(facts.status, CertStatus::Revoked);
    assert_eq!(facts.revoked_at, Some(T0 + 3));
    assert_eq!(
        facts.revocation_reason.as_deref(),
        Some("cessationOfOperation")
    );
    // On the CRL until it expires; an open intent is not.
    let on_crl = |f: &[StatusFacts]| f.iter().map(|f| f.serial.clone()).collect::<Vec<_>>();
    let crl = s.facts_for_crl(ca, T0 + 5).await.unwrap();
    assert!(on_crl(&crl).contains(&"i2".to_string()), "{crl:?}");
    assert!(!on_crl(&crl).contains(&"i3".to_string()), "{crl:?}");
    let later = s.facts_for_crl(ca, T0 + 11 * DAY).await.unwrap();
    assert!(!on_crl(&later).contains(&"i2".to_string()));
    assert_eq!(
        s.status_facts("i3").await.unwrap(),
        None,
        "open: not known yet"
    );

    // Stale: open, old enough and not stored (i1 is stored, i2 settled).
    let stale = s
        .signature_intents(IntentFilter {
            open_before: Some(T0 + 1),
            ..IntentFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        stale.iter().map(|i| i.serial.as_str()).collect::<Vec<_>>(),
        ["i3"]
    );
    let discarded = s
        .signature_intents(IntentFilter {
            discarded: true,
            ..IntentFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(discarded.len(), 1);
    assert_eq!(discarded[0].reason.as_deref(), Some("lost_redemption_race"));
    let totals = s.intent_totals().await.unwrap();
    assert_eq!(
        totals,
        vec![
            ("client".to_string(), "completed".to_string(), 1),
            ("client".to_string(), "discarded".to_string(), 1),
            ("client".to_string(), "open".to_string(), 1),
        ]
    );
    // Every record and discard is in the chain.
    let log = verified_log(&s).await;
    assert_eq!(
        log.iter()
            .filter(|r| r.action == "signature.intent")
            .count(),
        3
    );
}

async fn signature_counts_add_up(db: &TestDb) {
    let (s, ca) = setup(db).await;
    s.add_signature_counts(&[(ca, "ocsp", 5), (ca, "crl", 1)])
        .await
        .unwrap();
    s.add_signature_counts(&[(ca, "ocsp", 2)]).await.unwrap();
    s.add_signature_counts(&[]).await.unwrap();
    let counts: Vec<(String, i64)> = s
        .signature_counts()
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.kind, c.count))
        .collect();
    assert_eq!(counts, [("crl".to_string(), 1), ("ocsp".to_string(), 7)]);

    // A CRL signature takes a CRL number first, an OCSP signature a reservation: counted
    // signatures without them are unaccounted; once they are there it balances.
    let line = |r: &certgate::audit::signatures::SignatureReport, kind: &str| {
        let l = r.kinds.iter().find(|k| k.kind == kind).cloned().unwrap();
        (l.records, l.unaccounted)
    };
    let r = certgate::audit::signatures::reconcile(&s, T0)
        .await
        .unwrap();
    assert_eq!(line(&r, "crl"), (Some(0), 1));
    assert_eq!(line(&r, "ocsp"), (Some(0), 7));
    assert!(!r.balanced());
    s.next_crl_number(ca).await.unwrap();
    s.next_crl_number(ca).await.unwrap();
    s.add_signature_counts(&[(ca, "ocsp_reserved", 1000)])
        .await
        .unwrap();
    let r = certgate::audit::signatures::reconcile(&s, T0)
        .await
        .unwrap();
    assert_eq!(line(&r, "crl"), (Some(2), 0));
    assert_eq!(line(&r, "ocsp"), (Some(1000), 0));
    assert!(r.balanced());
}
