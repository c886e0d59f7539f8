//! Process signals: SIGTERM and SIGINT stop the service gracefully, SIGHUP reloads.

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Cancels `stop` on SIGTERM/SIGINT and calls `reload` on every SIGHUP.
pub fn spawn(stop: CancellationToken, reload: impl Fn() + Send + 'static) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!(signal = "SIGTERM", "stopping"); break; }
                _ = int.recv() => { tracing::info!(signal = "SIGINT", "stopping"); break; }
                _ = hup.recv() => { tracing::info!(signal = "SIGHUP", "reloading"); reload(); }
            }
        }
        stop.cancel();
    });
    Ok(())
}
