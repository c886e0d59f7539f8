//! The session manager: the one place that creates, lists, extends and ends sessions,
//! and that decides who may do so.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use darts_proxy::rfb::BackendSecurity;
use darts_proxy::token::TokenKey;
use darts_proxy::{Route, TokenMap};
use darts_vnc::vnc_auth::Password;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::record::{Phase, SessionRecord};
use super::store::{Store, StoreError};
use crate::catalogue::cache::CatalogueCache;
use crate::catalogue::Catalogue;
use crate::config::Config;
use crate::limits::{self, Refusal};

mod viewers;
pub use viewers::owns_viewer_event;

/// How often the timer looks for sessions past their lifetime.
const EXPIRY_TICK: Duration = Duration::from_secs(1);
/// How often the catalogue's files are checked for changes.
const CATALOGUE_CHECK: Duration = Duration::from_secs(1);
/// One extension.
pub const EXTEND_STEP: u64 = 24 * 3600;
/// Tokens a session keeps at most; issuing more drops the oldest.
pub const MAX_TOKENS: usize = 16;

/// Who asks. The HTTP layer fills it from authentication; the local control socket is
/// an administrator.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: String,
    pub admin: bool,
    pub remote: Option<String>,
}

impl Caller {
    pub fn admin(user: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            admin: true,
            remote: None,
        }
    }

    pub fn user(user: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            admin: false,
            remote: None,
        }
    }
}

/// What a user asks for. `None` takes the configured default.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    pub machine: String,
    pub cpu: Option<u32>,
    pub memory_gb: Option<f64>,
    /// Seconds.
    pub lifetime: Option<u64>,
    pub oneshot: bool,
    pub gpu: bool,
    /// Run on the master image (administrators only, with `snapshot_use_master`).
    pub use_master: bool,
    /// View-only viewers also receive the guest's clipboard (the owner's choice).
    pub view_clipboard: bool,
}

/// A new session and its secrets, shown once to its creator.
#[derive(Debug, Clone)]
pub struct Created {
    pub info: SessionInfo,
    pub token: String,
    /// `None` for one-shot sessions, which have a single connection.
    pub view_token: Option<String>,
    /// Time spent in each phase of the creation: `admission`, `state`, `disk`
    /// (qemu-img), `scripts`, `qemu_options`, `qemu_launch`, `qmp_ready`, `vnc_ready`,
    /// `tokens`.
    pub timings: Vec<(&'static str, Duration)>,
}

/// What may be shown about a session (no secrets).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SessionInfo {
    pub name: String,
    pub user: String,
    pub machine: String,
    pub cpu: u32,
    pub memory_mb: u64,
    pub gpu: Option<String>,
    pub oneshot: bool,
    pub created: u64,
    /// Unix seconds; 0 when the session has no time limit.
    pub expires: u64,
    pub viewers: usize,
    pub phase: Phase,
    pub remote_host: Option<String>,
}

/// Why a request about sessions failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "))]
    Refused(Vec<Refusal>),
    #[error("Can not find virtual machine {0}.")]
    UnknownMachine(String),
    #[error("The image of virtual machine {0} is missing; an administrator must download it.")]
    MachineMissing(String),
    #[error("no such session")]
    NotFound,
    #[error("this session belongs to another user")]
    Forbidden,
    #[error("the session cannot be extended past its maximum lifetime")]
    ExtendLimit,
    #[error("only administrators may run a session on the master image")]
    MasterNotAllowed,
    #[error("disk: {0}")]
    Disk(String),
    #[error("boot script: {0}")]
    Script(String),
    #[error("QEMU: {0}")]
    Qemu(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{what}: {source}")]
    Blocking {
        what: &'static str,
        source: tokio::task::JoinError,
    },
    #[error("{0}")]
    Internal(String),
}

impl SessionError {
    /// A stable code for the JSON API.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Refused(r) => r.first().map_or("refused", |r| r.code()),
            Self::UnknownMachine(_) => "unknown_machine",
            Self::MachineMissing(_) => "machine_missing",
            Self::NotFound => "not_found",
            Self::Forbidden => "forbidden",
            Self::ExtendLimit => "extend_limit",
            Self::MasterNotAllowed => "master_not_allowed",
            Self::Disk(_) => "disk",
            Self::Script(_) => "script",
            Self::Qemu(_) => "qemu",
            Self::Store(_) => "state",
            Self::Blocking { .. } | Self::Internal(_) => "internal",
        }
    }

    /// True when another node might take the request (lack of resources here).
    pub fn needs_fallback(&self) -> bool {
        matches!(self, Self::Refused(r) if r.iter().all(Refusal::needs_fallback))
    }
}

/// Requests to a session's monitor task.
#[derive(Debug)]
pub(super) enum Control {
    Stop { reason: &'static str },
}

/// What a stop had achieved when it answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// The session is gone: QEMU, files, links and record.
    Stopped,
    /// It is still ending (being created, or its QEMU not yet gone); follow it in the
    /// session list.
    Stopping,
}

impl StopOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stopped => "stopped",
            Self::Stopping => "stopping",
        }
    }
}

/// What a purge had achieved when it answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurgeOutcome {
    pub stopped: usize,
    pub stopping: usize,
}

/// What the clean-up after QEMU is gone may take (`monitor::finish`), beyond the stop.
pub(super) const FINISH_WAIT: Duration = Duration::from_secs(5);

/// A session the manager holds.
#[derive(Debug)]
pub(super) struct Live {
    pub record: Mutex<SessionRecord>,
    /// Viewers through this node's gateway: kept from its events, re-synced from its
    /// ledger when events were dropped.
    pub viewers: AtomicUsize,
    /// Viewers through other gateways, as they reported them (events only: their
    /// gateways' ledgers are not readable from here).
    pub peer_viewers: AtomicUsize,
    /// Set once the monitor task runs (after creation).
    pub control: Mutex<Option<mpsc::Sender<Control>>>,
    /// A stop asked while the session was being created, for the monitor to act on as
    /// soon as it runs. Read and written with `control` locked, so none is lost.
    pub stop_wanted: Mutex<Option<&'static str>>,
    /// Cancelled when the session is gone (files, tokens, record removed).
    pub ended: CancellationToken,
}

impl Live {
    pub fn new(record: SessionRecord) -> Arc<Self> {
        Arc::new(Self {
            record: Mutex::new(record),
            viewers: AtomicUsize::new(0),
            peer_viewers: AtomicUsize::new(0),
            control: Mutex::new(None),
            stop_wanted: Mutex::new(None),
            ended: CancellationToken::new(),
        })
    }

    pub fn record(&self) -> SessionRecord {
        lock(&self.record).clone()
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads the host's resources; tests substitute their own.
pub type HostReader = Box<dyn Fn() -> Option<crate::host::HostResources> + Send + Sync>;

/// Every live session of this node.
pub struct Manager {
    pub(super) config: RwLock<Arc<Config>>,
    pub(super) store: Store,
    pub(super) tokens: Arc<TokenMap>,
    pub(super) sessions: Mutex<HashMap<String, Arc<Live>>>,
    /// Held while a creation is admitted, so concurrent creations count each other.
    pub(super) admission: tokio::sync::Mutex<()>,
    pub(super) host: HostReader,
    pub(super) sys_root: PathBuf,
    pub(super) tasks: TaskTracker,
    pub(super) shutdown: CancellationToken,
    /// The service's own stop: viewers it cuts are not a one-shot session's end.
    pub(super) service_stop: std::sync::OnceLock<CancellationToken>,
    /// The catalogue, kept in memory and re-read only when its files change.
    pub(super) catalogue: Arc<CatalogueCache>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("sessions", &lock(&self.sessions).len())
            .finish_non_exhaustive()
    }
}

impl Manager {
    /// Opens the state directory, re-adopts the sessions still running, cleans up what
    /// is dead, and starts the expiry timer.
    pub async fn start(
        config: Arc<Config>,
        tokens: Arc<TokenMap>,
    ) -> Result<Arc<Self>, SessionError> {
        let dir_cfg = config.dir_cfg.clone();
        let store = super::off_workers("opening the session state", move || Store::open(&dir_cfg))
            .await??;
        let dirs = (config.dir_etc.clone(), config.dir_machines.clone());
        let catalogue = super::off_workers("reading the catalogue", move || {
            CatalogueCache::load(&dirs.0, &dirs.1)
        })
        .await?;
        let mgr = Arc::new(Self {
            config: RwLock::new(config),
            store,
            tokens,
            sessions: Mutex::new(HashMap::new()),
            admission: tokio::sync::Mutex::new(()),
            host: Box::new(|| crate::host::read(std::path::Path::new("/proc")).ok()),
            sys_root: PathBuf::from("/sys"),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            service_stop: std::sync::OnceLock::new(),
            catalogue: Arc::new(catalogue),
        });
        mgr.adopt().await;
        let timer = mgr.clone();
        mgr.tasks.spawn(async move { timer.expiry_timer().await });
        let refresher = mgr.clone();
        mgr.tasks
            .spawn(async move { refresher.catalogue_refresher().await });
        Ok(mgr)
    }

    /// The catalogue as last read; no I/O.
    pub fn catalogue(&self) -> Arc<Catalogue> {
        self.catalogue.get()
    }

    /// The catalogue for a request naming `machine`: the one in memory, or, when it does
    /// not offer that machine yet (just enabled or downloaded, before the once-a-second
    /// check), the catalogue checked again now, off the async workers.
    pub async fn catalogue_for(&self, machine: &str) -> Arc<Catalogue> {
        let current = self.catalogue();
        if current.get(machine).is_some_and(|m| m.available) {
            return current;
        }
        let config = self.config();
        let cache = self.catalogue.clone();
        let checked = tokio::task::spawn_blocking(move || {
            cache.refresh(&config.dir_etc, &config.dir_machines);
        });
        if let Err(e) = checked.await {
            tracing::warn!(error = %e, "catalogue check failed");
        }
        self.catalogue()
    }

    /// Re-reads the catalogue when its files change (checked once a second, off the async
    /// workers), and follows a reloaded configuration's directories.
    async fn catalogue_refresher(self: Arc<Self>) {
        let mut tick = tokio::time::interval(CATALOGUE_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let config = self.config();
            let cache = self.catalogue.clone();
            let check = tokio::task::spawn_blocking(move || {
                cache.refresh(&config.dir_etc, &config.dir_machines)
            });
            // A check stuck on a hung disk must not hold the manager's stop.
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                checked = check => if let Err(e) = checked {
                    tracing::warn!(error = %e, "catalogue check failed");
                },
            }
        }
    }

    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Applies a new configuration to later requests (limits, lifetimes, catalogue).
    pub fn set_config(&self, config: Arc<Config>) {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
    }

    /// Stops the manager's own tasks. Sessions and their VMs keep running: a restarted
    /// darts re-adopts them.
    pub async fn detach(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Sessions `caller` may see: their own, or all for an administrator.
    pub fn list(&self, caller: &Caller) -> Vec<SessionInfo> {
        let mut out: Vec<SessionInfo> = lock(&self.sessions)
            .values()
            .filter(|l| caller.admin || lock(&l.record).user == caller.user)
            .map(|l| info(l))
            .collect();
        out.sort_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)));
        out
    }

    /// One session, if `caller` may see it.
    pub fn get(&self, caller: &Caller, name: &str) -> Result<SessionInfo, SessionError> {
        Ok(info(&*self.authorized(caller, name)?))
    }

    /// Adds 24 hours to a session's lifetime, up to the configured maximum.
    pub async fn extend(&self, caller: &Caller, name: &str) -> Result<SessionInfo, SessionError> {
        let live = self.authorized(caller, name)?;
        let cap = self.config().lifetime_cap();
        let record = {
            let mut r = lock(&live.record);
            if r.expires == 0 {
                return Ok(info(&live));
            }
            let limit = r.created.saturating_add(cap);
            let new = r.expires.saturating_add(EXTEND_STEP).min(limit);
            if new <= r.expires {
                return Err(SessionError::ExtendLimit);
            }
            r.expires = new;
            r.clone()
        };
        self.store.save(&record).await?;
        self.update_routes(&record).await?;
        tracing::info!(session = %name, expires = record.expires, "session extended");
        let extended = info(&live);
        crate::audit::session_extended(&extended, &caller.user);
        Ok(extended)
    }

    /// Mints a fresh full-control token and, unless the session is one-shot, a fresh
    /// view-only one, for a running session `caller` may see. Tokens are kept only as
    /// digests, so a lost link can never be shown again: this is how links are handed
    /// out later. Earlier tokens keep working, up to the newest [`MAX_TOKENS`]; a
    /// one-shot session keeps only the new one.
    pub async fn issue_tokens(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<(String, Option<String>), SessionError> {
        let live = self.authorized(caller, name)?;
        let rng = |_| SessionError::Internal("the system random generator failed".into());
        let oneshot = lock(&live.record).oneshot;
        let token = super::secret::token().map_err(rng)?;
        let view_token = if oneshot {
            None
        } else {
            Some(super::secret::token().map_err(rng)?)
        };
        let (record, dropped) = {
            let mut r = lock(&live.record);
            if r.phase != Phase::Running {
                return Err(SessionError::Internal(
                    "the session is still starting".into(),
                ));
            }
            if oneshot {
                r.tokens.clear();
            }
            r.tokens.push(super::record::TokenRecord {
                sha256: TokenKey::of(&token).to_hex(),
                view_only: false,
            });
            if let Some(v) = &view_token {
                r.tokens.push(super::record::TokenRecord {
                    sha256: TokenKey::of(v).to_hex(),
                    view_only: true,
                });
            }
            let excess = r.tokens.len().saturating_sub(MAX_TOKENS);
            r.tokens.drain(..excess);
            (r.clone(), oneshot || excess > 0)
        };
        self.store.save(&record).await?;
        if dropped {
            // Routes of the tokens just forgotten go too; the kept ones come back below.
            self.tokens.remove_label(&record.name);
        }
        self.register_routes(&record).await?;
        tracing::info!(session = %name, tokens = record.tokens.len(), "new links issued");
        Ok((token, view_token))
    }

    /// Ends a session: the guest is asked to power off, then QEMU to quit, then killed,
    /// the whole bounded by about twice `session_stop_grace` (`monitor::stop_vm`). A
    /// session still being created is stopped as soon as its creation ends. Answers
    /// `Stopped` only once files, tokens and QEMU are gone, else `Stopping`.
    pub async fn stop(&self, caller: &Caller, name: &str) -> Result<StopOutcome, SessionError> {
        let live = self.authorized(caller, name)?;
        self.request_stop(&live, "stopped");
        let grace = Duration::from_secs(self.config().session_stop_grace);
        let wait = grace * 2 + FINISH_WAIT;
        Ok(
            match tokio::time::timeout(wait, live.ended.cancelled()).await {
                Ok(()) => StopOutcome::Stopped,
                Err(_) => StopOutcome::Stopping,
            },
        )
    }

    /// Ends every session (`service_purge`). Administrators only.
    pub async fn purge(&self, caller: &Caller) -> Result<PurgeOutcome, SessionError> {
        if !caller.admin {
            return Err(SessionError::Forbidden);
        }
        let names: Vec<String> = lock(&self.sessions).keys().cloned().collect();
        let stops = names.iter().map(|n| self.stop(caller, n));
        let done = futures_util::future::join_all(stops).await;
        let count = |want| {
            done.iter()
                .filter(|r| matches!(r, Ok(o) if *o == want))
                .count()
        };
        let outcome = PurgeOutcome {
            stopped: count(StopOutcome::Stopped),
            stopping: count(StopOutcome::Stopping),
        };
        crate::audit::admin(caller, "purge", outcome.stopped + outcome.stopping);
        Ok(outcome)
    }

    /// Waits until the named session is gone (tests and one-shot waiting).
    pub async fn wait_ended(&self, name: &str) {
        let live = lock(&self.sessions).get(name).cloned();
        if let Some(live) = live {
            live.ended.cancelled().await;
        }
    }

    /// Tells the manager which token stops the service: a one-shot viewer cut because
    /// darts stops does not end its session (the restart re-adopts it and Manage gives a
    /// fresh link), since the user did not close it.
    pub fn set_service_stop(&self, stop: CancellationToken) {
        let _ = self.service_stop.set(stop);
    }

    fn service_stopping(&self) -> bool {
        self.service_stop
            .get()
            .is_some_and(CancellationToken::is_cancelled)
    }

    pub(super) fn request_stop(&self, live: &Live, reason: &'static str) {
        let control = lock(&live.control);
        match control.as_ref() {
            Some(tx) => {
                let _ = tx.try_send(Control::Stop { reason });
            }
            None => {
                // The creation sees it when it hands the session to its monitor.
                tracing::debug!("stop requested while the session is being created");
                lock(&live.stop_wanted).get_or_insert(reason);
            }
        }
    }

    fn authorized(&self, caller: &Caller, name: &str) -> Result<Arc<Live>, SessionError> {
        let live = lock(&self.sessions)
            .get(name)
            .cloned()
            .ok_or(SessionError::NotFound)?;
        if !caller.admin && lock(&live.record).user != caller.user {
            return Err(SessionError::Forbidden);
        }
        Ok(live)
    }

    /// (Re-)registers every token of a session in the gateway's map.
    pub(super) async fn register_routes(&self, record: &SessionRecord) -> Result<(), SessionError> {
        self.set_routes(record, false).await
    }

    /// Moves the expiry of the session's routes still in the map; a one-shot token
    /// already used is not brought back.
    async fn update_routes(&self, record: &SessionRecord) -> Result<(), SessionError> {
        self.set_routes(record, true).await
    }

    async fn set_routes(
        &self,
        record: &SessionRecord,
        only_existing: bool,
    ) -> Result<(), SessionError> {
        let security = self.backend_security(record).await?;
        for t in &record.tokens {
            let Some(key) = TokenKey::from_hex(&t.sha256) else {
                tracing::warn!(session = %record.name, "unreadable token digest in state");
                continue;
            };
            let mut route = Route::new(record.vnc_target())
                .security(security.clone())
                .view_only(t.view_only)
                .view_only_clipboard(record.view_clipboard)
                .one_shot(record.oneshot)
                .label(record.name.as_str());
            if record.expires != 0 {
                route = route.expires_at(UNIX_EPOCH + Duration::from_secs(record.expires));
            }
            if only_existing {
                self.tokens.replace_key(key, route);
            } else {
                self.tokens.insert_key(key, route);
            }
        }
        Ok(())
    }

    /// How the gateway authenticates to the session's QEMU. The x509 credentials are
    /// files: read on the blocking pool.
    async fn backend_security(
        &self,
        record: &SessionRecord,
    ) -> Result<BackendSecurity, SessionError> {
        let password = Password::new(record.vnc_password.as_bytes().to_vec());
        if record.vnc_security != "x509" {
            return Ok(BackendSecurity::VncPassword(password));
        }
        let dir = self.config().qemu_vnc_x509_dir.join("client");
        let tls = super::off_workers("reading the VNC x509 client credentials", move || {
            let client = darts_proxy::tls::CertPaths {
                cert: dir.join("client-cert.pem"),
                key: Some(dir.join("client-key.pem")),
            };
            darts_proxy::tls::client_config(&dir.join("ca-cert.pem"), Some(&client))
        })
        .await?
        .map_err(|e| SessionError::Internal(format!("VNC x509 client credentials: {e}")))?;
        let server_name =
            vnc_server_name(&record.vnc).map_err(|e| SessionError::Internal(e.to_string()))?;
        Ok(BackendSecurity::X509 {
            tls,
            server_name,
            password: Some(password),
        })
    }

    async fn expiry_timer(self: Arc<Self>) {
        let mut tick = tokio::time::interval(EXPIRY_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = super::now();
            let due: Vec<Arc<Live>> = lock(&self.sessions)
                .values()
                .filter(|l| {
                    let r = lock(&l.record);
                    r.phase == Phase::Running && r.expires != 0 && r.expires <= now
                })
                .cloned()
                .collect();
            for live in due {
                tracing::info!(session = %lock(&live.record).name, "lifetime over");
                self.request_stop(&live, "lifetime over");
            }
        }
    }

    /// Live sessions as the limits see them (sessions being created count too).
    pub(super) fn usage(&self) -> Vec<limits::LiveSession> {
        lock(&self.sessions)
            .values()
            .map(|l| {
                let r = lock(&l.record);
                limits::LiveSession {
                    user: r.user.clone(),
                    cpu: r.cpu,
                    memory_mb: r.memory_mb,
                    gpu: r.gpu.clone(),
                }
            })
            .collect()
    }
}

pub(super) fn info(live: &Live) -> SessionInfo {
    let r = lock(&live.record);
    SessionInfo {
        name: r.name.clone(),
        user: r.user.clone(),
        machine: r.machine.clone(),
        cpu: r.cpu,
        memory_mb: r.memory_mb,
        gpu: r.gpu.clone(),
        oneshot: r.oneshot,
        created: r.created,
        expires: r.expires,
        viewers: live.viewers.load(Ordering::Relaxed) + live.peer_viewers.load(Ordering::Relaxed),
        phase: r.phase,
        remote_host: r.remote_host.clone(),
    }
}

/// The name darts checks QEMU's x509 certificate against. On a unix socket, `localhost`
/// (in every certificate `darts certs init` makes). On TCP, the address QEMU listens on,
/// which is also what gateways on other hosts connect to: the certificate must list it
/// as an IP address (`darts certs init --server-name 10.0.0.5`; 127.0.0.1 is there by
/// default), and `darts config check` says when it does not.
pub fn vnc_server_name(
    vnc: &crate::vm::VncEndpoint,
) -> Result<rustls_pki_types::ServerName<'static>, rustls_pki_types::InvalidDnsNameError> {
    match vnc {
        crate::vm::VncEndpoint::Unix(_) => rustls_pki_types::ServerName::try_from("localhost"),
        crate::vm::VncEndpoint::Tcp(addr) => Ok(addr.ip().into()),
    }
}

/// Seconds left before `expires` (0 = no limit gives `None`).
pub fn time_left(expires: u64) -> Option<u64> {
    (expires != 0).then(|| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        expires.saturating_sub(now)
    })
}

#[cfg(test)]
mod tests;
