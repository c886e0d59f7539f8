//! `darts serve` on a scratch configuration: the test guest's disk as the catalogue's one
//! machine, state and snapshots in the scratch directory, TCG. Every QEMU started under
//! the scratch directory is killed when the harness is dropped (VMs outlive darts on
//! purpose, so killing darts is not enough).
//!
//! Declared from a test file with `#[path = "support/service.rs"] mod service;` after
//! `mod support;` and `#[path = "support/qemu.rs"] mod qemu;`.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::qemu::RfbOverWs;
use crate::support::{darts_bin, free_port, ws_connect, DartsProcess, Scratch};

/// How long a viewer waits for each RFB step from a session's guest.
pub const RFB_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Service {
    pub scratch: Scratch,
    pub config: PathBuf,
    pub addr: SocketAddr,
    pub darts: Option<DartsProcess>,
}

/// A session as `darts start` printed it.
#[derive(Debug, Clone)]
pub struct Started {
    pub name: String,
    pub url: String,
    pub token: String,
    pub view_token: Option<String>,
}

impl Service {
    /// Writes the configuration (plus `extra` TOML lines) and starts `darts serve`.
    pub fn start(name: &str, extra: &str) -> Self {
        let s = Self::configure(name, extra);
        let mut s = s;
        s.launch();
        s
    }

    /// Only the configuration; call `launch` to start darts.
    pub fn configure(name: &str, extra: &str) -> Self {
        // The demo machine (generic kernel with USB drivers: sessions get a USB keyboard).
        let dir = std::env::var_os("DARTS_DEMO_GUEST")
            .map(PathBuf::from)
            .unwrap_or_else(|| crate::qemu::repo_path("target/demo-guest"));
        let disk = dir.join("disk.img");
        assert!(
            disk.is_file(),
            "demo machine {} missing: run `bash tests/setup.sh guest`",
            disk.display()
        );
        let s = Self::configure_empty(name, extra);
        let root = &s.scratch.0;
        std::os::unix::fs::symlink(&disk, root.join("machines/demo.img")).unwrap();
        std::fs::write(
            root.join("etc/machines.conf"),
            "[demo.img]\ndescription=Test guest\n\n[absent.qcow2]\ndescription=Not downloaded\n",
        )
        .unwrap();
        s
    }

    /// The configuration with empty `machines/` and `etc/`: the test puts its own
    /// machines and catalogue there. Call `launch` to start darts.
    pub fn configure_empty(name: &str, extra: &str) -> Self {
        let scratch = Scratch::new(name);
        let root = scratch.0.clone();
        std::fs::create_dir_all(root.join("machines")).unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let config = root.join("config.toml");
        std::fs::write(
            &config,
            format!(
                r#"dir_machines = "{root}/machines"
dir_snapshots = "{root}/snapshots"
dir_cfg = "{root}/state"
dir_service = "{root}/service"
{logfile}dir_etc = "{root}/etc"
dir_mounts = []
dir_novnc = "{novnc}"
dir_html = "{html}"
service_port = {port}
qemu_accel = "tcg"
snapshot_alloc_mem = 0.25
snapshot_alloc_cpu = 1
session_stop_grace = 3
service_max_load = 0
service_max_cpu_fraction_nb_per_user = 0
service_max_mem_fraction_nb_per_user = 0
{extra}
"#,
                root = root.display(),
                // The audit log in the scratch directory unless the test names its own.
                logfile = if extra.contains("service_logfile =") {
                    String::new()
                } else {
                    format!(
                        "service_logfile = \"{}/service/audit.log\"\n",
                        root.display()
                    )
                },
                novnc = crate::qemu::repo_path("web/novnc").display(),
                html = crate::qemu::repo_path("web/app").display(),
                port = addr.port(),
            ),
        )
        .unwrap();
        Self {
            scratch,
            config,
            addr,
            darts: None,
        }
    }

    /// Starts (or restarts) `darts serve` and waits until its port and control socket answer.
    pub fn launch(&mut self) {
        self.launch_with_output(Stdio::null(), Stdio::piped());
    }

    /// Same, with darts' stdout and stderr where the caller says.
    pub fn launch_with_output(&mut self, out: Stdio, err: Stdio) {
        let cfg = self.config.to_str().unwrap().to_owned();
        let darts = DartsProcess::start_with_output(&["serve", "-c", &cfg], self.addr, out, err);
        let sock = self.scratch.0.join("service/darts.sock");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&sock).is_err() {
            assert!(
                Instant::now() < deadline,
                "control socket did not answer; log:\n{}",
                darts.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.darts = Some(darts);
    }

    /// SIGKILLs darts (its VMs keep running).
    pub fn kill_darts(&mut self) {
        if let Some(mut d) = self.darts.take() {
            d.child.kill().unwrap();
            d.child.wait().unwrap();
        }
    }

    pub fn log(&self) -> String {
        self.darts
            .as_ref()
            .map(|d| d.log_text())
            .unwrap_or_default()
    }

    /// Runs `darts ARGS -c CONFIG`.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(crate::support::darts_bin())
            .args(args)
            .arg("-c")
            .arg(&self.config)
            .output()
            .unwrap()
    }

    /// `darts start MACHINE` in the background, its output piped; the caller waits for
    /// (or kills) the child.
    pub fn spawn_start(&self, machine: &str) -> std::process::Child {
        Command::new(darts_bin())
            .args(["start", machine, "-c"])
            .arg(&self.config)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// `darts start demo.img ARGS`; panics with darts' log when it fails.
    pub fn start_session(&self, args: &[&str]) -> Started {
        let mut all = vec!["start", "demo.img"];
        all.extend_from_slice(args);
        let out = self.cli(&all);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "darts start failed: {}\n{}\nlog:\n{}",
            stdout,
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        parse_started(&stdout)
    }

    /// `darts status --json` as a list of session JSON objects.
    pub fn sessions(&self) -> Vec<serde_json::Value> {
        let out = self.cli(&["status", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .unwrap()
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Polls `darts status` until `pred` holds (bounded).
    pub fn wait_sessions(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[serde_json::Value]) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.sessions();
            if pred(&s) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: sessions are {s:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Opens the session's websocket and does the RFB handshake (darts answers QEMU's
    /// VNC security itself and offers None); returns the connection and the desktop's name.
    pub async fn view(&self, token: &str) -> (RfbOverWs, String) {
        let ws = ws_connect(&self.ws_url(token), &[])
            .await
            .unwrap_or_else(|s| panic!("websocket refused with {s}; log:\n{}", self.log()));
        let mut rfb = RfbOverWs::new(ws, RFB_TIMEOUT);
        let init = rfb.handshake().await;
        rfb.set_raw_rgb32().await;
        (rfb, init.name)
    }

    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://{}/darts/vnc.html?token={token}", self.addr)
    }

    /// Entries of a scratch sub-directory.
    pub fn entries(&self, rel: &str) -> Vec<String> {
        match std::fs::read_dir(self.scratch.0.join(rel)) {
            Ok(d) => d
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// Waits until the guest's screen has lit pixels (its banner).
pub async fn screen_lit(rfb: &mut RfbOverWs) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let u = rfb.full_frame(20).await;
        if u.nonblack > 100 {
            return u.nonblack;
        }
        assert!(Instant::now() < deadline, "the guest's screen stayed black");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `darts certs init [ARGS] DIR` into a new scratch directory: VNC-over-TLS material.
pub fn certs_init(name: &str, args: &[&str]) -> Scratch {
    let certs = Scratch::new(name);
    let out = Command::new(darts_bin())
        .args(["certs", "init"])
        .args(args)
        .arg(&certs.0)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    certs
}

pub fn parse_started(stdout: &str) -> Started {
    let field = |k: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_owned()))
    };
    let token_of = |url: &str| {
        url.rsplit_once("token=")
            .map(|(_, t)| t.to_owned())
            .unwrap()
    };
    let url = field("url ").unwrap_or_else(|| panic!("no url in {stdout:?}"));
    Started {
        name: field("session ").unwrap(),
        token: token_of(&url),
        view_token: field("view ").map(|v| token_of(&v)),
        url,
    }
}

/// Pids of processes whose command line mentions `needle`.
pub fn pids_mentioning(needle: &Path) -> Vec<u32> {
    let needle = needle.as_os_str().as_encoded_bytes().to_vec();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            if cmd.windows(needle.len()).any(|w| w == needle.as_slice())
                && pid != std::process::id()
            {
                out.push(pid);
            }
        }
    }
    out
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill_darts();
        for pid in pids_mentioning(&self.scratch.0) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}
