//! What nodes say to each other: four signed `POST` endpoints below the prefix, each
//! with a JSON body naming the user the calling node authenticated.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `POST /api/nodes/status` ([`Want`] → [`PeerStatus`]).
pub const STATUS: &str = "/api/nodes/status";
/// `POST /api/nodes/create` ([`CreateFor`] → the creation answer of `/api/sessions`,
/// plus `node`, `node_url` and `handoff_url`).
pub const CREATE: &str = "/api/nodes/create";
/// `POST /api/nodes/list` ([`ForUser`] → `{"node", "node_url", "sessions": [...]}`).
pub const LIST: &str = "/api/nodes/list";
/// `POST /api/nodes/act` ([`Act`] → the answer of the matching user endpoint).
pub const ACT: &str = "/api/nodes/act";

/// What a session would need.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Want {
    pub cpu: u32,
    pub memory_mb: u64,
    pub gpu: bool,
}

/// A peer's answer to [`STATUS`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub node: String,
    /// Whether the peer's own limits would take the session now.
    pub fits: bool,
    /// The codes of the limits that would refuse it.
    pub refusals: Vec<String>,
    pub sessions: u32,
    /// 0: no limit.
    pub max_sessions: u32,
    /// Load per core, 0–1 and above.
    pub load: Option<f64>,
    pub memory_available_mb: Option<u64>,
    pub gpus_free: usize,
}

impl PeerStatus {
    /// Share of the session slots in use (0 when there is no limit), for ranking.
    pub fn occupancy(&self) -> f64 {
        if self.max_sessions == 0 {
            0.0
        } else {
            f64::from(self.sessions) / f64::from(self.max_sessions)
        }
    }
}

/// A creation on behalf of a user of the calling node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateFor {
    pub user: String,
    /// The browser's address as the calling node saw it.
    pub remote: Option<String>,
    /// The form as the user sent it to the calling node; checked again here.
    pub form: Value,
}

/// Whose sessions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForUser {
    pub user: String,
}

/// An action on one session, for its owner (or an administrator of this node).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Act {
    pub user: String,
    pub session: String,
    pub action: Action,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Get,
    Connect,
    Extend,
    Stop,
}
