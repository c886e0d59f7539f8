//! Viewer events: the gateway tells the rest of darts when a labelled route gains or loses
//! a viewer, so that a one-shot session can end when its connection closes, a status
//! page can count viewers and the audit log can record who watched what. Sent once per
//! websocket at open and at close, never per byte: the byte counts travel in the close
//! event, counted by the session task itself (the pump's own counters).
//!
//! Each event names the token's digest and where the route came from, so that darts acts
//! only on events for routes it published itself ([`RouteOrigin`]). A viewer of another
//! node's route (read from the shared registry) is also reported to that node, through
//! the registry (`token::redis`), over a bounded queue that drops rather than waits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::token::TokenKey;

/// What happened to a viewer of a labelled route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewerChange {
    Opened,
    Closed,
}

/// What one websocket carried, reported when it closes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Bytes read from the browser (websocket framing included).
    pub from_client: u64,
    /// Bytes written to the browser (websocket framing included).
    pub to_client: u64,
    /// From the upgrade to the close.
    pub duration: Duration,
}

/// Where the route of a viewer event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteOrigin {
    /// This gateway's own routes (in process, or from its token files).
    Own,
    /// Another node's route, read from the shared registry: not this node's to act on.
    Registry,
    /// Reported through the shared registry by the gateway that carried the viewer,
    /// authenticated with the registry secret.
    Peer,
}

/// One viewer event, named by the route's label (a session name) and the token's
/// digest, never by its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewerEvent {
    pub label: Arc<str>,
    /// The digest of the token the viewer used: darts acts on the event only if that
    /// token is one of the labelled session's own.
    pub key: TokenKey,
    pub origin: RouteOrigin,
    pub change: ViewerChange,
    /// The route was one-shot: its session should end with this connection.
    pub one_shot: bool,
    /// The route was view-only (input dropped).
    pub view_only: bool,
    /// The browser's address as the gateway saw it.
    pub client: SocketAddr,
    /// Set on [`ViewerChange::Closed`] only.
    pub traffic: Option<Traffic>,
}

/// The sending side, kept in the gateway configuration.
pub type ViewerEvents = mpsc::UnboundedSender<ViewerEvent>;

/// Where a viewer's events go: this node's own consumer, and the node owning the route
/// when it is another's (the shared registry's bounded queue; full means dropped).
#[derive(Debug, Clone, Default)]
pub(crate) struct ViewerSinks {
    pub(crate) local: Option<ViewerEvents>,
    pub(crate) owner: Option<mpsc::Sender<ViewerEvent>>,
}

impl ViewerSinks {
    fn send(&self, event: ViewerEvent) {
        if let Some(owner) = &self.owner {
            if owner.try_send(event.clone()).is_err() {
                tracing::warn!(session = %event.label, "viewer event for the owning node dropped: registry queue full");
            }
        }
        if let Some(local) = &self.local {
            let _ = local.send(event);
        }
    }

    fn is_empty(&self) -> bool {
        self.local.is_none() && self.owner.is_none()
    }
}

/// Sends the `Closed` event when dropped, so a session that ends by panic or cancellation
/// still reports it.
#[derive(Debug)]
pub(crate) struct ViewerGuard {
    sinks: ViewerSinks,
    /// The `Opened` event, the template of the `Closed` one.
    opened_event: ViewerEvent,
    opened: Instant,
    bytes: (u64, u64),
}

impl ViewerGuard {
    /// Reports the viewer; `None` when nobody listens.
    pub(crate) fn open(
        sinks: ViewerSinks,
        label: Arc<str>,
        key: TokenKey,
        origin: RouteOrigin,
        route: &crate::token::Route,
        client: SocketAddr,
    ) -> Option<Self> {
        if sinks.is_empty() {
            return None;
        }
        let opened_event = ViewerEvent {
            label,
            key,
            origin,
            change: ViewerChange::Opened,
            one_shot: route.one_shot,
            view_only: route.view_only,
            client,
            traffic: None,
        };
        sinks.send(opened_event.clone());
        Some(Self {
            sinks,
            opened_event,
            opened: Instant::now(),
            bytes: (0, 0),
        })
    }

    /// Records what the connection carried, for the `Closed` event.
    pub(crate) fn set_bytes(&mut self, from_client: u64, to_client: u64) {
        self.bytes = (from_client, to_client);
    }
}

impl Drop for ViewerGuard {
    fn drop(&mut self) {
        let traffic = Traffic {
            from_client: self.bytes.0,
            to_client: self.bytes.1,
            duration: self.opened.elapsed(),
        };
        let mut closed = self.opened_event.clone();
        closed.change = ViewerChange::Closed;
        closed.traffic = Some(traffic);
        self.sinks.send(closed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_close_event_carries_traffic() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let route = crate::token::Route::new(crate::target::Target::Unix("/x".into()))
            .view_only(true)
            .label("s1");
        let client: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        let (owner_tx, mut owner_rx) = mpsc::channel(1);
        let sinks = ViewerSinks {
            local: Some(tx),
            owner: Some(owner_tx),
        };
        let key = TokenKey::of("t");
        let mut g = ViewerGuard::open(
            sinks,
            "s1".into(),
            key,
            RouteOrigin::Registry,
            &route,
            client,
        )
        .unwrap();
        let opened = rx.recv().await.unwrap();
        assert_eq!(opened.change, ViewerChange::Opened);
        assert_eq!((opened.key, opened.origin), (key, RouteOrigin::Registry));
        // The owning node gets the same events.
        assert_eq!(owner_rx.recv().await.unwrap(), opened);
        assert!(opened.view_only && opened.traffic.is_none());
        assert_eq!(opened.client, client);
        g.set_bytes(10, 2000);
        drop(g);
        let closed = rx.recv().await.unwrap();
        assert_eq!(closed.change, ViewerChange::Closed);
        let t = closed.traffic.unwrap();
        assert_eq!((t.from_client, t.to_client), (10, 2000));
        assert_eq!(owner_rx.recv().await.unwrap(), closed);
        assert!(ViewerGuard::open(
            ViewerSinks::default(),
            "s1".into(),
            key,
            RouteOrigin::Own,
            &route,
            client
        )
        .is_none());
    }
}
