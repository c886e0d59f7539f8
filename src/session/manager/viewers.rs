//! Viewer events: the manager counts each session's viewers from its gateway's events
//! (and from other gateways' reports through the registry), ends one-shot sessions when
//! their viewer leaves, and re-syncs from the gateway's ledger when events were dropped.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use darts_proxy::token::TokenKey;
use darts_proxy::{OpenViewers, RouteOrigin, ViewerChange, ViewerEvent, ViewerEventsRx};

use super::{lock, Live, Manager};
use crate::session::record::SessionRecord;

impl Manager {
    /// Feeds viewer events from this node's gateway and, through the shared registry,
    /// from other gateways: counts viewers, and ends a one-shot session when its
    /// connection closes. Acts only on events for a token of the labelled session
    /// itself (`owns_viewer_event`), so a label alone never reaches a session. When the
    /// gateway had to drop events (its queue was full), re-syncs from its ledger.
    pub async fn follow_viewers(self: Arc<Self>, mut events: ViewerEventsRx) {
        loop {
            tokio::select! {
                // Drops are rare; checked first so a busy queue cannot postpone them.
                biased;
                () = events.dropped() => self.resync_viewers(&mut events),
                ev = events.recv() => match ev {
                    Some(ev) => self.viewer_event(ev),
                    None => return,
                },
            }
        }
    }

    fn viewer_event(&self, ev: ViewerEvent) {
        let live = lock(&self.sessions).get(&*ev.label).cloned();
        let live = live.filter(|l| owns_viewer_event(&lock(&l.record), &ev));
        // A viewer cut by its session's end still gets its line (owner unknown by then).
        let owner = live.as_ref().map(|l| lock(&l.record).user.clone());
        if ev.origin != RouteOrigin::Peer || live.is_some() {
            crate::audit::viewer(&ev, owner.as_deref().unwrap_or(""));
        }
        let Some(live) = live else {
            if ev.origin != RouteOrigin::Own {
                tracing::debug!(session = %ev.label, key = ?ev.key, origin = ?ev.origin, "viewer event for a route this node did not publish: ignored");
            }
            return;
        };
        let count = match ev.origin {
            RouteOrigin::Own => &live.viewers,
            _ => &live.peer_viewers,
        };
        match ev.change {
            ViewerChange::Opened => {
                count.fetch_add(1, Ordering::Relaxed);
            }
            ViewerChange::Closed => {
                let _ =
                    count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
                if ev.one_shot {
                    self.one_shot_viewer_gone(&live, &ev.label);
                }
            }
        }
    }

    /// Events were dropped: handles those still queued, then sets every session's count
    /// of this gateway's viewers from the gateway's ledger, and ends the one-shot
    /// sessions whose viewer closed unheard.
    fn resync_viewers(&self, events: &mut ViewerEventsRx) {
        let Some(open) = events.resync(|ev| self.viewer_event(ev)) else {
            return;
        };
        tracing::warn!(
            dropped = events.dropped_total(),
            "viewer events dropped (queue full): viewer counts re-synced from the gateway"
        );
        let sessions: Vec<Arc<Live>> = lock(&self.sessions).values().cloned().collect();
        for live in sessions {
            let (viewers, closed, name, one_shot) = own_viewers(&lock(&live.record), &open);
            live.viewers.store(viewers, Ordering::Relaxed);
            if one_shot && closed {
                self.one_shot_viewer_gone(&live, &name);
            }
        }
    }

    /// A one-shot session's viewer closed: the session ends, unless darts' own stop cut
    /// the viewer.
    fn one_shot_viewer_gone(&self, live: &Live, name: &str) {
        if self.service_stopping() {
            tracing::info!(session = %name, "one-shot viewer cut by darts' stop: session kept");
        } else {
            self.request_stop(live, "one-shot connection closed");
        }
    }
}

/// Whether a viewer event is the session's own: its token is one of the session's and
/// the route was not read from the registry (another node's route, even if a session
/// of the same name lives here). Events reported by other gateways pass when they name
/// one of the session's tokens: only this node published those routes.
pub fn owns_viewer_event(record: &SessionRecord, ev: &ViewerEvent) -> bool {
    ev.origin != RouteOrigin::Registry
        && record
            .tokens
            .iter()
            .any(|t| TokenKey::from_hex(&t.sha256) == Some(ev.key))
}

/// A session's viewers in the gateway's ledger: how many are open on its tokens, whether
/// one closed without its event, its name and whether it is one-shot.
fn own_viewers(record: &SessionRecord, open: &OpenViewers) -> (usize, bool, String, bool) {
    let keys = record
        .tokens
        .iter()
        .filter_map(|t| TokenKey::from_hex(&t.sha256));
    let (mut viewers, mut closed) = (0, false);
    for key in keys {
        viewers += open.viewers(&key);
        closed |= open.close_dropped(&key);
    }
    (viewers, closed, record.name.clone(), record.oneshot)
}
