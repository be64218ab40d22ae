//! `certgate demo`: everything a newcomer needs to see certgate work, in one folder — a
//! SoftHSM2 token, SQLite, the CA, a server certificate for localhost, sample contract and
//! login IDs, the sample banking app and the gateway in front of it. Running it again
//! reuses the folder. Each step runs the real `certgate` commands as child processes.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

use super::server_cert::write_private;

const TOKEN_LABEL: &str = "certgate-demo";
const CONTRACT: &str = "demo-corp";
const USERS: [(&str, &str); 3] = [
    ("demo-admin", "admin"),
    ("demo-approver", "approver"),
    ("demo-general", "general"),
];

struct Demo {
    dir: PathBuf,
    exe: PathBuf,
    softhsm_conf: PathBuf,
}

impl Demo {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn certgate(&self) -> Command {
        let mut cmd = Command::new(&self.exe);
        // Relative paths in commands (server.pem, ...) land in the demo folder.
        cmd.current_dir(&self.dir)
            .arg("--config")
            .arg(self.path("certgate.toml"))
            .env("SOFTHSM2_CONF", &self.softhsm_conf);
        cmd
    }

    /// Runs a certgate command to completion; returns its stdout.
    async fn step(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self
            .certgate()
            .args(args)
            .stderr(Stdio::piped())
            .output()
            .await
            .with_context(|| format!("cannot run certgate {}", args.join(" ")))?;
        if !out.status.success() {
            bail!(
                "certgate {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut raw = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut raw)
        .map_err(|_| anyhow::anyhow!("the random number generator failed"))?;
    Ok(hex::encode(raw))
}

async fn prepare_token(demo: &Demo) -> anyhow::Result<()> {
    let tokens = demo.path("tokens");
    if demo.path(".token-ready").exists() {
        return Ok(());
    }
    std::fs::create_dir_all(&tokens)?;
    std::fs::write(
        &demo.softhsm_conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )?;
    let pin = random_hex(8)?;
    let so_pin = random_hex(8)?;
    write_private(&demo.path("hsm-pin"), pin.as_bytes())?;
    write_private(&demo.path("hsm-so-pin"), so_pin.as_bytes())?;
    // softhsm2-util takes the PINs only as arguments: visible in the process list for the
    // moment it runs, which is acceptable for a throwaway demo token only.
    let out = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &demo.softhsm_conf)
        .args([
            "--init-token",
            "--free",
            "--label",
            TOKEN_LABEL,
            "--so-pin",
            &so_pin,
            "--pin",
            &pin,
        ])
        .output()
        .await
        .context(
            "cannot run softhsm2-util: install the softhsm2 package (scripts/setup-debian.sh does)",
        )?;
    if !out.status.success() {
        bail!(
            "softhsm2-util failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    std::fs::write(demo.path(".token-ready"), b"")?;
    Ok(())
}

fn write_config(demo: &Demo) -> anyhow::Result<()> {
    let path = demo.path("certgate.toml");
    if path.exists() {
        return Ok(());
    }
    let text = format!(
        r#"# certgate demo configuration, written by `certgate demo`.
[database]
url = "sqlite://certgate.db"

[hsm]
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "{TOKEN_LABEL}"
pin_file = "hsm-pin"
key_label = "certgate-ca"

[ca]
subject = "CN=certgate Demo Customer CA,O=Example Bank"
public_url = "https://127.0.0.1:8443"
organization = "Example Bank corporate customers"

[[listener]]
addr = "127.0.0.1:8443"
cert = "server.pem"
key = "server.key"
client_auth = "optional"

[[route]]
prefix = "/"
upstream = "http://127.0.0.1:8080"
auth = "certificate"

[admin]
addr = "127.0.0.1:9090"
"#
    );
    std::fs::write(path, text)?;
    Ok(())
}

pub async fn run(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = std::fs::canonicalize(dir)?;
    let demo = Demo {
        softhsm_conf: dir.join("softhsm2.conf"),
        exe: std::env::current_exe().context("cannot find the certgate executable")?,
        dir,
    };
    prepare_token(&demo).await?;
    write_config(&demo)?;
    print!("{}", demo.step(&["init"]).await?);
    if !demo.path("server.pem").exists() {
        demo.step(&[
            "ca",
            "issue-server",
            "--name",
            "localhost",
            "--name",
            "127.0.0.1",
            "--cert-out",
            "server.pem",
            "--key-out",
            "server.key",
        ])
        .await?;
    }
    std::fs::write(demo.path("ca.pem"), demo.step(&["ca", "cert"]).await?)?;
    if !demo.path(".users-ready").exists() {
        demo.step(&["contract", "add", CONTRACT, "--name", "Demo Trading Co."])
            .await?;
        for (login, role) in USERS {
            let email = format!("{login}@demo.example");
            demo.step(&[
                "user",
                "add",
                login,
                "--contract",
                CONTRACT,
                "--role",
                role,
                "--email",
                &email,
            ])
            .await?;
        }
        std::fs::write(demo.path(".users-ready"), b"")?;
    }
    let code = match demo.step(&["issue", "authorize", "demo-admin"]).await {
        Ok(out) => out.lines().last().unwrap_or_default().trim().to_owned(),
        Err(_) => String::new(),
    };

    let mut upstream = Command::new(&demo.exe)
        .args(["demo-upstream", "--addr", "127.0.0.1:8080"])
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the sample banking app")?;
    let mut gateway = demo
        .certgate()
        .arg("serve")
        .kill_on_drop(true)
        .spawn()
        .context("cannot start certgate serve")?;
    print_instructions(&demo, &code);
    let result = tokio::select! {
        status = gateway.wait() => status.map(|s| format!("certgate serve exited: {s}")),
        status = upstream.wait() => status.map(|s| format!("the sample app exited: {s}")),
        _ = terminated() => Ok("stopped".to_owned()),
    };
    stop(&mut gateway).await;
    stop(&mut upstream).await;
    println!("{}", result?);
    Ok(())
}

/// SIGINT (Ctrl-C) or SIGTERM: either way the children are stopped before the demo exits.
async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut i), Ok(mut t)) => {
            tokio::select! {
                _ = i.recv() => {}
                _ = t.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

/// Asks a child to stop (SIGTERM: `serve` drains and writes its `config.stop` audit entry)
/// and kills it if it has not ended within 15 s.
async fn stop(child: &mut Child) {
    let asked = child
        .id()
        .and_then(|id| rustix::process::Pid::from_raw(i32::try_from(id).ok()?))
        .is_some_and(|pid| {
            rustix::process::kill_process(pid, rustix::process::Signal::TERM).is_ok()
        });
    if asked
        && tokio::time::timeout(std::time::Duration::from_secs(15), child.wait())
            .await
            .is_ok()
    {
        return;
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
}

fn print_instructions(demo: &Demo, code: &str) {
    let d = demo.dir.display();
    let env = format!("SOFTHSM2_CONF={}", demo.softhsm_conf.display());
    println!();
    println!("certgate demo is running (Ctrl-C stops it). Files are in {d}.");
    println!(
        "  Login screen:   https://127.0.0.1:8443/certgate/   (trust {d}/ca.pem in the browser)"
    );
    println!("  Sample app:     https://127.0.0.1:8443/            (needs a client certificate)");
    println!("  Health/metrics: http://127.0.0.1:9090/healthz  http://127.0.0.1:9090/metrics");
    println!();
    if code.is_empty() {
        println!("demo-admin already has a certificate; re-issue it with:");
        println!("  {env} certgate --config {d}/certgate.toml issue reissue demo-admin");
        return;
    }
    println!("First certificate: login ID demo-admin, one-time issuance code {code}");
    println!("  In a browser: open the login screen, choose \"Obtain certificate\", enter both.");
    println!("  Or with openssl and curl:");
    println!(
        "    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=demo-admin \\"
    );
    println!("      -keyout demo-admin.key -out demo-admin.csr");
    println!(
        "    curl --cacert {d}/ca.pem --user 'demo-admin:{code}' -H 'Content-Type: application/pkcs10' \\"
    );
    println!("      --data-binary @<(openssl req -in demo-admin.csr -outform DER | base64) \\");
    println!(
        "      https://127.0.0.1:8443/.well-known/est/simpleenroll | openssl base64 -d | openssl pkcs7 -inform DER -print_certs > demo-admin.pem"
    );
    println!(
        "    curl --cacert {d}/ca.pem --cert demo-admin.pem --key demo-admin.key https://127.0.0.1:8443/"
    );
}
