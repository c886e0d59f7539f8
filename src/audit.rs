//! The audit log: one JSON line per event that matters to an operator or an auditor —
//! logins (success or failure), sessions (start, failure, extension, end and why),
//! viewers (connect, disconnect with bytes and duration), administrator actions,
//! configuration reloads — in `service_logfile`. The original's plain START/STOP/ERROR
//! lines go, when asked, to a second file, `service_logfile_text`, so that scripts written
//! for qemu-web-desktop's log keep working and the JSON file stays one format.
//!
//! ```text
//! {"time":"2026-11-23T10:00:00.123Z","event":"login","user":"alice","client":"192.0.2.7","method":"password","success":true}
//! [Mon Nov 23 11:00:01 2026] START CPU=2 MEM=4096 GPU= USER=alice VM=debian.qcow2 NAME=darts-k3j5h2k4l6m8
//! ```
//!
//! Events carry names, addresses and figures only: no type here can hold a password, a
//! token or a code. [`emit`] never blocks: it hands the event to a bounded channel read
//! by a writer thread, which formats, writes, flushes once per batch and rotates both
//! files by size (`service_logfile_max_size`, `service_logfile_keep`). When the channel is
//! full the event is counted and an `audit_dropped` line says how many were lost.
//!
//! One log per process: `darts serve` installs it with [`install`] and the rest of darts
//! calls [`emit`] (or the helpers below) wherever the event happens; with no log
//! installed (other commands, unit tests) they do nothing.

mod writer;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::Config;

/// Events waiting for the writer at most; more are counted as dropped.
const QUEUE: usize = 4096;
/// Directory of the default audit log.
pub const DEFAULT_DIR: &str = "/var/log/darts";
/// File name of the default audit log.
pub const DEFAULT_NAME: &str = "audit.log";

/// Errors opening the logs.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open the log {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the audit writer thread: {0}")]
    Thread(std::io::Error),
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndKind {
    /// A user, an administrator or `darts stop` asked.
    Stop,
    /// Its lifetime was over.
    Expire,
    /// The VM exited by itself (guest power-off, crash, killed).
    VmExit,
    /// Its one-shot connection closed.
    OneShot,
}

impl EndKind {
    /// From the reason the session monitor gives.
    pub fn from_reason(reason: &str) -> Self {
        match reason {
            "lifetime over" => Self::Expire,
            "the VM exited" => Self::VmExit,
            "one-shot connection closed" => Self::OneShot,
            _ => Self::Stop,
        }
    }
}

/// One audited event. The JSON line is `{"time": …, "event": "<variant>", fields…}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    ServiceStart {
        version: String,
        listen: String,
    },
    ServiceStop {},
    /// `method`: `password`, `password+mfa`, `mfa`, `email_link` or `none` (open access).
    Login {
        user: String,
        client: String,
        method: String,
        success: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    SessionStart {
        session: String,
        user: String,
        machine: String,
        cpu: u32,
        memory_mb: u64,
        gpu: Option<String>,
        oneshot: bool,
        /// Unix seconds; 0: no limit.
        expires: u64,
        client: Option<String>,
    },
    /// A creation that failed (the original's ERROR line).
    SessionError {
        user: String,
        machine: String,
        cpu: u32,
        memory_mb: u64,
        gpu: bool,
        client: Option<String>,
        code: String,
        error: String,
    },
    SessionExtend {
        session: String,
        user: String,
        machine: String,
        by: String,
        expires: u64,
    },
    SessionEnd {
        session: String,
        user: String,
        machine: String,
        cpu: u32,
        memory_mb: u64,
        gpu: Option<String>,
        how: EndKind,
        reason: String,
        /// Seconds since the session was created.
        lived_s: u64,
    },
    ViewerOpen {
        session: String,
        user: String,
        view_only: bool,
        client: String,
    },
    ViewerClose {
        session: String,
        user: String,
        view_only: bool,
        client: String,
        bytes_from_client: u64,
        bytes_to_client: u64,
        duration_s: f64,
    },
    Admin {
        user: String,
        action: String,
        client: Option<String>,
        sessions: usize,
    },
    /// `trigger`: `SIGHUP` or `file change`.
    ConfigReload {
        trigger: String,
        success: bool,
        detail: String,
    },
}

/// An event and when it happened (taken at [`emit`], not when written).
#[derive(Debug, Clone)]
pub(crate) struct Stamped {
    pub time: DateTime<Utc>,
    pub event: Event,
}

struct Sink {
    id: u64,
    tx: SyncSender<Stamped>,
    dropped: Arc<AtomicU64>,
}

static SINK: RwLock<Option<Sink>> = RwLock::new(None);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Where the logs go and how they rotate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOptions {
    /// The JSON audit log; `None`: off.
    pub json: Option<PathBuf>,
    /// The original's START/STOP/ERROR lines; `None`: off.
    pub text: Option<PathBuf>,
    /// Rotate at this size, bytes (0: never).
    pub max_size: u64,
    /// Rotated files kept.
    pub keep: u32,
}

impl LogOptions {
    /// From `service_logfile*`, resolving the default path (see [`resolve_json_path`]).
    pub fn from_config(config: &Config) -> Self {
        Self::with_json(config, resolve_json_path(config))
    }

    /// From `service_logfile*`, with the JSON log's path already resolved.
    pub fn with_json(config: &Config, json: Option<PathBuf>) -> Self {
        Self {
            json,
            text: non_empty_path(&config.service_logfile_text),
            max_size: config.service_logfile_max_size,
            keep: config.service_logfile_keep,
        }
    }
}

fn non_empty_path(value: &str) -> Option<PathBuf> {
    let v = value.trim();
    (!v.is_empty()).then(|| PathBuf::from(v))
}

/// The audit log's path: `service_logfile`, or when it is empty
/// `/var/log/darts/audit.log` if that directory is writable, else
/// `<dir_service>/audit.log`; `None` when it is `none`. Opens (creates) the default
/// file to know whether it is writable.
pub fn resolve_json_path(config: &Config) -> Option<PathBuf> {
    resolve_json_path_with(config, Path::new(DEFAULT_DIR), |f| {
        writer::open_append(f).is_ok()
    })
}

/// [`resolve_json_path`] with the default directory and the test of whether a file
/// there can be written given (`darts doctor` judges for the service's account and
/// creates nothing).
pub fn resolve_json_path_with(
    config: &Config,
    default_dir: &Path,
    writable: impl FnOnce(&Path) -> bool,
) -> Option<PathBuf> {
    let v = config.service_logfile.trim();
    if v.eq_ignore_ascii_case("none") {
        return None;
    }
    if !v.is_empty() {
        return Some(PathBuf::from(v));
    }
    let preferred = default_dir.join(DEFAULT_NAME);
    if default_dir.is_dir() && writable(&preferred) {
        return Some(preferred);
    }
    Some(config.dir_service.join(DEFAULT_NAME))
}

/// The installed log; dropping it stops the writer after it has written everything
/// emitted before.
#[derive(Debug)]
pub struct AuditGuard {
    id: u64,
    thread: Option<std::thread::JoinHandle<()>>,
    options: LogOptions,
}

impl AuditGuard {
    pub fn options(&self) -> &LogOptions {
        &self.options
    }
}

impl Drop for AuditGuard {
    fn drop(&mut self) {
        {
            let mut sink = SINK.write().unwrap_or_else(|p| p.into_inner());
            if sink.as_ref().is_some_and(|s| s.id == self.id) {
                *sink = None;
            }
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Opens the logs and makes [`emit`] write to them, replacing any log installed before.
/// Both files are opened here, so a path that cannot be written is reported at start.
pub fn install(options: LogOptions) -> Result<AuditGuard, AuditError> {
    let files = writer::Files::open(&options)?;
    let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
    let dropped = Arc::new(AtomicU64::new(0));
    let lost = dropped.clone();
    let thread = std::thread::Builder::new()
        .name("darts-audit".into())
        .spawn(move || writer::run(files, rx, lost))
        .map_err(AuditError::Thread)?;
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    *SINK.write().unwrap_or_else(|p| p.into_inner()) = Some(Sink { id, tx, dropped });
    Ok(AuditGuard {
        id,
        thread: Some(thread),
        options,
    })
}

/// Records `event`. Never blocks; does nothing when no log is installed.
pub fn emit(event: Event) {
    let sink = SINK.read().unwrap_or_else(|p| p.into_inner());
    let Some(sink) = sink.as_ref() else { return };
    let stamped = Stamped {
        time: Utc::now(),
        event,
    };
    match sink.tx.try_send(stamped) {
        Ok(()) | Err(TrySendError::Disconnected(_)) => {}
        Err(TrySendError::Full(_)) => {
            sink.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// Helpers, one per place an event happens, so that each call site stays one line.

/// A login attempt. `refusal` is `None` on success.
pub fn login(user: &str, client: IpAddr, method: &str, refusal: Option<&str>) {
    emit(Event::Login {
        user: user.to_owned(),
        client: client.to_string(),
        method: method.to_owned(),
        success: refusal.is_none(),
        reason: refusal.map(str::to_owned),
    });
}

/// A session is running.
pub fn session_started(info: &crate::session::SessionInfo) {
    emit(Event::SessionStart {
        session: info.name.clone(),
        user: info.user.clone(),
        machine: info.machine.clone(),
        cpu: info.cpu,
        memory_mb: info.memory_mb,
        gpu: info.gpu.clone(),
        oneshot: info.oneshot,
        expires: info.expires,
        client: info.remote_host.clone(),
    });
}

/// A creation failed or was refused. `cpu` and `memory_mb` are what was asked for.
pub fn session_failed(
    caller: &crate::session::Caller,
    request: &crate::session::CreateRequest,
    config: &Config,
    error: &crate::session::SessionError,
) {
    emit(Event::SessionError {
        user: caller.user.clone(),
        machine: request.machine.clone(),
        cpu: request.cpu.unwrap_or(config.snapshot_alloc_cpu),
        memory_mb: (request.memory_gb.unwrap_or(config.snapshot_alloc_mem) * 1024.0).round() as u64,
        gpu: request.gpu,
        client: caller.remote.clone(),
        code: error.code().to_owned(),
        error: error.to_string(),
    });
}

/// A session's lifetime was extended by `by`.
pub fn session_extended(info: &crate::session::SessionInfo, by: &str) {
    emit(Event::SessionExtend {
        session: info.name.clone(),
        user: info.user.clone(),
        machine: info.machine.clone(),
        by: by.to_owned(),
        expires: info.expires,
    });
}

/// A session is over (files, tokens and VM gone), for `reason`.
pub fn session_ended(record: &crate::session::SessionRecord, reason: &str) {
    emit(Event::SessionEnd {
        session: record.name.clone(),
        user: record.user.clone(),
        machine: record.machine.clone(),
        cpu: record.cpu,
        memory_mb: record.memory_mb,
        gpu: record.gpu.clone(),
        how: EndKind::from_reason(reason),
        reason: reason.to_owned(),
        lived_s: crate::session::now().saturating_sub(record.created),
    });
}

/// A viewer opened or closed a session's websocket; `user` owns the session.
pub fn viewer(ev: &darts_proxy::ViewerEvent, user: &str) {
    let client = client_text(ev.client);
    let session = ev.label.to_string();
    emit(match ev.traffic {
        None => Event::ViewerOpen {
            session,
            user: user.to_owned(),
            view_only: ev.view_only,
            client,
        },
        Some(t) => Event::ViewerClose {
            session,
            user: user.to_owned(),
            view_only: ev.view_only,
            client,
            bytes_from_client: t.from_client,
            bytes_to_client: t.to_client,
            duration_s: (t.duration.as_secs_f64() * 1000.0).round() / 1000.0,
        },
    });
}

/// An administrator's action on many sessions (`purge`).
pub fn admin(caller: &crate::session::Caller, action: &str, sessions: usize) {
    emit(Event::Admin {
        user: caller.user.clone(),
        action: action.to_owned(),
        client: caller.remote.clone(),
        sessions,
    });
}

/// A configuration reload (`trigger`: `SIGHUP`, `file change`): `Ok(what changed)` or
/// `Err(why it was refused, the running configuration staying)`.
pub fn config_reload(trigger: &str, outcome: Result<&str, &str>) {
    let (success, detail) = match outcome {
        Ok(d) => (true, d),
        Err(d) => (false, d),
    };
    emit(Event::ConfigReload {
        trigger: trigger.to_owned(),
        success,
        detail: detail.to_owned(),
    });
}

/// An address as the log shows it: the IP, with the port when it means something (a
/// client seen through a reverse proxy is given with port 0).
fn client_text(addr: SocketAddr) -> String {
    if addr.port() == 0 {
        addr.ip().to_string()
    } else {
        addr.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_reasons_map_to_kinds() {
        assert_eq!(EndKind::from_reason("lifetime over"), EndKind::Expire);
        assert_eq!(EndKind::from_reason("the VM exited"), EndKind::VmExit);
        assert_eq!(
            EndKind::from_reason("one-shot connection closed"),
            EndKind::OneShot
        );
        assert_eq!(EndKind::from_reason("stopped"), EndKind::Stop);
    }

    fn resolve_json_path_in(config: &Config, dir: &Path) -> Option<PathBuf> {
        resolve_json_path_with(config, dir, |f| writer::open_append(f).is_ok())
    }

    #[test]
    fn the_default_path_falls_back_to_the_state_directory() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            dir_service: dir.path().join("state"),
            ..Config::default()
        };
        // A log directory that does not exist.
        assert_eq!(
            resolve_json_path_in(&config, &dir.path().join("nolog")),
            Some(dir.path().join("state/audit.log"))
        );
        let logs = dir.path().join("log");
        std::fs::create_dir(&logs).unwrap();
        assert_eq!(
            resolve_json_path_in(&config, &logs),
            Some(logs.join("audit.log"))
        );
        let named = Config {
            service_logfile: "/x/y.log".into(),
            ..config.clone()
        };
        assert_eq!(
            resolve_json_path_in(&named, &logs),
            Some(PathBuf::from("/x/y.log"))
        );
        let off = Config {
            service_logfile: "none".into(),
            ..config
        };
        assert_eq!(resolve_json_path_in(&off, &logs), None);
    }

    #[test]
    fn an_installed_log_writes_what_is_emitted_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("a/audit.log");
        let text = dir.path().join("service.log");
        let guard = install(LogOptions {
            json: Some(json.clone()),
            text: Some(text.clone()),
            max_size: 0,
            keep: 1,
        })
        .unwrap();
        login(
            "sink-test-user",
            "192.0.2.9".parse().unwrap(),
            "password",
            None,
        );
        config_reload("SIGHUP", Err("bad key"));
        drop(guard);
        // Not installed any more: nothing is written.
        login(
            "after-drop-user",
            "192.0.2.9".parse().unwrap(),
            "password",
            None,
        );
        let written = std::fs::read_to_string(&json).unwrap();
        let lines: Vec<serde_json::Value> = written
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(lines
            .iter()
            .any(|l| l["event"] == "login" && l["user"] == "sink-test-user"));
        assert!(lines.iter().any(|l| l["event"] == "config_reload"
            && l["trigger"] == "SIGHUP"
            && l["success"] == false));
        assert!(!written.contains("after-drop-user"));
        // Logins are not START/STOP/ERROR lines: the text log holds its header only.
        assert_eq!(
            std::fs::read_to_string(&text).unwrap(),
            "# qemu-web-desktop log file (darts)\n"
        );
    }

    #[test]
    fn events_serialize_with_their_name_first() {
        let e = Event::Login {
            user: "alice".into(),
            client: "192.0.2.7".into(),
            method: "password".into(),
            success: false,
            reason: Some("invalid credentials".into()),
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["event"], "login");
        assert_eq!(v["success"], false);
        assert_eq!(v["reason"], "invalid credentials");
        assert_eq!(client_text("[::1]:0".parse().unwrap()), "::1");
        assert_eq!(
            client_text("192.0.2.7:5000".parse().unwrap()),
            "192.0.2.7:5000"
        );
    }
}
