//! Group commit for issuance: one writer task per [`Store`](super::Store) takes pending
//! issuance transactions (a fresh issuance, a renewal, an audit append) from a channel and
//! commits whatever has queued, up to [`MAX_BATCH`](queue::MAX_BATCH), in one database
//! transaction.
//!
//! Why: every certificate must be durable before it is returned, and a commit costs an
//! fsync (SQLite `synchronous = FULL`, PostgreSQL WAL flush). One commit per certificate
//! capped issuance at a few hundred per second; one commit per *batch* keeps the same
//! guarantee per certificate (nobody is answered before the commit containing their
//! certificate succeeded) while the HSM, not the disk, sets the rate.
//!
//! - Each issuance or renewal runs inside its own `SAVEPOINT`: a job that conflicts (code
//!   redeemed meanwhile, duplicate serial) is rolled back alone and refused; the others
//!   commit. (An audit append cannot conflict and needs none.)
//! - The audit records of the jobs that succeeded are chained on the head the batch read
//!   under the audit lock and inserted in the same transaction, so an audit record exists
//!   iff its change does.
//! - No timers: the writer commits as soon as it has a job; jobs that arrive while a commit
//!   runs form the next batch. With one caller this adds no wait.
//! - If anything outside a job's savepoint fails (begin, lock, commit), every job of the
//!   batch gets the error and none of them is stored.
//!
//! One concern per file, imports running downwards only:
//! - `queue`: the channel, the writer's thread and event loop, answering each job;
//! - `connection`: where a batch's transaction begins (the writer's own connection, its
//!   reconnect after a failure or a long pause);
//! - `batch`: the batch transaction (audit lock, set path, per-job savepoints, audit rows,
//!   notifications, commit);
//! - `set_path`: the fresh issuances of distinct login IDs decided and written as a set;
//! - `job_path`: one fresh issuance or renewal inside its own savepoint;
//! - `job`: what a job is and what it came to (the types everything above shares).
//!
//! Callers (`codes`, `certs`, `audit_chain`) announce changed serials after the reply came
//! back. What the writer shares with them (inserting a current certificate, comparing
//! hashes) lives below all of them in `issuance_parts`.

mod batch;
mod connection;
mod job;
mod job_path;
mod queue;
mod set_path;

pub(crate) use job::{IssueWork, JobOutcome};
pub(crate) use queue::IssueWriter;
