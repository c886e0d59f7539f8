//! The peer's side of node requests (`/api/nodes/*`): the signature, the calling node's
//! right to ask (`fallback_accept_from`) and the hop list are checked before anything
//! else; then the request runs for the user the calling node authenticated, with no
//! administrator rights.

use http::{Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::error::ApiError;
use super::routes::Endpoint;
use super::sessions::{self, CreateBody};
use super::wire::{self, Body};
use super::{Call, Inner};
use crate::nodes::protocol::{Act, CreateFor, ForUser, PeerStatus, Want};
use crate::nodes::{sign, MAX_HOPS};
use crate::session::Caller;

pub(super) async fn serve(
    app: &Inner,
    endpoint: Endpoint,
    call: &Call,
    body: Incoming,
) -> Result<Response<Body>, ApiError> {
    let settings = app.nodes.settings(&call.config);
    // A node without the key does not take part: its node endpoints do not exist.
    let Some(key) = settings.key.clone() else {
        return Err(ApiError::NotFound);
    };
    let bytes = wire::read_body(&call.headers, body).await?;
    let verified = sign::verify(
        &key,
        &app.nodes.nonces,
        &call.headers,
        "POST",
        &call.path,
        &bytes,
        crate::session::now(),
    )
    .map_err(|e| {
        tracing::warn!(client.addr = %call.client, problem = %e, "node request refused");
        ApiError::NodeRefused(e.to_string())
    })?;
    if !settings.accept_from.allows(&verified.node, call.client) {
        tracing::warn!(node = %verified.node, client.addr = %call.client, "node not in fallback_accept_from");
        return Err(ApiError::NodeNotAllowed(verified.node));
    }
    // Creations and actions change something for a user: they must have been signed for
    // this very node, so a peer cannot replay one meant for another. Status and list are
    // read-only and may be asked of an address whose node is not known yet.
    let changes = matches!(endpoint, Endpoint::NodeCreate | Endpoint::NodeAct);
    if (changes || !verified.to.is_empty()) && verified.to != settings.name {
        tracing::warn!(node = %verified.node, to = %verified.to, "node request meant for another node: refused");
        return Err(ApiError::NodeRefused(format!(
            "request meant for node {:?}, this is {}",
            verified.to, settings.name
        )));
    }
    if verified.hops.contains(&settings.name) || verified.hops.len() > MAX_HOPS {
        tracing::warn!(node = %verified.node, hops = %verified.hops.join(","), "node request loops: refused");
        return Err(ApiError::NodeLoop(settings.name.clone()));
    }
    let user = |u: &str| -> Result<Caller, ApiError> {
        if u.trim().is_empty() || u.len() > 256 {
            return Err(ApiError::invalid("user", "a user name is needed"));
        }
        Ok(Caller::user(u))
    };
    match endpoint {
        Endpoint::NodeStatus => {
            let want: Want = wire::parse_json(&bytes)?;
            let room = app.manager.room_for(want.cpu, want.memory_mb, want.gpu);
            let status = PeerStatus {
                node: settings.name.clone(),
                fits: room.refusals.is_empty(),
                refusals: room.refusals.iter().map(|r| r.code().to_owned()).collect(),
                sessions: room.sessions,
                max_sessions: room.max_sessions,
                load: room.load,
                memory_available_mb: room.memory_available_mb,
                gpus_free: room.gpus_free,
            };
            Ok(wire::json(StatusCode::OK, &status))
        }
        Endpoint::NodeCreate => {
            let request: CreateFor = wire::parse_json(&bytes)?;
            let form: CreateBody = serde_json::from_value(request.form)
                .map_err(|e| ApiError::BadJson(format!("form: {e}")))?;
            let mut caller = user(&request.user)?;
            caller.remote = request.remote;
            tracing::info!(node = %verified.node, user = %caller.user, "creation asked by a peer");
            sessions::create_for(app, call, &caller, &form, Some(&verified.hops)).await
        }
        Endpoint::NodeList => {
            let request: ForUser = wire::parse_json(&bytes)?;
            let caller = user(&request.user)?;
            let list = sessions::local_views(app, call, &caller);
            Ok(wire::json(
                StatusCode::OK,
                &json!({ "node": settings.name, "node_url": app.public_base(call), "sessions": list }),
            ))
        }
        Endpoint::NodeAct => {
            let act: Act = wire::parse_json(&bytes)?;
            let caller = user(&act.user)?;
            sessions::act_here(app, call, &caller, &act.session, act.action, true).await
        }
        _ => Err(ApiError::NotFound),
    }
}
