//! Creating a session: admission, disk, boot scripts, QEMU, readiness, tokens.
//!
//! Order matters for crash safety: the record is written (phase `creating`) before any
//! file is made and QEMU's pid is recorded as soon as it is known, so a restart after a
//! crash at any point finds everything to undo. A failure here undoes at once.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use darts_proxy::token::TokenKey;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::manager::{
    info, lock, Caller, Control, CreateRequest, Created, Live, Manager, SessionError,
};
use super::record::{Phase, SessionRecord, TokenRecord, FORMAT};
use super::{monitor, secret, vnc_port};
use crate::catalogue::Catalogue;
use crate::config::Config;
use crate::limits;
use crate::qmp::Qmp;
use crate::vm;

/// Marker file in a session directory: darts removes only directories holding it.
pub(super) const MARKER: &str = ".darts-session";
/// How long QEMU may take to initialise and daemonize.
const QEMU_START: Duration = Duration::from_secs(60);
/// How long QMP and VNC may take to answer once QEMU is up.
const READY: Duration = Duration::from_secs(30);
/// Longest boot-script customisation (virt-customize boots a small appliance).
const CUSTOMIZE: Duration = Duration::from_secs(600);

impl Manager {
    /// Creates a session for `caller`. The page is ready when this returns.
    pub async fn create(
        self: &Arc<Self>,
        caller: &Caller,
        req: &CreateRequest,
    ) -> Result<Created, SessionError> {
        let catalogue = self.catalogue_for(&req.machine).await;
        self.create_from(caller, req, &catalogue).await
    }

    /// Same, with the catalogue the caller already looked the machine up in (the web
    /// API validates the request against it), so one creation checks the catalogue once.
    pub async fn create_from(
        self: &Arc<Self>,
        caller: &Caller,
        req: &CreateRequest,
        catalogue: &Catalogue,
    ) -> Result<Created, SessionError> {
        let created = self.create_session(caller, req, catalogue).await;
        match &created {
            Ok(c) => crate::audit::session_started(&c.info),
            Err(e) => crate::audit::session_failed(caller, req, &self.config(), e),
        }
        created
    }

    async fn create_session(
        self: &Arc<Self>,
        caller: &Caller,
        req: &CreateRequest,
        catalogue: &Catalogue,
    ) -> Result<Created, SessionError> {
        let mut laps = Laps::start();
        let config = self.config();
        let machine = catalogue
            .get(&req.machine)
            .ok_or_else(|| SessionError::UnknownMachine(req.machine.clone()))?;
        if !machine.available {
            return Err(SessionError::MachineMissing(req.machine.clone()));
        }
        let use_master = req.use_master || config.snapshot_use_master;
        if use_master && !caller.admin {
            return Err(SessionError::MasterNotAllowed);
        }
        let cpu = req.cpu.unwrap_or(config.snapshot_alloc_cpu);
        let memory_mb =
            (req.memory_gb.unwrap_or(config.snapshot_alloc_mem) * 1024.0).round() as u64;
        let oneshot = req.oneshot || config.oneshot;
        let lifetime = match req.lifetime.unwrap_or(config.snapshot_lifetime) {
            0 if config.snapshot_lifetime == 0 => 0,
            0 => config.snapshot_lifetime,
            l if config.snapshot_lifetime == 0 => l,
            l => l.min(config.lifetime_cap()),
        };

        // Admission: limits and GPU choice see every session, including those being
        // created right now; the new one is counted before the lock is released.
        let (record, live) = {
            let _admit = self.admission.lock().await;
            let host = (self.host)().ok_or_else(|| {
                SessionError::Internal("cannot read the host's CPU and memory figures".into())
            })?;
            let usage = self.usage();
            let request = limits::Request {
                user: caller.user.clone(),
                cpu,
                memory_mb,
                gpu: req.gpu,
            };
            limits::check(&config, &host, &usage, &request).map_err(SessionError::Refused)?;
            let gpu = if req.gpu {
                let gpus = crate::gpu::configured(&config, &self.sys_root);
                let in_use: Vec<String> = usage.iter().filter_map(|s| s.gpu.clone()).collect();
                match crate::gpu::pick_free(&gpus, &in_use, &config.gpu_blacklist) {
                    Some(g) => Some(g.pci.clone()),
                    None => return Err(SessionError::Refused(vec![limits::Refusal::NoFreeGpu])),
                }
            } else {
                None
            };
            let name = secret::session_name().map_err(|_| rng_error())?;
            let dir = config.dir_snapshots.join(&name);
            let vnc = self.vnc_endpoint(&config, &dir, &[])?;
            let iso = machine.format.is_cdrom();
            let now = super::now();
            let record = SessionRecord {
                darts_session: FORMAT,
                name: name.clone(),
                phase: Phase::Creating,
                user: caller.user.clone(),
                machine: machine.name.clone(),
                machine_path: machine.path.clone(),
                machine_format: machine.format.qemu_format().to_owned(),
                cpu,
                memory_mb,
                disk_gb: iso.then_some(config.snapshot_alloc_disk),
                gpu,
                oneshot,
                view_clipboard: req.view_clipboard,
                use_master: use_master && !iso,
                created: now,
                expires: if lifetime == 0 { 0 } else { now + lifetime },
                pid: None,
                disk: if use_master && !iso {
                    machine.path.clone()
                } else {
                    dir.join("disk.qcow2")
                },
                qmp_socket: dir.join("qmp.sock"),
                vnc,
                dir,
                vnc_security: config.qemu_vnc_security.clone(),
                vnc_password: secret::vnc_password().map_err(|_| rng_error())?,
                tokens: Vec::new(),
                remote_host: caller.remote.clone(),
            };
            let live = Live::new(record.clone());
            lock(&self.sessions).insert(name, live.clone());
            (record, live)
        };

        laps.lap("admission");
        tracing::info!(session = %record.name, user = %record.user, machine = %record.machine,
            cpu, memory_mb, gpu = ?record.gpu, oneshot, "creating session");
        match self.boot(&config, record, &live, &mut laps).await {
            Ok((record, qmp, token, view_token)) => {
                *lock(&live.record) = record.clone();
                let (tx, rx) = mpsc::channel(4);
                {
                    // A stop asked during the creation goes first to the monitor.
                    let mut control = lock(&live.control);
                    if let Some(reason) = lock(&live.stop_wanted).take() {
                        tracing::info!(session = %record.name, "stop asked during the creation");
                        let _ = tx.try_send(Control::Stop { reason });
                    }
                    *control = Some(tx);
                }
                let mgr = self.clone();
                let l = live.clone();
                self.tasks
                    .spawn(async move { monitor::run(mgr, l, qmp, rx).await });
                tracing::info!(session = %record.name, pid = ?record.pid, "session ready");
                Ok(Created {
                    info: info(&live),
                    token,
                    view_token,
                    timings: laps.into_inner(),
                })
            }
            Err((record, e)) => {
                tracing::warn!(session = %record.name, error = %e, "session creation failed; undoing");
                self.undo(&record).await;
                lock(&self.sessions).remove(&record.name);
                live.ended.cancel();
                Err(e)
            }
        }
    }

    /// Everything after admission. On error, returns the record as far as it got so the
    /// caller can undo exactly that.
    async fn boot(
        &self,
        config: &Config,
        mut record: SessionRecord,
        live: &Live,
        laps: &mut Laps,
    ) -> Result<(SessionRecord, Qmp, String, Option<String>), (SessionRecord, SessionError)> {
        macro_rules! tryr {
            ($e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(e) => return Err((record, e)),
                }
            };
        }
        tryr!(self.store.save(&record).await.map_err(SessionError::from));
        let dir = record.dir.clone();
        tryr!(
            super::off_workers("making the session directory", move || make_dir(&dir))
                .await
                .and_then(|made| made)
        );
        laps.lap("state");

        // Disk.
        // The catalogue says how the image is read; its contents never do.
        let master_format = record.machine_format.clone();
        tryr!(
            vm::disk::check_master(&record.machine_path, &master_format, &config.dir_machines)
                .await
                .map_err(disk_error)
        );
        let (disk_format, cdrom) = if let Some(gb) = record.disk_gb {
            tryr!(vm::disk::create_blank(&record.disk, gb)
                .await
                .map_err(disk_error));
            ("qcow2".to_owned(), Some(record.machine_path.clone()))
        } else if record.use_master {
            (master_format, None)
        } else {
            tryr!(
                vm::disk::create_overlay(&record.machine_path, &master_format, &record.disk)
                    .await
                    .map_err(disk_error)
            );
            ("qcow2".to_owned(), None)
        };

        laps.lap("disk");
        // Boot scripts.
        let vars = crate::script::Vars {
            user: record.user.clone(),
            session_name: record.name.clone(),
            vm: record.machine.clone(),
        };
        let fetch_opts = crate::fetch::FetchOptions::from_config(config);
        let max_len = config.service_max_script_length;
        let scripts = config.config_script.clone();
        // Fetching a script URL (with bounded retries) and reading script files block:
        // on the blocking pool, as `script::plan` asks.
        let plan = tryr!(super::off_workers("planning the boot scripts", move || {
            let fetch = |url: &str| {
                crate::fetch::fetch_text(url, &fetch_opts, max_len).map_err(|e| e.to_string())
            };
            crate::script::plan(&scripts, &vars, max_len, &fetch)
                .map_err(|e| SessionError::Script(e.to_string()))
        })
        .await
        .and_then(|planned| planned));
        let customize = {
            let (plan, disk, dir) = (plan.clone(), record.disk.clone(), record.dir.clone());
            super::off_workers("writing the boot scripts", move || {
                crate::script::virt_customize_argv(&plan, &disk, &dir)
                    .map_err(|e| SessionError::Script(e.to_string()))
            })
        };
        if let Some(argv) = tryr!(customize.await.and_then(|argv| argv)) {
            tryr!(crate::script::run_virt_customize(&argv, CUSTOMIZE)
                .await
                .map_err(|e| SessionError::Script(e.to_string())));
        }

        laps.lap("scripts");
        // QEMU.
        let exec = tryr!(vm::exec::resolve_exec(&config.qemu_exec).map_err(qemu_error));
        let exec_options = tryr!(vm::exec::resolve_options(&config.qemu_exec_options, &exec)
            .await
            .map_err(qemu_error));
        let accel = vm::accel::choose(&config.qemu_accel, &exec).await;
        let mounts = config.dir_mounts.clone();
        let mounts: Vec<PathBuf> = tryr!(
            super::off_workers("looking at dir_mounts", move || {
                mounts.into_iter().filter(|d| d.is_dir()).collect()
            })
            .await
        );
        let vnc_auth = if record.vnc_security == "x509" {
            vm::cmdline::VncAuth::X509 {
                dir: config.qemu_vnc_x509_dir.join("server"),
                password: true,
            }
        } else {
            vm::cmdline::VncAuth::Password
        };
        let pidfile = record.dir.join("qemu.pid");
        let spec = vm::cmdline::LaunchSpec {
            exec: exec.clone(),
            exec_options,
            accel,
            name: record.name.clone(),
            user: record.user.clone(),
            machine: record.machine.clone(),
            cpu: record.cpu,
            memory_mb: record.memory_mb,
            disk: record.disk.clone(),
            disk_format,
            cdrom,
            gpu: record.gpu.clone(),
            mounts,
            extra_args: plan.qemu_args.clone(),
            vnc: record.vnc.clone(),
            vnc_auth,
            qmp_socket: record.qmp_socket.clone(),
            pidfile: pidfile.clone(),
            clipboard: true,
        };
        laps.lap("qemu_options");
        let dir = &record.dir;
        let launched = vnc_port::launch_retrying(
            record.vnc.clone(),
            vnc_port::port_range(config),
            |vnc| {
                let spec = vm::cmdline::LaunchSpec {
                    vnc,
                    ..spec.clone()
                };
                async move { vm::exec::launch(&spec, QEMU_START).await }
            },
            |tried: Vec<u16>| async move {
                let _admit = self.admission.lock().await;
                let vnc = self.vnc_endpoint(config, dir, &tried)?;
                lock(&live.record).vnc = vnc.clone();
                Ok(vnc)
            },
        )
        .await;
        let (pid, vnc) = tryr!(launched);
        record.vnc = vnc;
        record.pid = Some(pid);
        *lock(&live.record) = record.clone();
        tryr!(self.store.save(&record).await.map_err(SessionError::from));

        laps.lap("qemu_launch");
        // Ready when QMP answers and VNC greets.
        let mut qmp = tryr!(Qmp::connect(&record.qmp_socket, READY)
            .await
            .map_err(|e| SessionError::Qemu(format!("QMP did not answer: {e}"))));
        tryr!(qmp
            .set_vnc_password(&record.vnc_password)
            .await
            .map_err(|e| SessionError::Qemu(format!("setting the VNC password: {e}"))));
        laps.lap("qmp_ready");
        tryr!(vnc_greets(&record.vnc).await);
        laps.lap("vnc_ready");

        // Tokens.
        let token = tryr!(secret::token().map_err(|_| rng_error()));
        record.tokens.push(TokenRecord {
            sha256: TokenKey::of(&token).to_hex(),
            view_only: false,
        });
        let view_token = if record.oneshot {
            None
        } else {
            let t = tryr!(secret::token().map_err(|_| rng_error()));
            record.tokens.push(TokenRecord {
                sha256: TokenKey::of(&t).to_hex(),
                view_only: true,
            });
            Some(t)
        };
        record.phase = Phase::Running;
        tryr!(self.store.save(&record).await.map_err(SessionError::from));
        tryr!(self.register_routes(&record).await);
        laps.lap("tokens");
        Ok((record, qmp, token, view_token))
    }

    /// Removes whatever a session made: its tokens, its QEMU, its directory, its record.
    /// Touches only a directory that holds darts' marker, and never a master image.
    pub(super) async fn undo(&self, record: &SessionRecord) {
        self.tokens.remove_label(&record.name);
        // A crash between QEMU's start and the record's update leaves the pid only in
        // the pidfile.
        let pid = match record.pid {
            Some(pid) => Some(pid),
            None => tokio::fs::read_to_string(record.dir.join("qemu.pid"))
                .await
                .ok()
                .and_then(|s| s.trim().parse().ok()),
        };
        if let Some(pid) = pid {
            super::process::kill(pid, &record.name);
            super::process::wait_gone(pid, &record.name, Duration::from_secs(5)).await;
        }
        super::process::stop_unrecorded_qemus(&record.dir, &record.name).await;
        let (dir, name) = (record.dir.clone(), record.name.clone());
        let removed = super::off_workers("removing the session directory", move || {
            remove_session_dir(&dir, &name)
        });
        if let Err(e) = removed.await {
            tracing::warn!(session = %record.name, error = %e, "cannot remove session directory");
        }
        if let Err(e) = self.store.remove(&record.name).await {
            tracing::warn!(session = %record.name, error = %e, "cannot remove session state");
        }
    }
}

/// Time spent in each phase of a creation, for the creation benchmark and the logs.
#[derive(Debug)]
pub(super) struct Laps {
    last: std::time::Instant,
    laps: Vec<(&'static str, Duration)>,
}

impl Laps {
    fn start() -> Self {
        Self {
            last: std::time::Instant::now(),
            laps: Vec::new(),
        }
    }

    fn lap(&mut self, phase: &'static str) {
        let now = std::time::Instant::now();
        self.laps.push((phase, now - self.last));
        self.last = now;
    }

    fn into_inner(self) -> Vec<(&'static str, Duration)> {
        self.laps
    }
}

/// Removes a session directory if it is one darts made for `name`. Blocking.
pub(super) fn remove_session_dir(dir: &Path, name: &str) {
    let marker = dir.join(MARKER);
    match std::fs::read_to_string(&marker) {
        Ok(owner) if owner.trim() == name => {
            if let Err(e) = std::fs::remove_dir_all(dir) {
                tracing::warn!(session = %name, error = %e, "cannot remove session directory");
            }
        }
        // `make_dir` cut short (a crash, a full disk): nothing of value is inside.
        _ if holds_nothing(dir) => {
            let _ = std::fs::remove_file(&marker);
            if let Err(e) = std::fs::remove_dir(dir) {
                tracing::warn!(session = %name, error = %e, "cannot remove session directory");
            }
        }
        Ok(_) => {
            tracing::warn!(session = %name, dir = %dir.display(), "directory marked for another session; left alone")
        }
        Err(_) if !dir.exists() => {}
        Err(_) => {
            tracing::warn!(session = %name, dir = %dir.display(), "directory without darts' marker; left alone")
        }
    }
}

/// True for what a `make_dir` cut short leaves: the directory with no entry, or with
/// only an empty marker.
fn holds_nothing(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries
        .flatten()
        .all(|e| e.file_name() == MARKER && e.metadata().is_ok_and(|m| m.is_file() && m.len() == 0))
}

/// Makes a session directory with darts' marker. Blocking.
fn make_dir(dir: &Path) -> Result<(), SessionError> {
    let io = |e: std::io::Error| SessionError::Disk(format!("{}: {e}", dir.display()));
    if let Some(parent) = dir.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(io)?;
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    std::fs::write(dir.join(MARKER), name).map_err(io)
}

/// Connects to QEMU's VNC server (unix socket or TCP port) and reads the RFB greeting,
/// which QEMU sends in clear before any VeNCrypt negotiation.
async fn vnc_greets(vnc: &vm::VncEndpoint) -> Result<(), SessionError> {
    let check = async {
        let mut greeting = [0u8; 12];
        match vnc {
            vm::VncEndpoint::Unix(path) => {
                let mut s = tokio::net::UnixStream::connect(path).await?;
                s.read_exact(&mut greeting).await?;
            }
            vm::VncEndpoint::Tcp(addr) => {
                let mut s = tokio::net::TcpStream::connect(addr).await?;
                s.read_exact(&mut greeting).await?;
            }
        }
        Ok::<_, std::io::Error>(greeting)
    };
    match tokio::time::timeout(READY, check).await {
        Ok(Ok(g)) if g.starts_with(b"RFB ") => Ok(()),
        Ok(Ok(_)) => Err(SessionError::Qemu(
            "the VNC server does not speak RFB".into(),
        )),
        Ok(Err(e)) => Err(SessionError::Qemu(format!("VNC server: {e}"))),
        Err(_) => Err(SessionError::Qemu("VNC did not answer in time".into())),
    }
}

fn disk_error(e: vm::VmError) -> SessionError {
    SessionError::Disk(e.to_string())
}

fn qemu_error(e: vm::VmError) -> SessionError {
    SessionError::Qemu(e.to_string())
}

fn rng_error() -> SessionError {
    SessionError::Internal("the system random generator failed".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_cut_short_is_removed_and_anything_else_kept() {
        let root = tempfile::tempdir().unwrap();
        // Made, no marker yet.
        let bare = root.path().join("darts-aaaaaaaaaaaa");
        std::fs::create_dir(&bare).unwrap();
        remove_session_dir(&bare, "darts-aaaaaaaaaaaa");
        assert!(!bare.exists());
        // The marker created, its content never written.
        let empty = root.path().join("darts-bbbbbbbbbbbb");
        std::fs::create_dir(&empty).unwrap();
        std::fs::write(empty.join(MARKER), "").unwrap();
        remove_session_dir(&empty, "darts-bbbbbbbbbbbb");
        assert!(!empty.exists());
        // Anything else inside, or another session's marker: left alone.
        let other = root.path().join("darts-cccccccccccc");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("data"), "keep").unwrap();
        remove_session_dir(&other, "darts-cccccccccccc");
        assert!(other.join("data").exists());
        std::fs::write(other.join(MARKER), "darts-dddddddddddd").unwrap();
        remove_session_dir(&other, "darts-cccccccccccc");
        assert!(other.join("data").exists());
    }
}
