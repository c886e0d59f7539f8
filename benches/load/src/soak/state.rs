//! What the run's tasks share: the API, the sessions the soak holds and what each is
//! going through, whether the gateway is up, the restart gate, the end signal, the tally.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{watch, RwLock};
use tokio::time::Instant;

use super::api::Api;
use super::plan::{Plan, Role};
use super::tally::Tally;

/// The gateway as the soak sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gateway {
    /// Answering; the number counts restarts, so a viewer knows whether its gateway is
    /// still the one it connected to.
    Up(u64),
    /// Being restarted by a fault: cut viewers are expected and wait.
    Restarting,
}

/// What one session is going through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Must be listed and reachable.
    Live,
    /// Being stopped by the soak (or a one-shot whose viewer was closed).
    Ending,
    /// Its QEMU was killed: it must end cleanly.
    Killed,
    /// A one-shot session whose viewer a restart cut: darts may end it or keep it.
    Exempt,
    /// Gone, checked.
    Gone,
}

/// One session the soak holds. The token is a secret: never logged or reported.
pub struct Tracked {
    pub role: Role,
    pub oneshot: bool,
    pub token: String,
    pub status: Arc<watch::Sender<Status>>,
}

impl std::fmt::Debug for Tracked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracked")
            .field("role", &self.role)
            .field("oneshot", &self.oneshot)
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

/// darts' directories, when the soak knows them.
#[derive(Debug, Clone, Default)]
pub struct Dirs {
    pub state: Option<PathBuf>,
    pub snapshots: Option<PathBuf>,
}

#[derive(Debug)]
pub struct Shared {
    pub plan: Plan,
    pub api: Api,
    /// darts' `dir_cfg` when known: session records give QEMU's pid.
    pub state_dir: Option<PathBuf>,
    /// darts' `dir_snapshots` when known: an ended session's directory must go.
    pub snapshot_dir: Option<PathBuf>,
    /// The soak started darts itself and is its only user.
    pub owned: bool,
    /// Sessions the user already had when the soak started (an attached darts): never
    /// touched.
    pub preexisting: Vec<String>,
    /// API calls hold it shared; a gateway restart holds it alone, so that no creation
    /// or stop is cut in the middle.
    pub gate: RwLock<()>,
    pub gateway: watch::Sender<Gateway>,
    /// Set when the run's time is up: slots wind down.
    pub ending: watch::Sender<bool>,
    /// Set on Ctrl-C: no new fault (the one in progress finishes with its checks).
    pub faults_off: watch::Sender<bool>,
    pub sessions: Mutex<BTreeMap<String, Tracked>>,
    pub tally: Mutex<Tally>,
    pub started: Instant,
}

impl Shared {
    pub fn new(plan: Plan, api: Api, dirs: Dirs, owned: bool, preexisting: Vec<String>) -> Self {
        Self {
            plan,
            api,
            state_dir: dirs.state,
            snapshot_dir: dirs.snapshots,
            owned,
            preexisting,
            gate: RwLock::new(()),
            gateway: watch::Sender::new(Gateway::Up(0)),
            ending: watch::Sender::new(false),
            faults_off: watch::Sender::new(false),
            sessions: Mutex::new(BTreeMap::new()),
            tally: Mutex::new(Tally::default()),
            started: Instant::now(),
        }
    }

    pub fn tally(&self) -> MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn sessions(&self) -> MutexGuard<'_, BTreeMap<String, Tracked>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_ending(&self) -> bool {
        *self.ending.borrow()
    }

    /// Seconds since the start of the run.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Records an error of one step.
    pub fn error(&self, e: &super::error::SoakError, context: &str) {
        progress(&format!("{context}: {e}"));
        self.tally().error(e.kind(), format!("{context}: {e}"));
    }

    /// Sets a session's status; false if the soak no longer tracks it.
    pub fn set_status(&self, name: &str, status: Status) -> bool {
        match self.sessions().get(name) {
            Some(t) => {
                t.status.send_replace(status);
                true
            }
            None => false,
        }
    }

    /// Waits until the gateway is up; returns its generation.
    pub async fn gateway_up(&self) -> u64 {
        let mut rx = self.gateway.subscribe();
        let up = rx.wait_for(|g| matches!(g, Gateway::Up(_))).await;
        match up.map(|g| *g) {
            Ok(Gateway::Up(n)) => n,
            _ => 0,
        }
    }

    /// Sleeps for `d`, or less if the run ends first; true if the run is ending.
    pub async fn sleep_or_end(&self, d: Duration) -> bool {
        let mut rx = self.ending.subscribe();
        tokio::select! {
            _ = rx.wait_for(|e| *e) => true,
            () = tokio::time::sleep(d) => self.is_ending(),
        }
    }
}

/// Progress lines on standard error, with the time since start.
pub fn progress(msg: &str) {
    eprintln!("darts-load soak: {msg}");
}

/// Stops a viewer's phase early: the run ends, or its session leaves `Live`.
#[derive(Debug, Clone)]
pub struct Halt {
    ending: watch::Receiver<bool>,
    status: watch::Receiver<Status>,
}

impl Halt {
    pub fn new(shared: &Shared, status: &watch::Sender<Status>) -> Self {
        Self {
            ending: shared.ending.subscribe(),
            status: status.subscribe(),
        }
    }

    pub fn is_set(&self) -> bool {
        *self.ending.borrow() || *self.status.borrow() != Status::Live
    }

    /// Resolves once the halt is set.
    pub async fn wait(&mut self) {
        let ending = async {
            if self.ending.wait_for(|e| *e).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let status = async {
            if self.status.wait_for(|s| *s != Status::Live).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = ending => {}
            () = status => {}
        }
    }
}
