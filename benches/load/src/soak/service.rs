//! `darts serve` run by the soak: a scratch configuration (the demo machine as the one
//! catalogue entry, state, snapshots and log in the scratch directory, TCG, no load
//! limits, at most as many sessions as the soak holds), start, SIGTERM and start again.
//!
//! QEMU outlives darts on purpose, so at the very end every QEMU whose command line names
//! the scratch directory is killed: they can only be this run's VMs.

use std::fs::{self, File, OpenOptions};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rustix::process::Signal;
use tokio::sync::watch;
use tokio::time::Instant;

use super::error::{Result, SoakError};
use super::procs;

/// darts gets this long to answer after a start (re-adoption of every session included).
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// darts gets this long to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// Marks a scratch directory the soak made, so that a later run may empty it.
const MARKER: &str = ".darts-soak";

/// Where and how to run darts.
#[derive(Debug, Clone)]
pub struct Setup {
    pub darts: PathBuf,
    pub scratch: PathBuf,
    pub guest: PathBuf,
    /// The source tree's `web/` (noVNC and the pages), if present.
    pub web: Option<PathBuf>,
    /// `service_max_session_nb`: the soak's sessions, so a slot that is not freed shows.
    pub max_sessions: usize,
}

#[derive(Debug)]
pub struct Service {
    setup: Setup,
    config: PathBuf,
    pub addr: SocketAddr,
    log: PathBuf,
    child: Option<Child>,
    /// darts' pid while it runs, for the sampler.
    pub pid: watch::Sender<Option<u32>>,
}

impl Service {
    /// Empties (or creates) the scratch directory and writes the configuration.
    pub fn prepare(setup: Setup) -> Result<Self> {
        let root = &setup.scratch;
        if !setup.guest.is_file() {
            return Err(SoakError::Setup(format!(
                "machine image {} missing: run `bash tests/setup.sh guest`",
                setup.guest.display()
            )));
        }
        reset_scratch(root)?;
        let io = |what: &str| SoakError::io(format!("{what} in {}", root.display()));
        for d in ["machines", "etc", "state", "snapshots", "service"] {
            fs::create_dir_all(root.join(d)).map_err(io("creating directories"))?;
        }
        let guest = fs::canonicalize(&setup.guest).map_err(io("finding the machine image"))?;
        std::os::unix::fs::symlink(&guest, root.join("machines/demo.img"))
            .map_err(io("linking the machine image"))?;
        fs::write(
            root.join("etc/machines.conf"),
            "[demo.img]\ndescription=Soak guest\n",
        )
        .map_err(io("writing machines.conf"))?;
        let addr = free_port()?;
        let config = root.join("config.toml");
        fs::write(
            &config,
            config_text(root, setup.web.as_deref(), addr, setup.max_sessions),
        )
        .map_err(io("writing config.toml"))?;
        Ok(Self {
            log: root.join("darts.log"),
            setup,
            config,
            addr,
            child: None,
            pid: watch::Sender::new(None),
        })
    }

    /// The base URL of the pages and API.
    pub fn url(&self) -> String {
        format!("http://{}/darts", self.addr)
    }

    pub fn state_dir(&self) -> PathBuf {
        self.setup.scratch.join("state")
    }

    pub fn snapshot_dir(&self) -> PathBuf {
        self.setup.scratch.join("snapshots")
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Starts `darts serve` and waits until its port and control socket answer; returns
    /// how long that took.
    pub async fn launch(&mut self) -> Result<Duration> {
        let t0 = Instant::now();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(SoakError::io(format!("opening {}", self.log.display())))?;
        let err = log
            .try_clone()
            .map_err(SoakError::io(format!("opening {}", self.log.display())))?;
        // Its own process group: a Ctrl-C meant for the soak (which then stops every
        // session through darts) must not reach darts.
        let mut child = Command::new(&self.setup.darts)
            .process_group(0)
            .arg("serve")
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(SoakError::io(format!(
                "starting {}",
                self.setup.darts.display()
            )))?;
        let sock = self.setup.scratch.join("service/darts.sock");
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(SoakError::Setup(format!(
                    "darts serve exited with {status} (log: {})",
                    self.log.display()
                )));
            }
            let port_up = tokio::net::TcpStream::connect(self.addr).await.is_ok();
            if port_up && tokio::net::UnixStream::connect(&sock).await.is_ok() {
                break;
            }
            if t0.elapsed() > START_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                return Err(SoakError::Setup(format!(
                    "darts serve did not answer within {} s (log: {})",
                    START_TIMEOUT.as_secs(),
                    self.log.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.pid.send_replace(Some(child.id()));
        self.child = Some(child);
        Ok(t0.elapsed())
    }

    /// SIGTERM, then waits for darts to exit; SIGKILL after [`STOP_TIMEOUT`]. Returns how
    /// long it took and whether darts exited on its own.
    pub async fn stop(&mut self) -> (Duration, bool) {
        let t0 = Instant::now();
        self.pid.send_replace(None);
        let Some(mut child) = self.child.take() else {
            return (Duration::ZERO, true);
        };
        procs::signal(child.id(), Signal::TERM);
        while t0.elapsed() < STOP_TIMEOUT {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return (t0.elapsed(), true);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        (t0.elapsed(), false)
    }

    /// QEMU processes whose command line names this run's scratch directory.
    pub fn vms(&self) -> Vec<u32> {
        procs::qemus_mentioning(&self.setup.scratch)
    }

    /// Kills the run's VMs still running; returns how many.
    pub fn kill_leftovers(&self) -> usize {
        let left = self.vms();
        for &pid in &left {
            procs::signal(pid, Signal::KILL);
        }
        left.len()
    }

    /// Counts WARN and ERROR lines of darts' log.
    /// Copied to `keep` first when given (the scratch directory goes after a run that
    /// passed).
    pub fn log_counts(&self, keep: Option<&Path>) -> super::report::LogCounts {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let path = match keep {
            Some(to) if fs::write(to, &text).is_ok() => to,
            _ => &self.log,
        };
        super::report::LogCounts::from_text(&text, path.display().to_string())
    }

    /// Removes the scratch directory (after a run that passed).
    pub fn remove_scratch(&self) {
        let _ = fs::remove_dir_all(&self.setup.scratch);
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Creates `root`, or empties it if an earlier run made it; refuses a directory that
/// holds anything else. VMs left by an earlier run (QEMU whose command line names
/// `root`) are killed first.
fn reset_scratch(root: &Path) -> Result<()> {
    let marker = root.join(MARKER);
    if root.exists() {
        let empty = fs::read_dir(root)
            .map_err(SoakError::io(format!("reading {}", root.display())))?
            .next()
            .is_none();
        if !empty && !marker.exists() {
            return Err(SoakError::Setup(format!(
                "{} is not empty and was not made by the soak; give another --scratch",
                root.display()
            )));
        }
        for pid in procs::qemus_mentioning(root) {
            procs::signal(pid, Signal::KILL);
        }
        fs::remove_dir_all(root).map_err(SoakError::io(format!("emptying {}", root.display())))?;
    }
    fs::create_dir_all(root).map_err(SoakError::io(format!("creating {}", root.display())))?;
    File::create(&marker).map_err(SoakError::io(format!("creating {}", marker.display())))?;
    Ok(())
}

fn free_port() -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(SoakError::io("finding a free port"))?;
    l.local_addr().map_err(SoakError::io("finding a free port"))
}

/// The configuration: one small machine per session (1 core, 0.25 GB, TCG), no load or
/// per-user limits, at most `max_sessions` at once, a short stop grace.
fn config_text(root: &Path, web: Option<&Path>, addr: SocketAddr, max_sessions: usize) -> String {
    let root = root.display();
    let web = web.map_or(String::new(), |w| {
        format!(
            "dir_novnc = \"{}/novnc\"\ndir_html = \"{}/app\"\n",
            w.display(),
            w.display()
        )
    });
    format!(
        r#"dir_machines = "{root}/machines"
dir_snapshots = "{root}/snapshots"
dir_cfg = "{root}/state"
dir_service = "{root}/service"
dir_etc = "{root}/etc"
dir_mounts = []
service_logfile = "{root}/service/audit.log"
{web}service_port = {port}
qemu_accel = "tcg"
snapshot_alloc_mem = 0.25
snapshot_alloc_cpu = 1
layout_cpu = [1]
layout_memory = [0.25]
session_stop_grace = 3
service_max_session_nb = {max_sessions}
service_max_session_nb_per_user = 0
service_max_load = 0
service_max_cpu_fraction_nb_per_user = 0
service_max_mem_fraction_nb_per_user = 0
"#,
        port = addr.port(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_the_scratch_directories_and_limits() {
        let text = config_text(
            Path::new("/s"),
            Some(Path::new("/src/web")),
            "127.0.0.1:7000".parse().unwrap(),
            3,
        );
        for line in [
            "dir_cfg = \"/s/state\"",
            "dir_novnc = \"/src/web/novnc\"",
            "service_port = 7000",
            "service_max_session_nb = 3",
            "layout_memory = [0.25]",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        let parsed: toml::Table = text.parse().unwrap();
        assert_eq!(
            parsed.get("qemu_accel").and_then(|v| v.as_str()),
            Some("tcg")
        );
    }

    #[test]
    fn scratch_directories_of_others_are_refused() {
        let base = std::env::temp_dir().join(format!("darts-soak-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(&base).unwrap();
        fs::write(base.join("precious"), "x").unwrap();
        assert!(reset_scratch(&base).is_err());
        assert!(base.join("precious").exists());
        fs::remove_file(base.join("precious")).unwrap();
        reset_scratch(&base).unwrap();
        fs::write(base.join("old-run"), "x").unwrap();
        reset_scratch(&base).unwrap();
        assert!(!base.join("old-run").exists() && base.join(MARKER).exists());
        fs::remove_dir_all(&base).unwrap();
    }
}
