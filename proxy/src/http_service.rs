//! Request routing on the shared port. Every request ends in a [`Decision`]: a response
//! (health, metrics, static files, the application's pages, or a refusal), or a websocket
//! accepted for a route, which the listener hands to `session`. Nothing here spawns a
//! task or holds the connection.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::app::AppContext;
use crate::config::GatewayConfig;
use crate::events::RouteOrigin;
use crate::forwarded::{self, ClientView};
use crate::metrics::{Handshake, Metrics};
use crate::per_token::TokenViewers;
use crate::route::{Route, TokenKey};
use crate::session::Admitted;
use crate::static_files::{text_response, StaticFiles};
use crate::token::{redact_query, Lookup, TokenMap};
use crate::ws::handshake;
use crate::{origin, url};

type Body = Full<Bytes>;

/// What routing needs, built once per bind.
#[derive(Debug)]
pub(crate) struct Router {
    pub(crate) config: Arc<GatewayConfig>,
    pub(crate) tokens: Arc<TokenMap>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) web: Option<StaticFiles>,
    /// `max_viewers_per_token`; `None` without a limit.
    pub(crate) per_token: Option<Arc<TokenViewers>>,
}

/// How one request is answered.
#[derive(Debug)]
pub(crate) enum Decision {
    /// Send this response; the connection stays HTTP.
    Respond(Response<Body>),
    /// Send `response` (`101`), then run `session` on the upgraded connection.
    Upgrade {
        response: Response<Body>,
        session: Box<Admitted>,
    },
}

impl Router {
    pub(crate) async fn handle(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        tls: bool,
    ) -> Decision {
        if handshake::is_upgrade_request(req.headers()) {
            return self.upgrade(req, peer).await;
        }
        Decision::Respond(self.respond(req, peer, tls).await)
    }

    /// The browser behind a trusted reverse proxy; the peer itself otherwise.
    fn client_view(&self, req: &Request<Incoming>, peer: SocketAddr) -> ClientView {
        forwarded::resolve(req.headers(), peer.ip(), &self.config.trusted_proxies)
    }

    async fn respond(&self, req: Request<Incoming>, peer: SocketAddr, tls: bool) -> Response<Body> {
        self.metrics.http_request();
        if let Some(app) = &self.config.app {
            if let Some(rel) = self.config.relative_path(req.uri().path()) {
                if app.claims(req.method(), &rel) {
                    let ctx = AppContext {
                        peer,
                        tls,
                        path: rel,
                        client: self.client_view(&req, peer),
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
        let Some(rel) = self.config.relative_path(path) else {
            return text_response(StatusCode::NOT_FOUND, "not found\n");
        };
        tracing::trace!(client.addr = %peer, tls, path = %redact_query(&rel), "http request");
        if self.config.expose_metrics {
            match rel.as_str() {
                "/healthz" => return text_response(StatusCode::OK, "ok\n"),
                "/metrics" => {
                    let mut r = Response::new(Full::new(Bytes::from(self.metrics.render())));
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; version=0.0.4"),
                    );
                    return r;
                }
                _ => {}
            }
        }
        match &self.web {
            Some(web) => web.respond(&rel, path, head, req.headers()).await,
            None => text_response(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    /// Refusal of an upgrade: a status and a short reason, before anything is switched.
    fn refuse(
        &self,
        kind: Handshake,
        status: StatusCode,
        reason: &'static str,
        client: IpAddr,
    ) -> Decision {
        self.metrics.handshake(kind);
        tracing::info!(client.addr = %client, status = status.as_u16(), reason, "websocket refused");
        let mut r = text_response(status, reason);
        if status == StatusCode::UPGRADE_REQUIRED {
            r.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
        }
        Decision::Respond(r)
    }

    async fn upgrade(&self, mut req: Request<Incoming>, peer: SocketAddr) -> Decision {
        let client = self.client_view(&req, peer);
        let accept = match handshake::check(req.method(), req.version(), req.headers()) {
            Ok(a) => a,
            Err(e) => {
                return self.refuse(Handshake::BadRequest, e.status(), e.reason(), client.addr)
            }
        };
        if !origin_allowed(&self.config, &req, client.host.as_deref()) {
            return self.refuse(
                Handshake::OriginRefused,
                StatusCode::FORBIDDEN,
                "origin not allowed\n",
                client.addr,
            );
        }
        let token = token_of(&self.config, &req);
        let (route, found) = match self.find_route(token.as_deref()).await {
            Ok(r) => r,
            Err((kind, status, reason)) => return self.refuse(kind, status, reason, client.addr),
        };
        // A route found by its token takes one of the token's places for the session's life.
        let viewer_slot = match (&self.per_token, &found) {
            (Some(viewers), Some((key, _))) => match viewers.acquire(*key) {
                Some(slot) => Some(slot),
                None => {
                    return self.refuse(
                        Handshake::TooManyViewers,
                        StatusCode::TOO_MANY_REQUESTS,
                        "too many viewers on this link\n",
                        client.addr,
                    )
                }
            },
            _ => None,
        };
        self.metrics.handshake(Handshake::Accepted);
        let session = Box::new(Admitted {
            on_upgrade: hyper::upgrade::on(&mut req),
            route,
            found,
            // The proxy's port says nothing about the browser.
            viewer_addr: if client.via_proxy {
                SocketAddr::new(client.addr, 0)
            } else {
                peer
            },
            client,
            viewer_slot,
        });
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = response.headers_mut();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept.accept_key);
        if let Some(p) = accept.protocol {
            h.insert(header::SEC_WEBSOCKET_PROTOCOL, p);
        }
        Decision::Upgrade { response, session }
    }
}

/// The `Origin` rule, where the request's host may also be the one a trusted proxy
/// received (`X-Forwarded-Host`: the proxy may talk to darts as `127.0.0.1:6080`).
fn origin_allowed(
    config: &GatewayConfig,
    req: &Request<Incoming>,
    forwarded_host: Option<&str>,
) -> bool {
    let allow = &config.allowed_origins;
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
fn token_of(config: &GatewayConfig, req: &Request<Incoming>) -> Option<String> {
    if config.host_token {
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

impl Router {
    /// The route for an upgrade: the token's, or the single default target. Only a token
    /// this gateway does not know may wait on the shared registry, within its bounds.
    async fn find_route(&self, token: Option<&str>) -> Result<Found, Refusal> {
        match token {
            Some(token) => match self.tokens.lookup_shared_from(token).await {
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
                (Lookup::Unknown, _) => match &self.config.default_target {
                    Some(t) if self.tokens.is_empty() && !self.config.host_token => {
                        Ok((Route::new(t.clone()), None))
                    }
                    _ => Err((
                        Handshake::UnknownToken,
                        StatusCode::NOT_FOUND,
                        "unknown token\n",
                    )),
                },
            },
            None => match &self.config.default_target {
                Some(t) => Ok((Route::new(t.clone()), None)),
                None => Err((
                    Handshake::MissingToken,
                    StatusCode::NOT_FOUND,
                    "token missing: connect with ?token=...\n",
                )),
            },
        }
    }
}
