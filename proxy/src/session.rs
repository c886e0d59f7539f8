//! One websocket session from upgrade to close: connect the target, run the pump, and
//! apply the idle timeout, heartbeat, close linger and shutdown around it.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use crate::config::CLOSE_LINGER;
use crate::error::SessionEnd;
use crate::metrics::Metrics;
use crate::pump::{Limits, Pump};
use crate::rfb::{self, browser::BrowserError, browser::BrowserLink, ClientFilter};
use crate::target::Backend;
use crate::token::Route;
use crate::ws::close;
use crate::ws::frame::{encode_server_header, Opcode, MAX_SERVER_HEADER};
use darts_vnc::server::ServerHandshake;

/// Timers of one session.
#[derive(Debug, Clone, Copy)]
pub struct Timers {
    pub connect: Duration,
    pub idle: Option<Duration>,
    pub heartbeat: Option<Duration>,
    /// Longest time a browser may take to finish a frame it started.
    pub frame: Option<Duration>,
}

/// Runs a session on an upgraded browser connection until it ends.
pub async fn run<C>(
    mut client: C,
    early: Bytes,
    route: &Route,
    opts: &SessionOptions,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> SessionEnd
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let target = &route.target;
    let timers = opts.timers;
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
            let reason = "The VNC server is not answering";
            if opts.rfb_check || route.security.terminates() {
                rfb::browser::refuse(&mut client, early, reason, timers.connect).await;
            } else {
                send_close(
                    &mut client,
                    close::INTERNAL_ERROR,
                    "cannot connect to the VNC server",
                )
                .await;
            }
            return SessionEnd::TargetConnect;
        }
    };
    // One filter for the whole connection: the bytes that came with ClientInit and all
    // later ones go through the same state, so a message cut anywhere stays one message.
    let mut filter = route.filter();
    let prepared = tokio::select! {
        r = prepare(&mut client, early, backend, route, &mut filter, opts) => r,
        _ = shutdown.cancelled() => Err(SessionEnd::Shutdown),
    };
    let (backend, early) = match prepared {
        Ok(p) => p,
        Err(end) => {
            if end == SessionEnd::Shutdown {
                send_close(&mut client, close::GOING_AWAY, "server shutting down").await;
            }
            return end;
        }
    };
    tracing::debug!(%target, security = route.security.name(), view_only = route.view_only, "target ready");
    metrics.session_opened();
    let pump = Pump::new(client, backend, early, opts.limits, metrics.clone()).with_filter(filter);
    let end = drive(pump, timers, &shutdown).await;
    metrics.session_closed();
    end
}

/// What a session needs beyond its route.
#[derive(Debug, Clone, Copy)]
pub struct SessionOptions {
    pub limits: Limits,
    pub timers: Timers,
    /// For routes without terminated security: check that the target speaks RFB before
    /// relaying (off for non-VNC uses of the gateway).
    pub rfb_check: bool,
}

/// The RFB phase before the pump: check or authenticate the target, and for terminated
/// security run the browser's handshake. Returns the target stream and the browser bytes
/// the pump starts with.
async fn prepare<C>(
    client: &mut C,
    early: Bytes,
    mut backend: Backend,
    route: &Route,
    filter: &mut Option<Box<ClientFilter>>,
    opts: &SessionOptions,
) -> Result<(Backend, Bytes), SessionEnd>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let deadline = opts.timers.connect;
    // A filter must see browser input from a message boundary, so darts then terminates
    // the handshake itself even when the target needs no credentials.
    if !route.security.terminates() && filter.is_none() {
        if !opts.rfb_check {
            return Ok((backend, early));
        }
        return match rfb::backend::check_version(&mut backend, deadline).await {
            Ok(version) => {
                match rfb::browser::write_frame(client, Opcode::Binary, &version).await {
                    Ok(()) => Ok((backend, early)),
                    Err(_) => Err(SessionEnd::ClientIo),
                }
            }
            Err(e) => {
                tracing::warn!(target = %route.target, error = %e, "target refused");
                rfb::browser::refuse(client, early, e.browser_reason(), deadline).await;
                Err(SessionEnd::TargetRefused)
            }
        };
    }
    let mut backend = match rfb::backend::authenticate(backend, &route.security, deadline).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(target = %route.target, security = route.security.name(), error = %e, "authentication to the target failed");
            rfb::browser::refuse(client, early, e.browser_reason(), deadline).await;
            return Err(SessionEnd::TargetRefused);
        }
    };
    let mut link = BrowserLink::new(client, early);
    let browser = async {
        link.handshake(ServerHandshake::new()).await?;
        link.client_init().await
    };
    if let Err(e) = tokio::time::timeout(deadline * 2, browser)
        .await
        .unwrap_or(Err(BrowserError::Timeout(deadline * 2)))
    {
        tracing::debug!(error = %e, "browser RFB handshake failed");
        let (code, end) = match e {
            BrowserError::Io(_) | BrowserError::Closed => (None, SessionEnd::ClientIo),
            other => (Some(other.close_code()), SessionEnd::ClientProtocol),
        };
        if let Some(code) = code {
            send_close(client, code, "RFB handshake failed").await;
        }
        return Err(end);
    }
    let init = match rfb::backend::exchange_init(&mut backend, deadline).await {
        Ok(init) => init,
        Err(e) => {
            tracing::warn!(target = %route.target, error = %e, "target failed after authentication");
            send_close(
                client,
                close::INTERNAL_ERROR,
                "the VNC server stopped answering",
            )
            .await;
            return Err(SessionEnd::TargetIo);
        }
    };
    if link.send(&init).await.is_err() {
        return Err(SessionEnd::ClientIo);
    }
    let (raw, data) = link.into_parts();
    if !data.is_empty() {
        // Browser input that arrived with the handshake goes through the connection's
        // filter, which then carries on in the pump from wherever this input ended.
        let mut kept = Vec::new();
        if let Some(filter) = filter {
            if filter.filter(&data, &mut kept).is_err() {
                send_close(client, close::POLICY_VIOLATION, "unexpected RFB message").await;
                return Err(SessionEnd::ClientProtocol);
            }
        } else {
            kept.extend_from_slice(&data);
        }
        if backend.write_all(&kept).await.is_err() {
            return Err(SessionEnd::TargetIo);
        }
    }
    Ok((backend, raw))
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
        // The pump itself may start a deadline sooner than the armed one (our close frame
        // sent, a frame left unfinished): then the loop turns to re-arm the sleep.
        let pumped = poll_fn(|cx| match pump.poll(cx) {
            Poll::Ready(end) => Poll::Ready(Some(end)),
            Poll::Pending if sooner(next_deadline(&pump, timers, next_ping), deadline) => {
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        });
        tokio::select! {
            end = pumped => match end {
                Some(end) => return end,
                None => continue,
            },
            () = sleep_until(deadline.unwrap_or_else(far_future)), if deadline.is_some() => {
                let now = Instant::now();
                if let Some(sent) = pump.close_sent_at {
                    if now >= sent + CLOSE_LINGER {
                        return pump.end_reason().unwrap_or(SessionEnd::Closed);
                    }
                }
                if let (Some(limit), Some(since)) = (timers.frame, pump.partial_frame_since) {
                    if now >= since + limit {
                        tracing::info!(after = ?limit, "browser left a frame unfinished; closing");
                        pump.frame_timed_out();
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
    let frame = timers
        .frame
        .zip(pump.partial_frame_since)
        .map(|(d, t)| t + d);
    [idle, next_ping, linger, frame].into_iter().flatten().min()
}

/// True when `new` is a deadline and comes before `armed` (or nothing is armed).
fn sooner(new: Option<Instant>, armed: Option<Instant>) -> bool {
    new.is_some_and(|n| armed.is_none_or(|a| n < a))
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
