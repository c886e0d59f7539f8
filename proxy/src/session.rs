//! One websocket session from upgrade to close. `Sessions::start` owns the task: it
//! awaits hyper's upgrade, reports the viewer, connects the target, runs the RFB
//! preparation and the pump with its timers, and counts the session at close.

use std::future::poll_fn;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::client::ClientIo;
use crate::config::GatewayConfig;
use crate::error::SessionEnd;
use crate::events::{RouteOrigin, ViewerGuard, ViewerSinks};
use crate::forwarded::ClientView;
use crate::metrics::Metrics;
use crate::per_token::ViewerSlot;
use crate::pump::splice::{RawSocket, SocketRef};
use crate::pump::{Limits, Pump, Timers};
use crate::rfb::{self, browser::BrowserError, browser::BrowserLink, ClientFilter};
use crate::route::{Route, TokenKey};
use crate::target::Backend;
use crate::token::TokenMap;
use crate::ws::close;
use crate::ws::frame::Opcode;
use crate::ws::write::{send_close, write_frame};
use darts_vnc::server::ServerHandshake;

/// A websocket accepted for a route, not yet switched: what routing decided.
#[derive(Debug)]
pub struct Admitted {
    /// Resolves to the connection once hyper has sent the `101`.
    pub(crate) on_upgrade: OnUpgrade,
    pub(crate) route: Route,
    /// The token's digest and where its route came from, when a token named it.
    pub(crate) found: Option<(TokenKey, RouteOrigin)>,
    /// The client after trusted proxies.
    pub(crate) client: ClientView,
    /// The address viewer events name (no port behind a proxy).
    pub(crate) viewer_addr: SocketAddr,
    /// One of the token's `max_viewers_per_token` places, held for the session's life.
    pub(crate) viewer_slot: Option<ViewerSlot>,
}

/// Starts and tracks the sessions of one gateway; its options are built once per bind.
#[derive(Debug)]
pub(crate) struct Sessions {
    opts: SessionOptions,
    metrics: Arc<Metrics>,
    tokens: Arc<TokenMap>,
    viewer_events: Option<crate::events::ViewerEvents>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    next_id: AtomicU64,
}

impl Sessions {
    pub(crate) fn new(
        config: &GatewayConfig,
        metrics: Arc<Metrics>,
        tokens: Arc<TokenMap>,
    ) -> Self {
        Self {
            opts: SessionOptions {
                limits: Limits {
                    read_chunk: config.read_chunk,
                    max_frame: config.max_frame,
                    max_message: config.max_message,
                },
                timers: Timers {
                    connect: config.connect_timeout,
                    idle: config.idle_timeout,
                    heartbeat: config.heartbeat,
                    frame: config.frame_timeout,
                },
                rfb_check: config.rfb_check,
                splice: config.splice,
            },
            metrics,
            tokens,
            viewer_events: config.viewer_events.clone(),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            next_id: AtomicU64::new(1),
        }
    }

    /// Runs `admitted` as a task under this gateway's tracker. `hold` (the connection's
    /// admission) is kept until the session ends.
    pub(crate) fn start<H: Send + 'static>(self: &Arc<Self>, admitted: Box<Admitted>, hold: H) {
        let Admitted {
            on_upgrade,
            route,
            found,
            client,
            viewer_addr,
            viewer_slot,
        } = *admitted;
        let span = tracing::info_span!(
            "session",
            session.id = self.next_id.fetch_add(1, Ordering::Relaxed),
            client.addr = %client.addr,
            via_proxy = client.via_proxy,
            label = route.label.as_deref().unwrap_or(""),
            target = %route.target,
        );
        let viewer = match (&route.label, found) {
            (Some(label), Some((key, origin))) => {
                let sinks = ViewerSinks {
                    local: self.viewer_events.clone(),
                    // Another node's route: that node hears of its viewer through the registry.
                    owner: (origin == RouteOrigin::Registry)
                        .then(|| self.tokens.owner_events())
                        .flatten(),
                };
                ViewerGuard::open(sinks, label.clone(), key, origin, &route, viewer_addr)
            }
            _ => None,
        }
        // Boxed, like the filter: a session task without one should not carry its size.
        .map(Box::new);
        let this = self.clone();
        let task = async move {
            let _hold = hold;
            let _viewer_slot = viewer_slot;
            let mut viewer = viewer;
            let upgraded = match on_upgrade.await {
                Ok(u) => u,
                Err(e) => {
                    tracing::debug!(error = %e, "upgrade did not complete");
                    return;
                }
            };
            tracing::info!("session opened");
            let (metrics, stop) = (this.metrics.clone(), this.shutdown.clone());
            // Hyper hands back the connection it was given, so the pump owns the socket
            // with no layer in between; anything else is served through hyper's wrapper.
            let (end, traffic) = match upgraded.downcast::<TokioIo<ClientIo>>() {
                Ok(parts) => {
                    let early = parts.read_buf.len() as u64;
                    let (end, (read, written)) = run(
                        parts.io.into_inner(),
                        parts.read_buf,
                        &route,
                        &this.opts,
                        metrics,
                        stop,
                    )
                    .await;
                    (end, (read + early, written))
                }
                Err(upgraded) => {
                    run(
                        TokioIo::new(upgraded),
                        Bytes::new(),
                        &route,
                        &this.opts,
                        metrics,
                        stop,
                    )
                    .await
                }
            };
            if let Some(v) = &mut viewer {
                v.set_bytes(traffic.0, traffic.1);
            }
            this.metrics.session_end(end);
            tracing::info!(reason = end.as_str(), "session closed");
        };
        self.tasks.spawn(task.instrument(span));
    }

    /// Tells every session to close (`1001`) and stops taking new ones.
    pub(crate) fn shut_down(&self) {
        self.shutdown.cancel();
        self.tasks.close();
    }

    /// Waits until every session task has ended.
    pub(crate) async fn wait(&self) {
        self.tasks.wait().await;
    }

    /// Cancelled when the gateway shuts down.
    pub(crate) fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }
}

/// Runs a session on an upgraded browser connection until it ends. Returns why, and
/// the bytes read from and written to the browser (websocket framing included).
pub async fn run<C>(
    client: C,
    early: Bytes,
    route: &Route,
    opts: &SessionOptions,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> (SessionEnd, (u64, u64))
where
    C: AsyncRead + AsyncWrite + Unpin + RawSocket,
{
    // The few bytes before the pump are counted by a wrapper; the pump counts its own.
    let mut counted = Counted::new(client);
    match connect_and_prepare(&mut counted, early, route, opts, &shutdown).await {
        Ok((backend, early, filter)) => {
            let Counted {
                inner,
                read,
                written,
            } = counted;
            tracing::debug!(target = %route.target, security = route.security.name(), view_only = route.view_only, "target ready");
            metrics.session_opened();
            let pump = Pump::new(inner, backend, early, opts.limits, metrics.clone())
                .with_filter(filter)
                .with_splice(opts.splice)
                .with_timers(opts.timers);
            let (end, (r, w)) = drive(pump, &shutdown).await;
            metrics.session_closed();
            (end, (read + r, written + w))
        }
        Err(end) => (end, (counted.read, counted.written)),
    }
}

/// Connects the target and runs the RFB phase; on failure the browser has been told.
async fn connect_and_prepare<C>(
    client: &mut C,
    early: Bytes,
    route: &Route,
    opts: &SessionOptions,
    shutdown: &CancellationToken,
) -> Result<(Backend, Bytes, Option<Box<ClientFilter>>), SessionEnd>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let target = &route.target;
    let timers = opts.timers;
    let backend = tokio::select! {
        r = target.connect(timers.connect) => r,
        _ = shutdown.cancelled() => {
            send_close(client, close::GOING_AWAY, "server shutting down").await;
            return Err(SessionEnd::Shutdown);
        }
    };
    let backend = match backend {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(%target, error = %e, "target unreachable");
            let reason = "The VNC server is not answering";
            if opts.rfb_check || route.security.terminates() {
                rfb::browser::refuse(client, early, reason, timers.connect).await;
            } else {
                send_close(
                    client,
                    close::INTERNAL_ERROR,
                    "cannot connect to the VNC server",
                )
                .await;
            }
            return Err(SessionEnd::TargetConnect);
        }
    };
    // One filter for the whole connection: the bytes that came with ClientInit and all
    // later ones go through the same state, so a message cut anywhere stays one message.
    let mut filter = route.filter();
    let prepared = tokio::select! {
        r = prepare(client, early, backend, route, &mut filter, opts) => r,
        _ = shutdown.cancelled() => Err(SessionEnd::Shutdown),
    };
    let (backend, early) = match prepared {
        Ok(p) => p,
        Err(end) => {
            if end == SessionEnd::Shutdown {
                send_close(client, close::GOING_AWAY, "server shutting down").await;
            }
            return Err(end);
        }
    };
    Ok((backend, early, filter))
}

/// What a session needs beyond its route.
#[derive(Debug, Clone, Copy)]
pub struct SessionOptions {
    /// Read and frame size limits of the pump.
    pub limits: Limits,
    /// Connect, idle, heartbeat and frame timers.
    pub timers: Timers,
    /// For routes without terminated security: check that the target speaks RFB before
    /// relaying (off for non-VNC uses of the gateway).
    pub rfb_check: bool,
    /// Splice target → browser payload between plain sockets (see `pump::splice`).
    pub splice: bool,
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
            Ok(version) => match write_frame(client, Opcode::Binary, &version).await {
                Ok(()) => Ok((backend, early)),
                Err(_) => Err(SessionEnd::ClientIo),
            },
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

/// Runs a pump until it ends, sleeping until its next deadline in between. Returns why,
/// and the pump's byte counts on the browser side (read, written).
pub async fn drive<C, B>(
    mut pump: Pump<C, B>,
    shutdown: &CancellationToken,
) -> (SessionEnd, (u64, u64))
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut stopping = false;
    loop {
        let deadline = pump.next_deadline();
        // The pump itself may start a deadline sooner than the armed one (our close frame
        // sent, a frame left unfinished): then the loop turns to re-arm the sleep.
        let pumped = poll_fn(|cx| match pump.poll(cx) {
            Poll::Ready(end) => Poll::Ready(Some(end)),
            Poll::Pending if sooner(pump.next_deadline(), deadline) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        });
        tokio::select! {
            end = pumped => match end {
                Some(end) => return (end, pump.client_traffic()),
                None => continue,
            },
            () = sleep_until(deadline.unwrap_or_else(far_future)), if deadline.is_some() => {
                if let Some(end) = pump.on_deadline(Instant::now()) {
                    return (end, pump.client_traffic());
                }
            }
            () = shutdown.cancelled(), if !stopping => {
                stopping = true;
                pump.close(close::GOING_AWAY, "server shutting down", SessionEnd::Shutdown);
            }
        }
    }
}

/// True when `new` is a deadline and comes before `armed` (or nothing is armed).
fn sooner(new: Option<Instant>, armed: Option<Instant>) -> bool {
    new.is_some_and(|n| armed.is_none_or(|a| n < a))
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

/// A connection hyper could not hand back as the socket it was given: its bytes go
/// through hyper's wrapper, so they are copied.
impl RawSocket for TokioIo<hyper::upgrade::Upgraded> {
    fn raw_socket(&self) -> Option<SocketRef<'_>> {
        None
    }
}

/// A browser connection that counts what it reads and writes, for the RFB phase before
/// the pump (which counts its own): plain integers owned by the session task.
#[derive(Debug)]
struct Counted<C> {
    inner: C,
    read: u64,
    written: u64,
}

impl<C> Counted<C> {
    fn new(inner: C) -> Self {
        Self {
            inner,
            read: 0,
            written: 0,
        }
    }
}

impl<C: AsyncRead + Unpin> AsyncRead for Counted<C> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.read += (buf.filled().len() - before) as u64;
        r
    }
}

impl<C: AsyncWrite + Unpin> AsyncWrite for Counted<C> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            this.written += n as u64;
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            this.written += n as u64;
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
