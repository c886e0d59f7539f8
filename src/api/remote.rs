//! The user's side of several nodes: a creation this node has no room for goes to the
//! best peer, and actions on a session held by a peer run there for the same user.

use http::{Response, StatusCode};
use serde_json::json;

use super::error::ApiError;
use super::sessions::CreateBody;
use super::wire::{self, Body};
use super::{Call, Inner};
use crate::nodes::protocol::{Act, Action, CreateFor, Want};
use crate::session::{Caller, CreateRequest, SessionError};

/// Asks the peers to create the session this node refused with `local` (lack of room).
/// `hops`: the nodes the request went through before this one.
pub(super) async fn fallback(
    app: &Inner,
    call: &Call,
    caller: &Caller,
    form: &CreateBody,
    req: &CreateRequest,
    local: SessionError,
    hops: &[String],
) -> Result<Response<Body>, ApiError> {
    let settings = app.nodes.settings(&call.config);
    if settings.key.is_none() || settings.peers.is_empty() {
        return Err(local.into());
    }
    let config = &call.config;
    let want = Want {
        cpu: req.cpu.unwrap_or(config.snapshot_alloc_cpu),
        memory_mb: (req.memory_gb.unwrap_or(config.snapshot_alloc_mem) * 1024.0).round() as u64,
        gpu: req.gpu,
    };
    let request = CreateFor {
        user: caller.user.clone(),
        remote: caller.remote.clone(),
        form: json!(form),
    };
    match app.nodes.place(&settings, &want, &request, hops).await {
        Ok((peer, answer)) => {
            tracing::info!(user = %caller.user, peer = %peer.url, node = answer.body["node"].as_str().unwrap_or("?"), "session placed on a peer");
            Ok(wire::json(StatusCode::CREATED, &answer.body))
        }
        Err(tried) => {
            tracing::info!(user = %caller.user, peers = tried.len(), "no peer took the session");
            Err(ApiError::NoRoomAnywhere { local, tried })
        }
    }
}

/// Runs `action` on session `name` of peer `node` for `caller`; the peer's answer is
/// passed on as it is (same shapes as this node's endpoints).
pub(super) async fn act(
    app: &Inner,
    call: &Call,
    caller: &Caller,
    name: &str,
    node: &str,
    action: Action,
) -> Result<Response<Body>, ApiError> {
    let settings = app.nodes.settings(&call.config);
    if settings.key.is_none() {
        return Err(ApiError::Session(SessionError::NotFound));
    }
    let act = Act {
        user: caller.user.clone(),
        session: name.to_owned(),
        action,
    };
    let (_, answer) = app
        .nodes
        .act(&settings, node, &act)
        .await
        .map_err(|e| ApiError::PeerUnavailable(e.to_string()))?;
    Ok(wire::json(answer.status, &answer.body))
}
