//! `certgate serve`: runs the gateway (see [`crate::app::serve`]) until SIGTERM or SIGINT,
//! then drains connections.

use std::path::Path;

use crate::config::Config;

pub async fn run(config_path: &Path, cfg: Config) -> anyhow::Result<()> {
    crate::app::serve::run(config_path, cfg, shutdown_signal()).await
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed now, before the listeners
/// start and READY=1 is sent, so an early SIGTERM drains instead of killing the process.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move { wait(term, int).await }
}

async fn wait(
    term: std::io::Result<tokio::signal::unix::Signal>,
    int: std::io::Result<tokio::signal::unix::Signal>,
) {
    match (term, int) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => tracing::info!("SIGTERM: draining and stopping"),
                _ = i.recv() => tracing::info!("SIGINT: draining and stopping"),
            }
        }
        _ => {
            tracing::error!("cannot listen for termination signals; stop with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}
