//! The session endpoints: create, list, show, extend, fresh links, stop, purge. Every
//! one goes through the session manager with the logged-in caller, which decides who
//! may do what (owners their own sessions, administrators all of them).

use http::{header, HeaderValue, Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::account::resize;
use super::error::ApiError;
use super::remote;
use super::routes::Endpoint;
use super::wire::{self, Body};
use super::{Call, Inner};
use crate::catalogue::Catalogue;
use crate::config::Config;
use crate::control::LinkBase;
use crate::nodes::protocol::Action;
use crate::session::manager::time_left;
use crate::session::record::is_session_name;
use crate::session::{Caller, CreateRequest, SessionError, SessionInfo, StopOutcome};

/// A session as the API shows it: the manager's view and what the pages compute from it.
#[derive(Debug, Serialize)]
pub(super) struct SessionView {
    #[serde(flatten)]
    info: SessionInfo,
    /// Seconds left; `null` when the session has no time limit.
    time_left: Option<u64>,
    /// Whether "+24 h" can still add time.
    extendable: bool,
}

impl SessionView {
    fn new(info: SessionInfo, config: &Config) -> Self {
        let cap = info.created.saturating_add(config.lifetime_cap());
        Self {
            time_left: time_left(info.expires),
            extendable: info.expires != 0 && info.expires < cap,
            info,
        }
    }
}

/// What the landing page's form sends (and what a node forwards to a peer).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateBody {
    machine: String,
    cpu: Option<u32>,
    /// GB.
    memory: Option<f64>,
    /// Days.
    lifetime: Option<u32>,
    #[serde(default)]
    gpu: bool,
    #[serde(default)]
    oneshot: bool,
    /// The owner lets view-only viewers receive the guest's clipboard.
    #[serde(default)]
    view_clipboard: bool,
}

/// `POST /api/sessions`.
pub(super) async fn create(
    app: &Inner,
    call: &Call,
    body: Incoming,
) -> Result<Response<Body>, ApiError> {
    let caller = call.caller()?;
    let form: CreateBody = wire::read_json(&call.headers, body).await?;
    create_for(app, call, &caller, &form, None).await
}

/// Creates a session for `caller` here or, when this node lacks room, on a peer.
/// `from_node` holds the nodes a peer's request went through (`None` for a user of this
/// node): such answers also carry the hand-off that logs the user in here.
pub(super) async fn create_for(
    app: &Inner,
    call: &Call,
    caller: &Caller,
    form: &CreateBody,
    from_node: Option<&[String]>,
) -> Result<Response<Body>, ApiError> {
    let catalogue = app.manager.catalogue_for(&form.machine).await;
    let req = validate(form, &call.config, &catalogue)?;
    let created = match app.manager.create_from(caller, &req, &catalogue).await {
        Ok(c) => c,
        Err(e) if e.needs_fallback() => {
            tracing::info!(user = %caller.user, machine = %req.machine, code = e.code(), "no room here: asking the peers");
            return remote::fallback(app, call, caller, form, &req, e, from_node.unwrap_or(&[]))
                .await;
        }
        Err(e) => {
            tracing::info!(user = %caller.user, machine = %req.machine, code = e.code(), "session refused");
            return Err(e.into());
        }
    };
    let links = links(app, call, &created.token, created.view_token.as_deref());
    let name = created.info.name.clone();
    tracing::info!(user = %caller.user, session = %name, from_node = from_node.is_some(), "session created from the web");
    let mut body = serde_json::to_value(&links).map_err(|_| ApiError::Internal)?;
    body["session"] = json!(SessionView::new(created.info, &call.config));
    identify(app, call, &mut body);
    if from_node.is_some() {
        body["handoff_url"] = json!(handoff_url(app, call, &caller.user, &name)?);
    }
    let mut r = wire::json(StatusCode::CREATED, &body);
    if let Ok(v) = HeaderValue::from_str(&format!("{}/api/sessions/{name}", app.prefix)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

/// Names this node in an answer: `node` and `node_url`.
fn identify(app: &Inner, call: &Call, body: &mut serde_json::Value) {
    body["node"] = json!(app.nodes.settings(&call.config).name);
    body["node_url"] = json!(app.public_base(call));
}

/// A one-time link that logs `user` in on this node and opens `session`'s page.
fn handoff_url(app: &Inner, call: &Call, user: &str, session: &str) -> Result<String, ApiError> {
    let token = app
        .logins
        .new_handoff(user.to_owned(), session.to_owned())?;
    Ok(format!(
        "{}/api/login/handoff?token={token}",
        app.public_base(call)
    ))
}

/// Checks each field against the choices the page offers; the message names the field.
fn validate(
    form: &CreateBody,
    config: &Config,
    catalogue: &Catalogue,
) -> Result<CreateRequest, ApiError> {
    if catalogue.get(&form.machine).is_none() {
        let known: Vec<&str> = catalogue
            .machines()
            .iter()
            .filter(|m| m.available)
            .map(|m| m.name.as_str())
            .collect();
        return Err(ApiError::invalid(
            "machine",
            format!(
                "unknown machine {:?}; choose one of: {}",
                form.machine,
                known.join(", ")
            ),
        ));
    }
    if let Some(cpu) = form.cpu {
        if !config.layout_cpu.is_empty() && !config.layout_cpu.contains(&cpu) {
            return Err(ApiError::invalid(
                "cpu",
                format!("choose one of {}", choices(&config.layout_cpu)),
            ));
        }
    }
    if let Some(mem) = form.memory {
        let offered = config.layout_memory.is_empty()
            || config.layout_memory.iter().any(|m| (m - mem).abs() < 1e-9);
        if !mem.is_finite() || mem <= 0.0 || !offered {
            return Err(ApiError::invalid(
                "memory",
                format!("choose one of {} (GB)", choices(&config.layout_memory)),
            ));
        }
    }
    if let Some(days) = form.lifetime {
        if !config.layout_lifetime.is_empty() && !config.layout_lifetime.contains(&days) {
            return Err(ApiError::invalid(
                "lifetime",
                format!("choose one of {} (days)", choices(&config.layout_lifetime)),
            ));
        }
    }
    if form.gpu && !config.layout_gpu {
        return Err(ApiError::invalid(
            "gpu",
            "this server does not offer GPU sessions",
        ));
    }
    Ok(CreateRequest {
        machine: form.machine.clone(),
        cpu: form.cpu,
        memory_gb: form.memory,
        lifetime: form.lifetime.map(|d| u64::from(d) * 86400),
        oneshot: form.oneshot,
        gpu: form.gpu,
        use_master: false,
        view_clipboard: form.view_clipboard,
    })
}

fn choices<T: ToString>(values: &[T]) -> String {
    values
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A session's links, shown once.
#[derive(Debug, Serialize)]
struct Links {
    url: String,
    view_url: Option<String>,
    /// The full-control link as an SVG QR code.
    qr_svg: Option<String>,
}

fn links(app: &Inner, call: &Call, token: &str, view_token: Option<&str>) -> Links {
    let base = LinkBase {
        base: app.public_base(call),
        resize: resize(&call.config),
    };
    let url = base.connect_url(token);
    Links {
        qr_svg: qr_svg(&url),
        view_url: view_token.map(|t| base.connect_url(t)),
        url,
    }
}

/// The QR code of `text` as SVG (plain attributes, no style: the pages' CSP allows it).
fn qr_svg(text: &str) -> Option<String> {
    let code =
        qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .build(),
    )
}

/// The `{name}` of the route, when it can be a session's name.
fn name(call: &Call) -> Result<&str, ApiError> {
    call.param
        .as_deref()
        .filter(|n| is_session_name(n))
        .ok_or(ApiError::Session(SessionError::NotFound))
}

/// `GET /api/sessions`: the caller's sessions, or every session for an administrator,
/// then the caller's sessions on every peer (each with its `node`).
pub(super) async fn list(app: &Inner, call: &Call) -> Result<Response<Body>, ApiError> {
    let caller = call.caller()?;
    let settings = app.nodes.settings(&call.config);
    let mut sessions = local_views(app, call, &caller);
    for s in &mut sessions {
        s["node"] = json!(settings.name);
        s["node_url"] = serde_json::Value::Null;
    }
    let mut peers = Vec::new();
    if settings.key.is_some() && !settings.peers.is_empty() {
        let gathered = app.nodes.gather(&settings, &caller.user).await;
        sessions.extend(gathered.sessions);
        peers = gathered.peers;
    }
    Ok(wire::json(
        StatusCode::OK,
        &json!({ "sessions": sessions, "admin": caller.admin, "node": settings.name, "peers": peers }),
    ))
}

/// The sessions of this node `caller` may see, as the API shows them.
pub(super) fn local_views(app: &Inner, call: &Call, caller: &Caller) -> Vec<serde_json::Value> {
    app.manager
        .list(caller)
        .into_iter()
        .map(|i| json!(SessionView::new(i, &call.config)))
        .collect()
}

/// `GET`, `DELETE /api/sessions/{name}`, `POST …/extend`, `POST …/connect`. With
/// `?node=N` naming a peer, the action runs there for the same user.
pub(super) async fn act(
    app: &Inner,
    call: &Call,
    endpoint: Endpoint,
) -> Result<Response<Body>, ApiError> {
    let caller = call.caller()?;
    let name = name(call)?.to_owned();
    let action = match endpoint {
        Endpoint::StopSession => Action::Stop,
        Endpoint::ExtendSession => Action::Extend,
        Endpoint::ConnectSession => Action::Connect,
        _ => Action::Get,
    };
    if let Some(node) = wire::query_id(call.query.as_deref(), "node") {
        if node != app.nodes.settings(&call.config).name {
            return remote::act(app, call, &caller, &name, &node, action).await;
        }
    }
    act_here(app, call, &caller, &name, action, false).await
}

/// An action on a session of this node. `for_node`: a peer asks for its user, so fresh
/// links also carry a hand-off to this node's connect page.
pub(super) async fn act_here(
    app: &Inner,
    call: &Call,
    caller: &Caller,
    name: &str,
    action: Action,
    for_node: bool,
) -> Result<Response<Body>, ApiError> {
    if !is_session_name(name) {
        return Err(ApiError::Session(SessionError::NotFound));
    }
    let mut body = match action {
        Action::Get => {
            let info = app.manager.get(caller, name)?;
            json!({ "session": SessionView::new(info, &call.config) })
        }
        Action::Extend => {
            let info = app.manager.extend(caller, name).await?;
            json!({ "session": SessionView::new(info, &call.config) })
        }
        Action::Stop => {
            let outcome = app.manager.stop(caller, name).await?;
            tracing::info!(user = %caller.user, session = %name, outcome = outcome.as_str(), "session stop from the web");
            if outcome == StopOutcome::Stopping {
                // Not gone yet: 202, and where to follow it until it leaves the list.
                let mut body = json!({
                    "stopping": name,
                    "follow": format!("api/sessions/{name}"),
                });
                identify(app, call, &mut body);
                return Ok(wire::json(StatusCode::ACCEPTED, &body));
            }
            json!({ "stopped": name })
        }
        Action::Connect => {
            let info = app.manager.get(caller, name)?;
            if info.oneshot && info.viewers > 0 {
                return Err(ApiError::OneShotInUse);
            }
            let (token, view_token) = app.manager.issue_tokens(caller, name).await?;
            tracing::info!(user = %caller.user, session = %name, "fresh links issued");
            let links = links(app, call, &token, view_token.as_deref());
            let mut body = serde_json::to_value(&links).map_err(|_| ApiError::Internal)?;
            body["session"] = json!(SessionView::new(info, &call.config));
            if for_node {
                body["handoff_url"] = json!(handoff_url(app, call, &caller.user, name)?);
            }
            body
        }
    };
    identify(app, call, &mut body);
    Ok(wire::json(StatusCode::OK, &body))
}

/// `POST /api/purge`: stops every session (administrators only).
pub(super) async fn purge(app: &Inner, call: &Call) -> Result<Response<Body>, ApiError> {
    let caller = call.caller()?;
    if !caller.admin {
        return Err(ApiError::AdminOnly);
    }
    let done = app.manager.purge(&caller).await?;
    tracing::info!(user = %caller.user, stopped = done.stopped, stopping = done.stopping, "every session purged from the web");
    Ok(wire::json(
        StatusCode::OK,
        &json!({ "stopped": done.stopped, "stopping": done.stopping }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qr_codes_are_svg_without_style() {
        let svg = qr_svg(
            "http://127.0.0.1:6080/darts/vnc.html?resize=remote&autoconnect=true&path=?token=abc",
        )
        .unwrap();
        assert!(svg.contains("<svg") && svg.contains("<path"));
        assert!(!svg.contains("style"));
    }

    #[test]
    fn the_form_is_checked_field_by_field() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::create_dir_all(dir.path().join("machines")).unwrap();
        std::fs::write(dir.path().join("machines/demo.img"), "x").unwrap();
        std::fs::write(
            dir.path().join("etc/machines.conf"),
            "[demo.img]\ndescription=Demo\n",
        )
        .unwrap();
        let config = Config {
            dir_etc: dir.path().join("etc"),
            dir_machines: dir.path().join("machines"),
            ..Config::default()
        };
        let form = |machine: &str, cpu, memory, lifetime, gpu| CreateBody {
            machine: machine.into(),
            cpu,
            memory,
            lifetime,
            gpu,
            oneshot: false,
            view_clipboard: false,
        };
        let catalogue = Catalogue::load(&config);
        let validate = |f: &CreateBody, c: &Config| super::validate(f, c, &catalogue);
        let field = |r: Result<CreateRequest, ApiError>| match r {
            Err(ApiError::InvalidField { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(validate(&form("nope", None, None, None, false), &config)),
            "machine"
        );
        assert_eq!(
            field(validate(
                &form("demo.img", Some(3), None, None, false),
                &config
            )),
            "cpu"
        );
        assert_eq!(
            field(validate(
                &form("demo.img", None, Some(5.0), None, false),
                &config
            )),
            "memory"
        );
        assert_eq!(
            field(validate(
                &form("demo.img", None, Some(f64::NAN), None, false),
                &config
            )),
            "memory"
        );
        assert_eq!(
            field(validate(
                &form("demo.img", None, None, Some(3), false),
                &config
            )),
            "lifetime"
        );
        assert_eq!(
            field(validate(&form("demo.img", None, None, None, true), &config)),
            "gpu"
        );
        let ok = validate(
            &form("demo.img", Some(2), Some(4.0), Some(2), false),
            &config,
        )
        .unwrap();
        assert_eq!(ok.lifetime, Some(2 * 86400));
        assert_eq!(ok.memory_gb, Some(4.0));
    }
}
