//! Settings of the data plane, each with a named default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::target::Target;
use crate::tls::CertPaths;

/// Default of [`GatewayConfig::handshake_timeout`].
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of [`GatewayConfig::connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default of [`GatewayConfig::grace_period`].
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);
/// Bytes read from a target per websocket frame sent to the browser.
pub const DEFAULT_READ_CHUNK: usize = 64 * 1024;
/// Largest frame and largest (fragmented) message accepted from a browser. RFB messages
/// from a viewer are small; the biggest is a clipboard paste.
pub const DEFAULT_MAX_FRAME: u64 = 4 * 1024 * 1024;
/// Default of [`GatewayConfig::max_message`]: see [`DEFAULT_MAX_FRAME`].
pub const DEFAULT_MAX_MESSAGE: u64 = 16 * 1024 * 1024;
/// Client connections held at once (each session holds two descriptors).
pub const DEFAULT_MAX_CONNECTIONS: usize = 9_900;
/// Pending connections (accepted, not yet a session with a valid token) one address (an
/// IPv6 /64) may hold at once: a browser holds a few for the pages, a NAT of a lab many
/// more, a flood thousands. Sessions are not counted here.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 256;
/// Sessions one token may hold at once: QEMU's VNC server takes 32 clients by default.
pub const DEFAULT_MAX_VIEWERS_PER_TOKEN: usize = 32;
/// Largest request head (request line and headers) read from a client; a larger one is
/// answered `431`. nginx allows 8 KiB per line and a few of them.
pub const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// How long a browser has to finish a websocket frame it started: real browsers send a
/// frame in one write; a client dribbling bytes holds a slot without being idle.
pub const DEFAULT_FRAME_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for the browser's close frame after ours.
pub const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// Everything the gateway needs to run. Build with `GatewayConfig::new` and adjust fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GatewayConfig {
    /// Address of the one listening socket (HTTP, TLS, websockets).
    pub listen: SocketAddr,
    /// TLS certificate; `None` serves plain HTTP only.
    pub tls: Option<CertPaths>,
    /// Refuse plain connections (websockify's `--ssl-only`).
    pub ssl_only: bool,
    /// Directory of static files (noVNC), served under `web_prefix`.
    pub web_dir: Option<PathBuf>,
    /// URL path prefix of static files and of health/metrics, e.g. `/darts`; `/` for none.
    pub web_prefix: String,
    /// Route every websocket without a token here (websockify's positional target or
    /// `--unix-target`).
    pub default_target: Option<Target>,
    /// Take the token from the `Host` header instead of `?token=` (websockify `--host-token`).
    pub host_token: bool,
    /// Origins allowed besides the request's own host (`*` allows any).
    pub allowed_origins: Vec<String>,
    /// Time from accept to the end of the PROXY header and TLS handshake; also the bound
    /// on reading each HTTP request head.
    pub handshake_timeout: Duration,
    /// Bound on connecting to a target and on each step of its RFB handshake.
    pub connect_timeout: Duration,
    /// Close a session with no traffic either way for this long.
    pub idle_timeout: Option<Duration>,
    /// Ping the browser this often; close if it stops answering.
    pub heartbeat: Option<Duration>,
    /// At shutdown, how long open connections and sessions get to end before they are
    /// dropped.
    pub grace_period: Duration,
    /// Largest read from either side, and so the largest frame sent to the browser.
    pub read_chunk: usize,
    /// Largest websocket frame accepted from the browser; larger closes with 1009.
    pub max_frame: u64,
    /// Largest (fragmented) message accepted from the browser; larger closes with 1009.
    pub max_message: u64,
    /// Client connections held at once; a connection over it is answered `503`.
    pub max_connections: usize,
    /// Pending connections one address may hold (0: no limit): accepted but not yet a
    /// session with a valid token. A newcomer over the limit pushes out that address's
    /// oldest pending connection. The address is the TCP peer's, or the one a trusted
    /// proxy's PROXY header names; connections of trusted proxies themselves are not
    /// counted. IPv6 counts per /64. Sessions are bounded by `max_connections` and
    /// `max_viewers_per_token` instead.
    pub max_connections_per_ip: usize,
    /// Sessions one token may hold at once (0: no limit); more get `429`. Routes without
    /// a token (the default target) are bounded by `max_connections` only.
    pub max_viewers_per_token: usize,
    /// A websocket frame from the browser must be complete this long after it started
    /// arriving, or the session is closed with 1008 (`None`: no limit).
    pub frame_timeout: Option<Duration>,
    /// Serve `/metrics` and `/healthz`.
    pub expose_metrics: bool,
    /// Move target → browser payload with `splice(2)` (zero-copy) when both sides are
    /// plain TCP or unix sockets and no filter applies; off copies everything.
    pub splice: bool,
    /// Check that a target speaks RFB before relaying (routes without terminated
    /// security). Off makes the gateway a generic websocket-to-TCP relay.
    pub rfb_check: bool,
    /// Where to report viewers of labelled routes opening and closing.
    pub viewer_events: Option<crate::events::ViewerEvents>,
    /// Pages and API served on the same port, offered every non-upgrade request first.
    pub app: Option<std::sync::Arc<dyn crate::app::App>>,
    /// Reverse proxies whose `X-Forwarded-*`/`Forwarded` headers (and PROXY headers)
    /// name the client, for logs and the `Origin` check.
    pub trusted_proxies: crate::forwarded::TrustedProxies,
    /// Read a PROXY protocol (v1 or v2) header from connections of trusted proxies.
    pub proxy_protocol: bool,
    /// Also serve paths outside `web_prefix` as if they were under it: a reverse proxy
    /// that strips the prefix (the original's Apache block) sends `//vnc.html`.
    pub accept_unprefixed: bool,
}

impl GatewayConfig {
    /// Every setting at its default, listening on `listen`.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            tls: None,
            ssl_only: false,
            web_dir: None,
            web_prefix: "/".into(),
            default_target: None,
            host_token: false,
            allowed_origins: Vec::new(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            idle_timeout: None,
            heartbeat: None,
            grace_period: DEFAULT_GRACE_PERIOD,
            read_chunk: DEFAULT_READ_CHUNK,
            max_frame: DEFAULT_MAX_FRAME,
            max_message: DEFAULT_MAX_MESSAGE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            max_viewers_per_token: DEFAULT_MAX_VIEWERS_PER_TOKEN,
            frame_timeout: Some(DEFAULT_FRAME_TIMEOUT),
            expose_metrics: true,
            rfb_check: true,
            splice: true,
            viewer_events: None,
            app: None,
            trusted_proxies: crate::forwarded::TrustedProxies::default(),
            proxy_protocol: false,
            accept_unprefixed: false,
        }
    }

    /// The prefix without its trailing slash (`""` for the root).
    pub(crate) fn prefix(&self) -> &str {
        self.web_prefix.trim_end_matches('/')
    }

    /// A request path relative to the prefix (see `accept_unprefixed`).
    pub(crate) fn relative_path(&self, path: &str) -> Option<String> {
        crate::url::strip_prefix(path, self.prefix()).or_else(|| {
            self.accept_unprefixed
                .then(|| crate::url::strip_prefix(path, ""))
                .flatten()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_outside_the_prefix_only_when_accepted() {
        let mut c = GatewayConfig::new("127.0.0.1:0".parse().unwrap());
        c.web_prefix = "/darts".into();
        assert_eq!(
            c.relative_path("/darts/vnc.html").as_deref(),
            Some("/vnc.html")
        );
        assert_eq!(c.relative_path("//vnc.html"), None);
        c.accept_unprefixed = true;
        assert_eq!(
            c.relative_path("/darts//app/ui.js").as_deref(),
            Some("/app/ui.js")
        );
        // The original's Apache block strips the prefix and doubles the slash.
        assert_eq!(c.relative_path("//vnc.html").as_deref(), Some("/vnc.html"));
        assert_eq!(c.relative_path("//").as_deref(), Some("/"));
    }
}
