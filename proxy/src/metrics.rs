//! Counters for `/metrics` (Prometheus text format 0.0.4). Plain atomics: the data path
//! pays one relaxed add per forwarded chunk and nothing else.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use crate::error::SessionEnd;
use crate::events::{EventsShared, ViewerEvents};

/// Outcome of a websocket upgrade request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// Answered `101`: the websocket goes to a session.
    Accepted,
    /// The token names no route (`404`).
    UnknownToken,
    /// The token's route has expired (`404`).
    ExpiredToken,
    /// No token, and no default target (`404`).
    MissingToken,
    /// The `Origin` header is not allowed (`403`).
    OriginRefused,
    /// Not a valid websocket upgrade request.
    BadRequest,
    /// Over `max_connections` (`503` at accept), or the shared registry too busy to ask
    /// (`503`).
    Overloaded,
    /// The token was not known here and the shared token registry did not answer.
    RegistryUnavailable,
    /// The token holds `max_viewers_per_token` sessions already.
    TooManyViewers,
}

impl Handshake {
    const ALL: [Handshake; 9] = [
        Self::Accepted,
        Self::UnknownToken,
        Self::ExpiredToken,
        Self::MissingToken,
        Self::OriginRefused,
        Self::BadRequest,
        Self::Overloaded,
        Self::RegistryUnavailable,
        Self::TooManyViewers,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::UnknownToken => "unknown_token",
            Self::ExpiredToken => "expired_token",
            Self::MissingToken => "missing_token",
            Self::OriginRefused => "origin_refused",
            Self::BadRequest => "bad_request",
            Self::Overloaded => "overloaded",
            Self::RegistryUnavailable => "registry_unavailable",
            Self::TooManyViewers => "too_many_viewers",
        }
    }
}

/// Errors counted outside sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// `accept` on the listener failed.
    Accept,
    /// A TLS handshake failed, or was attempted with no certificate configured.
    TlsHandshake,
    /// No PROXY header or TLS handshake within the handshake timeout.
    HandshakeTimeout,
    /// A plain connection refused under `ssl_only`.
    PlainRefused,
    /// An HTTP connection failed, or a PROXY header was refused.
    Http,
}

impl ErrorKind {
    const ALL: [ErrorKind; 5] = [
        Self::Accept,
        Self::TlsHandshake,
        Self::HandshakeTimeout,
        Self::PlainRefused,
        Self::Http,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Accept => "accept",
            Self::TlsHandshake => "tls_handshake",
            Self::HandshakeTimeout => "handshake_timeout",
            Self::PlainRefused => "plain_refused",
            Self::Http => "http",
        }
    }
}

/// Every counter the gateway exports.
#[derive(Debug, Default)]
pub struct Metrics {
    connections_open: AtomicI64,
    connections_total: AtomicU64,
    tls_connections_total: AtomicU64,
    dropped_pending: AtomicU64,
    sessions_open: AtomicI64,
    bytes_to_client: AtomicU64,
    bytes_to_target: AtomicU64,
    handshakes: [AtomicU64; Handshake::ALL.len()],
    session_ends: [AtomicU64; SessionEnd::ALL.len()],
    errors: [AtomicU64; ErrorKind::ALL.len()],
    tls_reloads_ok: AtomicU64,
    tls_reloads_failed: AtomicU64,
    http_requests: AtomicU64,
    /// The viewer event channel's drop count, kept by its senders.
    viewer_events: Option<std::sync::Arc<EventsShared>>,
}

impl Metrics {
    /// Counters that also show how many of `events` were dropped.
    pub fn with_viewer_events(events: Option<&ViewerEvents>) -> Self {
        Self {
            viewer_events: events.map(ViewerEvents::shared),
            ..Self::default()
        }
    }

    /// A client connection got past its PROXY header and TLS handshake.
    pub fn connection_opened(&self, tls: bool) {
        self.connections_open.fetch_add(1, Relaxed);
        self.connections_total.fetch_add(1, Relaxed);
        if tls {
            self.tls_connections_total.fetch_add(1, Relaxed);
        }
    }

    /// A pending connection closed to make room for a newer one of its address, which
    /// held `max_connections_per_ip` pending connections.
    pub fn pending_connection_dropped(&self) {
        self.dropped_pending.fetch_add(1, Relaxed);
    }

    /// A connection counted by [`connection_opened`](Self::connection_opened) closed.
    pub fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Relaxed);
    }

    /// Counts the outcome of a websocket upgrade request.
    pub fn handshake(&self, h: Handshake) {
        self.handshakes[h as usize].fetch_add(1, Relaxed);
    }

    /// A session's target is ready and its pump starts.
    pub fn session_opened(&self) {
        self.sessions_open.fetch_add(1, Relaxed);
    }

    /// A session that reached the pump has ended.
    pub fn session_closed(&self) {
        self.sessions_open.fetch_sub(1, Relaxed);
    }

    /// Any accepted websocket ended, pumped or not; counts why.
    pub fn session_end(&self, end: SessionEnd) {
        let i = SessionEnd::ALL.iter().position(|e| *e == end).unwrap_or(0);
        self.session_ends[i].fetch_add(1, Relaxed);
    }

    /// Adds `n` payload bytes relayed to the browser.
    pub fn to_client(&self, n: usize) {
        self.bytes_to_client.fetch_add(n as u64, Relaxed);
    }

    /// Adds `n` payload bytes relayed to the target.
    pub fn to_target(&self, n: usize) {
        self.bytes_to_target.fetch_add(n as u64, Relaxed);
    }

    /// Counts an error outside sessions.
    pub fn error(&self, kind: ErrorKind) {
        self.errors[kind as usize].fetch_add(1, Relaxed);
    }

    /// Counts a certificate reload that succeeded (`ok`) or was refused.
    pub fn tls_reload(&self, ok: bool) {
        if ok {
            &self.tls_reloads_ok
        } else {
            &self.tls_reloads_failed
        }
        .fetch_add(1, Relaxed);
    }

    /// A request that is not a websocket upgrade arrived.
    pub fn http_request(&self) {
        self.http_requests.fetch_add(1, Relaxed);
    }

    /// Sessions relaying right now.
    pub fn sessions_open(&self) -> i64 {
        self.sessions_open.load(Relaxed)
    }

    /// Renders every counter in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, i128)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let one = |v: i128| vec![(String::new(), v)];
        let load = |a: &AtomicU64| i128::from(a.load(Relaxed));
        metric(
            "darts_connections_open",
            "gauge",
            "Client connections open (HTTP or websocket).",
            &one(i128::from(self.connections_open.load(Relaxed))),
        );
        metric(
            "darts_connections_total",
            "counter",
            "Client connections accepted.",
            &one(load(&self.connections_total)),
        );
        metric(
            "darts_tls_connections_total",
            "counter",
            "Client connections that started TLS.",
            &one(load(&self.tls_connections_total)),
        );
        metric(
            "darts_connections_dropped_total",
            "counter",
            "Client connections closed before they became a session, by reason.",
            &[(
                "{reason=\"pending_per_address\"}".into(),
                load(&self.dropped_pending),
            )],
        );
        metric(
            "darts_sessions_open",
            "gauge",
            "Websocket sessions relaying to a target.",
            &one(i128::from(self.sessions_open.load(Relaxed))),
        );
        metric(
            "darts_bytes_total",
            "counter",
            "Payload bytes relayed, by direction.",
            &[
                (
                    "{direction=\"to_client\"}".into(),
                    load(&self.bytes_to_client),
                ),
                (
                    "{direction=\"to_target\"}".into(),
                    load(&self.bytes_to_target),
                ),
            ],
        );
        let handshakes: Vec<_> = Handshake::ALL
            .iter()
            .map(|h| {
                (
                    format!("{{result=\"{}\"}}", h.as_str()),
                    load(&self.handshakes[*h as usize]),
                )
            })
            .collect();
        metric(
            "darts_handshakes_total",
            "counter",
            "Websocket upgrade requests, by result.",
            &handshakes,
        );
        let ends: Vec<_> = SessionEnd::ALL
            .iter()
            .enumerate()
            .map(|(i, e)| {
                (
                    format!("{{reason=\"{}\"}}", e.as_str()),
                    load(&self.session_ends[i]),
                )
            })
            .collect();
        metric(
            "darts_session_ends_total",
            "counter",
            "Sessions ended, by reason.",
            &ends,
        );
        let errors: Vec<_> = ErrorKind::ALL
            .iter()
            .map(|k| {
                (
                    format!("{{kind=\"{}\"}}", k.as_str()),
                    load(&self.errors[*k as usize]),
                )
            })
            .collect();
        metric(
            "darts_errors_total",
            "counter",
            "Errors outside sessions, by kind.",
            &errors,
        );
        metric(
            "darts_tls_reloads_total",
            "counter",
            "Certificate reloads, by result.",
            &[
                ("{result=\"ok\"}".into(), load(&self.tls_reloads_ok)),
                (
                    "{result=\"refused\"}".into(),
                    load(&self.tls_reloads_failed),
                ),
            ],
        );
        metric(
            "darts_http_requests_total",
            "counter",
            "Plain HTTP requests served.",
            &one(load(&self.http_requests)),
        );
        metric(
            "darts_viewer_events_dropped_total",
            "counter",
            "Viewer events dropped because their queue was full (viewer counts are then re-synced).",
            &one(i128::from(
                self.viewer_events.as_ref().map_or(0, |e| e.dropped()),
            )),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_labels() {
        let m = Metrics::default();
        m.session_opened();
        m.to_client(10);
        m.handshake(Handshake::UnknownToken);
        m.session_closed();
        m.session_end(SessionEnd::IdleTimeout);
        m.pending_connection_dropped();
        let text = m.render();
        assert!(
            text.contains("darts_connections_dropped_total{reason=\"pending_per_address\"} 1\n")
        );
        assert!(text.contains("darts_sessions_open 0\n"));
        assert!(text.contains("darts_bytes_total{direction=\"to_client\"} 10\n"));
        assert!(text.contains("darts_handshakes_total{result=\"unknown_token\"} 1\n"));
        assert!(text.contains("darts_session_ends_total{reason=\"idle_timeout\"} 1\n"));
        assert!(text.contains("# TYPE darts_bytes_total counter"));
        assert!(text.contains("darts_viewer_events_dropped_total 0\n"));
    }

    #[test]
    fn counts_the_viewer_events_dropped() {
        let (tx, _rx) = ViewerEvents::channel(1);
        let m = Metrics::with_viewer_events(Some(&tx));
        let event = crate::events::ViewerEvent {
            label: "s".into(),
            key: crate::route::TokenKey::of("t"),
            origin: crate::events::RouteOrigin::Own,
            change: crate::events::ViewerChange::Opened,
            one_shot: false,
            view_only: false,
            client: "192.0.2.1:1".parse().unwrap(),
            traffic: None,
        };
        for _ in 0..3 {
            tx.send(event.clone());
        }
        let text = m.render();
        assert!(text.contains("# TYPE darts_viewer_events_dropped_total counter\n"));
        assert!(
            text.contains("\ndarts_viewer_events_dropped_total 2\n"),
            "{text}"
        );
    }
}
