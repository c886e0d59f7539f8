//! Viewer events: the gateway tells the rest of darts when a labelled route gains or loses
//! a viewer, so that a one-shot session can end when its connection closes and a status
//! page can count viewers. Sent once per websocket at open and at close, never per byte.

use std::sync::Arc;

use tokio::sync::mpsc;

/// What happened to a viewer of a labelled route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewerChange {
    Opened,
    Closed,
}

/// One viewer event, named by the route's label (a session name), never by its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewerEvent {
    pub label: Arc<str>,
    pub change: ViewerChange,
    /// The route was one-shot: its session should end with this connection.
    pub one_shot: bool,
}

/// The sending side, kept in the gateway configuration.
pub type ViewerEvents = mpsc::UnboundedSender<ViewerEvent>;

/// Sends the `Closed` event when dropped, so a session that ends by panic or cancellation
/// still reports it.
#[derive(Debug)]
pub(crate) struct ViewerGuard {
    events: ViewerEvents,
    label: Arc<str>,
    one_shot: bool,
}

impl ViewerGuard {
    pub(crate) fn open(events: &ViewerEvents, label: Arc<str>, one_shot: bool) -> Self {
        let _ = events.send(ViewerEvent {
            label: label.clone(),
            change: ViewerChange::Opened,
            one_shot,
        });
        Self {
            events: events.clone(),
            label,
            one_shot,
        }
    }
}

impl Drop for ViewerGuard {
    fn drop(&mut self) {
        let _ = self.events.send(ViewerEvent {
            label: self.label.clone(),
            change: ViewerChange::Closed,
            one_shot: self.one_shot,
        });
    }
}
