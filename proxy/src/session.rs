//! One websocket session from upgrade to close: connect the target, run the pump, and
//! apply the idle timeout, heartbeat, close linger and shutdown around it.

use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use crate::config::CLOSE_LINGER;
use crate::error::SessionEnd;
use crate::metrics::Metrics;
use crate::pump::{Limits, Pump};
use crate::target::Target;
use crate::ws::close;
use crate::ws::frame::{encode_server_header, Opcode, MAX_SERVER_HEADER};

/// Timers of one session.
#[derive(Debug, Clone, Copy)]
pub struct Timers {
    pub connect: Duration,
    pub idle: Option<Duration>,
    pub heartbeat: Option<Duration>,
}

/// Runs a session on an upgraded browser connection until it ends.
pub async fn run<C>(
    mut client: C,
    early: Bytes,
    target: &Target,
    limits: Limits,
    timers: Timers,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> SessionEnd
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let backend = tokio::select! {
        r = target.connect(timers.connect) => r,
        _ = shutdown.cancelled() => {
            send_close(&mut client, close::GOING_AWAY, "server shutting down").await;
            return SessionEnd::Shutdown;
        }
    };
    let backend = match backend {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(%target, error = %e, "target unreachable");
            send_close(
                &mut client,
                close::INTERNAL_ERROR,
                "cannot connect to the VNC server",
            )
            .await;
            return SessionEnd::TargetConnect;
        }
    };
    tracing::debug!(%target, "target connected");
    metrics.session_opened();
    let end = drive(
        Pump::new(client, backend, early, limits, metrics.clone()),
        timers,
        &shutdown,
    )
    .await;
    metrics.session_closed(end);
    end
}

/// Runs a pump with its timers until it ends.
pub async fn drive<C, B>(
    mut pump: Pump<C, B>,
    timers: Timers,
    shutdown: &CancellationToken,
) -> SessionEnd
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut next_ping = timers.heartbeat.map(|h| Instant::now() + h);
    let mut stopping = false;
    loop {
        let deadline = next_deadline(&pump, timers, next_ping);
        tokio::select! {
            end = poll_fn(|cx| pump.poll(cx)) => return end,
            () = sleep_until(deadline.unwrap_or_else(far_future)), if deadline.is_some() => {
                let now = Instant::now();
                if let Some(sent) = pump.close_sent_at {
                    if now >= sent + CLOSE_LINGER {
                        return pump.end_reason().unwrap_or(SessionEnd::Closed);
                    }
                }
                if let Some(idle) = timers.idle {
                    if now >= pump.last_activity + idle {
                        pump.close(close::NORMAL, "idle timeout", SessionEnd::IdleTimeout);
                    }
                }
                if let (Some(h), Some(at)) = (timers.heartbeat, next_ping) {
                    if now >= at {
                        if now >= pump.last_client_frame + 2 * h + Duration::from_millis(100) {
                            pump.close(close::GOING_AWAY, "heartbeat not answered", SessionEnd::HeartbeatTimeout);
                        } else {
                            pump.ping();
                        }
                        next_ping = Some(now + h);
                    }
                }
            }
            () = shutdown.cancelled(), if !stopping => {
                stopping = true;
                pump.close(close::GOING_AWAY, "server shutting down", SessionEnd::Shutdown);
            }
        }
    }
}

fn next_deadline<C, B>(
    pump: &Pump<C, B>,
    timers: Timers,
    next_ping: Option<Instant>,
) -> Option<Instant> {
    let idle = timers.idle.map(|d| pump.last_activity + d);
    let linger = pump.close_sent_at.map(|t| t + CLOSE_LINGER);
    [idle, next_ping, linger].into_iter().flatten().min()
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

/// Best-effort close frame on a connection that never reached the pump.
pub async fn send_close<C: AsyncWrite + Unpin>(client: &mut C, code: u16, reason: &str) {
    let payload = close::payload(code, reason);
    let mut header = [0u8; MAX_SERVER_HEADER];
    let n = encode_server_header(Opcode::Close, payload.len(), &mut header);
    let mut frame = Vec::with_capacity(n + payload.len());
    frame.extend_from_slice(&header[..n]);
    frame.extend_from_slice(&payload);
    let write = async {
        client.write_all(&frame).await?;
        client.shutdown().await
    };
    let _ = tokio::time::timeout(CLOSE_LINGER, write).await;
}
