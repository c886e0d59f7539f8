//! The web service on the gateway's port: the landing, connect and manage pages, and the
//! JSON API they use (also meant for scripts; described by `/api/openapi.json`).
//!
//! [`DartsApp`] is the gateway's application hook: the gateway offers it every request
//! under the prefix that is not a websocket upgrade. Every answer carries the security
//! headers; every state-changing API request needs the login cookie, the login's CSRF
//! token in `X-CSRF-Token` and, when the browser sends one, an `Origin` of this server.
//! The second factor (`POST /api/login/mfa`) needs instead the `darts_mfa` cookie of the
//! pending login and that pending login's CSRF token.
//! Every action on a session is authorised by the session manager against the caller.

mod account;
pub mod chain_login;
pub mod error;
mod handoff;
pub mod login;
pub mod logins;
mod nodes;
mod openapi;
mod pages;
pub mod rate;
mod remote;
pub mod routes;
mod server;
mod sessions;
pub mod wire;

use std::net::IpAddr;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Instant;

use darts_proxy::app::{App, AppContext, AppFuture};
use http::{header, HeaderMap, Method, Request, Response};
use hyper::body::Incoming;

use crate::auth::mfa::{MfaLimits, MfaStore};
use crate::config::Config;
use crate::session::{Caller, Manager};
pub use error::ApiError;
pub use login::{LoginCheck, LoginOutcome, Mailer};
use logins::{Login, Logins, PendingLogin};
use rate::Backoff;
use routes::{Endpoint, Match};
use wire::Body;

/// What the web service is built from.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    pub manager: Arc<Manager>,
    pub login: Arc<dyn LoginCheck>,
    /// Sends e-mail login links and second-factor codes; `None` refuses e-mail logins,
    /// and every login when `check_user_mfa` is on.
    pub mailer: Option<Arc<dyn Mailer>>,
    /// No authenticator is configured (every user name is accepted; told to the pages).
    pub open: bool,
    /// The gateway's prefix (`/darts`, or `/` for none).
    pub prefix: String,
}

/// The pages and API, as the gateway's application.
#[derive(Debug, Clone)]
pub struct DartsApp {
    /// Replaced whole when authentication is reloaded; a request keeps the one it began with.
    inner: Arc<RwLock<Arc<Inner>>>,
}

#[derive(Debug)]
struct Inner {
    manager: Arc<Manager>,
    login: Arc<dyn LoginCheck>,
    mailer: Option<Arc<dyn Mailer>>,
    open: bool,
    /// Without a trailing slash: `""` at the root.
    prefix: String,
    // Shared by every `Inner` a reload makes: logins and back-off outlive a reload.
    logins: Arc<Logins>,
    backoff: Arc<Backoff>,
    /// Pending second-factor codes; `None` only if the system's random generator failed.
    mfa: Option<Arc<MfaStore>>,
    /// The address darts listens on (`http://127.0.0.1:6080/darts`), the base of mailed
    /// links when `service_url` is not set.
    listen_base: Arc<OnceLock<String>>,
    /// Peers (`fallback_servers`) and the node-to-node machinery.
    nodes: Arc<crate::nodes::Nodes>,
}

impl DartsApp {
    pub fn new(opts: ApiOptions) -> Self {
        let free = opts.manager.config().login_max_failures;
        let per_user = opts.manager.config().login_max_per_user;
        Self {
            inner: Arc::new(RwLock::new(Arc::new(Inner {
                manager: opts.manager,
                login: opts.login,
                mailer: opts.mailer,
                open: opts.open,
                prefix: opts.prefix.trim_end_matches('/').to_owned(),
                logins: Arc::new(Logins::new(per_user)),
                backoff: Arc::new(Backoff::new(free)),
                mfa: MfaStore::new(MfaLimits::default())
                    .map_err(|e| tracing::error!(error = %e, "no second-factor store"))
                    .ok()
                    .map(Arc::new),
                listen_base: Arc::new(OnceLock::new()),
                nodes: Arc::new(crate::nodes::Nodes::new(&opts.prefix)),
            }))),
        }
    }

    fn current(&self) -> Arc<Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Tells the application where the gateway listens, once it is bound.
    pub fn set_listen_base(&self, base: String) {
        let _ = self.current().listen_base.set(base);
    }

    /// Swaps the authentication (configuration reload). Logins, pending second factors
    /// and back-off stay; requests under way finish with the previous methods.
    pub fn set_auth(
        &self,
        login: Arc<dyn LoginCheck>,
        mailer: Option<Arc<dyn Mailer>>,
        open: bool,
    ) {
        let mut guard = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let old = guard.clone();
        *guard = Arc::new(Inner {
            manager: old.manager.clone(),
            login,
            mailer,
            open,
            prefix: old.prefix.clone(),
            logins: old.logins.clone(),
            backoff: old.backoff.clone(),
            mfa: old.mfa.clone(),
            listen_base: old.listen_base.clone(),
            nodes: old.nodes.clone(),
        });
    }
}

impl App for DartsApp {
    fn claims(&self, _method: &Method, path: &str) -> bool {
        routes::claims(path)
    }

    fn handle(&self, req: Request<Incoming>, ctx: AppContext) -> AppFuture {
        let inner = self.current();
        Box::pin(async move { inner.handle(req, ctx).await })
    }
}

/// One request, as the handlers see it.
#[derive(Debug)]
struct Call {
    config: Arc<Config>,
    headers: HeaderMap,
    query: Option<String>,
    /// The client, after trusted proxies.
    client: IpAddr,
    /// The peer is a trusted reverse proxy.
    from_proxy: bool,
    https: bool,
    cookie: Option<String>,
    login: Option<Login>,
    /// The `darts_mfa` cookie and the login it holds for its second factor.
    mfa_cookie: Option<String>,
    pending: Option<PendingLogin>,
    /// The `{…}` segment of the route.
    param: Option<String>,
    /// The path below the prefix, without query.
    path: String,
}

impl Call {
    /// The logged-in user as the session manager sees them.
    fn caller(&self) -> Result<Caller, ApiError> {
        let login = self.login.as_ref().ok_or(ApiError::LoginRequired)?;
        Ok(Caller {
            user: login.user.clone(),
            admin: login.is_admin(&self.config),
            remote: Some(self.client.to_string()),
        })
    }

    /// Whether the browser's `Origin` (if any) is this server.
    fn same_origin(&self) -> bool {
        let forwarded: Vec<String> = self
            .from_proxy
            .then(|| wire::request_origin(&self.headers, self.https, true))
            .flatten()
            .into_iter()
            .collect();
        darts_proxy::origin::allowed(&self.headers, &forwarded)
    }
}

impl Inner {
    async fn handle(self: Arc<Self>, req: Request<Incoming>, ctx: AppContext) -> Response<Body> {
        let started = Instant::now();
        let method = req.method().clone();
        let raw_path = req.uri().path().to_owned();
        let config = self.manager.config();
        let (parts, body) = req.into_parts();
        // One reading of the forwarding headers, the gateway's (its trusted proxies),
        // decides the client, whether its proxy is believed, and the scheme it used.
        let view = ctx.client;
        let (client, from_proxy) = (view.addr, view.via_proxy);
        let https = ctx.tls || view.https == Some(true);
        if self.open && !config.allow_open_access && wire::maybe_remote(&parts.headers, &view) {
            tracing::warn!(client = %client, path = %ctx.path, "refused: no authentication is configured and the request was forwarded (allow_open_access is off)");
            return wire::error(&ApiError::OpenAccessForwarded);
        }
        let cookie = wire::cookie(&parts.headers, logins::COOKIE).map(str::to_owned);
        let login = cookie.as_deref().and_then(|c| self.logins.find(c));
        let mfa_cookie = wire::cookie(&parts.headers, logins::MFA_COOKIE).map(str::to_owned);
        let pending = mfa_cookie
            .as_deref()
            .and_then(|c| self.logins.find_pending(c));
        let (endpoint, param) = match routes::find(&method, &ctx.path) {
            Match::Found(e, p) => (Some(e), p),
            Match::WrongMethod(allow) => {
                return wire::error(&ApiError::MethodNotAllowed { allow });
            }
            Match::NotFound => (None, None),
        };
        let user = login.as_ref().map(|l| l.user.clone());
        let call = Call {
            config,
            headers: parts.headers,
            query: parts.uri.query().map(str::to_owned),
            client,
            from_proxy,
            https,
            cookie,
            login,
            mfa_cookie,
            pending,
            param,
            path: ctx.path.clone(),
        };
        let response = match endpoint {
            Some(e) if e.is_page() => {
                pages::serve(&call, e, method == Method::HEAD, &raw_path).await
            }
            Some(e) => match self.api(e, &method, call, body).await {
                Ok(r) => r,
                Err(err) => {
                    if err.status().is_server_error() {
                        tracing::warn!(error = ?err, "API request failed");
                    }
                    wire::error(&err)
                }
            },
            None if ctx.path == "/api" || ctx.path.starts_with("/api/") => {
                wire::error(&ApiError::NotFound)
            }
            None => pages::not_found(),
        };
        // The path has no query (a login link's token is there); session names are not
        // secrets.
        tracing::debug!(
            method = %method,
            path = %ctx.path,
            status = response.status().as_u16(),
            client.addr = %client,
            user = user.as_deref().unwrap_or("-"),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "web request"
        );
        response
    }

    /// The API: access rules first, then the endpoint.
    async fn api(
        &self,
        endpoint: Endpoint,
        method: &Method,
        call: Call,
        body: Incoming,
    ) -> Result<Response<Body>, ApiError> {
        if endpoint.is_node() {
            return nodes::serve(self, endpoint, &call, body).await;
        }
        let public = matches!(
            endpoint,
            Endpoint::Config
                | Endpoint::Login
                | Endpoint::LoginMfa
                | Endpoint::LoginLink
                | Endpoint::LoginHandoff
                | Endpoint::Machines
                | Endpoint::OpenApi
        );
        let changes_state = method != Method::GET && method != Method::HEAD;
        if !public && call.login.is_none() {
            return Err(ApiError::LoginRequired);
        }
        if changes_state {
            let token = call
                .headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok());
            let token_ok = match endpoint {
                // Nothing to protect yet; the Origin check below still applies.
                Endpoint::Login => true,
                // Without a pending login the endpoint refuses anyway, with its own code.
                Endpoint::LoginMfa => call.pending.as_ref().is_none_or(|p| p.csrf_matches(token)),
                _ => call.login.as_ref().is_some_and(|l| l.csrf_matches(token)),
            };
            if !token_ok || !call.same_origin() {
                tracing::info!(client.addr = %call.client, endpoint = ?endpoint, "refused: CSRF check failed");
                return Err(ApiError::Csrf);
            }
        }
        match endpoint {
            Endpoint::Config => Ok(account::config(self, &call)),
            Endpoint::Login => account::login(self, &call, body).await,
            Endpoint::LoginMfa => account::login_mfa(self, &call, body).await,
            Endpoint::LoginLink => Ok(account::login_link(self, &call)),
            Endpoint::LoginHandoff => Ok(handoff::login(self, &call)),
            Endpoint::Logout => Ok(account::logout(self, &call)),
            Endpoint::Machines => Ok(server::machines(self)),
            Endpoint::Status => server::status(self, &call),
            Endpoint::OpenApi => Ok(openapi::document(&self.prefix)),
            Endpoint::ListSessions => sessions::list(self, &call).await,
            Endpoint::CreateSession => sessions::create(self, &call, body).await,
            Endpoint::GetSession
            | Endpoint::StopSession
            | Endpoint::ExtendSession
            | Endpoint::ConnectSession => sessions::act(self, &call, endpoint).await,
            Endpoint::Purge => sessions::purge(self, &call).await,
            Endpoint::Landing
            | Endpoint::ConnectPage
            | Endpoint::ManagePage
            | Endpoint::Asset
            | Endpoint::NodeStatus
            | Endpoint::NodeCreate
            | Endpoint::NodeList
            | Endpoint::NodeAct => Err(ApiError::NotFound),
        }
    }

    /// Where links point: `service_url`, else the address the client used, else the
    /// listening address. No trailing slash.
    fn public_base(&self, call: &Call) -> String {
        if !call.config.service_url.trim().is_empty() {
            return call
                .config
                .service_url
                .trim()
                .trim_end_matches('/')
                .to_owned();
        }
        match wire::request_origin(&call.headers, call.https, call.from_proxy) {
            Some(origin) => format!("{origin}{}", self.prefix),
            None => self.listen_base(),
        }
    }

    /// The base of links sent by mail: never taken from a request's headers (a forged
    /// `Host` would send the victim's link to another server).
    fn mail_base(&self, config: &Config) -> String {
        if !config.service_url.trim().is_empty() {
            return config.service_url.trim().trim_end_matches('/').to_owned();
        }
        self.listen_base()
    }

    fn listen_base(&self) -> String {
        self.listen_base
            .get()
            .cloned()
            .unwrap_or_else(|| format!("http://127.0.0.1{}", self.prefix))
    }

    /// `Set-Cookie` for the login cookie (`value` empty: remove it).
    fn login_cookie(&self, call: &Call, value: &str, max_age: u64) -> String {
        self.cookie(call, logins::COOKIE, value, max_age)
    }

    /// `Set-Cookie` for the cookie of a login waiting for its second factor.
    fn mfa_cookie(&self, call: &Call, value: &str, max_age: u64) -> String {
        self.cookie(call, logins::MFA_COOKIE, value, max_age)
    }

    fn cookie(&self, call: &Call, name: &str, value: &str, max_age: u64) -> String {
        let path = if self.prefix.is_empty() {
            "/"
        } else {
            &self.prefix
        };
        format!(
            "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
            if call.https { "; Secure" } else { "" }
        )
    }
}

/// Adds a `Set-Cookie` header to a response (one per cookie).
fn set_cookie(r: &mut Response<Body>, cookie: &str) {
    if let Ok(v) = http::HeaderValue::from_str(cookie) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}
