//! The gateways under test, each started as its own process for one scenario and
//! stopped after it: `darts proxy` and Debian's websockify, both given websockify's
//! command line with a positional target, or a token file (`--token-plugin TokenFile
//! --token-source FILE`) when darts must terminate the target's VNC security. "Direct"
//! has no gateway: the client talks to the backend itself. The splice relay (this
//! program's `relay` mode, `relay.rs`) is raw TCP too, moved with splice(2).

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};

use crate::error::{LoadError, Result};
use crate::sys;
use crate::tls::CertFiles;

/// How long a gateway gets to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a gateway gets to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum GatewayKind {
    /// No gateway: raw TCP to the backend (the machine's limit).
    Direct,
    /// Debian's websockify.
    Websockify,
    /// `darts proxy`.
    Darts,
    /// `darts-load relay`: raw TCP (no websocket) moved with splice(2), the zero-copy
    /// reference for darts' splice path.
    SpliceRelay,
}

impl GatewayKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Websockify => "websockify",
            Self::Darts => "darts",
            Self::SpliceRelay => "splice-relay",
        }
    }

    /// Whether clients speak websocket to it (direct and the relay carry raw TCP).
    pub fn speaks_websocket(self) -> bool {
        matches!(self, Self::Websockify | Self::Darts)
    }
}

/// Where a gateway sends its sessions.
#[derive(Debug, Clone)]
pub enum Upstream {
    /// websockify's positional `TARGET_ADDR:PORT`.
    Target(SocketAddr),
    /// A websockify token file (darts reads its `security=` options too).
    TokenFile(PathBuf),
}

/// How to start each gateway.
#[derive(Debug, Clone)]
pub struct Commands {
    pub darts: PathBuf,
    /// This program, whose hidden `relay` mode is the splice relay.
    pub relay: PathBuf,
    /// The websockify command, program first.
    pub websockify: Vec<String>,
    /// Extra arguments for `darts proxy`.
    pub darts_args: Vec<String>,
    /// Where gateway logs go.
    pub log_dir: PathBuf,
}

impl Commands {
    /// The command line that starts `kind` on `listen`, routing to `upstream`.
    pub fn command_line(
        &self,
        kind: GatewayKind,
        listen: SocketAddr,
        upstream: &Upstream,
        tls: Option<&CertFiles>,
    ) -> Vec<String> {
        let mut argv = match kind {
            GatewayKind::Direct => return Vec::new(),
            GatewayKind::Darts => {
                let mut v = vec![self.darts.display().to_string(), "proxy".into()];
                v.extend(self.darts_args.iter().cloned());
                v
            }
            GatewayKind::Websockify => self.websockify.clone(),
            GatewayKind::SpliceRelay => {
                let Upstream::Target(target) = upstream else {
                    // Secured targets are darts-only; the scenario refuses them first.
                    return Vec::new();
                };
                return vec![
                    self.relay.display().to_string(),
                    "relay".into(),
                    "--listen".into(),
                    listen.to_string(),
                    "--target".into(),
                    target.to_string(),
                ];
            }
        };
        if let Some(tls) = tls {
            argv.extend([
                "--cert".into(),
                tls.cert.display().to_string(),
                "--key".into(),
                tls.key.display().to_string(),
            ]);
        }
        match upstream {
            Upstream::Target(target) => argv.extend([listen.to_string(), target.to_string()]),
            Upstream::TokenFile(file) => argv.extend([
                "--token-plugin".into(),
                "TokenFile".into(),
                "--token-source".into(),
                file.display().to_string(),
                listen.to_string(),
            ]),
        }
        argv
    }
}

/// A gateway process, stopped on drop.
#[derive(Debug)]
pub struct Running {
    pub kind: GatewayKind,
    pub addr: SocketAddr,
    pub pid: u32,
    child: Option<Child>,
    log: PathBuf,
}

impl Running {
    /// Starts `kind` routing every websocket to `upstream` and waits until it accepts
    /// connections.
    pub fn start(
        cmds: &Commands,
        kind: GatewayKind,
        upstream: &Upstream,
        tls: Option<&CertFiles>,
        tag: &str,
    ) -> Result<Self> {
        let addr = free_port()?;
        let argv = cmds.command_line(kind, addr, upstream, tls);
        let Some((program, args)) = argv.split_first() else {
            return Err(LoadError::Scenario("direct has no gateway to start".into()));
        };
        let log = cmds.log_dir.join(format!("{}-{tag}.log", kind.name()));
        let out =
            File::create(&log).map_err(LoadError::io(format!("creating {}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(LoadError::io(format!("creating {}", log.display())))?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(LoadError::io(format!("starting {program}")))?;
        let mut running = Self {
            kind,
            addr,
            pid: child.id(),
            child: Some(child),
            log,
        };
        running.wait_listening()?;
        Ok(running)
    }

    fn wait_listening(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(child) = &mut self.child {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(LoadError::GatewayExited(
                        self.kind.name().into(),
                        status.to_string(),
                        self.log.display().to_string(),
                    ));
                }
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(LoadError::GatewayStart(
            self.kind.name().into(),
            START_TIMEOUT.as_secs(),
            self.log.display().to_string(),
        ))
    }

    /// CPU time of the gateway's process tree so far.
    pub fn cpu(&self) -> Duration {
        sys::tree_cpu(self.pid)
    }

    pub fn memory(&self) -> sys::Memory {
        sys::Memory::of_tree(self.pid)
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// SIGTERM, a bounded wait, then SIGKILL for whatever is left of the tree.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let tree = sys::process_tree_ids(self.pid);
        signal(self.pid as i32, Signal::TERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        let mut exited = false;
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                exited = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if !exited {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Forked children the gateway did not take down with it.
        for id in tree.into_iter().skip(1) {
            if sys::is_alive(id) {
                signal(id.0, Signal::KILL);
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

fn signal(pid: i32, sig: Signal) {
    if let Some(pid) = Pid::from_raw(pid) {
        let _ = kill_process(pid, sig);
    }
}

/// A loopback address with a port nothing listens on right now.
fn free_port() -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(LoadError::io("finding a free port"))?;
    l.local_addr().map_err(LoadError::io("finding a free port"))
}

/// What the report says about each gateway's version.
pub fn describe(cmds: &Commands, kind: GatewayKind) -> String {
    match kind {
        GatewayKind::Direct => "raw TCP to the backend".into(),
        GatewayKind::Darts => capture(&cmds.darts.display().to_string(), &["--version"])
            .unwrap_or_else(|| "darts (version unknown)".into()),
        GatewayKind::Websockify => describe_websockify(&cmds.websockify),
        GatewayKind::SpliceRelay => {
            "darts-load relay: raw TCP, every byte spliced through a pipe, no websocket".into()
        }
    }
}

/// websockify's version and whether its Python has numpy (which makes unmasking fast).
fn describe_websockify(argv: &[String]) -> String {
    let Some(python) = websockify_python(argv) else {
        return "websockify (interpreter unknown)".into();
    };
    let probe = "import importlib.metadata as m\n\
        try:\n    import numpy; n = 'numpy ' + numpy.__version__\n\
        except ImportError:\n    n = 'numpy absent'\n\
        print('websockify', m.version('websockify'), 'on Python', \
        __import__('platform').python_version() + ',', n)";
    capture(&python, &["-c", probe]).unwrap_or_else(|| "websockify (version unknown)".into())
}

/// The interpreter that runs websockify: the command itself if it is a Python, else the
/// script's `#!` line.
fn websockify_python(argv: &[String]) -> Option<String> {
    let program = argv.first()?;
    let base = Path::new(program).file_name()?.to_str()?;
    if base.starts_with("python") {
        return Some(program.clone());
    }
    let script = if program.contains('/') {
        PathBuf::from(program)
    } else {
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|d| d.join(program))
            .find(|p| p.is_file())?
    };
    let text = std::fs::read_to_string(script).ok()?;
    let shebang = text.lines().next()?.strip_prefix("#!")?;
    shebang.split_whitespace().next().map(str::to_owned)
}

fn capture(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_follow_websockify() {
        let cmds = Commands {
            darts: "darts".into(),
            relay: "darts-load".into(),
            websockify: vec!["python3".into(), "websockify".into()],
            darts_args: vec!["--grace-period".into(), "2".into()],
            log_dir: "/nonexistent".into(),
        };
        let listen: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        let target = Upstream::Target("127.0.0.1:5900".parse().unwrap());
        assert_eq!(
            cmds.command_line(GatewayKind::Darts, listen, &target, None),
            [
                "darts",
                "proxy",
                "--grace-period",
                "2",
                "127.0.0.1:7000",
                "127.0.0.1:5900"
            ]
        );
        let tls = CertFiles {
            cert: "c.pem".into(),
            key: "k.pem".into(),
        };
        assert_eq!(
            cmds.command_line(GatewayKind::Websockify, listen, &target, Some(&tls)),
            [
                "python3",
                "websockify",
                "--cert",
                "c.pem",
                "--key",
                "k.pem",
                "127.0.0.1:7000",
                "127.0.0.1:5900"
            ]
        );
        assert!(cmds
            .command_line(GatewayKind::Direct, listen, &target, None)
            .is_empty());
        assert_eq!(
            cmds.command_line(GatewayKind::SpliceRelay, listen, &target, None),
            [
                "darts-load",
                "relay",
                "--listen",
                "127.0.0.1:7000",
                "--target",
                "127.0.0.1:5900"
            ]
        );
        let tokens = Upstream::TokenFile("/t/tokens".into());
        assert_eq!(
            cmds.command_line(GatewayKind::Darts, listen, &tokens, None)[4..],
            [
                "--token-plugin",
                "TokenFile",
                "--token-source",
                "/t/tokens",
                "127.0.0.1:7000"
            ]
        );
        assert_eq!(
            websockify_python(&["/usr/bin/python3".into(), "x".into()]).as_deref(),
            Some("/usr/bin/python3")
        );
    }
}
