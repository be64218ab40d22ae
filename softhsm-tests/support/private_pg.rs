//! A PostgreSQL server of the test's own that checks passwords (SCRAM), unlike the shared
//! test server (trust): only there does a login prove that the password was read, e.g.
//! from a pgpass file. initdb in a temp folder, 127.0.0.1 on a free port, stopped on drop.
//! PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::fixture::{free_port, missing};

pub struct PrivatePg {
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    as_postgres: bool,
    _dir: tempfile::TempDir,
}

/// The role and database certgate logs in to, and its password.
pub const USER: &str = "certgate";
pub const PASSWORD: &str = "pg-secret-8812-sentinel";
const ADMIN_PASSWORD: &str = "pg-admin-3391";

impl PrivatePg {
    /// A running server with role and database `certgate`, or `None` (outside CI) when
    /// PostgreSQL's server programs are not installed.
    pub fn start() -> Option<Self> {
        let Some(bin) = server_bin_dir() else {
            return missing("PostgreSQL server programs (initdb) are not installed")
                .map(|never| match never {});
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let as_postgres = is_root();
        let data = dir.path().join("data");
        std::fs::write(dir.path().join("pw"), ADMIN_PASSWORD).expect("pw file");
        if as_postgres {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path()));
        }
        let port = free_port();
        let pg = Self {
            port,
            bin,
            data,
            as_postgres,
            _dir: dir,
        };
        let root = pg._dir.path();
        run(pg
            .cmd("initdb")
            .args([
                "-U",
                "pgadmin",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--pwfile",
            ])
            .arg(root.join("pw"))
            .arg("-D")
            .arg(&pg.data));
        run(pg
            .cmd("pg_ctl")
            .arg("-D")
            .arg(&pg.data)
            .arg("-l")
            .arg(root.join("server.log"))
            .arg("-o")
            .arg(format!(
                "-p {port} -c listen_addresses=127.0.0.1 -k {}",
                root.display()
            ))
            .args(["-w", "start"]));
        for sql in [
            format!("CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'"),
            format!("CREATE DATABASE {USER} OWNER {USER}"),
        ] {
            run(Command::new("psql")
                .env("PGPASSWORD", ADMIN_PASSWORD)
                .args(["-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "pgadmin"])
                .args(["-p", &port.to_string(), "-d", "postgres", "-c", &sql]));
        }
        Some(pg)
    }

    /// The URL certgate is configured with: no password in it.
    pub fn url(&self) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{USER}", self.port)
    }

    /// The pgpass line for this server.
    pub fn pgpass_line(&self) -> String {
        format!("127.0.0.1:{}:{USER}:{USER}:{PASSWORD}\n", self.port)
    }

    fn cmd(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Debian keeps initdb and pg_ctl in /usr/lib/postgresql/<version>/bin, off the PATH.
fn server_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().or_else(|| {
        let out = Command::new("pg_config").arg("--bindir").output().ok()?;
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        Path::new(&dir).join("initdb").exists().then_some(dir)
    })
}
