//! The listener: accept, PROXY header, TLS, then HTTP with hyper. Each request goes to
//! `http_service`, whose decision is a response or a websocket that `session` takes
//! over. Also the handle the rest of darts uses to steer the gateway.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::client::ClientIo;
use crate::config::GatewayConfig;
use crate::error::ProxyError;
use crate::http_service::{Decision, Router};
use crate::metrics::{ErrorKind, Metrics};
use crate::per_address::{AddressLimits, PendingSlot};
use crate::per_token::TokenViewers;
use crate::proxy_protocol;
use crate::session::Sessions;
use crate::static_files::StaticFiles;
use crate::tls::{TlsState, WATCH_INTERVAL};
use crate::token::TokenMap;

/// First byte of a TLS handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// How often expired in-process routes are dropped.
const PURGE_INTERVAL: Duration = Duration::from_secs(30);

/// State shared by every connection.
#[derive(Debug)]
struct Shared {
    config: Arc<GatewayConfig>,
    tls: Option<TlsState>,
    metrics: Arc<Metrics>,
    router: Router,
    sessions: Arc<Sessions>,
    /// Connection tasks (HTTP, before any upgrade), waited for at shutdown.
    connections: TaskTracker,
    /// `max_connections_per_ip`; `None` without a limit.
    per_address: Option<Arc<AddressLimits>>,
}

/// One client connection from accept until its socket is closed, whether it ends as
/// HTTP or lives on as a websocket session (the session task holds it then); and, until
/// it becomes a session, counted against its address's pending share.
#[derive(Debug)]
struct Connection {
    _permit: OwnedSemaphorePermit,
    pending: Mutex<Option<PendingSlot>>,
    metrics: Arc<Metrics>,
}

impl Connection {
    /// The connection presented a valid token: it no longer counts as pending (and can
    /// no longer be pushed out by newer connections of its address).
    fn established(&self) {
        let slot = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        drop(slot);
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.metrics.connection_closed();
    }
}

/// A bound gateway, not yet serving.
#[derive(Debug)]
pub struct Gateway {
    shared: Arc<Shared>,
    listener: TcpListener,
    admission: Arc<Semaphore>,
}

/// What other parts of darts keep to steer a running gateway.
#[derive(Debug, Clone)]
pub struct GatewayHandle {
    shared: Arc<Shared>,
}

impl GatewayHandle {
    /// The routes the gateway serves.
    pub fn tokens(&self) -> &Arc<TokenMap> {
        &self.shared.router.tokens
    }

    /// The gateway's counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// Re-reads the TLS certificate now (SIGHUP). A bad one is logged and refused.
    pub fn reload_tls(&self) {
        if let Some(tls) = &self.shared.tls {
            tls.reload_logged(&self.shared.metrics, "reload request");
        }
    }

    /// Re-reads token files that changed.
    pub fn reload_tokens(&self) {
        self.shared.router.tokens.refresh_files();
    }
}

impl Gateway {
    /// Loads TLS material and binds the listening socket.
    pub async fn bind(config: GatewayConfig, tokens: Arc<TokenMap>) -> Result<Self, ProxyError> {
        let tls = config.tls.clone().map(TlsState::new).transpose()?;
        let web = match &config.web_dir {
            Some(dir) => {
                Some(StaticFiles::new(dir).ok_or_else(|| ProxyError::WebDir(dir.clone()))?)
            }
            None => None,
        };
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ProxyError::Bind {
                    addr: config.listen.to_string(),
                    source,
                })?;
        let admission = Arc::new(Semaphore::new(config.max_connections));
        let per_address = AddressLimits::new(config.max_connections_per_ip);
        let per_token = TokenViewers::new(config.max_viewers_per_token);
        let config = Arc::new(config);
        let metrics = Arc::new(Metrics::with_viewer_events(config.viewer_events.as_ref()));
        let sessions = Arc::new(Sessions::new(&config, metrics.clone(), tokens.clone()));
        let shared = Arc::new(Shared {
            router: Router {
                config: config.clone(),
                tokens,
                metrics: metrics.clone(),
                web,
                per_token,
            },
            config,
            tls,
            metrics,
            sessions,
            connections: TaskTracker::new(),
            per_address,
        });
        Ok(Self {
            shared,
            listener,
            admission,
        })
    }

    /// The address actually bound (the configured one if the socket cannot say).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.shared.config.listen)
    }

    /// A handle to steer the gateway once it runs.
    pub fn handle(&self) -> GatewayHandle {
        GatewayHandle {
            shared: self.shared.clone(),
        }
    }

    /// Serves until `stop` is cancelled, then closes every session with 1001 and waits
    /// for them at most the grace period. Returns true if all ended within it.
    pub async fn run(self, stop: CancellationToken) -> bool {
        let shared = self.shared.clone();
        let background = spawn_background(&shared);
        tracing::info!(addr = %self.local_addr(), tls = shared.tls.is_some(), "gateway listening");
        let mut accept_backoff = Duration::from_millis(5);
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => break,
                r = self.listener.accept() => r,
            };
            match accepted {
                Ok((stream, peer)) => {
                    accept_backoff = Duration::from_millis(5);
                    // Over `max_connections`: answered and closed here, with no task.
                    let Ok(permit) = self.admission.clone().try_acquire_owned() else {
                        refuse_overloaded(&shared, stream);
                        continue;
                    };
                    // Only then counted as pending: a refused connection pushes no one out.
                    let slot = pending_slot(&shared, peer.ip());
                    shared.connections.spawn(serve_connection(
                        shared.clone(),
                        stream,
                        peer,
                        permit,
                        slot,
                    ));
                }
                Err(e) => {
                    // Out of descriptors or a network error on one connection: never fatal.
                    shared.metrics.error(ErrorKind::Accept);
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(accept_backoff).await;
                    accept_backoff = (accept_backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
        drop(self.listener);
        background.abort();
        let open = shared.metrics.sessions_open();
        tracing::info!(sessions = open, grace = ?shared.config.grace_period, "shutting down: closing sessions");
        shared.sessions.shut_down();
        shared.connections.close();
        let all = async {
            shared.connections.wait().await;
            shared.sessions.wait().await;
        };
        let drained = tokio::time::timeout(shared.config.grace_period, all)
            .await
            .is_ok();
        if drained {
            tracing::info!("all sessions closed");
        } else {
            tracing::warn!(
                left = shared.metrics.sessions_open(),
                "grace period over; dropping remaining connections"
            );
        }
        drained
    }
}

/// Certificate watching and route expiry, off the data path.
fn spawn_background(shared: &Arc<Shared>) -> tokio::task::JoinHandle<()> {
    let shared = shared.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        let mut since_purge = Duration::ZERO;
        loop {
            tick.tick().await;
            if let Some(tls) = &shared.tls {
                tls.reload_if_changed(&shared.metrics);
            }
            since_purge += WATCH_INTERVAL;
            if since_purge >= PURGE_INTERVAL {
                since_purge = Duration::ZERO;
                let n = shared.router.tokens.purge_expired();
                if n > 0 {
                    tracing::debug!(routes = n, "expired routes purged");
                }
            }
        }
    })
}

const OVERLOADED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Length: 20\r\nConnection: close\r\n\r\ntoo many connections";

/// Answers `503` on a connection over `max_connections` and closes it, in the accept
/// loop: a new socket's send buffer takes the whole answer, and a non-blocking write
/// that cannot is simply given up, so a flood costs no task and no wait.
fn refuse_overloaded(shared: &Shared, stream: TcpStream) {
    use std::io::Write as _;
    shared
        .metrics
        .handshake(crate::metrics::Handshake::Overloaded);
    if let Ok(stream) = stream.into_std() {
        let _ = (&stream).write(OVERLOADED);
    }
}

/// The pending slot a connection from `ip` takes under `max_connections_per_ip`, which
/// may push out its address's oldest pending connection. Trusted proxies take none: the
/// clients their PROXY headers name are counted instead.
fn pending_slot(shared: &Shared, ip: IpAddr) -> Option<PendingSlot> {
    let limits = shared.per_address.as_ref()?;
    if shared.config.trusted_proxies.contains(ip) {
        return None;
    }
    let (slot, pushed_out) = limits.acquire(ip);
    if pushed_out {
        shared.metrics.pending_connection_dropped();
    }
    Some(slot)
}

/// Runs `fut` unless the pending connection is pushed out first (`None` then).
async fn unless_evicted<F: std::future::Future>(
    evicted: Option<CancellationToken>,
    fut: F,
) -> Option<F::Output> {
    match evicted {
        Some(evicted) => tokio::select! {
            () = evicted.cancelled() => None,
            out = fut => Some(out),
        },
        None => Some(fut.await),
    }
}

async fn serve_connection(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    tcp_peer: SocketAddr,
    permit: OwnedSemaphorePermit,
    slot: Option<PendingSlot>,
) {
    let _ = stream.set_nodelay(true);
    let deadline = Instant::now() + shared.config.handshake_timeout;
    let timed_out = || {
        shared.metrics.error(ErrorKind::HandshakeTimeout);
        tracing::debug!(client.addr = %tcp_peer, "handshake timed out");
    };
    let header = proxy_header(&shared, &mut stream, tcp_peer);
    let peer = match tokio::time::timeout_at(
        deadline,
        unless_evicted(slot.as_ref().map(PendingSlot::evicted), header),
    )
    .await
    {
        Ok(Some(Some(peer))) => peer,
        Ok(_) => return,
        Err(_) => return timed_out(),
    };
    // Behind a trusted proxy, the client its PROXY header names is counted from here.
    let slot = match slot {
        None if peer != tcp_peer => pending_slot(&shared, peer.ip()),
        slot => slot,
    };
    let evicted = slot.as_ref().map(PendingSlot::evicted);
    let served = serve_http(shared.clone(), stream, peer, (permit, slot), deadline);
    match unless_evicted(evicted, served).await {
        Some(Err(Timeout)) => timed_out(),
        Some(Ok(())) => {}
        None => {
            tracing::trace!(client.addr = %peer, "pending connection pushed out by a newer one")
        }
    }
}

/// The TLS handshake did not finish within the handshake timeout.
#[derive(Debug)]
struct Timeout;

/// TLS (or not) within `deadline`, then HTTP with hyper until the connection ends or
/// is upgraded.
async fn serve_http(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    (permit, pending): (OwnedSemaphorePermit, Option<PendingSlot>),
    deadline: Instant,
) -> Result<(), Timeout> {
    let timeout = shared.config.handshake_timeout;
    let io = match tokio::time::timeout_at(deadline, detect_and_wrap(&shared, stream, peer)).await {
        Ok(Some(io)) => io,
        Ok(None) => return Ok(()),
        Err(_) => return Err(Timeout),
    };
    shared.metrics.connection_opened(io.is_tls());
    let tls = io.is_tls();
    let connection = Arc::new(Connection {
        _permit: permit,
        pending: Mutex::new(pending),
        metrics: shared.metrics.clone(),
    });
    let service = {
        let shared = shared.clone();
        hyper::service::service_fn(move |req| {
            let shared = shared.clone();
            let connection = connection.clone();
            async move {
                let response = match shared.router.handle(req, peer, tls).await {
                    Decision::Respond(r) => r,
                    Decision::Upgrade { response, session } => {
                        // A valid token: from here the connection is a session, no
                        // longer pending; the session task keeps it counted.
                        connection.established();
                        shared.sessions.start(session, connection);
                        response
                    }
                };
                Ok::<_, std::convert::Infallible>(response)
            }
        })
    };
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .max_header_size(crate::config::MAX_REQUEST_HEAD)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                shared.metrics.error(ErrorKind::Http);
                tracing::debug!(client.addr = %peer, error = %e, "HTTP connection error");
            }
        }
        () = shared.sessions.shutdown_token().cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
        }
    }
    Ok(())
}

/// With `proxy_protocol`, a trusted proxy's connection may start with a PROXY header:
/// the client it names becomes the peer. Without one (an HTTP proxy trusted as well),
/// nothing is consumed. Anyone else's bytes are left alone (a PROXY line from them is
/// not HTTP and ends their connection). `None`: a bad header.
async fn proxy_header(
    shared: &Shared,
    stream: &mut TcpStream,
    peer: SocketAddr,
) -> Option<SocketAddr> {
    if !shared.config.proxy_protocol || !shared.config.trusted_proxies.contains(peer.ip()) {
        return Some(peer);
    }
    match proxy_protocol::read_header(stream).await {
        Ok(header) => Some(header.and_then(|h| h.source).unwrap_or(peer)),
        Err(e) => {
            shared.metrics.error(ErrorKind::Http);
            tracing::info!(proxy.addr = %peer, error = %e, "PROXY header refused");
            None
        }
    }
}

/// Peeks at the first byte: a TLS ClientHello starts with 0x16, anything else is HTTP.
async fn detect_and_wrap(shared: &Shared, stream: TcpStream, peer: SocketAddr) -> Option<ClientIo> {
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(1) => {}
        _ => return None,
    }
    if first[0] == TLS_HANDSHAKE_RECORD {
        let Some(tls) = &shared.tls else {
            shared.metrics.error(ErrorKind::TlsHandshake);
            tracing::debug!(client.addr = %peer, "TLS attempted but no certificate configured");
            return None;
        };
        match tls.acceptor().accept(stream).await {
            Ok(s) => Some(ClientIo::Tls(Box::new(s))),
            Err(e) => {
                shared.metrics.error(ErrorKind::TlsHandshake);
                tracing::debug!(client.addr = %peer, error = %e, "TLS handshake failed");
                None
            }
        }
    } else if shared.config.ssl_only {
        shared.metrics.error(ErrorKind::PlainRefused);
        let mut stream = stream;
        let body = "this server only accepts TLS (https:// or wss://)\n";
        let msg = format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(msg.as_bytes()).await;
        let _ = stream.shutdown().await;
        None
    } else {
        Some(ClientIo::Plain(stream))
    }
}
