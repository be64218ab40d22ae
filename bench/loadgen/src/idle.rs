//! Memory per idle connection: the servers' RSS/PSS before, then N connections each with a
//! finished handshake and one answered request (kept alive, so the server holds them as
//! idle keep-alive connections), then RSS/PSS again; the difference over N.

use std::rc::Rc;
use std::time::Duration;

use anyhow::bail;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::load::read_response;
use crate::procstat;
use crate::tls::{Io, Target};
use crate::{TargetArgs, WatchArgs};

/// Connections opened at once while building up.
const OPENING_AT_ONCE: usize = 16;

pub async fn run(
    target: TargetArgs,
    watch: WatchArgs,
    connections: usize,
    settle: f64,
    label: String,
) -> anyhow::Result<serde_json::Value> {
    let target = Rc::new(Target::new(&target)?);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss0, pss0) = procstat::mem_sum(&watch.pids);
    let local = tokio::task::LocalSet::new();
    let held = local
        .run_until(async {
            let mut held: Vec<Box<dyn Io>> = Vec::with_capacity(connections);
            let mut left = connections;
            while left > 0 {
                let batch = left.min(OPENING_AT_ONCE);
                left -= batch;
                let mut tasks = Vec::with_capacity(batch);
                for _ in 0..batch {
                    let t = target.clone();
                    tasks.push(tokio::task::spawn_local(async move { open_one(&t).await }));
                }
                for t in tasks {
                    held.push(t.await??);
                }
            }
            Ok::<_, anyhow::Error>(held)
        })
        .await?;
    tokio::time::sleep(Duration::from_secs_f64(settle)).await;
    let (rss1, pss1) = procstat::mem_sum(&watch.pids);
    let n = held.len() as f64;
    drop(held);
    Ok(json!({
        "label": label,
        "connections": connections,
        "rss_before_kib": rss0,
        "rss_after_kib": rss1,
        "pss_before_kib": pss0,
        "pss_after_kib": pss1,
        "rss_per_conn_bytes": (rss1 as f64 - rss0 as f64) * 1024.0 / n,
        "pss_per_conn_bytes": (pss1 as f64 - pss0 as f64) * 1024.0 / n,
    }))
}

async fn open_one(target: &Target) -> anyhow::Result<Box<dyn Io>> {
    let mut io = target.connect().await?;
    io.write_all(&target.request).await?;
    let mut buf = Vec::with_capacity(4096);
    let (status, keep) = read_response(io.as_mut(), &mut buf).await?;
    if status != 200 || !keep {
        bail!("the first request on an idle connection got {status} (keep-alive {keep})");
    }
    Ok(io)
}
