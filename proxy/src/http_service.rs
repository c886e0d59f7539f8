//! Request routing on the shared port: websocket upgrades, health, metrics, static files.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::client::ClientIo;
use crate::events::{CountingIo, RouteOrigin};
use crate::gateway::{next_session_id, spawn_session, ConnGuard, Shared};
use crate::metrics::Handshake;
use crate::pump::Limits;
use crate::session::{self, SessionOptions, Timers};
use crate::static_files::text_response;
use crate::token::{redact_query, Lookup, Route, TokenKey};
use crate::ws::handshake;
use crate::{forwarded, origin, url};

type Body = Full<Bytes>;

pub(crate) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    peer: SocketAddr,
    tls: bool,
    guard: Arc<Mutex<Option<ConnGuard>>>,
) -> Response<Body> {
    if handshake::is_upgrade_request(req.headers()) {
        return upgrade(&shared, req, peer, guard).await;
    }
    shared.metrics.http_request();
    if let Some(app) = &shared.config.app {
        if let Some(rel) = shared.config.relative_path(req.uri().path()) {
            if app.claims(req.method(), &rel) {
                let ctx = crate::app::AppContext {
                    peer,
                    tls,
                    path: rel,
                };
                return app.handle(req, ctx).await;
            }
        }
    }
    let head = match *req.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            let mut r = text_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
    };
    let path = req.uri().path();
    let Some(rel) = shared.config.relative_path(path) else {
        return text_response(StatusCode::NOT_FOUND, "not found\n");
    };
    tracing::trace!(client.addr = %peer, tls, path = %redact_query(&rel), "http request");
    if shared.config.expose_metrics {
        match rel.as_str() {
            "/healthz" => return text_response(StatusCode::OK, "ok\n"),
            "/metrics" => {
                let mut r = Response::new(Full::new(Bytes::from(shared.metrics.render())));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                return r;
            }
            _ => {}
        }
    }
    match &shared.web {
        Some(web) => web.respond(&rel, path, head, req.headers()).await,
        None => text_response(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// Refusal of an upgrade: a status and a short reason, before anything is switched.
fn refuse(
    shared: &Shared,
    kind: Handshake,
    status: StatusCode,
    reason: &'static str,
    client: IpAddr,
) -> Response<Body> {
    shared.metrics.handshake(kind);
    tracing::info!(client.addr = %client, status = status.as_u16(), reason, "websocket refused");
    let mut r = text_response(status, reason);
    if status == StatusCode::UPGRADE_REQUIRED {
        r.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
    }
    r
}

async fn upgrade(
    shared: &Arc<Shared>,
    mut req: Request<Incoming>,
    peer: SocketAddr,
    guard: Arc<Mutex<Option<ConnGuard>>>,
) -> Response<Body> {
    // The browser behind a trusted reverse proxy; the proxy itself otherwise.
    let client = forwarded::resolve(req.headers(), peer.ip(), &shared.config.trusted_proxies);
    // The proxy's port says nothing about the browser.
    let viewer_addr = if client.via_proxy {
        SocketAddr::new(client.addr, 0)
    } else {
        peer
    };
    let accept = match handshake::check(req.method(), req.version(), req.headers()) {
        Ok(a) => a,
        Err(e) => {
            return refuse(
                shared,
                Handshake::BadRequest,
                e.status(),
                e.reason(),
                client.addr,
            )
        }
    };
    if !origin_allowed(shared, &req, client.host.as_deref()) {
        return refuse(
            shared,
            Handshake::OriginRefused,
            StatusCode::FORBIDDEN,
            "origin not allowed\n",
            client.addr,
        );
    }
    let token = token_of(shared, &req);
    let (route, found) = match find_route(shared, token.as_deref()).await {
        Ok(r) => r,
        Err((kind, status, reason)) => return refuse(shared, kind, status, reason, client.addr),
    };
    // A route found by its token takes one of the token's places for the session's life.
    let viewer_slot = match (&shared.per_token, &found) {
        (Some(viewers), Some((key, _))) => match viewers.acquire(*key) {
            Some(slot) => Some(slot),
            None => {
                return refuse(
                    shared,
                    Handshake::TooManyViewers,
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many viewers on this link\n",
                    client.addr,
                )
            }
        },
        _ => None,
    };
    shared.metrics.handshake(Handshake::Accepted);
    let id = next_session_id(shared);
    let span = tracing::info_span!(
        "session",
        session.id = id,
        client.addr = %client.addr,
        via_proxy = client.via_proxy,
        label = route.label.as_deref().unwrap_or(""),
        target = %route.target,
    );
    let mut conn_guard = guard.lock().unwrap_or_else(|p| p.into_inner()).take();
    // A valid token: from here the connection is a session, no longer pending.
    if let Some(g) = &mut conn_guard {
        g.established();
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let shared2 = shared.clone();
    let viewer = match (&route.label, found) {
        (Some(label), Some((key, origin))) => {
            let sinks = crate::events::ViewerSinks {
                local: shared.config.viewer_events.clone(),
                // Another node's route: that node hears of its viewer through the registry.
                owner: (origin == RouteOrigin::Registry)
                    .then(|| shared.tokens.owner_events())
                    .flatten(),
            };
            crate::events::ViewerGuard::open(sinks, label.clone(), key, origin, &route, viewer_addr)
        }
        _ => None,
    }
    // Boxed, like the filter: a session task without one should not carry its size.
    .map(Box::new);
    spawn_session(shared, span, async move {
        let _guard = conn_guard;
        let _viewer_slot = viewer_slot;
        let mut viewer = viewer;
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade did not complete");
                return;
            }
        };
        let cfg = &shared2.config;
        let opts = SessionOptions {
            limits: Limits {
                read_chunk: cfg.read_chunk,
                max_frame: cfg.max_frame,
                max_message: cfg.max_message,
            },
            timers: Timers {
                connect: cfg.connect_timeout,
                idle: cfg.idle_timeout,
                heartbeat: cfg.heartbeat,
                frame: cfg.frame_timeout,
            },
            rfb_check: cfg.rfb_check,
        };
        let metrics = shared2.metrics.clone();
        let stop = shared2.shutdown.clone();
        tracing::info!("session opened");
        let (end, from_client, to_client) = match upgraded.downcast::<TokioIo<ClientIo>>() {
            Ok(parts) => {
                let early = parts.read_buf.len() as u64;
                let mut io = CountingIo::new(parts.io.into_inner());
                let end = session::run(&mut io, parts.read_buf, &route, &opts, metrics, stop).await;
                (end, io.read + early, io.written)
            }
            Err(upgraded) => {
                let mut io = CountingIo::new(TokioIo::new(upgraded));
                let end = session::run(&mut io, Bytes::new(), &route, &opts, metrics, stop).await;
                (end, io.read, io.written)
            }
        };
        if let Some(v) = &mut viewer {
            v.set_bytes(from_client, to_client);
        }
        shared2.metrics.session_end(end);
        tracing::info!(reason = end.as_str(), "session closed");
    });
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept.accept_key);
    if let Some(p) = accept.protocol {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, p);
    }
    r
}

/// The `Origin` rule, where the request's host may also be the one a trusted proxy
/// received (`X-Forwarded-Host`: the proxy may talk to darts as `127.0.0.1:6080`).
fn origin_allowed(shared: &Shared, req: &Request<Incoming>, forwarded_host: Option<&str>) -> bool {
    let allow = &shared.config.allowed_origins;
    if origin::allowed(req.headers(), allow) {
        return true;
    }
    let Some(host) = forwarded_host.and_then(|h| HeaderValue::from_str(h).ok()) else {
        return false;
    };
    let mut headers = http::HeaderMap::with_capacity(2);
    headers.insert(header::HOST, host);
    if let Some(o) = req.headers().get(header::ORIGIN) {
        headers.insert(header::ORIGIN, o.clone());
    }
    origin::allowed(&headers, allow)
}

type Refusal = (Handshake, StatusCode, &'static str);

/// The token of an upgrade request: `?token=`, or the `Host` header with `host_token`.
fn token_of(shared: &Shared, req: &Request<Incoming>) -> Option<String> {
    if shared.config.host_token {
        req.headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| h.rsplit_once(':').map_or(h, |(host, _)| host).to_owned())
    } else {
        url::token_from_query(req.uri().query())
    }
}

/// The route a websocket leads to and, when a token named it, the token's digest and
/// where the route came from.
type Found = (Route, Option<(TokenKey, RouteOrigin)>);

/// The route for an upgrade: the token's, or the single default target. Only a token
/// this gateway does not know may wait on the shared registry, within its bounds.
async fn find_route(shared: &Shared, token: Option<&str>) -> Result<Found, Refusal> {
    match token {
        Some(token) => match shared.tokens.lookup_shared_from(token).await {
            (Lookup::Found(route), origin) => Ok((route, Some((TokenKey::of(token), origin)))),
            (Lookup::Expired, _) => Err((
                Handshake::ExpiredToken,
                StatusCode::NOT_FOUND,
                "token expired\n",
            )),
            (Lookup::Unavailable, _) => Err((
                Handshake::RegistryUnavailable,
                StatusCode::SERVICE_UNAVAILABLE,
                "token registry unavailable, try again later\n",
            )),
            (Lookup::Busy, _) => Err((
                Handshake::Overloaded,
                StatusCode::SERVICE_UNAVAILABLE,
                "token registry busy, try again\n",
            )),
            (Lookup::Unknown, _) => match &shared.config.default_target {
                Some(t) if shared.tokens.is_empty() && !shared.config.host_token => {
                    Ok((Route::new(t.clone()), None))
                }
                _ => Err((
                    Handshake::UnknownToken,
                    StatusCode::NOT_FOUND,
                    "unknown token\n",
                )),
            },
        },
        None => match &shared.config.default_target {
            Some(t) => Ok((Route::new(t.clone()), None)),
            None => Err((
                Handshake::MissingToken,
                StatusCode::NOT_FOUND,
                "token missing: connect with ?token=...\n",
            )),
        },
    }
}
