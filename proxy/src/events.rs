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
//!
//! This node's consumer gets them through a bounded channel as well ([`ViewerEvents`]):
//! the gateway never waits on it; an event that finds it full is dropped and counted
//! (`darts_viewer_events_dropped_total`). Next to the channel the sender keeps a ledger
//! of the open viewers of this gateway's own routes, updated with every event whether
//! it was delivered or not, so that after drops the consumer re-reads the truth
//! ([`ViewerEventsRx::resync`]) instead of trusting a count that missed events.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify};

use crate::route::TokenKey;

/// What happened to a viewer of a labelled route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewerChange {
    /// A websocket to the route was accepted.
    Opened,
    /// That websocket ended.
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
    /// The route's label: the session it belongs to.
    pub label: Arc<str>,
    /// The digest of the token the viewer used: darts acts on the event only if that
    /// token is one of the labelled session's own.
    pub key: TokenKey,
    /// Where the route came from: only [`RouteOrigin::Own`] is this node's to act on.
    pub origin: RouteOrigin,
    /// Opened or closed.
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

/// Room in the viewer event channel. Two events per websocket, each handled by the
/// consumer in microseconds: 4096 absorbs a burst of 2048 viewers connecting or leaving
/// at once (a class reconnecting after a network cut) for about half a MiB at most.
/// Past it events are dropped and counted, and the consumer re-syncs from the ledger,
/// so a full queue costs a re-sync, never a wrong count or a wait on the data path.
pub const VIEWER_EVENT_QUEUE: usize = 4096;

/// The sending side, kept in the gateway configuration (and given to the registry for
/// the events other gateways report). Cheap to clone; [`ViewerEvents::send`] never
/// waits.
#[derive(Debug, Clone)]
pub struct ViewerEvents {
    tx: mpsc::Sender<ViewerEvent>,
    shared: Arc<EventsShared>,
}

/// What both ends of the channel share.
#[derive(Debug, Default)]
pub(crate) struct EventsShared {
    /// Taken with every send, so a snapshot taken with the queue empty matches exactly
    /// the events delivered so far.
    ledger: Mutex<Ledger>,
    dropped: AtomicU64,
    /// Woken at each drop: the consumer should re-sync.
    resync: Notify,
}

impl EventsShared {
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Open viewers of this gateway's own routes ([`RouteOrigin::Own`]), by token digest.
/// Bounded: an entry lives while its token has open viewers, or, when the close event
/// of its last one was dropped, until the next snapshot.
#[derive(Debug, Default)]
struct Ledger {
    open: HashMap<TokenKey, LedgerEntry>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct LedgerEntry {
    open: usize,
    /// A `Closed` event of this token was dropped since the last snapshot.
    lost_close: bool,
}

impl Ledger {
    fn record(&mut self, key: TokenKey, change: ViewerChange, delivered: bool) {
        let entry = self.open.entry(key).or_default();
        match change {
            ViewerChange::Opened => entry.open += 1,
            ViewerChange::Closed => {
                entry.open = entry.open.saturating_sub(1);
                entry.lost_close |= !delivered;
                if entry.open == 0 && !entry.lost_close {
                    self.open.remove(&key);
                }
            }
        }
    }

    /// The current state; forgets the dropped closes it reports.
    fn snapshot(&mut self) -> OpenViewers {
        let open = self.open.clone();
        self.open.retain(|_, e| {
            e.lost_close = false;
            e.open > 0
        });
        OpenViewers { open }
    }
}

/// The open viewers of this gateway's own routes at one moment, as the consumer would
/// count them had it received every event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenViewers {
    open: HashMap<TokenKey, LedgerEntry>,
}

impl OpenViewers {
    /// Viewers open on the token `key`.
    pub fn viewers(&self, key: &TokenKey) -> usize {
        self.open.get(key).map_or(0, |e| e.open)
    }

    /// A viewer of `key` closed and its `Closed` event was dropped.
    pub fn close_dropped(&self, key: &TokenKey) -> bool {
        self.open.get(key).is_some_and(|e| e.lost_close)
    }
}

impl ViewerEvents {
    /// A channel with room for `capacity` events ([`VIEWER_EVENT_QUEUE`] in darts).
    pub fn channel(capacity: usize) -> (Self, ViewerEventsRx) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let shared = Arc::new(EventsShared::default());
        let rx = ViewerEventsRx {
            rx,
            shared: shared.clone(),
        };
        (Self { tx, shared }, rx)
    }

    /// Queues `event`, or drops and counts it when the queue is full. Never waits.
    pub fn send(&self, event: ViewerEvent) {
        let (key, change, own) = (event.key, event.change, event.origin == RouteOrigin::Own);
        let mut ledger = lock(&self.shared.ledger);
        let delivered = match self.tx.try_send(event) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                self.shared.resync.notify_one();
                false
            }
            // Nobody listens any more: nothing to keep.
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        };
        if own {
            ledger.record(key, change, delivered);
        }
    }

    /// Events dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped()
    }

    pub(crate) fn shared(&self) -> Arc<EventsShared> {
        self.shared.clone()
    }
}

/// The receiving side, for darts' session manager.
#[derive(Debug)]
pub struct ViewerEventsRx {
    rx: mpsc::Receiver<ViewerEvent>,
    shared: Arc<EventsShared>,
}

/// Snapshots a re-sync tries before it leaves the rest to the next one (it retries only
/// when an event slipped in between emptying the queue and taking the ledger).
const RESYNC_TRIES: usize = 16;

impl ViewerEventsRx {
    /// The next event; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<ViewerEvent> {
        self.rx.recv().await
    }

    /// Completes once events were dropped since the last time it did (at once if some
    /// were). Borrows nothing, so it can wait next to [`Self::recv`].
    pub fn dropped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let shared = self.shared.clone();
        async move { shared.resync.notified().await }
    }

    /// Events dropped so far because the queue was full.
    pub fn dropped_total(&self) -> u64 {
        self.shared.dropped()
    }

    /// Hands every queued event to `handle`, then returns the open viewers as they stand
    /// after exactly those events: what the consumer's counts should be. `None` when
    /// events kept arriving too fast to catch the queue empty; the re-sync is then
    /// asked again (`dropped` returns at once).
    pub fn resync(&mut self, mut handle: impl FnMut(ViewerEvent)) -> Option<OpenViewers> {
        for _ in 0..RESYNC_TRIES {
            while let Ok(event) = self.rx.try_recv() {
                handle(event);
            }
            // Every send holds the ledger: with it held and the queue empty, the ledger
            // has seen exactly the events handled.
            let mut ledger = lock(&self.shared.ledger);
            if self.rx.is_empty() {
                return Some(ledger.snapshot());
            }
        }
        self.shared.resync.notify_one();
        None
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

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
            local.send(event);
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
        route: &crate::route::Route,
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
        let (tx, mut rx) = ViewerEvents::channel(8);
        let route = crate::route::Route::new(crate::target::Target::Unix("/x".into()))
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

    fn event(key: &str, change: ViewerChange) -> ViewerEvent {
        ViewerEvent {
            label: "s1".into(),
            key: TokenKey::of(key),
            origin: RouteOrigin::Own,
            change,
            one_shot: false,
            view_only: false,
            client: "192.0.2.7:5000".parse().unwrap(),
            traffic: None,
        }
    }

    #[tokio::test]
    async fn a_full_queue_drops_counts_and_the_ledger_still_knows() {
        use ViewerChange::{Closed, Opened};
        let (tx, mut rx) = ViewerEvents::channel(2);
        // a opens twice, b once, then one a and the b close: the queue holds two.
        for (k, c) in [("a", Opened), ("a", Opened), ("b", Opened), ("a", Closed)] {
            tx.send(event(k, c));
        }
        tx.send(event("b", Closed));
        // Another node's viewer, reported through the registry: counted as dropped,
        // never in this gateway's ledger.
        let mut peer = event("c", Opened);
        peer.origin = RouteOrigin::Peer;
        tx.send(peer);
        assert_eq!((tx.dropped(), rx.dropped_total()), (4, 4));
        tokio::time::timeout(Duration::from_secs(1), rx.dropped())
            .await
            .expect("the consumer hears of the drops");
        let mut handled = Vec::new();
        let open = rx.resync(|e| handled.push((e.key, e.change))).unwrap();
        assert_eq!(
            handled,
            [(TokenKey::of("a"), Opened), (TokenKey::of("a"), Opened)]
        );
        let (a, b, c) = (TokenKey::of("a"), TokenKey::of("b"), TokenKey::of("c"));
        assert_eq!(
            (open.viewers(&a), open.viewers(&b), open.viewers(&c)),
            (1, 0, 0)
        );
        assert!(open.close_dropped(&a) && open.close_dropped(&b));
        // The snapshot forgot the lost closes and the tokens without viewers.
        let again = rx.resync(|_| panic!("queue empty")).unwrap();
        assert!(!again.close_dropped(&a) && !again.close_dropped(&b));
        assert_eq!(again.viewers(&a), 1);
        assert_eq!(lock(&tx.shared.ledger).open.len(), 1);
        // A delivered close of the last viewer leaves no entry behind.
        tx.send(event("a", Closed));
        assert_eq!(rx.recv().await.map(|e| e.change), Some(Closed));
        assert!(lock(&tx.shared.ledger).open.is_empty());
        assert_eq!(tx.dropped(), 4);
    }

    #[tokio::test]
    async fn events_nobody_listens_to_are_neither_counted_nor_kept() {
        let (tx, rx) = ViewerEvents::channel(1);
        drop(rx);
        tx.send(event("a", ViewerChange::Opened));
        assert_eq!(tx.dropped(), 0);
        assert!(lock(&tx.shared.ledger).open.is_empty());
    }
}
