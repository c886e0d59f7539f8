//! The task that listens for viewer events other gateways publish about this node's
//! routes (`peer`): subscribes to the channel, checks each message, and hands the
//! authenticated ones to this node's consumer. Reconnects with back-off whenever the
//! subscription breaks (a restarted Redis); messages sent meanwhile are lost.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::peer;
use super::seal::SealKey;
use crate::events::ViewerEvents;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// Tags of recent messages remembered to drop replays.
const SEEN: usize = 4096;

pub(super) struct Subscriber {
    pub(super) client: ::redis::Client,
    pub(super) channel: String,
    pub(super) seal: SealKey,
    /// This node's own messages are skipped.
    pub(super) node: String,
    pub(super) sink: ViewerEvents,
    pub(super) stop: CancellationToken,
    pub(super) shown: String,
}

/// A bounded memory of the tags seen lately.
#[derive(Default)]
struct Seen {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl Seen {
    /// False if `tag` was seen already.
    fn first(&mut self, tag: &str) -> bool {
        if self.set.contains(tag) {
            return false;
        }
        if self.order.len() >= SEEN {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.set.insert(tag.to_owned());
        self.order.push_back(tag.to_owned());
        true
    }
}

impl Subscriber {
    pub(super) async fn run(self) {
        let mut backoff = RETRY_MIN;
        let mut seen = Seen::default();
        loop {
            match self.subscribe().await {
                Ok(mut pubsub) => {
                    backoff = RETRY_MIN;
                    tracing::info!(registry = %self.shown, "listening for viewer events of other gateways");
                    let mut messages = pubsub.on_message();
                    loop {
                        let msg = tokio::select! {
                            _ = self.stop.cancelled() => return,
                            m = messages.next() => m,
                        };
                        let Some(msg) = msg else { break };
                        self.handle(msg.get_payload_bytes(), &mut seen);
                    }
                    tracing::warn!(registry = %self.shown, "viewer event subscription lost; reconnecting");
                }
                Err(e) => {
                    tracing::debug!(registry = %self.shown, error = %e, "viewer event subscription failed; retrying");
                }
            }
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(RETRY_MAX);
        }
    }

    async fn subscribe(&self) -> Result<::redis::aio::PubSub, ::redis::RedisError> {
        let timed_out =
            || ::redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        let mut pubsub = tokio::time::timeout(CONNECT_TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| timed_out())??;
        tokio::time::timeout(CONNECT_TIMEOUT, pubsub.subscribe(&self.channel))
            .await
            .map_err(|_| timed_out())??;
        Ok(pubsub)
    }

    fn handle(&self, payload: &[u8], seen: &mut Seen) {
        match peer::decode(payload, &self.seal, SystemTime::now()) {
            Ok((node, tag, event)) => {
                if node == self.node || !seen.first(&tag) {
                    return;
                }
                tracing::debug!(session = %event.label, key = ?event.key, change = ?event.change, "viewer event from another gateway");
                self.sink.send(event);
            }
            Err(e) => {
                tracing::warn!(registry = %self.shown, error = %e, "viewer event from the registry refused")
            }
        }
    }
}
