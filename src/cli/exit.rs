//! The exit statuses of `certgate`, one meaning each (listed in docs/cli.md), so a script or
//! a monitor can tell "the check ran and found a problem" from "the command could not run".

use std::process::ExitCode;

/// The command did what it was asked.
pub const OK: u8 = 0;
/// The command could not do its work: a refusal, a missing or unreachable database or HSM,
/// a file that cannot be read, and so on. The reason is on stderr.
pub const ERROR: u8 = 1;
/// The command line itself is wrong (unknown command or flag, missing or bad value): clap's
/// status for usage errors.
pub const USAGE: u8 = 2;
/// A check ran to its end and found a problem: `audit verify` (broken chain, checkpoint or
/// anchor), `audit signatures` (unbalanced), `config check` (configuration refused),
/// `hsm info` (the key is not safe as a CA key).
pub const FINDING: u8 = 3;

/// A problem a check found, as opposed to an error that kept it from running. Transparent:
/// the message and causes printed are those of the error it wraps.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Finding(Box<dyn std::error::Error + Send + Sync + 'static>);

impl Finding {
    /// `problem` as a finding, ready to return from a command.
    pub fn error(
        problem: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> anyhow::Error {
        anyhow::Error::new(Self(problem.into()))
    }
}

/// The status for a command that failed with `e`.
pub fn status_of(e: &anyhow::Error) -> u8 {
    if e.chain().any(|c| c.is::<Finding>()) {
        FINDING
    } else {
        ERROR
    }
}

/// `status` as the process's exit code.
pub fn code(status: u8) -> ExitCode {
    ExitCode::from(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn a_finding_keeps_its_status_and_its_words_under_context() {
        let inner: anyhow::Error = Finding::error("audit record 3 is broken");
        let wrapped = Err::<(), _>(inner).context("while verifying").unwrap_err();
        assert_eq!(status_of(&wrapped), FINDING);
        assert_eq!(
            format!("{wrapped:#}"),
            "while verifying: audit record 3 is broken"
        );
        let plain = anyhow::anyhow!("cannot open the database");
        assert_eq!(status_of(&plain), ERROR);
    }

    #[test]
    fn a_finding_from_an_anyhow_error_keeps_its_causes() {
        let cause = anyhow::anyhow!("the file is missing").context("cannot read the PIN");
        let e = Finding::error(cause);
        assert_eq!(format!("{e:#}"), "cannot read the PIN: the file is missing");
    }
}
