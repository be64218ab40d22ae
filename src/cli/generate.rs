//! `certgate completions SHELL` and `certgate man [--out DIR]`: shell completion scripts and
//! manual pages generated from the clap grammar in [`super::args`], so they list exactly
//! the commands and flags the binary accepts.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;

use super::args::Cli;

/// The name the scripts and pages use for the program.
const BIN: &str = "certgate";

/// Prints the completion script for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut cmd = Cli::command();
    // Rendered in memory first: the generator panics on a failed write (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, BIN, &mut script);
    write_stdout(&script).context("cannot print the completion script")
}

/// Prints `certgate.1` on stdout, or with `out` writes it and one page per subcommand
/// (`certgate-ca-list.1`, ...) into that folder, which is created if needed.
pub fn man(out: Option<&Path>) -> anyhow::Result<()> {
    let cmd = Cli::command();
    match out {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut page)?;
            write_stdout(&page).context("cannot print the manual page")?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("cannot write the manual pages into {}", dir.display()))?;
            println!("manual pages written to {}", dir.display());
        }
    }
    Ok(())
}

/// Writes to stdout; a reader that stopped early (`| head`) is not an error.
fn write_stdout(bytes: &[u8]) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar_is_consistent() {
        // clap's own checks (conflicting names, bad defaults) run here, not in production.
        Cli::command().debug_assert();
    }
}
