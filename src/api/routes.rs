//! The route table: every page and endpoint the application answers, below the prefix.
//! The same table serves the dispatcher and the test that checks the OpenAPI document
//! describes every route.

use http::Method;

/// What a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Landing,
    ConnectPage,
    ManagePage,
    Asset,
    Config,
    Login,
    LoginMfa,
    LoginLink,
    Logout,
    Machines,
    Status,
    ListSessions,
    CreateSession,
    GetSession,
    StopSession,
    ExtendSession,
    ConnectSession,
    Purge,
    OpenApi,
    LoginHandoff,
    NodeStatus,
    NodeCreate,
    NodeList,
    NodeAct,
}

impl Endpoint {
    /// Requests from peer nodes, signed with the shared key instead of a login.
    pub fn is_node(self) -> bool {
        matches!(
            self,
            Self::NodeStatus | Self::NodeCreate | Self::NodeList | Self::NodeAct
        )
    }

    /// Pages and assets (HTML, CSS, JS) as opposed to JSON answers.
    pub fn is_page(self) -> bool {
        matches!(
            self,
            Self::Landing | Self::ConnectPage | Self::ManagePage | Self::Asset
        )
    }
}

/// One route: a method, a path template (`{x}` matches one non-empty segment).
#[derive(Debug, Clone, Copy)]
pub struct RouteDef {
    pub method: &'static str,
    pub path: &'static str,
    pub endpoint: Endpoint,
}

const fn r(method: &'static str, path: &'static str, endpoint: Endpoint) -> RouteDef {
    RouteDef {
        method,
        path,
        endpoint,
    }
}

/// Every route. Pages also answer HEAD.
pub static ROUTES: &[RouteDef] = &[
    r("GET", "/", Endpoint::Landing),
    r("GET", "/connect/{name}", Endpoint::ConnectPage),
    r("GET", "/manage", Endpoint::ManagePage),
    r("GET", "/assets/{file}", Endpoint::Asset),
    r("GET", "/api/config", Endpoint::Config),
    r("POST", "/api/login", Endpoint::Login),
    r("POST", "/api/login/mfa", Endpoint::LoginMfa),
    r("GET", "/api/login/link", Endpoint::LoginLink),
    r("POST", "/api/logout", Endpoint::Logout),
    r("GET", "/api/machines", Endpoint::Machines),
    r("GET", "/api/status", Endpoint::Status),
    r("GET", "/api/sessions", Endpoint::ListSessions),
    r("POST", "/api/sessions", Endpoint::CreateSession),
    r("GET", "/api/sessions/{name}", Endpoint::GetSession),
    r("DELETE", "/api/sessions/{name}", Endpoint::StopSession),
    r(
        "POST",
        "/api/sessions/{name}/extend",
        Endpoint::ExtendSession,
    ),
    r(
        "POST",
        "/api/sessions/{name}/connect",
        Endpoint::ConnectSession,
    ),
    r("POST", "/api/purge", Endpoint::Purge),
    r("GET", "/api/openapi.json", Endpoint::OpenApi),
    r("GET", "/api/login/handoff", Endpoint::LoginHandoff),
    r("POST", "/api/nodes/status", Endpoint::NodeStatus),
    r("POST", "/api/nodes/create", Endpoint::NodeCreate),
    r("POST", "/api/nodes/list", Endpoint::NodeList),
    r("POST", "/api/nodes/act", Endpoint::NodeAct),
];

/// The result of matching a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Match {
    /// The endpoint and the value of its `{…}` segment, if any.
    Found(Endpoint, Option<String>),
    /// The path exists with other methods (listed for `Allow`).
    WrongMethod(String),
    NotFound,
}

/// Whether the application answers this path at all (the rest is the gateway's: noVNC,
/// health, metrics).
pub fn claims(path: &str) -> bool {
    path == "/"
        || path == "/manage"
        || path == "/api"
        || path.starts_with("/api/")
        || path.starts_with("/connect/")
        || path.starts_with("/assets/")
}

/// Finds the route for `method` and `path` (below the prefix, without query).
pub fn find(method: &Method, path: &str) -> Match {
    let mut allowed: Vec<&str> = Vec::new();
    for route in ROUTES {
        let Some(param) = matches(route.path, path) else {
            continue;
        };
        let head_ok = route.endpoint.is_page() && method == Method::HEAD;
        if route.method == method.as_str() || head_ok {
            return Match::Found(route.endpoint, param);
        }
        allowed.push(route.method);
        if route.endpoint.is_page() {
            allowed.push("HEAD");
        }
    }
    if allowed.is_empty() {
        Match::NotFound
    } else {
        Match::WrongMethod(allowed.join(", "))
    }
}

/// Matches `path` against `template`; `Some(param)` on success.
fn matches(template: &str, path: &str) -> Option<Option<String>> {
    let mut param = None;
    let mut t = template.split('/');
    let mut p = path.split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return Some(param),
            (Some(ts), Some(ps)) if ts.starts_with('{') => {
                if ps.is_empty() {
                    return None;
                }
                param = Some(ps.to_owned());
            }
            (Some(ts), Some(ps)) if ts == ps => {}
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_one_segment() {
        assert_eq!(
            find(&Method::GET, "/api/sessions/darts-abc"),
            Match::Found(Endpoint::GetSession, Some("darts-abc".into()))
        );
        assert_eq!(
            find(&Method::POST, "/api/sessions/x/extend"),
            Match::Found(Endpoint::ExtendSession, Some("x".into()))
        );
        assert_eq!(
            find(&Method::HEAD, "/"),
            Match::Found(Endpoint::Landing, None)
        );
        assert_eq!(find(&Method::GET, "/api/sessions/"), Match::NotFound);
        assert_eq!(find(&Method::GET, "/api/sessions/a/b"), Match::NotFound);
        assert_eq!(find(&Method::GET, "/api/nope"), Match::NotFound);
        assert_eq!(
            find(&Method::POST, "/api/login/mfa"),
            Match::Found(Endpoint::LoginMfa, None)
        );
        assert_eq!(
            find(&Method::PUT, "/api/sessions"),
            Match::WrongMethod("GET, POST".into())
        );
        assert_eq!(
            find(&Method::POST, "/manage"),
            Match::WrongMethod("GET, HEAD".into())
        );
    }

    #[test]
    fn the_gateway_keeps_novnc_and_metrics() {
        assert!(claims("/") && claims("/api/config") && claims("/connect/x"));
        assert!(!claims("/vnc.html") && !claims("/app/ui.js") && !claims("/metrics"));
    }
}
