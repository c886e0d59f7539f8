//! A real `redis-server` for tests: on 127.0.0.1 with a free port (or on a unix socket),
//! in a scratch directory, without persistence, killed on drop. `kill` and `start` again
//! on the same address stand for a Redis restart that lost everything.
//!
//! Declared from a test file with `#[path = "support/redis.rs"] mod redis;` after
//! `mod support;`. Needs redis-server and redis-cli (`bash tests/setup.sh redis`).
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{free_port, Scratch};

/// Where the server listens.
#[derive(Debug, Clone)]
pub enum Listen {
    Tcp(u16),
    Unix(PathBuf),
}

pub struct Redis {
    pub scratch: Scratch,
    pub listen: Listen,
    child: Option<Child>,
    log: PathBuf,
}

fn require(program: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{program} is not installed: run `bash tests/setup.sh redis` (Debian's redis-server)"
    );
}

impl Redis {
    /// A server on 127.0.0.1 and a free port.
    pub fn tcp(name: &str) -> Self {
        Self::with(name, |_| Listen::Tcp(free_port()))
    }

    /// A server on a unix socket in its scratch directory only.
    pub fn unix(name: &str) -> Self {
        Self::with(name, |scratch| Listen::Unix(scratch.path("redis.sock")))
    }

    fn with(name: &str, listen: impl FnOnce(&Scratch) -> Listen) -> Self {
        require("redis-server");
        require("redis-cli");
        let scratch = Scratch::new(name);
        let listen = listen(&scratch);
        let log = scratch.path("redis.log");
        let mut r = Self {
            scratch,
            listen,
            child: None,
            log,
        };
        r.start();
        r
    }

    /// Starts the server (again) on the same address and waits until it answers PING.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "redis-server already running");
        let dir = self.scratch.0.to_str().unwrap().to_owned();
        let mut args: Vec<String> = vec![
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
            "--dir".into(),
            dir,
            "--logfile".into(),
            self.log.to_str().unwrap().into(),
        ];
        match &self.listen {
            Listen::Tcp(port) => args.extend([
                "--bind".into(),
                "127.0.0.1".into(),
                "--port".into(),
                port.to_string(),
            ]),
            Listen::Unix(path) => args.extend([
                "--port".into(),
                "0".into(),
                "--unixsocket".into(),
                path.to_str().unwrap().into(),
                "--unixsocketperm".into(),
                "700".into(),
            ]),
        }
        let child = Command::new("redis-server")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        self.wait_ready();
    }

    /// SIGKILL: the data is gone (no persistence).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP / SIGCONT: a server that hangs without closing its connections.
    pub fn pause(&self, paused: bool) {
        let pid = self.child.as_ref().expect("running").id();
        let sig = if paused { "-STOP" } else { "-CONT" };
        assert!(Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success());
    }

    /// The source in websockify's spelling (TCP) or as a URL (unix socket).
    pub fn source(&self, namespace: &str) -> String {
        match &self.listen {
            Listen::Tcp(port) => format!("127.0.0.1:{port}:0::{namespace}"),
            Listen::Unix(path) => {
                format!("redis+unix://{}?namespace={namespace}", path.display())
            }
        }
    }

    /// The same server as a `redis://` URL (TCP only).
    pub fn url(&self, namespace: &str) -> String {
        match &self.listen {
            Listen::Tcp(port) => format!("redis://127.0.0.1:{port}/0?namespace={namespace}"),
            Listen::Unix(_) => self.source(namespace),
        }
    }

    /// Runs `redis-cli ARGS` against this server; returns its trimmed output.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("redis-cli");
        match &self.listen {
            Listen::Tcp(port) => cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()]),
            Listen::Unix(path) => cmd.arg("-s").arg(path),
        };
        let out = cmd.arg("--raw").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "redis-cli {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The server's `run_id`: a new one after each start.
    pub fn run_id(&self) -> String {
        self.cli(&["INFO", "server"])
            .lines()
            .find_map(|l| l.strip_prefix("run_id:"))
            .expect("INFO server names its run_id")
            .trim()
            .to_owned()
    }

    pub fn exists(&self, key: &str) -> bool {
        self.cli(&["EXISTS", key]) == "1"
    }

    /// Every key with its value (string keys only).
    pub fn dump(&self) -> Vec<(String, String)> {
        let keys = self.cli(&["--scan"]);
        keys.lines()
            .filter(|k| !k.is_empty())
            .map(|k| (k.to_owned(), self.cli(&["GET", k])))
            .collect()
    }

    /// Polls until `pred` holds (bounded); panics with `what` and the keys present.
    pub fn wait_until(&self, what: &str, timeout: Duration, pred: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        while !pred(self) {
            assert!(
                Instant::now() < deadline,
                "{what} within {timeout:?}; keys: {:?}",
                self.cli(&["--scan"])
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ping(&self) -> bool {
        let answer = |mut s: Box<dyn ReadWrite>| -> bool {
            let _ = s.set_timeout(Duration::from_millis(500));
            if s.write_all(b"PING\r\n").is_err() {
                return false;
            }
            let mut buf = [0u8; 7];
            s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
        };
        match &self.listen {
            Listen::Tcp(port) => std::net::TcpStream::connect(("127.0.0.1", *port))
                .map(|s| answer(Box::new(s)))
                .unwrap_or(false),
            Listen::Unix(path) => std::os::unix::net::UnixStream::connect(path)
                .map(|s| answer(Box::new(s)))
                .unwrap_or(false),
        }
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.ping() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "redis-server exited with {status}: {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING within 10 s: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

trait ReadWrite: Read + Write {
    fn set_timeout(&self, t: Duration) -> std::io::Result<()>;
}

impl ReadWrite for std::net::TcpStream {
    fn set_timeout(&self, t: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(t))
    }
}

impl ReadWrite for std::os::unix::net::UnixStream {
    fn set_timeout(&self, t: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(t))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // A paused server would not die of SIGTERM; SIGKILL works either way.
            let _ = Command::new("kill")
                .args(["-CONT", &c.id().to_string()])
                .status();
        }
        self.kill();
    }
}
