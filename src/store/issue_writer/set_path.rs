//! The set path of a batch: the fresh issuances of distinct login IDs decided from one read
//! of their code rows and written with one statement per table, inside one savepoint.
//!
//! It makes the same decisions as the per-job path (`job_path`) and settles only what it
//! can: a code already redeemed (a retry may be owed the stored certificate) and every job
//! of a set write that failed are left undecided, for the per-job path to settle and name.
//! The statements are written once for both databases (the macro takes the database type).

use std::collections::HashMap;

use super::job::{IssueWork, Pending};
use crate::clock::UnixTime;
use crate::store::CertRecord;

/// The jobs [`apply_fresh_set!`] may settle: fresh issuances whose login ID no other job of
/// the batch touches (two jobs for one login ID depend on their order, which one at a time
/// keeps).
pub(super) fn set_candidates(jobs: &[Pending]) -> Vec<usize> {
    let mut per_login: HashMap<&str, usize> = HashMap::with_capacity(jobs.len());
    for login in jobs.iter().filter_map(|j| j.work.as_ref()?.login()) {
        *per_login.entry(login).or_default() += 1;
    }
    jobs.iter()
        .enumerate()
        .filter_map(|(i, job)| match &job.work {
            Some(work @ IssueWork::Fresh { .. })
                if work.login().is_some_and(|l| per_login.get(l) == Some(&1)) =>
            {
                Some(i)
            }
            _ => None,
        })
        .collect()
}

/// The fresh issuances at `$set` (indices into `$jobs`, distinct login IDs) as a set:
/// one read of their code rows (locked on PostgreSQL), the same decisions as
/// [`apply_fresh!`], then one statement each to revoke the current certificates, insert the
/// new ones and mark the codes used, inside a savepoint. Decided jobs get their outcome in
/// `$outcomes`. A code already redeemed (a retry may be owed the stored certificate) and
/// every accepted job of a set write that failed stay undecided, for the one-at-a-time path
/// to settle and name the culprit.
macro_rules! apply_fresh_set {
    ($pg:expr, $db:ty, $tx:expr, $jobs:expr, $set:expr, $outcomes:expr) => {{
        use std::collections::HashMap;
        use $crate::clock::UnixTime;
        use $crate::store::issuance_parts::hash_eq;
        use $crate::store::issue_writer::job::{IssueWork, JobOutcome, Pending};
        use $crate::store::issue_writer::set_path::{SetCode, push_case_by_login, push_logins};
        use $crate::store::rows::cert_cols;
        use $crate::store::{CertRecord, StoreError};
        let jobs: &[Pending] = $jobs;
        let outcomes: &mut Vec<Option<Result<JobOutcome, StoreError>>> = $outcomes;
        let fresh: Vec<(usize, &str, &CertRecord, UnixTime)> = $set
            .iter()
            .filter_map(|&i| match &jobs[i].work {
                Some(IssueWork::Fresh {
                    code_hash,
                    cert,
                    now,
                }) => Some((i, code_hash.as_str(), cert, *now)),
                _ => None,
            })
            .collect();

        let mut read = sqlx::QueryBuilder::<$db>::new(
            "SELECT login, code_hash, expires_at, locked, used_at FROM issuance_codes \
             WHERE login IN ",
        );
        push_logins(&mut read, fresh.iter().map(|(_, _, cert, _)| *cert));
        if $pg {
            read.push(" FOR UPDATE");
        }
        let mut codes: HashMap<String, SetCode> = HashMap::with_capacity(fresh.len());
        for code in read.build_query_as::<SetCode>().fetch_all(&mut *$tx).await? {
            codes.insert(code.login.clone(), code);
        }

        let mut accepted: Vec<(usize, &CertRecord, UnixTime)> = Vec::with_capacity(fresh.len());
        for (i, code_hash, cert, now) in fresh {
            let login = cert.login.as_str();
            match codes.get(login) {
                None => {
                    outcomes[i] = Some(Err(StoreError::NotFound(format!(
                        "issuance code for login ID {login:?}"
                    ))));
                }
                Some(code) if code.used_at.is_some() => {}
                Some(code)
                    if code.locked || now >= code.expires_at || !hash_eq(&code.code_hash, code_hash) =>
                {
                    outcomes[i] = Some(Err(StoreError::Conflict(format!(
                        "the issuance code of login ID {login:?} is no longer valid"
                    ))));
                }
                Some(_) => accepted.push((i, cert, now)),
            }
        }

        if !accepted.is_empty() {
            sqlx::raw_sql("SAVEPOINT issue_set").execute(&mut *$tx).await?;
            let written: Result<Vec<(String, String)>, StoreError> = async {
                // The login IDs' current certificates, each revoked at its own job's time.
                // SQLite's planner, without statistics, would walk every current
                // certificate through the index on `status` once the list is long.
                let mut revoke = sqlx::QueryBuilder::<$db>::new(if $pg {
                    "UPDATE certificates SET status = 'revoked', \
                     revocation_reason = 'superseded', revoked_at ="
                } else {
                    "UPDATE certificates INDEXED BY certificates_one_current \
                     SET status = 'revoked', revocation_reason = 'superseded', revoked_at ="
                });
                push_case_by_login(&mut revoke, &accepted, |_, now| now);
                revoke.push(" WHERE status = 'current' AND login IN ");
                push_logins(&mut revoke, accepted.iter().map(|(_, cert, _)| *cert));
                revoke.push(" RETURNING login, serial");
                let revoked: Vec<(String, String)> =
                    revoke.build_query_as().fetch_all(&mut *$tx).await?;

                let mut insert = sqlx::QueryBuilder::<$db>::new(concat!(
                    "INSERT INTO certificates (",
                    cert_cols!(),
                    ") "
                ));
                insert.push_values(&accepted, |mut b, (_, cert, _)| {
                    b.push_bind(cert.serial.clone())
                        .push_bind(cert.login.clone())
                        .push_bind(cert.contract_id.clone())
                        .push_bind(cert.ca_id)
                        .push_bind(cert.der.clone())
                        .push_bind(cert.sha256.clone())
                        .push_bind(cert.spki_sha256.clone())
                        .push_bind(cert.not_before)
                        .push_bind(cert.not_after)
                        .push("'current', NULL, NULL, NULL, NULL")
                        .push_bind(cert.created_at);
                });
                insert.build().execute(&mut *$tx).await?;

                let mut redeem =
                    sqlx::QueryBuilder::<$db>::new("UPDATE issuance_codes SET used_at =");
                push_case_by_login(&mut redeem, &accepted, |_, now| now);
                redeem.push(", used_serial =");
                push_case_by_login(&mut redeem, &accepted, |cert, _| cert.serial.clone());
                redeem.push(", claim_spki_sha256 =");
                push_case_by_login(&mut redeem, &accepted, |cert, _| cert.spki_sha256.clone());
                redeem.push(" WHERE used_at IS NULL AND login IN ");
                push_logins(&mut redeem, accepted.iter().map(|(_, cert, _)| *cert));
                let done = redeem.build().execute(&mut *$tx).await?;
                if done.rows_affected() != accepted.len() as u64 {
                    return Err(StoreError::Conflict(
                        "an issuance code of the batch was redeemed meanwhile".into(),
                    ));
                }

                // Their signature intents are completed with them.
                let mut complete = sqlx::QueryBuilder::<$db>::new(
                    "UPDATE signature_intents SET state = 'completed', settled_at = CASE serial",
                );
                for (_, cert, now) in &accepted {
                    complete.push(" WHEN ");
                    complete.push_bind(cert.serial.clone());
                    complete.push(" THEN ");
                    complete.push_bind(*now);
                }
                complete.push(" END WHERE state = 'open' AND serial IN (");
                let mut list = complete.separated(", ");
                for (_, cert, _) in &accepted {
                    list.push_bind(cert.serial.clone());
                }
                list.push_unseparated(")");
                complete.build().execute(&mut *$tx).await?;
                Ok(revoked)
            }
            .await;
            match written {
                // The savepoint stays open: the batch's COMMIT ends it, one round trip fewer.
                Ok(revoked) => {
                    for (i, cert, _) in accepted {
                        let revoked: Vec<String> = revoked
                            .iter()
                            .filter(|(login, _)| *login == cert.login)
                            .map(|(_, serial)| serial.clone())
                            .collect();
                        let mut changed = revoked.clone();
                        changed.push(cert.serial.clone());
                        outcomes[i] = Some(Ok(JobOutcome::Stored { revoked, changed }));
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, jobs = accepted.len(),
                        "issuance set write failed; its jobs run one at a time");
                    sqlx::raw_sql("ROLLBACK TO SAVEPOINT issue_set; RELEASE SAVEPOINT issue_set")
                        .execute(&mut *$tx)
                        .await?;
                }
            }
        }
    }};
}
pub(super) use apply_fresh_set;

/// ` CASE login WHEN <login> THEN <value> … END` over the accepted jobs: a value per
/// login ID within one statement.
pub(super) fn push_case_by_login<'t, DB, T>(
    q: &mut sqlx::QueryBuilder<DB>,
    accepted: &[(usize, &CertRecord, UnixTime)],
    value: impl Fn(&CertRecord, UnixTime) -> T,
) where
    DB: sqlx::Database,
    String: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    T: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    q.push(" CASE login");
    for (_, cert, now) in accepted {
        q.push(" WHEN ");
        q.push_bind(cert.login.clone());
        q.push(" THEN ");
        q.push_bind(value(cert, *now));
    }
    q.push(" END");
}

/// `(<login>, …)` of `certs`, for `login IN`.
pub(super) fn push_logins<'c, 't, DB>(
    q: &mut sqlx::QueryBuilder<DB>,
    certs: impl Iterator<Item = &'c CertRecord>,
) where
    DB: sqlx::Database,
    String: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    q.push("(");
    let mut list = q.separated(", ");
    for cert in certs {
        list.push_bind(cert.login.clone());
    }
    list.push_unseparated(")");
}

/// A code row as [`apply_fresh_set!`] reads it.
#[derive(sqlx::FromRow)]
pub(super) struct SetCode {
    pub login: String,
    pub code_hash: String,
    pub expires_at: UnixTime,
    pub locked: bool,
    pub used_at: Option<UnixTime>,
}
