//! The application hook: HTTP requests that are not websocket upgrades are offered to the
//! rest of darts (pages, JSON API) before the gateway's own static files, health and
//! metrics. The gateway stays ignorant of what the application does; the application
//! never sees an upgrade, so the hot path is unchanged.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;

/// Where a request came from, as the gateway saw it.
#[derive(Debug, Clone)]
pub struct AppContext {
    /// The TCP peer, or the client a trusted proxy's PROXY header names.
    pub peer: SocketAddr,
    /// The connection is TLS (darts' own listener; a reverse proxy's scheme is the
    /// application's business).
    pub tls: bool,
    /// The path below the gateway's prefix, starting with `/` (`//x` is already `/x`).
    pub path: String,
    /// The client after the gateway's trusted proxies (`forwarded::resolve`), computed
    /// once by the gateway.
    pub client: crate::forwarded::ClientView,
}

/// A boxed response future.
pub type AppFuture = Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>;

/// An application served on the gateway's port.
pub trait App: Send + Sync + fmt::Debug + 'static {
    /// Whether the application answers `method` on `path` (below the prefix). Cheap: it
    /// runs for every non-upgrade request.
    fn claims(&self, method: &Method, path: &str) -> bool;

    /// Answers a claimed request.
    fn handle(&self, req: Request<Incoming>, ctx: AppContext) -> AppFuture;
}
