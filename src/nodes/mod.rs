//! Several darts nodes as one service (`fallback_servers`).
//!
//! Any node is an entry point. When the local node lacks room for a session, it asks its
//! peers for their status (cached briefly), picks the best one able to take the request
//! and asks it to create the session for the user it has authenticated: the password
//! never leaves the node that checked it. Every node-to-node request is signed with the
//! shared `fallback_key` ([`sign`]), travels over verified TLS ([`client`]) and carries
//! the list of nodes it went through, so a request never comes back to a node it left.
//! The user lands on the peer's connect page through a one-time login hand-off, and the
//! Manage page of any node lists the user's sessions on every peer.

pub mod client;
pub mod place;
pub mod protocol;
pub mod settings;
pub mod sign;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::config::Config;
use protocol::{PeerStatus, Want};
pub use settings::{Peer, Settings};

/// A peer's status (or why it has none) and when it was asked.
type CachedStatus = (Instant, Result<PeerStatus, String>);

/// Most nodes a request may go through.
pub const MAX_HOPS: usize = 4;

/// The node's peer machinery, shared by every request.
#[derive(Debug)]
pub struct Nodes {
    prefix: String,
    /// Settings of the configuration last seen; rebuilt when a reload replaces it.
    current: Mutex<Option<(Arc<Config>, Arc<Settings>)>>,
    pub nonces: sign::NonceCache,
    statuses: Mutex<HashMap<(String, Want), CachedStatus>>,
    /// Peers by the node name they gave (for actions on their sessions).
    names: Mutex<HashMap<String, Peer>>,
}

impl Nodes {
    /// `prefix`: this node's URL prefix (`/darts`, `""` at the root).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.trim_end_matches('/').to_owned(),
            current: Mutex::new(None),
            nonces: sign::NonceCache::default(),
            statuses: Mutex::new(HashMap::new()),
            names: Mutex::new(HashMap::new()),
        }
    }

    /// The settings for `config` (built once per configuration).
    pub fn settings(&self, config: &Arc<Config>) -> Arc<Settings> {
        let mut current = lock(&self.current);
        if let Some((c, s)) = current.as_ref() {
            if Arc::ptr_eq(c, config) {
                return s.clone();
            }
        }
        let (settings, problems) = Settings::build(config, &self.prefix);
        for (key, problem) in &problems {
            tracing::error!(key, problem = %problem, "peer settings");
        }
        let settings = Arc::new(settings);
        *current = Some((config.clone(), settings.clone()));
        lock(&self.statuses).clear();
        settings
    }

    fn cached_status(
        &self,
        peer: &Peer,
        want: &Want,
        ttl: std::time::Duration,
    ) -> Option<Result<PeerStatus, String>> {
        let statuses = lock(&self.statuses);
        let (at, status) = statuses.get(&(peer.url.clone(), want.clone()))?;
        (at.elapsed() < ttl).then(|| status.clone())
    }

    fn remember_status(&self, peer: &Peer, want: &Want, status: Result<PeerStatus, String>) {
        if let Ok(s) = &status {
            self.learn_peer(&s.node, peer);
        }
        let mut statuses = lock(&self.statuses);
        if statuses.len() > 4096 {
            statuses.clear();
        }
        statuses.insert((peer.url.clone(), want.clone()), (Instant::now(), status));
    }

    fn known_peer(&self, node: &str) -> Option<Peer> {
        lock(&self.names).get(node).cloned()
    }

    fn learn_peer(&self, node: &str, peer: &Peer) {
        let mut names = lock(&self.names);
        if names.len() > 1024 {
            names.clear();
        }
        names.insert(node.to_owned(), peer.clone());
    }

    /// Forgets what a peer said about itself (it just took a session, or failed).
    pub fn forget_status(&self, peer: &Peer) {
        lock(&self.statuses).retain(|(url, _), _| *url != peer.url);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
