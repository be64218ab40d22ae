//! The audit anchor against an attacker holding the database's own credentials: triggers
//! dropped, checkpoints and the newest log rows deleted, a middle checkpoint deleted, a row
//! changed. `audit verify` must fail and name the problem, from the anchor kept in the HSM
//! token (and in `[audit] anchor_file`), on SQLite and PostgreSQL.

use std::process::Command;

use crate::fixture::{Db, Fixture, sh};
use crate::ops::{attacker_sql, drop_triggers};

/// A fresh installation with `[audit] anchor_file = "audit-anchor.jsonl"`.
fn with_anchor_file(db: Db) -> Option<Fixture> {
    Fixture::with_config(db, |text| {
        text.push_str("\n[audit]\nanchor_file = \"audit-anchor.jsonl\"\n");
    })
}

/// Makes a checkpoint; returns the audit record it covers.
fn checkpoint(fx: &Fixture) -> i64 {
    let out = fx.ok(&["audit", "checkpoint"]);
    let c: serde_json::Value = serde_json::from_str(out.trim()).expect("checkpoint json");
    assert_eq!(c["version"], 2, "{c}");
    c["seq"].as_i64().expect("seq")
}

/// Adds audit records through ordinary staff commands.
fn more_history(fx: &Fixture, contract: &str) {
    fx.ok(&["contract", "add", contract, "--name", "More Corp"]);
    fx.authorize("carol");
}

/// An installation with history and three checkpoints (returned: the records they cover),
/// after each of which the log went on.
fn anchored(fx: &Fixture) -> [i64; 3] {
    fx.init_with_users();
    let first = checkpoint(fx);
    more_history(fx, "corp3");
    let second = checkpoint(fx);
    more_history(fx, "corp4");
    let third = checkpoint(fx);
    more_history(fx, "corp5");
    let ok = fx.ok(&["audit", "verify"]);
    assert!(ok.contains("3 signed checkpoint(s) verified"), "{ok}");
    assert!(
        ok.contains(&format!(
            "the anchor in the HSM (record {third}) is reached"
        )),
        "{ok}"
    );
    assert!(first < second && second < third);
    [first, second, third]
}

fn untouched_passes(db: Db) {
    let Some(fx) = Fixture::new(db) else {
        return;
    };
    anchored(&fx);
    // Verifying changes nothing: it passes again.
    fx.ok(&["audit", "verify"]);
}

#[test]
fn untouched_passes_sqlite() {
    untouched_passes(Db::Sqlite);
}

#[test]
fn untouched_passes_postgres() {
    untouched_passes(Db::Postgres);
}

/// The full rollback: triggers dropped, every checkpoint and the newest log rows deleted.
/// What is left is a consistent chain with no checkpoint; only the anchor shows the loss.
fn rollback_is_named(db: Db) {
    let Some(fx) = Fixture::new(db) else {
        return;
    };
    let [first, _, third] = anchored(&fx);
    let keep = first - 1;
    drop_triggers(&fx, db);
    attacker_sql(
        &fx,
        &format!("DELETE FROM audit_checkpoints; DELETE FROM audit_log WHERE seq > {keep};"),
    );
    let err = fx.fails(&["audit", "verify"]);
    assert!(err.contains("audit rollback"), "{err}");
    assert!(
        err.contains(&format!(
            "the audit log ends at record {keep}, before the anchored record {third}"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "its checkpoint of record {third} is missing (none is left; deleted)"
        )),
        "{err}"
    );
}

/// A checkpoint made after the rollback (a timer runs them) would move the anchor over it:
/// refused, unless the operator says it is a restore from backup.
fn no_checkpoint_over_a_rollback(db: Db) {
    let Some(fx) = Fixture::new(db) else {
        return;
    };
    let [_, second, _] = anchored(&fx);
    drop_triggers(&fx, db);
    attacker_sql(
        &fx,
        &format!(
            "DELETE FROM audit_checkpoints WHERE seq > {second}; \
             DELETE FROM audit_log WHERE seq > {second};"
        ),
    );
    more_history(&fx, "corp9");
    let err = fx.fails(&["audit", "checkpoint"]);
    assert!(
        err.contains("behind the audit anchor") && err.contains("audit rollback"),
        "{err}"
    );
    fx.fails(&["audit", "verify"]);
    let after = checkpoint_with(&fx, &["audit", "checkpoint", "--after-restore"]);
    let ok = fx.ok(&["audit", "verify"]);
    assert!(
        ok.contains(&format!(
            "the anchor in the HSM (record {after}) is reached"
        )),
        "{ok}"
    );
}

fn checkpoint_with(fx: &Fixture, args: &[&str]) -> i64 {
    let out = fx.ok(args);
    let c: serde_json::Value = serde_json::from_str(out.trim()).expect("checkpoint json");
    c["seq"].as_i64().expect("seq")
}

#[test]
fn no_checkpoint_over_a_rollback_sqlite() {
    no_checkpoint_over_a_rollback(Db::Sqlite);
}

#[test]
fn no_checkpoint_over_a_rollback_postgres() {
    no_checkpoint_over_a_rollback(Db::Postgres);
}

#[test]
fn rollback_is_named_sqlite() {
    rollback_is_named(Db::Sqlite);
}

#[test]
fn rollback_is_named_postgres() {
    rollback_is_named(Db::Postgres);
}

/// A quieter rollback to the state right after the second checkpoint: the third checkpoint
/// and every record after the second one's are deleted; the rest verifies on its own.
fn rollback_to_an_older_checkpoint_is_named(db: Db) {
    let Some(fx) = Fixture::new(db) else {
        return;
    };
    let [_, second, third] = anchored(&fx);
    drop_triggers(&fx, db);
    attacker_sql(
        &fx,
        &format!(
            "DELETE FROM audit_checkpoints WHERE seq > {second}; \
             DELETE FROM audit_log WHERE seq > {second};"
        ),
    );
    let err = fx.fails(&["audit", "verify"]);
    assert!(
        err.contains(&format!(
            "the audit log ends at record {second}, before the anchored record {third}"
        )) && err.contains(&format!(
            "its checkpoint of record {third} is missing (the newest left covers record \
             {second}; deleted)"
        )),
        "{err}"
    );
}

#[test]
fn rollback_to_an_older_checkpoint_sqlite() {
    rollback_to_an_older_checkpoint_is_named(Db::Sqlite);
}

#[test]
fn rollback_to_an_older_checkpoint_postgres() {
    rollback_to_an_older_checkpoint_is_named(Db::Postgres);
}

/// The anchored record changed and every hash after it recomputed, every checkpoint deleted:
/// the chain verifies on its own; the anchor names the changed record.
fn rewritten_anchored_record_is_named(db: Db) {
    let Some(fx) = Fixture::new(db) else {
        return;
    };
    let [_, _, third] = anchored(&fx);
    let mut records = crate::ops::exported(&fx);
    drop_triggers(&fx, db);
    let mut prev = records[(third - 2) as usize].hash.clone();
    let mut sql = String::from("DELETE FROM audit_checkpoints;");
    for r in records.iter_mut().filter(|r| r.seq >= third) {
        if r.seq == third {
            r.subject = "someone-else".into();
        }
        r.prev_hash = prev.clone();
        r.hash = certgate::store::audit_hash(&prev, r);
        prev = r.hash.clone();
        // Unique hashes: park the row's hashes first, then write the new ones.
        sql.push_str(&format!(
            "UPDATE audit_log SET prev_hash = 'x{0}', hash = 'y{0}' WHERE seq = {0};",
            r.seq
        ));
    }
    for r in records.iter().filter(|r| r.seq >= third) {
        sql.push_str(&format!(
            "UPDATE audit_log SET subject = '{}', prev_hash = '{}', hash = '{}' WHERE seq = {};",
            r.subject, r.prev_hash, r.hash, r.seq
        ));
    }
    attacker_sql(&fx, &sql);
    let err = fx.fails(&["audit", "verify"]);
    assert!(
        err.contains(&format!("audit record {third} has hash"))
            && err.contains("the anchor holds")
            && err.contains("(changed)"),
        "{err}"
    );
}

#[test]
fn rewritten_anchored_record_is_named_sqlite() {
    rewritten_anchored_record_is_named(Db::Sqlite);
}

#[test]
fn rewritten_anchored_record_is_named_postgres() {
    rewritten_anchored_record_is_named(Db::Postgres);
}

/// A checkpoint deleted from the middle: the next one signs a link to it.
fn middle_checkpoint_is_named(db: Db) {
    let Some(fx) = Fixture::new(db) else {
        return;
    };
    let [_, second, third] = anchored(&fx);
    drop_triggers(&fx, db);
    attacker_sql(
        &fx,
        &format!("DELETE FROM audit_checkpoints WHERE seq = {second}"),
    );
    let err = fx.fails(&["audit", "verify"]);
    assert!(
        err.contains("an audit checkpoint is missing")
            && err.contains(&format!("(record {third}) signs the hash")),
        "{err}"
    );
}

#[test]
fn middle_checkpoint_is_named_sqlite() {
    middle_checkpoint_is_named(Db::Sqlite);
}

#[test]
fn middle_checkpoint_is_named_postgres() {
    middle_checkpoint_is_named(Db::Postgres);
}

/// The first checkpoint deleted: the second links to nothing either.
#[test]
fn first_checkpoint_is_named_sqlite() {
    let Some(fx) = Fixture::new(Db::Sqlite) else {
        return;
    };
    let [first, second, _] = anchored(&fx);
    drop_triggers(&fx, Db::Sqlite);
    attacker_sql(
        &fx,
        &format!("DELETE FROM audit_checkpoints WHERE seq = {first}"),
    );
    let err = fx.fails(&["audit", "verify"]);
    assert!(
        err.contains(&format!(
            "an audit checkpoint is missing: checkpoint 2 (record {second})"
        )),
        "{err}"
    );
}

/// A changed row, before and after the newest checkpoint: named by its number.
fn changed_row_is_named(db: Db) {
    let Some(fx) = Fixture::new(db) else {
        return;
    };
    let [first, _, third] = anchored(&fx);
    drop_triggers(&fx, db);
    for target in [third + 2, first + 1] {
        attacker_sql(
            &fx,
            &format!("UPDATE audit_log SET subject = 'someone-else' WHERE seq = {target}"),
        );
        let err = fx.fails(&["audit", "verify"]);
        assert!(
            err.contains(&format!("audit record {target} is broken")),
            "{err}"
        );
    }
}

#[test]
fn changed_row_is_named_sqlite() {
    changed_row_is_named(Db::Sqlite);
}

#[test]
fn changed_row_is_named_postgres() {
    changed_row_is_named(Db::Postgres);
}

/// `[audit] anchor_file`: one line per checkpoint, checked like the HSM's anchor. With the
/// HSM's anchor object gone (as if the token were replaced), the file alone still names the
/// rollback.
fn anchor_file_names_the_rollback(db: Db) {
    let Some(fx) = with_anchor_file(db) else {
        return;
    };
    let [first, _, third] = anchored(&fx);
    let file = fx.path("audit-anchor.jsonl");
    let lines = std::fs::read_to_string(&file).expect("anchor file");
    assert_eq!(lines.lines().count(), 3, "{lines}");
    let ok = fx.ok(&["audit", "verify"]);
    assert!(
        ok.contains(&format!(
            "the anchor in {} (record {third}) is reached",
            file.display()
        )),
        "{ok}"
    );

    if crate::support::token::kind() == crate::support::token::Kind::SoftHsm2 {
        delete_hsm_anchor(&fx);
    }
    drop_triggers(&fx, db);
    attacker_sql(
        &fx,
        &format!("DELETE FROM audit_checkpoints; DELETE FROM audit_log WHERE seq >= {first};"),
    );
    let err = fx.fails(&["audit", "verify"]);
    assert!(
        err.contains("audit rollback") && err.contains(&format!("the anchored record {third}")),
        "{err}"
    );
    if crate::support::token::kind() == crate::support::token::Kind::SoftHsm2 {
        assert!(
            err.contains(&format!("the anchor in {}", file.display())),
            "{err}"
        );
    }
}

/// Removes the anchor object with the token's PIN, after checking that it is private: not
/// listed without login.
fn delete_hsm_anchor(fx: &Fixture) {
    let tool = |login: bool, args: &[&str]| {
        let mut cmd = Command::new("pkcs11-tool");
        cmd.env("SOFTHSM2_CONF", &fx.softhsm_conf).args([
            "--module",
            "/usr/lib/softhsm/libsofthsm2.so",
            "--token-label",
            "certgate",
        ]);
        if login {
            cmd.args(["--login", "--pin", fx.pin]);
        }
        sh(cmd.args(args))
    };
    let public = tool(false, &["--list-objects", "--type", "data"]);
    assert!(!public.contains("certgate-audit-anchor"), "{public}");
    let private = tool(true, &["--list-objects", "--type", "data"]);
    assert!(private.contains("certgate-audit-anchor"), "{private}");
    tool(
        true,
        &[
            "--delete-object",
            "--type",
            "data",
            "--label",
            "certgate-audit-anchor",
        ],
    );
}

#[test]
fn anchor_file_names_the_rollback_sqlite() {
    anchor_file_names_the_rollback(Db::Sqlite);
}

#[test]
fn anchor_file_names_the_rollback_postgres() {
    anchor_file_names_the_rollback(Db::Postgres);
}

/// A missing anchor is a finding (exit 3), not "no anchor yet": the configured file
/// deleted, then the token's anchor object deleted, once chained checkpoints wrote them.
fn missing_anchor_is_a_finding(db: Db) {
    let Some(fx) = with_anchor_file(db) else {
        return;
    };
    anchored(&fx);
    let file = fx.path("audit-anchor.jsonl");
    let kept = std::fs::read_to_string(&file).expect("anchor file");
    std::fs::remove_file(&file).expect("remove the anchor file");
    let out = fx.run(&["audit", "verify"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains(&format!(
            "the audit anchor in {} is missing",
            file.display()
        )),
        "{err}"
    );
    std::fs::write(&file, kept).expect("anchor file back");
    fx.ok(&["audit", "verify"]);
    if crate::support::token::kind() == crate::support::token::Kind::SoftHsm2 {
        delete_hsm_anchor(&fx);
        let out = fx.run(&["audit", "verify"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{err}");
        assert!(
            err.contains("the audit anchor in the HSM is missing"),
            "{err}"
        );
    }
}

#[test]
fn missing_anchor_is_a_finding_sqlite() {
    missing_anchor_is_a_finding(Db::Sqlite);
}

#[test]
fn missing_anchor_is_a_finding_postgres() {
    missing_anchor_is_a_finding(Db::Postgres);
}

/// A staff action and its audit record commit together: with every audit append failing,
/// `contract add`, `user add`, `issue authorize` and `ca rollover` fail and leave nothing
/// behind in the database.
fn no_action_without_its_record(db: Db) {
    let Some(fx) = Fixture::new(db) else {
        return;
    };
    fx.init_with_users();
    let block = match db {
        Db::Sqlite => {
            "CREATE TRIGGER audit_log_blocked BEFORE INSERT ON audit_log \
             BEGIN SELECT RAISE(ABORT, 'audit log unavailable'); END;"
        }
        Db::Postgres => {
            "CREATE FUNCTION audit_log_blocked() RETURNS trigger AS $$ \
             BEGIN RAISE EXCEPTION 'audit log unavailable'; END $$ LANGUAGE plpgsql; \
             CREATE TRIGGER audit_log_blocked BEFORE INSERT ON audit_log \
             FOR EACH ROW EXECUTE FUNCTION audit_log_blocked();"
        }
    };
    attacker_sql(&fx, block);
    fx.fails(&["contract", "add", "corp7", "--name", "Lost Corp"]);
    fx.fails(&[
        "user",
        "add",
        "erin",
        "--contract",
        "corp1",
        "--role",
        "general",
        "--email",
        "erin@example.com",
    ]);
    fx.fails(&["issue", "authorize", "carol"]);
    fx.fails(&["ca", "rollover", "--key-label", "certgate-ca-2"]);
    attacker_sql(
        &fx,
        match db {
            Db::Sqlite => "DROP TRIGGER audit_log_blocked",
            Db::Postgres => "DROP TRIGGER audit_log_blocked ON audit_log",
        },
    );
    let counts = [
        "SELECT COUNT(*) FROM contracts WHERE id = 'corp7'",
        "SELECT COUNT(*) FROM users WHERE login = 'erin'",
        "SELECT COUNT(*) FROM issuance_codes WHERE login = 'carol'",
        "SELECT COUNT(*) - 1 FROM cas",
    ];
    for sql in counts {
        assert_eq!(count(&fx, sql), 0, "{sql}");
    }
    fx.ok(&["audit", "verify"]);
}

#[test]
fn no_action_without_its_record_sqlite() {
    no_action_without_its_record(Db::Sqlite);
}

#[test]
fn no_action_without_its_record_postgres() {
    no_action_without_its_record(Db::Postgres);
}

/// One number from the database, read with its own credentials.
fn count(fx: &Fixture, sql: &str) -> i64 {
    let url = crate::ops::db_url(fx);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        use sqlx::Connection;
        let q = || sqlx::AssertSqlSafe(sql.to_owned());
        if url.starts_with("sqlite:") {
            let mut c = sqlx::SqliteConnection::connect(&url).await.expect("sqlite");
            sqlx::query_scalar::<_, i64>(q())
                .fetch_one(&mut c)
                .await
                .expect("count")
        } else {
            let mut c = sqlx::PgConnection::connect(&url).await.expect("postgres");
            sqlx::query_scalar::<_, i64>(q())
                .fetch_one(&mut c)
                .await
                .expect("count")
        }
    })
}

/// A restore from backup with `[audit] anchor_file`: the file keeps the abandoned anchor,
/// and `audit checkpoint --after-restore` signs which anchor its own replaces, so `verify`
/// follows the file to the restored state, and later checkpoints go on from there. A
/// restore line appended by someone without the HSM key moves nothing.
fn restore_with_an_anchor_file(db: Db) {
    let Some(fx) = with_anchor_file(db) else {
        return;
    };
    let [_, second, third] = anchored(&fx);
    let file = fx.path("audit-anchor.jsonl");
    let lines = |file: &std::path::Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(file)
            .expect("anchor file")
            .lines()
            .map(|l| serde_json::from_str(l).expect("anchor line"))
            .collect()
    };
    let before = lines(&file);
    assert_eq!(before.len(), 3);
    // The database restored to its state right after the second checkpoint.
    drop_triggers(&fx, db);
    attacker_sql(
        &fx,
        &format!(
            "DELETE FROM audit_checkpoints WHERE seq > {second}; \
             DELETE FROM audit_log WHERE seq > {second};"
        ),
    );
    more_history(&fx, "corp9");

    // A forged restore line: the second anchor, claiming to replace the third.
    let mut forged = before[1].clone();
    forged["replaces"] = before[2]["checkpoint"].clone();
    let mut text = std::fs::read_to_string(&file).expect("anchor file");
    text.push_str(&format!("{forged}\n"));
    std::fs::write(&file, &text).expect("anchor file");
    let err = fx.fails(&["audit", "verify"]);
    assert!(
        err.contains("audit rollback") && err.contains(&format!("the anchored record {third}")),
        "a restore line without a signed checkpoint is ignored: {err}"
    );

    let out = fx.ok(&["audit", "checkpoint", "--after-restore"]);
    let c: serde_json::Value = serde_json::from_str(out.trim()).expect("checkpoint json");
    assert_eq!(c["version"], 3, "{c}");
    assert_eq!(c["replaces_checkpoint"], before[2]["checkpoint"], "{c}");
    let after = c["seq"].as_i64().expect("seq");
    assert!(
        after < third,
        "the restored log is shorter: {after} < {third}"
    );
    let now = lines(&file);
    assert_eq!(now.len(), 5, "{now:?}");
    assert_eq!(now[4]["seq"], after);
    assert_eq!(now[4]["replaces"], before[2]["checkpoint"]);
    let ok = fx.ok(&["audit", "verify"]);
    for place in ["the HSM".to_owned(), file.display().to_string()] {
        assert!(
            ok.contains(&format!(
                "the anchor in {place} (record {after}) is reached"
            )),
            "{ok}"
        );
    }
    // The record of the restore names the abandoned anchor.
    let audit = fx.ok(&["audit", "export"]);
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"action\":\"audit.checkpoint\"")
                && l.contains("after_restore")
                && l.contains(before[2]["checkpoint"].as_str().expect("hash"))),
        "{audit}"
    );

    // Checkpoints go on from the restored state, without --after-restore.
    more_history(&fx, "corp10");
    let next = checkpoint(&fx);
    assert!(next > after);
    let ok = fx.ok(&["audit", "verify"]);
    assert!(
        ok.contains(&format!(
            "the anchor in {} (record {next}) is reached",
            file.display()
        )),
        "{ok}"
    );
}

#[test]
fn restore_with_an_anchor_file_sqlite() {
    restore_with_an_anchor_file(Db::Sqlite);
}

#[test]
fn restore_with_an_anchor_file_postgres() {
    restore_with_an_anchor_file(Db::Postgres);
}

/// The newest line removed from the anchor file while the database is untouched: the file
/// is behind the newest checkpoint, a finding naming both. Put back, it verifies.
fn anchor_put_back_is_a_finding(db: Db) {
    let Some(fx) = with_anchor_file(db) else {
        return;
    };
    let [_, second, third] = anchored(&fx);
    let file = fx.path("audit-anchor.jsonl");
    let kept = std::fs::read_to_string(&file).expect("anchor file");
    let shorter: String = kept.lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(&file, shorter).expect("anchor file");
    let out = fx.run(&["audit", "verify"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains(&format!(
            "the audit anchor in {} is behind: it covers record {second}",
            file.display()
        )) && err.contains(&format!("(record {third}) wrote a newer anchor")),
        "{err}"
    );
    std::fs::write(&file, kept).expect("anchor file");
    fx.ok(&["audit", "verify"]);
}

#[test]
fn anchor_put_back_is_a_finding_sqlite() {
    anchor_put_back_is_a_finding(Db::Sqlite);
}

#[test]
fn anchor_put_back_is_a_finding_postgres() {
    anchor_put_back_is_a_finding(Db::Postgres);
}
