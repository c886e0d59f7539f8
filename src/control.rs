//! The local control socket of `darts serve` (`dir_service/darts.sock`, mode 0600): how
//! `darts start|stop|status|purge` on the same host talk to the running service. One JSON
//! request per line, one JSON answer per line. Whoever can open the socket is the
//! service's operator, hence an administrator.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::session::{Caller, CreateRequest, Manager, SessionError};

/// Largest request line.
const MAX_REQUEST: u64 = 64 * 1024;

/// Where the service listens for local commands.
pub fn socket_path(config: &Config) -> PathBuf {
    config.dir_service.join("darts.sock")
}

/// A command sent to the service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Create {
        machine: String,
        user: String,
        cpu: Option<u32>,
        memory_gb: Option<f64>,
        lifetime: Option<u64>,
        #[serde(default)]
        oneshot: bool,
        #[serde(default)]
        gpu: bool,
        #[serde(default)]
        use_master: bool,
    },
    List,
    Stop {
        name: String,
    },
    Extend {
        name: String,
    },
    Purge,
}

/// How the service builds the links it hands out.
#[derive(Debug, Clone)]
pub struct LinkBase {
    /// `http://127.0.0.1:6080/darts` (scheme, host, port, prefix; no trailing slash).
    pub base: String,
    pub resize: String,
}

impl LinkBase {
    /// The original's connection link. noVNC 1.3 (the bundled one) opens its websocket
    /// at the site root, `/?token=T`; newer noVNC resolves the path against the page,
    /// `…/vnc.html?token=T`. The gateway routes an upgrade with a token on any path.
    pub fn connect_url(&self, token: &str) -> String {
        format!(
            "{}/vnc.html?resize={}&autoconnect=true&path=?token={token}",
            self.base, self.resize
        )
    }
}

/// Serves the control socket until `stop`.
pub async fn serve(
    path: PathBuf,
    manager: Arc<Manager>,
    links: LinkBase,
    stop: CancellationToken,
) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // A socket left by a previous run (darts killed) would make bind fail.
    if UnixStream::connect(&path).await.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let links = Arc::new(links);
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (m, l) = (manager.clone(), links.clone());
        tokio::spawn(async move {
            if let Err(e) = handle(stream, &m, &l).await {
                tracing::debug!(error = %e, "control connection ended");
            }
        });
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

async fn handle(
    stream: UnixStream,
    manager: &Arc<Manager>,
    links: &LinkBase,
) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    BufReader::new(r.take(MAX_REQUEST))
        .read_line(&mut line)
        .await?;
    let answer = match serde_json::from_str::<Request>(&line) {
        Ok(req) => execute(req, manager, links).await,
        Err(e) => error_json("bad_request", &format!("unreadable request: {e}")),
    };
    let mut out = serde_json::to_vec(&answer).unwrap_or_default();
    out.push(b'\n');
    w.write_all(&out).await
}

async fn execute(req: Request, manager: &Arc<Manager>, links: &LinkBase) -> Value {
    let result: Result<Value, SessionError> = match req {
        Request::Create {
            machine,
            user,
            cpu,
            memory_gb,
            lifetime,
            oneshot,
            gpu,
            use_master,
        } => {
            let caller = Caller::admin(user);
            let req = CreateRequest {
                machine,
                cpu,
                memory_gb,
                lifetime,
                oneshot,
                gpu,
                use_master,
                view_clipboard: false,
            };
            manager.create(&caller, &req).await.map(|c| {
                json!({
                    "ok": true,
                    "session": c.info,
                    "url": links.connect_url(&c.token),
                    "view_url": c.view_token.as_deref().map(|t| links.connect_url(t)),
                    "timings_ms": c.timings.iter()
                        .map(|(phase, d)| (phase.to_string(), json!(d.as_secs_f64() * 1000.0)))
                        .collect::<serde_json::Map<_, _>>(),
                })
            })
        }
        Request::List => Ok(json!({ "ok": true, "sessions": manager.list(&Caller::admin("")) })),
        Request::Stop { name } => manager
            .stop(&Caller::admin(""), &name)
            .await
            .map(|outcome| json!({ "ok": true, "state": outcome.as_str() })),
        Request::Extend { name } => manager
            .extend(&Caller::admin(""), &name)
            .await
            .map(|s| json!({ "ok": true, "session": s })),
        Request::Purge => manager
            .purge(&Caller::admin(""))
            .await
            .map(|done| json!({ "ok": true, "stopped": done.stopped, "stopping": done.stopping })),
    };
    result.unwrap_or_else(|e| error_json(e.code(), &e.to_string()))
}

fn error_json(code: &str, message: &str) -> Value {
    json!({ "ok": false, "code": code, "message": message })
}

/// Errors of the client side.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no darts service answers on {0} (start it with `darts serve`): {1}")]
    Connect(PathBuf, std::io::Error),
    #[error("control socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("unreadable answer from the service: {0}")]
    Answer(String),
    #[error("the service closed the connection before answering (stopped or restarted?); `darts status` shows what is running")]
    Hungup,
    #[error("{message} ({code})")]
    Refused { code: String, message: String },
}

/// Sends one request and returns the answer (an `ok: false` answer becomes an error).
pub async fn call(path: &Path, req: &Request) -> Result<Value, ControlError> {
    let stream = UnixStream::connect(path)
        .await
        .map_err(|e| ControlError::Connect(path.to_owned(), e))?;
    let (r, mut w) = stream.into_split();
    let mut line = serde_json::to_vec(req).map_err(|e| ControlError::Answer(e.to_string()))?;
    line.push(b'\n');
    w.write_all(&line).await?;
    let mut answer = String::new();
    let read = BufReader::new(r).read_line(&mut answer).await;
    match read {
        Ok(0) => return Err(ControlError::Hungup),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            return Err(ControlError::Hungup)
        }
        Err(e) => return Err(e.into()),
        Ok(_) => {}
    }
    let v: Value =
        serde_json::from_str(&answer).map_err(|e| ControlError::Answer(e.to_string()))?;
    if v["ok"] == Value::Bool(true) {
        Ok(v)
    } else {
        Err(ControlError::Refused {
            code: v["code"].as_str().unwrap_or("unknown").to_owned(),
            message: v["message"].as_str().unwrap_or("").to_owned(),
        })
    }
}
