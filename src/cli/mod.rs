//! The `certgate` command line: parses arguments, sets up logging, runs one command, and
//! reports a failure as one sentence (with its causes) on stderr and an exit status from
//! [`exit`] (docs/cli.md lists them, and every command's `--format json` fields).

mod args;
mod audit_ops;
mod ca_ops;
mod demo;
mod exit;
mod generate;
mod host_changes;
mod hsm;
mod init;
mod notify;
mod progress;
mod serve;
mod server_cert;
mod signature_ops;
mod staff;
mod staff_members;
mod views;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

pub use args::Cli;
use args::{Command, ConfigCmd, Format};

use crate::app::open as context;
use crate::config::LogConfig;
use crate::telemetry::otlp::OtlpSettings;

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version go to stdout with status 0; a wrong command line is a
            // usage error (2), whatever clap's own default.
            let _ = e.print();
            return exit::code(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::code(exit::ERROR);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => exit::code(exit::OK),
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::code(exit::status_of(&e))
        }
    }
}

/// Starts logging to stderr. The level: `RUST_LOG`, else `[log] level` (for `serve`), else
/// `info` for the long-running commands and `warn` for the others. The format:
/// `CERTGATE_LOG_JSON`, else `[log] json`. With `[trace] otlp_endpoint`, certgate's spans
/// also go to that collector, whatever the log level.
fn init_logging(serving: bool, log: Option<&LogConfig>, trace: Option<OtlpSettings>) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::prelude::*;
    // rustls warns of every client that puts an IP address in SNI (libest does, on every
    // connection): the client's nit, nothing an operator can act on.
    let default = if serving {
        "info,rustls::msgs::handshake=error"
    } else {
        "warn"
    };
    let from_file = log
        .filter(|_| serving)
        .and_then(|l| l.filter().ok().flatten());
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(v).ok(),
        _ => None,
    }
    .or(from_file)
    .unwrap_or_else(|| EnvFilter::new(default));
    let json = match std::env::var("CERTGATE_LOG_JSON").as_deref() {
        Ok("1" | "true") => true,
        Ok("0" | "false") => false,
        _ => log.is_some_and(|l| l.json),
    };
    // Colour only on a terminal: a file, journald or a log shipper gets plain lines.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let Some(trace) = trace else {
        // Without export, one global filter: disabled spans and events cost nothing.
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(ansi)
            .with_writer(std::io::stderr);
        if json {
            builder.json().init();
        } else {
            builder.init();
        }
        return;
    };
    // Each layer its own filter: the log keeps its level, the exporter gets every span
    // of certgate's own (the phases are debug spans, silent in an info log).
    let spans = || {
        tracing_subscriber::filter::filter_fn(|m| m.is_span() && m.target().starts_with("certgate"))
    };
    let otlp = crate::telemetry::otlp::start(trace);
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if json {
        tracing_subscriber::registry()
            .with(fmt.json().with_filter(filter))
            .with(otlp.with_filter(spans()))
            .init();
    } else {
        tracing_subscriber::registry()
            .with(fmt.with_filter(filter))
            .with(otlp.with_filter(spans()))
            .init();
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let serving = matches!(cli.command, Command::Serve | Command::DemoUpstream { .. });
    // The commands that need no configuration file.
    match &cli.command {
        Command::Config(ConfigCmd::Example) => {
            print!("{}", crate::config::EXAMPLE);
            return Ok(());
        }
        Command::Completions { shell } => return generate::completions(*shell),
        Command::Man { out } => return generate::man(out.as_deref()),
        Command::Config(ConfigCmd::Check { output }) => {
            init_logging(serving, None, None);
            return config_check(&cli.config, output.format);
        }
        Command::Demo { dir } => {
            init_logging(serving, None, None);
            return demo::run(dir).await;
        }
        Command::DemoUpstream { addr } => {
            init_logging(serving, None, None);
            return Ok(crate::demo::upstream::serve(*addr).await?);
        }
        _ => {}
    }
    let cfg = context::load_config(&cli.config)?;
    // Checked when the file was read; an error here cannot happen.
    let trace = cfg.trace.settings().ok().flatten();
    init_logging(serving, Some(&cfg.log), trace);
    let result = run_command(cli, cfg).await;
    // A command's last spans (a stopping server's included) reach the collector.
    crate::telemetry::otlp::flush(std::time::Duration::from_secs(5)).await;
    result
}

async fn run_command(cli: Cli, cfg: crate::config::Config) -> anyhow::Result<()> {
    match cli.command {
        Command::Config(_)
        | Command::Completions { .. }
        | Command::Man { .. }
        | Command::Demo { .. }
        | Command::DemoUpstream { .. } => Ok(()),
        Command::Init => init::run(&cfg).await,
        Command::Contract(cmd) => staff::contract(&cfg, cmd).await,
        Command::User(cmd) => staff::user(&cfg, cmd).await,
        Command::Issue(cmd) => staff::issue(cfg, cmd).await,
        Command::Cert(cmd) => staff::cert(cfg, cmd).await,
        Command::Staff(cmd) => staff_members::run(cfg, cmd).await,
        Command::Ca(cmd) => ca_ops::run(&cfg, cmd).await,
        Command::Hsm(cmd) => hsm::run(&cfg, cmd).await,
        Command::Audit(cmd) => audit_ops::run(&cfg, cmd).await,
        Command::Serve => serve::run(&cli.config, cfg).await,
        Command::Notify(cmd) => notify::run(&cfg, cmd).await,
    }
}

/// `config check`: the file, the PIN source and an https upstream's files, read as `serve`
/// reads them. A refused configuration is a finding (exit 3), in JSON too.
fn config_check(path: &std::path::Path, format: Format) -> anyhow::Result<()> {
    let problem = check_config(path).err();
    let warnings = match &problem {
        None => context::load_config(path).map(|c| advice(&c))?,
        Some(_) => Vec::new(),
    };
    let shown = path.display().to_string();
    match format {
        Format::Text => {
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            if problem.is_none() {
                println!("{shown}: configuration is valid");
            }
        }
        Format::Json => views::print_json(&views::ConfigCheckView {
            config_file: shown,
            valid: problem.is_none(),
            problem: problem.as_ref().map(|e| format!("{e:#}")),
            warnings,
        })?,
    }
    match problem {
        None => Ok(()),
        Some(e) => Err(exit::Finding::error(e)),
    }
}

/// A certificate past its notAfter: `serve` would start with it, and `peer` (the clients,
/// or the app) would refuse every handshake.
fn refuse_expired(pair: &crate::tls::ServerKeyPair, what: &str, peer: &str) -> anyhow::Result<()> {
    use crate::clock::Clock;
    let Some(leaf) = pair.chain.first() else {
        return Ok(());
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf.as_ref()) else {
        // Unreadable here is unreadable to rustls too, which load_server_key_pair reports.
        return Ok(());
    };
    let not_after = cert.validity().not_after;
    if not_after.timestamp() < crate::clock::SystemClock.now() {
        anyhow::bail!("{what}: the certificate expired on {not_after}; {peer} would refuse it");
    }
    Ok(())
}

/// What a valid configuration leaves weaker than it could be.
fn advice(cfg: &crate::config::Config) -> Vec<String> {
    let mut out = Vec::new();
    let apps_with_certificates = cfg
        .listeners
        .iter()
        .any(|l| l.client_auth != crate::config::ClientAuth::None)
        && !cfg.routes.is_empty();
    if cfg.gateway.enroll_host.is_none() && apps_with_certificates {
        out.push(
            "certgate's pages and /api/v1/ are served on the apps' host names: script \
             injected into a banking app could call the administrators' API with their \
             certificates. Set [gateway] enroll_host (docs/runbook.md, \"The issuance \
             surface on its own host\")."
                .to_owned(),
        );
    }
    out
}

fn check_config(path: &std::path::Path) -> anyhow::Result<()> {
    let cfg = context::load_config(path)?;
    cfg.hsm.pin_source()?.read("HSM PIN")?;
    // The files an https upstream needs, read as `serve` will read them.
    for r in &cfg.routes {
        let Some(t) = &r.upstream_tls else {
            continue;
        };
        // Each endpoint's host is its default server name.
        for url in r.upstream.urls() {
            let host = url
                .parse::<http::Uri>()
                .ok()
                .and_then(|u| u.host().map(str::to_string))
                .unwrap_or_default();
            crate::tls::upstream_tls(t, &host, |p| cfg.resolve(p)).with_context(|| {
                format!("[[route]] {}: [route.upstream_tls] for {url}", r.prefix)
            })?;
        }
        // The gateway's own certificate for an app that requires mTLS: expired, the app
        // would refuse every connection.
        if let (Some(cert), Some(key)) = (&t.client_cert, &t.client_key) {
            let what = format!("[[route]] {}: [route.upstream_tls] client_cert", r.prefix);
            let pair = crate::tls::load_server_key_pair(&cfg.resolve(cert), &cfg.resolve(key))
                .with_context(|| what.clone())?;
            refuse_expired(&pair, &what, "the app")?;
        }
    }
    // Each listener's certificate and key, read as `serve` reads them (a changed path is
    // checked here before a reload or restart puts it in force).
    for l in &cfg.listeners {
        let what = format!("[[listener]] {}: cert and key", l.addr);
        let pair = crate::tls::load_server_key_pair(&cfg.resolve(&l.cert), &cfg.resolve(&l.key))
            .with_context(|| what.clone())?;
        refuse_expired(&pair, &what, "clients")?;
    }
    // The staff console's certificate and key, read as `serve` reads them.
    if let (Some(cert), Some(key)) = (&cfg.staff.cert, &cfg.staff.key) {
        let pair = crate::tls::load_server_key_pair(&cfg.resolve(cert), &cfg.resolve(key))
            .context("[staff] cert and key")?;
        refuse_expired(&pair, "[staff] cert and key", "clients")?;
    }
    // The logo's content, read and checked as `serve` reads it at start.
    crate::locale::Locale::from_config(&cfg).context("[branding]")?;
    Ok(())
}
