//! Issuance in-process, the way `cert sign`, EST and the obtain page run it:
//! `Lifecycle::obtain` checks the CSR, claims the one-time code, signs in the HSM through
//! `Authority::issue_client`, stores the certificate (committed before it is returned) and
//! writes the audit record. For the breakdown it also times the CA key alone
//! (`KeyBackend::sign`, which verifies each signature) and `issue_client` alone (no store).
//!
//! It creates its own contract and login IDs (prefixed `bench-`) in the configured store;
//! use it on a throwaway installation only.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use certgate::audit::Actor;
use certgate::ca::{
    Authority, ClientProfile, ClientSubject, IssuancePolicy, KeyBackend, PlannedSerial, csr,
};
use certgate::clock::{Clock, SystemClock};
use certgate::config::Config;
use certgate::hsm::{Hsm, HsmSettings};
use certgate::lifecycle::{Authorization, Lifecycle, LifecycleSettings};
use certgate::store::{CertStatus, Contract, Role, Store, User};
use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct IssueArgs {
    /// certgate configuration of the throwaway installation (already `init`ed).
    #[arg(long)]
    config: std::path::PathBuf,
    /// Use this database instead of the configuration's (e.g. a fresh PostgreSQL database).
    #[arg(long)]
    database_url: Option<String>,
    /// Certificates obtained per concurrency level.
    #[arg(long, default_value_t = 400)]
    count: usize,
    /// Concurrency levels for obtain (tasks calling it at once).
    #[arg(long, value_delimiter = ',', default_value = "1,2,8,64")]
    concurrency: Vec<usize>,
    /// Seconds for each timed signing loop (key alone, issue_client alone).
    #[arg(long, default_value_t = 2.0)]
    secs: f64,
    /// Also measure obtain with this many milliseconds added to each signature, as a
    /// network HSM takes (simulated on the key seam; 0: not measured).
    #[arg(long, default_value_t = 0)]
    sign_delay_ms: u64,
    /// Signing sessions for the simulated slow HSM, one run each (concurrency 64).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16")]
    slow_sessions: Vec<usize>,
    /// A `perf record --control fifo:...` control FIFO: perf is enabled for the obtain
    /// phases only (not the set-up of login IDs and codes, nor the signing loops).
    #[arg(long)]
    perf_ctl: Option<std::path::PathBuf>,
}

/// Sends `command` (`enable` or `disable`) to perf's control FIFO, if one was given.
fn perf_ctl(fifo: Option<&std::path::Path>, command: &str) -> anyhow::Result<()> {
    if let Some(fifo) = fifo {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).open(fifo)?;
        writeln!(f, "{command}")?;
    }
    Ok(())
}

pub async fn run(args: IssueArgs) -> anyhow::Result<serde_json::Value> {
    let cfg = Config::load(&args.config)?;
    let url = args
        .database_url
        .clone()
        .unwrap_or_else(|| cfg.database_url());
    let store = Store::connect(&url).await?;
    store.migrate().await?;
    let settings = HsmSettings {
        module: cfg.resolve(&cfg.hsm.module),
        token_label: cfg.hsm.token_label.clone(),
        token_uri: cfg.hsm.token_uri.clone(),
        pin: cfg.hsm.pin_source()?.read("HSM PIN")?,
        sessions: cfg.hsm.sessions,
        keepalive_secs: cfg.hsm.keepalive_secs,
        ecdsa_mechanism: cfg.hsm.ecdsa_mechanism,
        rsa_signature: cfg.hsm.rsa_signature,
        context_login: cfg.hsm.context_login,
        key_always_authenticate: cfg.hsm.key_always_authenticate,
    };
    let hsm = tokio::task::spawn_blocking(move || Hsm::open(&settings)).await??;
    let ca = store
        .active_ca()
        .await?
        .context("no active CA: run certgate init first")?;
    let label = ca.key_label.clone();
    let opener = hsm.clone();
    let key: Arc<dyn KeyBackend> =
        Arc::new(tokio::task::spawn_blocking(move || opener.key(&label)).await??);
    let authority = Arc::new(Authority::new(
        ca.id,
        ca.cert_der.clone(),
        key.clone(),
        IssuancePolicy {
            validity_days: cfg.ca.validity_days,
            organization: cfg.ca.organization.clone(),
            public_url: cfg.ca.public_url.clone(),
            crl_partition_days: cfg.revocation.crl_partition_days,
        },
    )?);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let lifecycle = Lifecycle::new(
        store.clone(),
        authority.clone(),
        clock.clone(),
        LifecycleSettings::from_config(&cfg),
    );

    let mut key_rates = Vec::new();
    let mut issue_rates = Vec::new();
    let sample_csr = csr::check(make_csr("bench-sample")?.as_bytes())?;
    for threads in [1usize, 2] {
        let k = key.clone();
        let t = timed_threads(threads, args.secs, move || {
            k.sign(b"certgate bench message")
                .map(|_| ())
                .map_err(anyhow::Error::from)
        })?;
        key_rates.push(
            json!({"threads": threads, "per_sec": t.per_sec, "cpu_us_per_op": t.cpu_us_per_op}),
        );
        let a = authority.clone();
        let c = sample_csr.clone();
        let org = cfg.ca.organization.clone();
        let now = clock.now();
        let t = timed_threads(threads, args.secs, move || {
            let subject = ClientSubject {
                login: "bench-sample",
                contract_id: "bench",
                organization: &org,
                profile: ClientProfile::Customer,
            };
            // A serial drawn per certificate, as the lifecycle draws one before its intent.
            let serial = PlannedSerial::draw()?;
            a.issue_client(serial, &c, &subject, now)
                .map(|_| ())
                .map_err(anyhow::Error::from)
        })?;
        issue_rates.push(
            json!({"threads": threads, "per_sec": t.per_sec, "cpu_us_per_op": t.cpu_us_per_op}),
        );
    }

    let mut obtain_rates = Vec::new();
    let run_id = format!("{:x}", clock.now());
    for &c in &args.concurrency {
        let contract = format!("bench-{run_id}-c{c}");
        let perf = args.perf_ctl.as_deref();
        let rate = obtain_rate(&lifecycle, &store, &contract, args.count, c, perf).await?;
        obtain_rates.push(rate);
    }

    // A slow HSM: each signature waits `sign_delay_ms` while it holds one of `sessions`
    // sessions, so at most `sessions` signatures are under way at once.
    let mut slow = Vec::new();
    if args.sign_delay_ms > 0 {
        for &sessions in &args.slow_sessions {
            let slow_key: Arc<dyn KeyBackend> = Arc::new(SlowKey::new(
                key.clone(),
                Duration::from_millis(args.sign_delay_ms),
                sessions,
            ));
            let slow_authority = Arc::new(Authority::new(
                ca.id,
                ca.cert_der.clone(),
                slow_key,
                IssuancePolicy {
                    validity_days: cfg.ca.validity_days,
                    organization: cfg.ca.organization.clone(),
                    public_url: cfg.ca.public_url.clone(),
                    crl_partition_days: cfg.revocation.crl_partition_days,
                },
            )?);
            let slow_lifecycle = Lifecycle::new(
                store.clone(),
                slow_authority,
                clock.clone(),
                LifecycleSettings::from_config(&cfg),
            );
            let contract = format!("bench-{run_id}-slow{sessions}");
            let mut rate =
                obtain_rate(&slow_lifecycle, &store, &contract, args.count, 64, None).await?;
            rate["sessions"] = json!(sessions);
            rate["sign_delay_ms"] = json!(args.sign_delay_ms);
            slow.push(rate);
        }
    }
    Ok(json!({
        "kind": "issuance",
        "store": store.backend_name(),
        "key_sign_verified": key_rates,
        "issue_client_no_store": issue_rates,
        "obtain_stored": obtain_rates,
        "obtain_slow_hsm": slow,
    }))
}

/// Obtains `count` certificates for fresh login IDs of a new contract `contract`, from `c`
/// tasks at once; the rate, with every certificate checked to be stored.
async fn obtain_rate(
    lifecycle: &Lifecycle,
    store: &Store,
    contract: &str,
    count: usize,
    c: usize,
    perf: Option<&std::path::Path>,
) -> anyhow::Result<serde_json::Value> {
    let jobs = prepare(lifecycle, store, contract, count, SystemClock.now()).await?;
    let jobs = Arc::new(jobs);
    let next = Arc::new(AtomicUsize::new(0));
    perf_ctl(perf, "enable")?;
    let t0 = Instant::now();
    let cpu0 = own_cpu();
    let mut tasks = Vec::new();
    for _ in 0..c {
        let (jobs, next, lc) = (jobs.clone(), next.clone(), lifecycle.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((login, code, csr)) = jobs.get(i) else {
                    return Ok::<_, anyhow::Error>(());
                };
                let requester = Actor::User(login.clone());
                let authorization = Authorization::IssuanceCode {
                    login,
                    code,
                    requester: &requester,
                };
                let cert = lc.enroll(authorization, csr.as_bytes()).await?;
                if cert.status != CertStatus::Current {
                    bail!("obtain returned a certificate that is not current");
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = own_cpu() - cpu0;
    perf_ctl(perf, "disable")?;
    // Durability check: every certificate is in the store after obtain returned.
    for (login, _, _) in jobs.iter() {
        if store.current_certificate(login).await?.is_none() {
            bail!("{login} has no stored certificate after obtain returned");
        }
    }
    Ok(
        json!({"concurrency": c, "certificates": count, "secs": secs,
        "per_sec": count as f64 / secs,
        "cpu_us_per_op": cpu * 1e6 / (count.max(1) as f64)}),
    )
}

/// A signing key behind a slow HSM (simulated): each signature holds one of `sessions`
/// slots for `delay` before the real key signs, as a network HSM answering in a few
/// milliseconds with a fixed number of sessions would.
#[derive(Debug)]
struct SlowKey {
    inner: Arc<dyn KeyBackend>,
    delay: Duration,
    sessions: usize,
    busy: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
}

impl SlowKey {
    fn new(inner: Arc<dyn KeyBackend>, delay: Duration, sessions: usize) -> Self {
        Self {
            inner,
            delay,
            sessions: sessions.max(1),
            busy: std::sync::Mutex::new(0),
            freed: std::sync::Condvar::new(),
        }
    }
}

impl KeyBackend for SlowKey {
    fn algorithm(&self) -> certgate::keys::KeyAlgorithm {
        self.inner.algorithm()
    }
    fn public_key_der(&self) -> &[u8] {
        self.inner.public_key_der()
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, certgate::keys::SignError> {
        {
            let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
            while *busy >= self.sessions {
                busy = self.freed.wait(busy).unwrap_or_else(|e| e.into_inner());
            }
            *busy += 1;
        }
        std::thread::sleep(self.delay);
        let signed = self.inner.sign(message);
        *self.busy.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        self.freed.notify_one();
        signed
    }
    fn health(&self) -> Result<(), certgate::keys::SignError> {
        self.inner.health()
    }
}

/// Runs `op` on `threads` threads for `secs`; returns operations per second.
fn timed_threads(
    threads: usize,
    secs: f64,
    op: impl Fn() -> anyhow::Result<()> + Send + Sync + Clone + 'static,
) -> anyhow::Result<Timed> {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (stop, count, op) = (stop.clone(), count.clone(), op.clone());
            std::thread::spawn(move || -> anyhow::Result<()> {
                while !stop.load(Ordering::Relaxed) {
                    op()?;
                    count.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    let t0 = Instant::now();
    let cpu0 = own_cpu();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let n = count.load(Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = own_cpu() - cpu0;
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("a thread panicked"))??;
    }
    Ok(Timed {
        per_sec: n as f64 / elapsed,
        cpu_us_per_op: cpu * 1e6 / (n.max(1) as f64),
    })
}

/// A timed loop's rate and this process's CPU time per operation.
struct Timed {
    per_sec: f64,
    cpu_us_per_op: f64,
}

/// CPU seconds this process has used so far (all threads; 10 ms resolution).
fn own_cpu() -> f64 {
    crate::procstat::cpu(std::process::id()).as_secs_f64()
}

/// A contract with `count` general users, each authorized (code) and with a fresh P-256 CSR.
async fn prepare(
    lifecycle: &Lifecycle,
    store: &Store,
    contract: &str,
    count: usize,
    now: i64,
) -> anyhow::Result<Vec<(String, String, String)>> {
    store
        .insert_contract(&Contract {
            id: contract.to_owned(),
            name: "benchmark".into(),
            enabled: true,
            created_at: now,
        })
        .await?;
    let staff = Actor::Staff("bench".into());
    let mut jobs = Vec::with_capacity(count);
    for i in 0..count {
        let login = format!("{contract}-u{i}");
        store
            .insert_user(&User {
                login: login.clone(),
                contract_id: contract.to_owned(),
                role: Role::General,
                email: format!("{login}@bench.example"),
                enabled: true,
                created_at: now,
            })
            .await?;
        let code = lifecycle.authorize(&staff, &login).await?;
        let csr = make_csr(&login)?;
        jobs.push((login, code.code.reveal().to_owned(), csr));
    }
    Ok(jobs)
}

fn make_csr(cn: &str) -> anyhow::Result<String> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    Ok(params.serialize_request(&key)?.pem()?)
}
