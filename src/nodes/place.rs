//! Choosing a peer and talking to every peer at once: statuses (cached), the creation on
//! the best peer, the sessions of a user on every peer, and actions on a peer's session.
//! Every exchange is bounded (`fallback_timeout`, `fallback_create_timeout`); a peer that
//! does not answer in time is skipped and named in the result.

use futures_util::future::join_all;
use serde_json::{json, Value};

use super::client::{self, Answer, Destination, PeerError};
use super::protocol::{self, Act, CreateFor, ForUser, PeerStatus, Want};
use super::settings::{Peer, Settings};
use super::{Nodes, MAX_HOPS};

/// A peer that could not take the request, and why (shown to the user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub peer: String,
    pub reason: String,
}

/// The outcome of asking every peer for its sessions.
#[derive(Debug, Default)]
pub struct Gathered {
    /// Sessions as the peers describe them, each with `node` and `node_url` set.
    pub sessions: Vec<Value>,
    /// One entry per peer: `{"url", "node", "ok", "error"}`.
    pub peers: Vec<Value>,
}

impl Nodes {
    /// Every peer's status for `want`, asked in parallel within `fallback_timeout`.
    pub async fn statuses(
        &self,
        settings: &Settings,
        want: &Want,
        hops: &[String],
    ) -> Vec<(Peer, Result<PeerStatus, String>)> {
        let body = json!(want);
        let asks = settings.peers.iter().map(|peer| {
            let body = &body;
            async move {
                if let Some(cached) = self.cached_status(peer, want, settings.status_cache) {
                    return (peer.clone(), cached);
                }
                let status = client::post(
                    settings,
                    peer,
                    Destination::Any,
                    protocol::STATUS,
                    body,
                    hops,
                    settings.timeout,
                )
                .await
                .map_err(|e| e.to_string())
                .and_then(|a| parse_status(&a));
                if let Err(e) = &status {
                    tracing::info!(peer = %peer.url, error = %e, "no status from peer");
                }
                self.remember_status(peer, want, status.clone());
                (peer.clone(), status)
            }
        });
        join_all(asks).await
    }

    /// Creates the session on the best peer able to take it. `hops` are the nodes the
    /// request has already been through (empty on the node the user talks to).
    pub async fn place(
        &self,
        settings: &Settings,
        want: &Want,
        request: &CreateFor,
        hops: &[String],
    ) -> Result<(Peer, Answer), Vec<Skipped>> {
        let mut skipped = Vec::new();
        if settings.key.is_none() || settings.peers.is_empty() {
            return Err(skipped);
        }
        if hops.len() + 1 >= MAX_HOPS {
            skipped.push(Skipped {
                peer: "*".into(),
                reason: format!("the request already went through {} nodes", hops.len()),
            });
            return Err(skipped);
        }
        let statuses = self.statuses(settings, want, hops).await;
        let mut candidates = Vec::new();
        for (peer, status) in statuses {
            match status {
                Err(e) => skipped.push(Skipped {
                    peer: peer.url.clone(),
                    reason: e,
                }),
                Ok(s) if s.node == settings.name || hops.contains(&s.node) => {
                    skipped.push(Skipped {
                        peer: peer.url.clone(),
                        reason: format!("node {} is already on the request's path", s.node),
                    });
                }
                Ok(s) if !s.fits => skipped.push(Skipped {
                    peer: peer.url.clone(),
                    reason: format!("no room ({})", s.refusals.join(", ")),
                }),
                Ok(s) => candidates.push((peer, s)),
            }
        }
        let body = json!(request);
        for (peer, status) in rank(candidates) {
            let answer = client::post(
                settings,
                &peer,
                Destination::Node(&status.node),
                protocol::CREATE,
                &body,
                hops,
                settings.create_timeout,
            )
            .await;
            self.forget_status(&peer);
            match answer {
                Ok(a) if a.status.is_success() => {
                    tracing::info!(peer = %peer.url, node = %status.node, user = %request.user, "session created on a peer");
                    return Ok((peer, a));
                }
                Ok(a) => {
                    tracing::info!(peer = %peer.url, code = a.code(), "peer refused the session");
                    skipped.push(Skipped {
                        peer: peer.url.clone(),
                        reason: a.message(),
                    });
                }
                Err(e) => {
                    tracing::warn!(peer = %peer.url, error = %e, "peer failed during a creation");
                    skipped.push(Skipped {
                        peer: peer.url.clone(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        Err(skipped)
    }

    /// The sessions `user` holds on every peer.
    pub async fn gather(&self, settings: &Settings, user: &str) -> Gathered {
        let body = json!(ForUser {
            user: user.to_owned()
        });
        let asks = settings.peers.iter().map(|peer| {
            let body = &body;
            async move {
                let answer = client::post(
                    settings,
                    peer,
                    Destination::Any,
                    protocol::LIST,
                    body,
                    &[],
                    settings.timeout,
                )
                .await;
                (peer, answer)
            }
        });
        let mut gathered = Gathered::default();
        for (peer, answer) in join_all(asks).await {
            match answer.map_err(|e| e.to_string()).and_then(ok_body) {
                Ok(body) => {
                    let node = body["node"].as_str().unwrap_or_default().to_owned();
                    self.learn_peer(&node, peer);
                    if let Some(list) = body["sessions"].as_array() {
                        for s in list {
                            let mut s = s.clone();
                            s["node"] = json!(node);
                            s["node_url"] = json!(peer.url);
                            gathered.sessions.push(s);
                        }
                    }
                    gathered
                        .peers
                        .push(json!({ "url": peer.url, "node": node, "ok": true }));
                }
                Err(e) => {
                    tracing::info!(peer = %peer.url, error = %e, "peer did not list its sessions");
                    gathered
                        .peers
                        .push(json!({ "url": peer.url, "node": null, "ok": false, "error": e }));
                }
            }
        }
        gathered
    }

    /// Runs `act` on the peer whose node name is `node` (statuses name the nodes; a peer
    /// not asked yet is asked for its list first).
    pub async fn act(
        &self,
        settings: &Settings,
        node: &str,
        act: &Act,
    ) -> Result<(Peer, Answer), NodeActError> {
        let peer = self.peer_named(settings, node, &act.user).await?;
        let timeout = match act.action {
            protocol::Action::Stop => settings.create_timeout,
            _ => settings.timeout,
        };
        let answer = client::post(
            settings,
            &peer,
            Destination::Node(node),
            protocol::ACT,
            &json!(act),
            &[],
            timeout,
        )
        .await
        .map_err(|e| NodeActError::Peer(peer.url.clone(), e))?;
        Ok((peer, answer))
    }

    async fn peer_named(
        &self,
        settings: &Settings,
        node: &str,
        user: &str,
    ) -> Result<Peer, NodeActError> {
        if let Some(p) = self.known_peer(node) {
            if settings.peers.contains(&p) {
                return Ok(p);
            }
        }
        let body = json!(ForUser {
            user: user.to_owned()
        });
        for peer in &settings.peers {
            if let Ok(a) = client::post(
                settings,
                peer,
                Destination::Any,
                protocol::LIST,
                &body,
                &[],
                settings.timeout,
            )
            .await
            {
                if a.body["node"].as_str() == Some(node) {
                    self.learn_peer(node, peer);
                    return Ok(peer.clone());
                }
            }
        }
        Err(NodeActError::UnknownNode(node.to_owned()))
    }
}

/// Why an action on a peer's session failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeActError {
    #[error("no peer is called {0}")]
    UnknownNode(String),
    #[error("{0}: {1}")]
    Peer(String, PeerError),
}

/// Peers that fit, best first: the emptiest (share of session slots in use), then the
/// order of `fallback_servers` (operators list their preferred peers first). Memory and
/// load are already judged by each peer's own `fits`; as ranks they would only add
/// noise between peers that share a host or a hardware model.
pub fn rank(mut candidates: Vec<(Peer, PeerStatus)>) -> Vec<(Peer, PeerStatus)> {
    candidates.sort_by(|(_, a), (_, b)| a.occupancy().total_cmp(&b.occupancy()));
    candidates
}

fn parse_status(answer: &Answer) -> Result<PeerStatus, String> {
    let body = ok_body(answer.clone())?;
    serde_json::from_value(body).map_err(|e| format!("malformed status: {e}"))
}

fn ok_body(answer: Answer) -> Result<Value, String> {
    if answer.status.is_success() {
        Ok(answer.body)
    } else {
        Err(format!(
            "refused ({} {}): {}",
            answer.status.as_u16(),
            answer.code(),
            answer.message()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(node: &str, sessions: u32, max: u32, mem: u64) -> PeerStatus {
        PeerStatus {
            node: node.into(),
            fits: true,
            refusals: vec![],
            sessions,
            max_sessions: max,
            load: Some(0.1),
            memory_available_mb: Some(mem),
            gpus_free: 0,
        }
    }

    fn peer(n: &str) -> Peer {
        Peer::parse(&format!("https://{n}.example/darts"), "/darts").unwrap()
    }

    #[test]
    fn the_emptiest_peer_comes_first_then_the_list() {
        let ranked = rank(vec![
            (peer("b"), status("b", 1, 2, 8000)),
            (peer("c"), status("c", 0, 2, 1000)),
            (peer("d"), status("d", 0, 4, 1000)),
            (peer("e"), status("e", 0, 0, 4000)),
        ]);
        let order: Vec<&str> = ranked.iter().map(|(_, s)| s.node.as_str()).collect();
        assert_eq!(order, ["c", "d", "e", "b"]);
    }
}
