//! Starts and stops the SMTP sink (`sink.py`, a separate Python process) for a test, and
//! reads the messages it received. The process is killed by its PID when the guard goes.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/smtp/sink.py");

/// One received message, as the sink decoded it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Mail {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub subject: String,
    pub body: String,
    #[serde(default)]
    #[allow(dead_code)]
    pub message_id: String,
    #[allow(dead_code)]
    pub raw: String,
    #[serde(default)]
    pub tls: bool,
    #[serde(default)]
    pub auth_user: Option<String>,
}

/// A running (or stopped) sink and the folder it writes to.
pub struct Sink {
    pub port: u16,
    dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    _tmp: tempfile::TempDir,
}

impl Sink {
    /// Starts a sink on a free loopback port.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a sink with extra options of `sink.py` (`--tls`, `--cert`, `--key`, `--auth`).
    pub fn start_with(args: &[&str]) -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("mail");
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let (child, port) = spawn(&dir, 0, &args);
        Self {
            port,
            dir,
            args,
            child: Some(child),
            _tmp: tmp,
        }
    }

    /// A sink that is not running yet on a port that was free a moment ago (the relay is
    /// "down" until [`Sink::resume`]).
    pub fn down() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let tmp = tempfile::tempdir().expect("temp dir");
        Self {
            port,
            dir: tmp.path().join("mail"),
            args: Vec::new(),
            child: None,
            _tmp: tmp,
        }
    }

    /// Kills the sink process (by its PID); connections are then refused.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the sink again on the same port, keeping the messages received so far.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "the sink is already running");
        let (child, port) = spawn(&self.dir, self.port, &self.args);
        assert_eq!(port, self.port);
        self.child = Some(child);
    }

    /// The messages received so far, in order of arrival.
    pub fn messages(&self) -> Vec<Mail> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut names: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        names.sort();
        let mut mails = Vec::new();
        for p in &names {
            let text = std::fs::read_to_string(p).expect("read messages");
            // A line still being written has no newline yet.
            let complete = text.rfind('\n').map_or("", |end| &text[..end]);
            for line in complete.lines() {
                mails.push(serde_json::from_str(line).expect("message JSON"));
            }
        }
        mails
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn(dir: &Path, port: u16, args: &[String]) -> (Child, u16) {
    let mut child = Command::new("python3")
        .arg(SCRIPT)
        .arg("--dir")
        .arg(dir)
        .arg("--port")
        .arg(port.to_string())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 must be installed to run the SMTP sink");
    let stdout = child.stdout.take().expect("sink stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the sink's port");
    let port = line
        .trim()
        .strip_prefix("PORT ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| {
            let _ = child.kill();
            panic!("the SMTP sink did not start: {line:?}")
        });
    (child, port)
}
