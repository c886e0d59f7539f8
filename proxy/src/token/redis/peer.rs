//! Viewer events between nodes, through the registry: the gateway that carries a viewer
//! of another node's route publishes the viewer's `Opened` and `Closed` on one channel
//! (`NS:darts-viewer-events`); every `darts serve` node subscribes, and the node whose
//! session owns the token acts on them (counts the viewer, ends a one-shot session).
//!
//! A message is JSON, authenticated like entries (`auth`) with its own derived key, and
//! carries the sending node, the token's digest, the session's label, and its time:
//! messages older than `MAX_AGE` (or from too far ahead) are refused, and a receiver
//! drops the ones it has already seen, so a replay can at most repeat a recent event
//! once it has left that window's memory. The format is meant to grow: other kinds
//! (revocation of share links, viewer counts from other gateways) are new `change`
//! values under a new version.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::auth::{Authenticator, Canonical};
use super::seal::SealKey;
use crate::events::{RouteOrigin, Traffic, ViewerChange, ViewerEvent};
use crate::route::TokenKey;

const VERSION: u8 = 1;
const MAC_LABEL: &[u8] = b"darts token-redis viewer event v1\0";
/// Longer messages are not read.
pub const MAX_MESSAGE: usize = 2048;
/// Older messages are refused.
pub const MAX_AGE: Duration = Duration::from_secs(600);
/// Clock difference between nodes tolerated for messages from the future.
const MAX_AHEAD: Duration = Duration::from_secs(60);
/// Longest label carried.
const MAX_LABEL: usize = 256;

/// Why a message is not used. Never holds a token (messages have none).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerEventError {
    /// Longer than [`MAX_MESSAGE`].
    #[error("viewer event longer than {MAX_MESSAGE} bytes")]
    TooLong,
    /// Not the expected JSON, or a field out of range.
    #[error("malformed viewer event: {0}")]
    Malformed(String),
    /// A format version this node does not speak.
    #[error("viewer event version {0} is not this node's")]
    Version(u8),
    /// Its tag does not verify with the registry secret.
    #[error("viewer event not authenticated by token_redis_key")]
    Unauthenticated,
    /// Older than [`MAX_AGE`], or stamped too far ahead of this node's clock.
    #[error("viewer event too old or from the future")]
    Stale,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    v: u8,
    node: String,
    change: String,
    key: String,
    label: String,
    one_shot: bool,
    view_only: bool,
    client: String,
    at_ms: u64,
    /// Bytes from and to the browser and duration in ms, on `closed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    traffic: Option<[u64; 3]>,
    #[serde(default)]
    mac: String,
}

impl Wire {
    fn canonical(&self) -> Canonical {
        let mut c = Canonical::new("darts-viewer-event", self.v)
            .str(&self.node)
            .str(&self.change)
            .str(&self.key)
            .str(&self.label)
            .bool(self.one_shot)
            .bool(self.view_only)
            .str(&self.client)
            .u64(self.at_ms)
            .bool(self.traffic.is_some());
        for n in self.traffic.unwrap_or_default() {
            c = c.u64(n);
        }
        c
    }
}

/// The message announcing `ev`, sent by `node` at `now`.
pub fn encode(ev: &ViewerEvent, node: &str, seal: &SealKey, now: SystemTime) -> String {
    let mut wire = Wire {
        v: VERSION,
        node: node.to_owned(),
        change: match ev.change {
            ViewerChange::Opened => "opened",
            ViewerChange::Closed => "closed",
        }
        .to_owned(),
        key: ev.key.to_hex(),
        label: ev.label.to_string(),
        one_shot: ev.one_shot,
        view_only: ev.view_only,
        client: ev.client.to_string(),
        at_ms: unix_ms(now),
        traffic: ev.traffic.map(|t| {
            [
                t.from_client,
                t.to_client,
                u64::try_from(t.duration.as_millis()).unwrap_or(u64::MAX),
            ]
        }),
        mac: String::new(),
    };
    wire.mac = Authenticator::new(seal, MAC_LABEL).sign(&wire.canonical());
    serde_json::to_string(&wire).unwrap_or_default()
}

/// An authenticated message's sending node, tag and event (origin `Peer`).
pub fn decode(
    message: &[u8],
    seal: &SealKey,
    now: SystemTime,
) -> Result<(String, String, ViewerEvent), PeerEventError> {
    if message.len() > MAX_MESSAGE {
        return Err(PeerEventError::TooLong);
    }
    let wire: Wire =
        serde_json::from_slice(message).map_err(|e| PeerEventError::Malformed(e.to_string()))?;
    if wire.v != VERSION {
        return Err(PeerEventError::Version(wire.v));
    }
    if !Authenticator::new(seal, MAC_LABEL).verify(&wire.canonical(), &wire.mac) {
        return Err(PeerEventError::Unauthenticated);
    }
    let at = UNIX_EPOCH + Duration::from_millis(wire.at_ms);
    let fresh = match now.duration_since(at) {
        Ok(age) => age <= MAX_AGE,
        Err(ahead) => ahead.duration() <= MAX_AHEAD,
    };
    if !fresh {
        return Err(PeerEventError::Stale);
    }
    let malformed = |what: &str| PeerEventError::Malformed(what.to_owned());
    let change = match wire.change.as_str() {
        "opened" => ViewerChange::Opened,
        "closed" => ViewerChange::Closed,
        _ => return Err(malformed("unknown change")),
    };
    let key = TokenKey::from_hex(&wire.key).ok_or_else(|| malformed("key"))?;
    let client: SocketAddr = wire.client.parse().map_err(|_| malformed("client"))?;
    if wire.label.is_empty() || wire.label.len() > MAX_LABEL {
        return Err(malformed("label"));
    }
    let traffic = wire.traffic.map(|[from_client, to_client, ms]| Traffic {
        from_client,
        to_client,
        duration: Duration::from_millis(ms),
    });
    if (change == ViewerChange::Closed) != traffic.is_some() {
        return Err(malformed("traffic"));
    }
    let event = ViewerEvent {
        label: Arc::from(wire.label.as_str()),
        key,
        origin: RouteOrigin::Peer,
        change,
        one_shot: wire.one_shot,
        view_only: wire.view_only,
        client,
        traffic,
    };
    Ok((wire.node, wire.mac, event))
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(change: ViewerChange) -> ViewerEvent {
        ViewerEvent {
            label: "darts-s1".into(),
            key: TokenKey::of("tok"),
            origin: RouteOrigin::Registry,
            change,
            one_shot: true,
            view_only: false,
            client: "192.0.2.1:5000".parse().unwrap(),
            traffic: (change == ViewerChange::Closed).then_some(Traffic {
                from_client: 1,
                to_client: 2,
                duration: Duration::from_millis(3),
            }),
        }
    }

    #[test]
    fn events_round_trip_and_tampering_is_refused() {
        let seal = SealKey::from_secret(&[4u8; 32]);
        let now = SystemTime::now();
        for change in [ViewerChange::Opened, ViewerChange::Closed] {
            let ev = event(change);
            let text = encode(&ev, "node-a", &seal, now);
            let (node, _, got) = decode(text.as_bytes(), &seal, now).unwrap();
            assert_eq!(node, "node-a");
            let mut want = ev.clone();
            want.origin = RouteOrigin::Peer;
            assert_eq!(got, want);
            let wire: serde_json::Value = serde_json::from_str(&text).unwrap();
            for (field, value) in [
                ("label", serde_json::Value::from("darts-victim")),
                ("key", TokenKey::of("other").to_hex().into()),
                ("one_shot", false.into()),
                ("change", "opened".into()),
                ("node", "node-b".into()),
                ("at_ms", 1.into()),
            ] {
                let mut w = wire.clone();
                if w[field] == value {
                    continue;
                }
                w[field] = value;
                let err = decode(w.to_string().as_bytes(), &seal, now).unwrap_err();
                assert!(
                    matches!(err, PeerEventError::Unauthenticated),
                    "{field}: {err}"
                );
            }
            let other = SealKey::from_secret(&[5u8; 32]);
            assert!(decode(text.as_bytes(), &other, now).is_err());
            // Too old, or from too far ahead.
            assert!(matches!(
                decode(
                    text.as_bytes(),
                    &seal,
                    now + MAX_AGE + Duration::from_secs(1)
                ),
                Err(PeerEventError::Stale)
            ));
            assert!(matches!(
                decode(text.as_bytes(), &seal, now - Duration::from_secs(120)),
                Err(PeerEventError::Stale)
            ));
        }
        assert!(matches!(
            decode(&[b' '; MAX_MESSAGE + 1], &seal, now),
            Err(PeerEventError::TooLong)
        ));
    }
}
