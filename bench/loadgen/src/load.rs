//! The load itself: N connection tasks on one thread, each sending one request at a time
//! and reading the whole response (Content-Length, chunked, or until close).

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::procstat;
use crate::stats::Samples;
use crate::tls::{Io, Target};
use crate::{TargetArgs, WatchArgs};

pub struct LoadPlan {
    pub target: TargetArgs,
    pub watch: WatchArgs,
    pub concurrency: usize,
    pub secs: f64,
    pub warmup: f64,
    pub handshake: bool,
    pub max_requests: u64,
    pub label: String,
    pub hooks: WindowHooks,
}

/// Shell commands run at the edges of the measured window (instruction counting zeroes
/// and dumps callgrind's counters there, so handshakes and warm-up are left out).
#[derive(Default)]
pub struct WindowHooks {
    pub start: Option<String>,
    pub end: Option<String>,
}

async fn run_hook(cmd: Option<&str>) -> anyhow::Result<()> {
    let Some(cmd) = cmd else { return Ok(()) };
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdout(std::process::Stdio::null())
        .status()
        .await
        .with_context(|| format!("run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// What one task saw during the measured window.
#[derive(Default)]
struct TaskResult {
    ok: u64,
    errors: u64,
    samples: Samples,
    first_error: Option<String>,
}

pub async fn run(plan: LoadPlan) -> anyhow::Result<serde_json::Value> {
    let target = Rc::new(Target::new(&plan.target)?);
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(plan.warmup);
    let until = measure_from + Duration::from_secs_f64(plan.secs);
    let budget = Rc::new(Cell::new(plan.max_requests));
    let local = tokio::task::LocalSet::new();
    let mut handles = Vec::with_capacity(plan.concurrency);
    for _ in 0..plan.concurrency {
        let target = target.clone();
        let budget = budget.clone();
        let handshake = plan.handshake;
        handles.push(local.spawn_local(async move {
            worker(&target, handshake, measure_from, until, &budget).await
        }));
    }
    // Memory sampler and CPU window run beside the workers.
    let pids = plan.watch.pids.clone();
    let hooks = plan.hooks;
    let sampler = local.spawn_local(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        run_hook(hooks.start.as_deref()).await?;
        let cpu0 = procstat::cpu_sum(&pids);
        let sys0 = procstat::system_cpu_sum(&pids);
        let own0 = procstat::own_cpu();
        let t0 = Instant::now();
        let mut peak_pss = 0;
        let mut peak_rss = 0;
        while Instant::now() < until {
            let (rss, pss) = procstat::mem_sum(&pids);
            peak_rss = peak_rss.max(rss);
            peak_pss = peak_pss.max(pss);
            let left = until.saturating_duration_since(Instant::now());
            tokio::time::sleep(Duration::from_millis(250).min(left)).await;
        }
        let wall = t0.elapsed();
        run_hook(hooks.end.as_deref()).await?;
        Ok::<_, anyhow::Error>((
            procstat::cpu_sum(&pids) - cpu0,
            procstat::system_cpu_sum(&pids) - sys0,
            procstat::own_cpu() - own0,
            wall,
            peak_rss,
            peak_pss,
        ))
    });
    let (results, watched) = local
        .run_until(async move {
            let mut results = Vec::new();
            for h in handles {
                results.push(h.await?);
            }
            Ok::<_, anyhow::Error>((results, sampler.await??))
        })
        .await?;
    let (server_cpu, server_sys, own_cpu, wall, peak_rss, peak_pss) = watched;
    let mut all = Samples::default();
    let (mut ok, mut errors) = (0u64, 0u64);
    let mut first_error = None;
    for r in results {
        ok += r.ok;
        errors += r.errors;
        all.extend(r.samples);
        if first_error.is_none() {
            first_error = r.first_error;
        }
    }
    let measured = wall.as_secs_f64().max(1e-9);
    let (p50, p99, max) = all.percentiles();
    let per_req = |d: Duration| {
        if ok == 0 {
            0.0
        } else {
            d.as_secs_f64() * 1e6 / ok as f64
        }
    };
    Ok(json!({
        "label": plan.label,
        "mode": if plan.handshake { "handshake" } else { "keepalive" },
        "concurrency": plan.concurrency,
        "ok": ok,
        "errors": errors,
        "first_error": first_error,
        "secs": measured,
        "rps": ok as f64 / measured,
        "p50_us": p50,
        "p99_us": p99,
        "max_us": max,
        "server_cpu_us_per_req": per_req(server_cpu),
        // The kernel's share: on loopback most of it is TCP, the same work for every proxy.
        "server_sys_us_per_req": per_req(server_sys),
        "server_cpu_util": server_cpu.as_secs_f64() / measured,
        "client_cpu_util": own_cpu.as_secs_f64() / measured,
        "peak_rss_kib": peak_rss,
        "peak_pss_kib": peak_pss,
        "vmhwm_kib": procstat::hwm_sum(&plan.watch.pids),
    }))
}

async fn worker(
    target: &Target,
    handshake: bool,
    measure_from: Instant,
    until: Instant,
    budget: &Cell<u64>,
) -> TaskResult {
    let mut res = TaskResult::default();
    let mut conn: Option<Box<dyn Io>> = None;
    let mut buf = Vec::with_capacity(16 * 1024);
    loop {
        let t0 = Instant::now();
        if t0 >= until {
            break;
        }
        let measuring = t0 >= measure_from;
        if measuring {
            if budget.get() == 0 {
                break;
            }
            budget.set(budget.get() - 1);
        }
        let outcome = one_request(target, handshake, &mut conn, &mut buf).await;
        let elapsed = t0.elapsed();
        match outcome {
            Ok(200) => {
                if measuring && Instant::now() <= until {
                    res.ok += 1;
                    res.samples.push(elapsed);
                }
            }
            Ok(status) => {
                if measuring {
                    res.errors += 1;
                    res.first_error.get_or_insert(format!("status {status}"));
                }
            }
            Err(e) => {
                conn = None;
                if measuring {
                    res.errors += 1;
                    res.first_error.get_or_insert(format!("{e:#}"));
                }
                // Do not spin on a refused connection.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        if handshake {
            conn = None;
        }
    }
    res
}

async fn one_request(
    target: &Target,
    handshake: bool,
    conn: &mut Option<Box<dyn Io>>,
    buf: &mut Vec<u8>,
) -> anyhow::Result<u16> {
    if conn.is_none() {
        *conn = Some(target.connect().await.context("connect")?);
        buf.clear();
    }
    let Some(io) = conn.as_mut() else {
        bail!("no connection");
    };
    let req = if handshake {
        &target.request_close
    } else {
        &target.request
    };
    io.write_all(req).await.context("write")?;
    let (status, keep) = read_response(io.as_mut(), buf).await?;
    if !keep {
        *conn = None;
    }
    Ok(status)
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

async fn fill(io: &mut dyn Io, buf: &mut Vec<u8>) -> anyhow::Result<usize> {
    buf.reserve(16 * 1024);
    let n = io.read_buf(buf).await.context("read")?;
    Ok(n)
}

/// Reads one response; returns its status and whether the connection stays open.
/// `buf` keeps bytes read past the response (none without pipelining).
pub async fn read_response(io: &mut dyn Io, buf: &mut Vec<u8>) -> anyhow::Result<(u16, bool)> {
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n", 0) {
            break i + 4;
        }
        if fill(io, buf).await? == 0 {
            bail!("connection closed before the response head");
        }
    };
    let head = std::str::from_utf8(&buf[..head_end]).context("response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .context("bad status line")?;
    let mut length = None;
    let mut chunked = false;
    let mut close = false;
    for l in lines {
        let Some((name, value)) = l.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    let end = if status == 204 || status == 304 || status / 100 == 1 {
        head_end
    } else if chunked {
        let mut pos = head_end;
        loop {
            let line_end = loop {
                if let Some(i) = find(buf, b"\r\n", pos) {
                    break i;
                }
                if fill(io, buf).await? == 0 {
                    bail!("connection closed inside a chunked body");
                }
            };
            let size_text = std::str::from_utf8(&buf[pos..line_end])?;
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .context("bad chunk size")?;
            // chunk data and its CRLF; the last chunk is followed by an empty trailer line.
            let need = line_end + 2 + size + 2;
            while buf.len() < need {
                if fill(io, buf).await? == 0 {
                    bail!("connection closed inside a chunk");
                }
            }
            pos = need;
            if size == 0 {
                break pos;
            }
        }
    } else if let Some(n) = length {
        while buf.len() < head_end + n {
            if fill(io, buf).await? == 0 {
                bail!("connection closed inside the body");
            }
        }
        head_end + n
    } else {
        while fill(io, buf).await? != 0 {}
        close = true;
        buf.len()
    };
    buf.drain(..end);
    Ok((status, !close))
}
