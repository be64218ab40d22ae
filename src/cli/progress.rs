//! Progress of the long commands (`init`, `hsm keygen`, `audit verify`, `notify run`) on
//! stderr, so an operator sees which step a slow HSM or database is in. On a terminal: one
//! line redrawn in place (spinner, step bar, elapsed seconds). Otherwise (a pipe, a log
//! file, cron): one plain line per step, `<command> [i/n] <step>`, then `<command> done`.
//!
//! stdout is never touched: what a command prints there (text or JSON) stays the same with
//! or without a terminal. This module must not print secrets: steps are fixed sentences
//! and names (labels, counts), never values read from a PIN source.

use std::io::{IsTerminal, Write};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the terminal line is redrawn.
const TICK: Duration = Duration::from_millis(120);
const SPINNER: [char; 4] = ['|', '/', '-', '\\'];
const BAR_WIDTH: usize = 12;

/// The steps of one command, reported as they start.
#[derive(Debug)]
pub struct Progress {
    command: &'static str,
    total: usize,
    shared: Arc<Mutex<Line>>,
    /// The redraw thread on a terminal; dropping the sender stops it.
    ticker: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
    started: Instant,
}

/// What the terminal line shows.
#[derive(Debug, Default)]
struct Line {
    step: usize,
    text: String,
}

impl Progress {
    /// Progress of `command` in `total` steps: a redrawn line when stderr is a terminal
    /// (and `TERM` is not `dumb`), plain lines otherwise.
    pub fn start(command: &'static str, total: usize) -> Self {
        let terminal =
            std::io::stderr().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb");
        let shared = Arc::new(Mutex::new(Line::default()));
        let started = Instant::now();
        let ticker = terminal.then(|| {
            let (tx, rx) = mpsc::channel::<()>();
            let line = Arc::clone(&shared);
            let handle = std::thread::spawn(move || {
                let mut frame = 0usize;
                // Any message or a dropped sender ends the loop.
                while let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(TICK) {
                    frame = frame.wrapping_add(1);
                    let l = line.lock().unwrap_or_else(PoisonError::into_inner);
                    draw(command, total, &l, frame, started.elapsed());
                }
            });
            (tx, handle)
        });
        Self {
            command,
            total,
            shared,
            ticker,
            started,
        }
    }

    /// Starts the next step, described by `what` (a short phrase, e.g. "opening the token").
    pub fn step(&mut self, what: impl Into<String>) {
        {
            let mut line = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
            line.step = (line.step + 1).min(self.total);
        }
        self.detail(what);
    }

    /// Says what the current step is doing now, without starting a new one (e.g. a key
    /// that was not found is being generated).
    pub fn detail(&mut self, what: impl Into<String>) {
        let text = what.into();
        let mut line = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        if self.ticker.is_some() {
            line.text = text;
            draw(self.command, self.total, &line, 0, self.started.elapsed());
        } else {
            eprintln!(
                "{} {}",
                self.command,
                plain_step(line.step, self.total, &text)
            );
            line.text = text;
        }
    }

    /// Prints a line of the command's own output on stdout, without tearing the progress
    /// line when both go to the same terminal.
    pub fn out(&self, text: impl std::fmt::Display) {
        let line = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        if self.ticker.is_some() {
            clear_line();
        }
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{text}");
        let _ = stdout.flush();
        if self.ticker.is_some() {
            draw(self.command, self.total, &line, 0, self.started.elapsed());
        }
    }

    /// The command finished: the terminal line is replaced by `<command> done`.
    pub fn finish(mut self) {
        let terminal = self.stop();
        if terminal {
            eprintln!(
                "{} done ({:.1}s)",
                self.command,
                self.started.elapsed().as_secs_f64()
            );
        } else {
            eprintln!("{} done", self.command);
        }
    }

    /// Stops the redraw thread and clears its line; true on a terminal.
    fn stop(&mut self) -> bool {
        let Some((tx, handle)) = self.ticker.take() else {
            return false;
        };
        drop(tx);
        // The thread only draws; if it panicked there is nothing to recover.
        let _ = handle.join();
        clear_line();
        true
    }
}

impl Drop for Progress {
    /// A command that fails leaves no half-drawn line before its error message.
    fn drop(&mut self) {
        self.stop();
    }
}

/// `[i/n] what`: the plain line of a step, after the command's name.
fn plain_step(step: usize, total: usize, what: &str) -> String {
    format!("[{step}/{total}] {what}")
}

/// `[####--------]`: the steps started so far out of `total`.
fn bar(step: usize, total: usize) -> String {
    let filled = (step * BAR_WIDTH)
        .checked_div(total)
        .unwrap_or(0)
        .min(BAR_WIDTH);
    format!("[{}{}]", "#".repeat(filled), "-".repeat(BAR_WIDTH - filled))
}

fn draw(command: &str, total: usize, line: &Line, frame: usize, elapsed: Duration) {
    let mut err = std::io::stderr().lock();
    // \r and "erase line": the same line is rewritten, whatever was longer before.
    let _ = write!(
        err,
        "\r\x1b[2K{} {command} {} {} ({}s)",
        SPINNER[frame % SPINNER.len()],
        bar(line.step, total),
        plain_step(line.step, total, &line.text),
        elapsed.as_secs()
    );
    let _ = err.flush();
}

fn clear_line() {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r\x1b[2K");
    let _ = err.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_step_names_its_place() {
        assert_eq!(
            plain_step(2, 4, "opening the token"),
            "[2/4] opening the token"
        );
    }

    #[test]
    fn the_bar_fills_with_the_steps() {
        assert_eq!(bar(0, 4), "[------------]");
        assert_eq!(bar(2, 4), "[######------]");
        assert_eq!(bar(4, 4), "[############]");
        assert_eq!(bar(1, 0), "[------------]");
    }
}
