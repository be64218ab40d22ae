//! The batch transaction: begin, the audit lock, the set path for fresh issuances, each
//! remaining job in its own savepoint, the audit rows and change notifications of the jobs
//! that changed something, commit. Written once for both databases; what each job writes
//! lives in `set_path` and `job_path`, where the transaction begins in `connection`.

use super::connection::BatchSource;
use super::job::{IssueWork, JobDone, JobOutcome, Pending, audited};
use super::job_path::{apply_fresh, apply_intent, apply_renewal};
use super::set_path::{apply_fresh_set, set_candidates};
use crate::store::audit_chain::{ChainHead, lock_chain_head};
use crate::store::{AuditRecord, StoreError};

/// Audit rows per multi-row insert (9 parameters each; SQLite allows 32,766 per statement).
const AUDIT_ROWS_PER_INSERT: usize = 500;

/// The batch transaction, written once for both pools: `$pg` is true on PostgreSQL.
///
/// Round trips are what a batch costs (the writer runs its statements one after another), so
/// the common case is written as a set: the fresh issuances of distinct login IDs are decided
/// from one read of their code rows and written with one statement per table
/// ([`apply_fresh_set!`]). What the set cannot settle (renewals, a login ID twice in the batch,
/// a code already redeemed, a set write that failed) runs one job at a time, each in its own
/// savepoint, so a job that conflicts is rolled back alone and named. Audit rows and change
/// notifications are written once for the whole batch just before the commit. They are in
/// the same transaction, so an audit record still exists iff its change does; if writing
/// them fails, the whole batch fails (and when the database refused a value, the writer
/// runs the batch again with [`commit_one_by_one!`], so that only that job fails).
macro_rules! commit_batch {
    ($name:ident, $db:ty, $pg:expr) => {
        pub(super) async fn $name<S: BatchSource<Db = $db>>(
            source: &mut S,
            jobs: &[Pending],
            results: &mut [Option<Result<JobDone, StoreError>>],
        ) -> Result<(), StoreError> {
            const PG: bool = $pg;
            let mut tx = source.begin_batch().await?;
            // The audit lock first, before any row lock (see `lock_chain_head!`).
            let mut head: ChainHead = lock_chain_head!(PG, tx);
            // What each job's change came to; `None` while undecided.
            let mut outcomes: Vec<Option<Result<JobOutcome, StoreError>>> = jobs
                .iter()
                .map(|job| job.work.is_none().then_some(Ok(JobOutcome::AuditOnly)))
                .collect();
            let set = set_candidates(jobs);
            if !set.is_empty() {
                apply_fresh_set!(PG, $db, tx, jobs, &set, &mut outcomes);
            }
            // Whether the previous job's savepoint is still open (it succeeded): releasing
            // it and opening the next one share a round trip. The last one is left open for
            // the COMMIT to end.
            let mut open = false;
            for (job, decided) in jobs.iter().zip(outcomes.iter_mut()) {
                let (None, Some(work)) = (&decided, &job.work) else {
                    continue;
                };
                sqlx::raw_sql(if open {
                    "RELEASE SAVEPOINT issue_job; SAVEPOINT issue_job"
                } else {
                    "SAVEPOINT issue_job"
                })
                .execute(&mut *tx)
                .await?;
                open = true;
                let result: Result<JobOutcome, StoreError> = async {
                    Ok(match work {
                        IssueWork::Fresh {
                            code_hash,
                            cert,
                            now,
                        } => apply_fresh!(PG, tx, code_hash.as_str(), cert, *now),
                        IssueWork::Renewal {
                            old_serial,
                            cert,
                            now,
                        } => apply_renewal!(PG, tx, old_serial.as_str(), cert, *now),
                        IssueWork::Intent(intent) => apply_intent!(tx, intent),
                    })
                }
                .await;
                if result.is_err() {
                    // Undo only this job; if even that fails, the batch fails.
                    sqlx::raw_sql("ROLLBACK TO SAVEPOINT issue_job; RELEASE SAVEPOINT issue_job")
                        .execute(&mut *tx)
                        .await?;
                    open = false;
                }
                *decided = Some(result);
            }
            // Audit records in job order, for the jobs that changed something. A repeat
            // stored nothing: its audit is the caller's (`.repeat`).
            let mut audit_rows: Vec<AuditRecord> = Vec::new();
            let mut changed_serials: Vec<String> = Vec::new();
            for ((job, decided), slot) in jobs.iter().zip(outcomes).zip(results.iter_mut()) {
                let outcome = decided.unwrap_or_else(|| {
                    Err(StoreError::Corrupt(
                        "the group writer left a job undecided".into(),
                    ))
                });
                *slot = Some(outcome.map(|outcome| {
                    if let JobOutcome::Stored { changed, .. } = &outcome {
                        changed_serials.extend(changed.iter().cloned());
                    }
                    let mut audit = Vec::new();
                    if audited(&outcome) {
                        audit = job.audit.iter().map(|entry| head.advance(entry)).collect();
                        audit_rows.extend(audit.iter().cloned());
                    }
                    JobDone { outcome, audit }
                }));
            }
            // At most MAX_BATCH jobs of a few records each: far below either database's
            // limit on bound parameters (9 per row).
            insert_audit_rows!($db, tx, &audit_rows);
            notify_changed!(PG, $db, tx, &changed_serials);
            tx.commit().await?;
            Ok(())
        }
    };
}

/// Inserts `$rows` (already chained) with multi-row inserts.
macro_rules! insert_audit_rows {
    ($db:ty, $tx:expr, $rows:expr) => {{
        let rows: &[AuditRecord] = $rows;
        for rows in rows.chunks(AUDIT_ROWS_PER_INSERT) {
            let mut insert = sqlx::QueryBuilder::<$db>::new(
                "INSERT INTO audit_log (seq, at, actor, action, subject, outcome, detail, \
                 prev_hash, hash) ",
            );
            insert.push_values(rows, |mut b, r| {
                b.push_bind(r.seq)
                    .push_bind(r.at)
                    .push_bind(r.actor.clone())
                    .push_bind(r.action.clone())
                    .push_bind(r.subject.clone())
                    .push_bind(r.outcome.clone())
                    .push_bind(r.detail.clone())
                    .push_bind(r.prev_hash.clone())
                    .push_bind(r.hash.clone());
            });
            insert.build().execute(&mut *$tx).await?;
        }
    }};
}

/// PostgreSQL: announces `$serials` to the other instances, delivered only if the
/// transaction commits. Nothing on SQLite.
macro_rules! notify_changed {
    ($pg:expr, $db:ty, $tx:expr, $serials:expr) => {{
        let serials: &[String] = $serials;
        if $pg && !serials.is_empty() {
            let mut notify = sqlx::QueryBuilder::<$db>::new("SELECT ");
            let mut list = notify.separated(", ");
            for serial in serials {
                list.push("pg_notify('certgate_cert', ");
                list.push_bind_unseparated(serial.clone());
                list.push_unseparated(")");
            }
            notify.build().execute(&mut *$tx).await?;
        }
    }};
}

/// The batch again, after the database refused a value in it: every job, its change and
/// its audit rows in its own savepoint (no set path), so that the job whose value was
/// refused is rolled back alone and answered with that error while the others commit.
/// Slower (a round trip per statement), and only run after such a failure.
macro_rules! commit_one_by_one {
    ($name:ident, $db:ty, $pg:expr) => {
        pub(super) async fn $name<S: BatchSource<Db = $db>>(
            source: &mut S,
            jobs: &[Pending],
            results: &mut [Option<Result<JobDone, StoreError>>],
        ) -> Result<(), StoreError> {
            const PG: bool = $pg;
            let mut tx = source.begin_batch().await?;
            let mut head: ChainHead = lock_chain_head!(PG, tx);
            let mut changed_serials: Vec<String> = Vec::new();
            for (job, slot) in jobs.iter().zip(results.iter_mut()) {
                sqlx::raw_sql("SAVEPOINT issue_job")
                    .execute(&mut *tx)
                    .await?;
                // The head moves only once the job's savepoint is kept.
                let mut next = head.clone();
                let applied: Result<JobOutcome, StoreError> = async {
                    Ok(match &job.work {
                        None => JobOutcome::AuditOnly,
                        Some(IssueWork::Fresh {
                            code_hash,
                            cert,
                            now,
                        }) => apply_fresh!(PG, tx, code_hash.as_str(), cert, *now),
                        Some(IssueWork::Renewal {
                            old_serial,
                            cert,
                            now,
                        }) => apply_renewal!(PG, tx, old_serial.as_str(), cert, *now),
                        Some(IssueWork::Intent(intent)) => apply_intent!(tx, intent),
                    })
                }
                .await;
                let result: Result<JobDone, StoreError> = match applied {
                    Ok(outcome) => {
                        async {
                            let mut audit = Vec::new();
                            if audited(&outcome) {
                                audit = job.audit.iter().map(|e| next.advance(e)).collect();
                                insert_audit_rows!($db, tx, &audit);
                            }
                            Ok(JobDone { outcome, audit })
                        }
                        .await
                    }
                    Err(e) => Err(e),
                };
                match &result {
                    Ok(done) => {
                        sqlx::raw_sql("RELEASE SAVEPOINT issue_job")
                            .execute(&mut *tx)
                            .await?;
                        head = next;
                        if let JobOutcome::Stored { changed, .. } = &done.outcome {
                            changed_serials.extend(changed.iter().cloned());
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "a job of the batch was refused by the database");
                        sqlx::raw_sql(
                            "ROLLBACK TO SAVEPOINT issue_job; RELEASE SAVEPOINT issue_job",
                        )
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                *slot = Some(result);
            }
            notify_changed!(PG, $db, tx, &changed_serials);
            tx.commit().await?;
            Ok(())
        }
    };
}

commit_one_by_one!(commit_sqlite_one_by_one, sqlx::Sqlite, false);
commit_one_by_one!(commit_pg_one_by_one, sqlx::Postgres, true);
commit_batch!(commit_sqlite, sqlx::Sqlite, false);
commit_batch!(commit_pg, sqlx::Postgres, true);
