//! `GET /api/login/handoff?token=…`: a user authenticated by a peer node lands here.
//! The peer created the session through a signed request and passed the browser a
//! one-time token; it opens a login here and moves on to the session's connect page.

use std::time::Duration;

use http::{header, HeaderValue, Response, StatusCode};

use super::logins::LoginOrigin;
use super::wire::{self, Body};
use super::{set_cookie, Call, Inner};
use crate::session::record::is_session_name;

pub(super) fn login(app: &Inner, call: &Call) -> Response<Body> {
    let token = wire::query_id(call.query.as_deref(), "token");
    let handoff = token.as_deref().and_then(|t| app.logins.take_handoff(t));
    let Some((user, session)) = handoff.filter(|(_, s)| is_session_name(s)) else {
        tracing::info!(client.addr = %call.client, "unknown or expired hand-off");
        crate::audit::login(
            "",
            call.client,
            "node_handoff",
            Some("unknown or expired hand-off"),
        );
        return wire::error(&super::ApiError::LinkInvalid);
    };
    let lifetime = Duration::from_secs(call.config.login_lifetime.max(60));
    let Ok((cookie, _)) = app
        .logins
        .open(user.clone(), None, LoginOrigin::Peer, lifetime)
    else {
        return wire::error(&super::ApiError::Internal);
    };
    tracing::info!(user = %user, session = %session, client.addr = %call.client, "logged in by a peer's hand-off");
    crate::audit::login(&user, call.client, "node_handoff", None);
    // Relative to …/api/login/handoff; a redirect keeps the URL's fragment (the links).
    let mut r = wire::json(
        StatusCode::SEE_OTHER,
        &serde_json::json!({ "session": session }),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("../../connect/{session}")) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    set_cookie(&mut r, &app.login_cookie(call, &cookie, lifetime.as_secs()));
    r
}
