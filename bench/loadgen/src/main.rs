//! `loadgen`: certgate's benchmark tool. It owns measuring only: load over HTTP/1.1 with a
//! client certificate (keep-alive, or a full mTLS handshake per request with resumption
//! off), idle connections for memory per connection, the raw PKCS#11 signing rate, and
//! issuance through certgate's lifecycle in-process. It must not start or stop the servers
//! it measures (bench/run.sh does) and talks to loopback addresses only.
//!
//! Every command prints one JSON object on stdout.

mod hsm_raw;
mod idle;
mod issuance;
mod load;
mod procstat;
mod stats;
mod tls;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "loadgen", about = "certgate benchmark tool")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Where to send requests and with which credentials.
#[derive(clap::Args, Clone, Debug)]
pub struct TargetArgs {
    /// `https://127.0.0.1:PORT/path` or `http://...` (loopback only).
    #[arg(long)]
    pub url: String,
    /// CA certificate (PEM) trusted for the server certificate.
    #[arg(long)]
    pub cacert: Option<PathBuf>,
    /// Client certificate chain (PEM).
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// TLS server name to send and check (default: the URL's host).
    #[arg(long)]
    pub server_name: Option<String>,
    /// HTTP method.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// File sent as the request body.
    #[arg(long)]
    pub body_file: Option<PathBuf>,
    /// Extra request header `Name: value` (repeatable).
    #[arg(long = "header")]
    pub headers: Vec<String>,
}

/// Processes whose CPU and memory are sampled around a measurement.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct WatchArgs {
    /// PIDs of the server processes (comma separated); their CPU time per request and
    /// peak PSS are reported.
    #[arg(long, value_delimiter = ',')]
    pub pids: Vec<u32>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Requests for a fixed time at a fixed concurrency; latency histogram.
    Load {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        watch: WatchArgs,
        /// Concurrent connections.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Seconds measured (after the warm-up).
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
        /// Seconds of load before measuring.
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        /// A new TCP connection and full TLS handshake (no resumption) for every request.
        #[arg(long)]
        handshake: bool,
        /// Stop after this many measured requests even if time remains.
        #[arg(long, default_value_t = 5_000_000)]
        max_requests: u64,
        /// Label echoed in the output.
        #[arg(long, default_value = "")]
        label: String,
        /// A shell command run (and waited for) when the measured window opens, e.g. to
        /// zero a profiler's counters while the connections stay open.
        #[arg(long)]
        on_window_start: Option<String>,
        /// A shell command run when the measured window closes, before any connection is.
        #[arg(long)]
        on_window_end: Option<String>,
    },
    /// Opens N TLS connections, one request on each, holds them idle and reports the
    /// servers' RSS/PSS growth per connection.
    Idle {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        watch: WatchArgs,
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// Seconds to wait after the last connection is open before measuring.
        #[arg(long, default_value_t = 2.0)]
        settle: f64,
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Raw signing rate of a PKCS#11 key: SHA-256 in software, then C_Sign(CKM_ECDSA) on
    /// one session per thread; nothing else.
    HsmRaw(hsm_raw::HsmRawArgs),
    /// Issuance in-process: certgate's Lifecycle::obtain (CSR check, code claim, HSM
    /// signature, durable storage, audit) for fresh login IDs, and Authority::issue_client
    /// alone (no store) for the breakdown.
    Issue(issuance::IssueArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let out = match cli.cmd {
        Cmd::Load {
            target,
            watch,
            concurrency,
            secs,
            warmup,
            handshake,
            max_requests,
            label,
            on_window_start,
            on_window_end,
        } => {
            // One thread: the generator is pinned to one core by the harness.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(load::run(load::LoadPlan {
                target,
                watch,
                concurrency,
                secs,
                warmup,
                handshake,
                max_requests,
                label,
                hooks: load::WindowHooks {
                    start: on_window_start,
                    end: on_window_end,
                },
            }))?
        }
        Cmd::Idle {
            target,
            watch,
            connections,
            settle,
            label,
        } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(idle::run(target, watch, connections, settle, label))?
        }
        Cmd::HsmRaw(args) => hsm_raw::run(&args)?,
        Cmd::Issue(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(issuance::run(args))?
        }
    };
    println!("{out}");
    Ok(())
}
