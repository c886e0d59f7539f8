//! Helpers for end-to-end tests with real components: a QEMU process (TCG, VNC on a unix
//! socket or loopback TCP), the tiny test guest, external tools, and a minimal RFB client
//! that talks through the gateway's websocket.
//!
//! Declared from a test file with `#[path = "support/qemu.rs"] mod qemu;` next to `mod support;`.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::support::Ws;

pub const QEMU: &str = "qemu-system-x86_64";
const SETUP_HINT: &str = "install the test dependencies with `bash tests/setup.sh`";

/// A file in the repository.
pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Cargo's target directory (`CARGO_TARGET_DIR` or `target/` in the repository).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                repo_path("").join(d)
            }
        }
        None => repo_path("target"),
    }
}

/// Where tests leave screenshots and logs for a person to look at.
pub fn artifacts_dir() -> PathBuf {
    let dir = target_dir().join("e2e-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/e2e-artifacts");
    dir
}

/// node and Chromium (`$CHROMIUM`, else Debian's) for the browser tests, with
/// playwright-core installed in `tests/e2e/node`; panics with the set-up step otherwise.
pub fn browser_tools() -> (PathBuf, PathBuf) {
    let node = require_program("node");
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        chromium.is_file(),
        "Chromium not found at {} (set CHROMIUM): {SETUP_HINT}",
        chromium.display()
    );
    assert!(
        repo_path("tests/e2e/node/node_modules/playwright-core").is_dir(),
        "playwright-core is missing (npm ci in tests/e2e/node): {SETUP_HINT}"
    );
    (node, chromium)
}

/// The JSON line a browser script printed last, its verdict and findings; panics with
/// the script's output when there is none.
pub fn script_json(script: &str, out: &std::process::Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rfind(|l| l.starts_with('{'))
        .unwrap_or_else(|| {
            panic!(
                "{script} printed no JSON; stdout:\n{stdout}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{script} JSON: {e}: {line}"))
}

/// Finds `name` on PATH (or takes an absolute path); panics with a clear message if absent.
pub fn require_program(name: &str) -> PathBuf {
    let p = Path::new(name);
    if p.is_absolute() {
        assert!(p.is_file(), "{name} is missing: {SETUP_HINT}");
        return p.to_path_buf();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|c| c.is_file())
        .unwrap_or_else(|| panic!("`{name}` is not on PATH: {SETUP_HINT}"))
}

/// The tiny test guest built by tests/e2e/make-guest.sh: `$DARTS_E2E_GUEST` or target/e2e-guest.
pub struct Guest {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

pub fn guest() -> Guest {
    let dir = std::env::var_os("DARTS_E2E_GUEST")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_path("target/e2e-guest"));
    let dir = if dir.is_absolute() {
        dir
    } else {
        repo_path("").join(dir)
    };
    let g = Guest {
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initrd.gz"),
    };
    assert!(
        g.kernel.is_file() && g.initrd.is_file(),
        "test guest not found in {} (need vmlinuz and initrd.gz): {SETUP_HINT}, \
         or `bash tests/e2e/make-guest.sh {} cloud`",
        dir.display(),
        dir.display()
    );
    g
}

/// How QEMU's VNC server listens.
#[derive(Debug, Clone)]
pub enum VncListen {
    Unix(PathBuf),
    /// Loopback TCP port 5900 + display.
    Tcp {
        display: u16,
    },
}

impl VncListen {
    fn arg(&self) -> String {
        match self {
            Self::Unix(p) => format!("unix:{}", p.display()),
            Self::Tcp { display } => format!("127.0.0.1:{display}"),
        }
    }

    /// The target as a websockify token file writes it.
    pub fn token_target(&self) -> String {
        match self {
            Self::Unix(p) => format!("unix_socket:{}", p.display()),
            Self::Tcp { display } => format!("127.0.0.1:{}", 5900 + display),
        }
    }
}

/// A QEMU process, killed on drop.
pub struct Qemu {
    child: Child,
    pub vnc: VncListen,
    pub serial: PathBuf,
    pub log: PathBuf,
}

impl Qemu {
    /// Starts `qemu-system-x86_64 -accel tcg -nodefaults -vga std -display none -vnc ... -name NAME`
    /// with the serial port in `dir/NAME.serial`, plus `extra` arguments. Does not wait.
    pub fn spawn(dir: &Path, name: &str, vnc: VncListen, mem_mb: u32, extra: &[&str]) -> Self {
        require_program(QEMU);
        let serial = dir.join(format!("{name}.serial"));
        let log = dir.join(format!("{name}.log"));
        let log_file = std::fs::File::create(&log).expect("create qemu log");
        let child = Command::new(QEMU)
            .args(["-accel", "tcg,tb-size=32", "-nodefaults", "-machine", "pc"])
            .args(["-vga", "std", "-display", "none", "-m", &mem_mb.to_string()])
            .args(["-vnc", &vnc.arg(), "-name", name])
            .arg("-serial")
            .arg(format!("file:{}", serial.display()))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {QEMU}: {e}; {SETUP_HINT}"));
        Self {
            child,
            vnc,
            serial,
            log,
        }
    }

    /// A diskless machine (SeaBIOS only) with VNC on a unix socket `dir/NAME.vnc`, ready.
    pub fn bios_unix(dir: &Path, name: &str) -> Self {
        let sock = dir.join(format!("{name}.vnc"));
        let mut q = Self::spawn(dir, name, VncListen::Unix(sock), 64, &[]);
        q.wait_vnc(Duration::from_secs(20));
        q
    }

    /// A diskless machine with VNC on a free loopback TCP display, ready. Retries with another
    /// display if QEMU loses the race for the port.
    pub fn bios_tcp(dir: &Path, name: &str) -> Self {
        let mut last_log = String::new();
        for attempt in 0..8 {
            let display = free_vnc_display();
            let mut q = Self::spawn(
                dir,
                &format!("{name}-{attempt}"),
                VncListen::Tcp { display },
                64,
                &[],
            );
            match q.try_wait_vnc(Duration::from_secs(20)) {
                Ok(()) => return q,
                Err(log) => last_log = log,
            }
        }
        panic!("QEMU never listened on a loopback VNC port; last log:\n{last_log}");
    }

    /// The tiny Linux guest booted with -kernel/-initrd, VNC on a unix socket `dir/NAME.vnc`.
    /// Waits for VNC, not for the guest's shell (see `wait_serial`).
    pub fn guest_unix(dir: &Path, name: &str) -> Self {
        let g = guest();
        let sock = dir.join(format!("{name}.vnc"));
        let kernel = g.kernel.to_string_lossy().into_owned();
        let initrd = g.initrd.to_string_lossy().into_owned();
        // Kernel warnings and panics go to the serial log too (for failure reports); the
        // last console, tty0, is /dev/console, so the banner and the shell are on the screen.
        let append = format!("console=ttyS0 console=tty0 quiet e2e.boot={name}");
        let mut q = Self::spawn(
            dir,
            name,
            VncListen::Unix(sock),
            128,
            &["-kernel", &kernel, "-initrd", &initrd, "-append", &append],
        );
        q.wait_vnc(Duration::from_secs(20));
        q
    }

    /// `guest_unix` until the guest's shell is up (its serial marker `E2E-GUEST-READY`).
    /// A boot that shows no marker within `per_try` is reported on stderr, with its serial
    /// log, and tried once more in a fresh QEMU (under heavy host load a TCG boot has been
    /// seen to stall); the second failure panics.
    pub fn guest_unix_booted(dir: &Path, name: &str, per_try: Duration) -> Self {
        for attempt in 1..=2 {
            let mut q = Self::guest_unix(dir, name);
            let deadline = Instant::now() + per_try;
            while Instant::now() < deadline {
                if q.serial_text().contains("E2E-GUEST-READY") {
                    return q;
                }
                if let Ok(Some(status)) = q.child.try_wait() {
                    panic!(
                        "QEMU exited with {status} while booting the guest;\nserial:\n{}\nlog:\n{}",
                        q.serial_text(),
                        q.log_text()
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let serial = q.serial_text();
            let tail: Vec<&str> = serial.lines().rev().take(15).collect();
            eprintln!(
                "WARNING: guest boot {attempt} showed no E2E-GUEST-READY within {per_try:?}; \
                 last serial lines (newest first):\n{}\nQEMU log:\n{}",
                tail.join("\n"),
                q.log_text()
            );
            q.kill();
            let _ = std::fs::remove_file(&q.serial);
            if let VncListen::Unix(sock) = &q.vnc {
                let _ = std::fs::remove_file(sock);
            }
        }
        panic!("the test guest did not boot in two tries of {per_try:?} each (see stderr)");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls until the VNC server answers with an RFB greeting; panics with QEMU's log if not.
    pub fn wait_vnc(&mut self, timeout: Duration) {
        if let Err(log) = self.try_wait_vnc(timeout) {
            panic!(
                "QEMU's VNC server ({:?}) did not answer within {timeout:?}; QEMU log:\n{log}",
                self.vnc
            );
        }
    }

    fn try_wait_vnc(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if vnc_greets(&self.vnc) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("(exited with {status})\n{}", self.log_text()));
            }
            if Instant::now() > deadline {
                return Err(format!("(timed out)\n{}", self.log_text()));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Polls the serial log until it contains `marker`; panics with the logs if not.
    pub fn wait_serial(&mut self, marker: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.serial_text();
            if text.contains(marker) {
                return text;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "QEMU exited with {status} before {marker:?} on the serial port;\nserial:\n{text}\nlog:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{marker:?} did not appear on the guest's serial port within {timeout:?};\nserial:\n{text}\nlog:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn serial_text(&self) -> String {
        std::fs::read(&self.serial)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills QEMU at once and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        self.kill();
    }
}

/// True if a VNC server at `vnc` accepts a connection and sends `RFB 003.008\n`.
fn vnc_greets(vnc: &VncListen) -> bool {
    fn greet<S: Read>(mut s: S) -> bool {
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).is_ok() && &buf == b"RFB 003.008\n"
    }
    let t = Some(Duration::from_secs(2));
    match vnc {
        VncListen::Unix(p) => std::os::unix::net::UnixStream::connect(p)
            .and_then(|s| s.set_read_timeout(t).map(|()| s))
            .is_ok_and(greet),
        VncListen::Tcp { display } => std::net::TcpStream::connect(("127.0.0.1", 5900 + display))
            .and_then(|s| s.set_read_timeout(t).map(|()| s))
            .is_ok_and(greet),
    }
}

/// Reads a `DartsProcess`'s piped stderr in a thread, so that its debug logging can never fill
/// the pipe and block the gateway; returns the text read so far, for failure messages.
pub fn drain_stderr(darts: &mut crate::support::DartsProcess) -> Arc<Mutex<String>> {
    darts.log.clone()
}

/// The last `n` lines of a drained log.
pub fn tail(log: &Mutex<String>, n: usize) -> String {
    let text = log.lock().map(|t| t.clone()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A VNC display number whose loopback port (5900 + N) is free right now.
pub fn free_vnc_display() -> u16 {
    for _ in 0..200 {
        let display = 100 + (crate::support::rand_u64() % 1500) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", 5900 + display)).is_ok() {
            return display;
        }
    }
    panic!("no free VNC display found");
}

/// Writes a websockify token file `dir/tokens.cfg` with `token: target` lines.
pub fn write_token_file(dir: &Path, entries: &[(&str, String)]) -> PathBuf {
    let path = dir.join("tokens.cfg");
    let mut text = String::from("# darts e2e test tokens\n");
    for (tok, target) in entries {
        text.push_str(&format!("{tok}: {target}\n"));
    }
    std::fs::write(&path, text).expect("write token file");
    path
}

/// The facts of a ServerInit message.
#[derive(Debug, Clone)]
pub struct ServerInit {
    pub width: u16,
    pub height: u16,
    pub bits_per_pixel: u8,
    pub name: String,
}

/// One FramebufferUpdate, decoded (raw encoding only).
#[derive(Debug, Clone)]
pub struct Update {
    pub rects: Vec<(u16, u16, u16, u16, i32)>,
    /// Pixels covered by raw rectangles.
    pub area: u64,
    /// Raw pixels whose colour is not black.
    pub nonblack: u64,
    /// Bytes of the whole message.
    pub bytes: usize,
}

/// A minimal RFB 3.8 client reading and writing through a gateway websocket.
pub struct RfbOverWs {
    ws: Ws,
    buf: Vec<u8>,
    pos: usize,
    timeout: Duration,
    /// Set by `handshake`.
    pub bytes_per_pixel: usize,
    /// The current screen size: from ServerInit, then from DesktopSize rectangles.
    pub width: u16,
    pub height: u16,
}

impl RfbOverWs {
    pub fn new(ws: Ws, timeout: Duration) -> Self {
        Self {
            ws,
            buf: Vec::new(),
            pos: 0,
            timeout,
            bytes_per_pixel: 4,
            width: 0,
            height: 0,
        }
    }

    /// Reads exactly `n` bytes of the RFB stream.
    pub async fn read(&mut self, n: usize) -> Vec<u8> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        while self.buf.len() - self.pos < n {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Ok(Some(Ok(Message::Binary(b)))) => {
                    self.buf.drain(..self.pos);
                    self.pos = 0;
                    self.buf.extend_from_slice(&b);
                }
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                Err(_) => panic!(
                    "RFB stream stalled: wanted {n} bytes, have {} after {:?}",
                    self.buf.len() - self.pos,
                    self.timeout
                ),
                other => panic!("expected binary RFB data through the gateway, got {other:?}"),
            }
        }
        let out = self.buf[self.pos..self.pos + n].to_vec();
        self.pos += n;
        out
    }

    pub async fn u8(&mut self) -> u8 {
        self.read(1).await[0]
    }

    pub async fn u16(&mut self) -> u16 {
        let b = self.read(2).await;
        u16::from_be_bytes([b[0], b[1]])
    }

    pub async fn u32(&mut self) -> u32 {
        let b = self.read(4).await;
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    pub async fn send(&mut self, data: &[u8]) {
        self.ws
            .send(Message::binary(data.to_vec()))
            .await
            .expect("send to gateway");
    }

    /// Version 3.8, security type None, ClientInit shared; returns the ServerInit.
    pub async fn handshake(&mut self) -> ServerInit {
        self.handshake_then(&[]).await
    }

    /// The handshake, with `extra` sent in the same websocket frame as ClientInit.
    pub async fn handshake_then(&mut self, extra: &[u8]) -> ServerInit {
        let version = self.read(12).await;
        assert_eq!(
            version,
            b"RFB 003.008\n",
            "server version: {:?}",
            String::from_utf8_lossy(&version)
        );
        self.send(b"RFB 003.008\n").await;
        let n = self.u8().await as usize;
        assert!(n > 0, "server refused the connection (0 security types)");
        let types = self.read(n).await;
        assert!(
            types.contains(&1),
            "security type None (1) not offered: {types:?}"
        );
        self.send(&[1]).await;
        assert_eq!(self.u32().await, 0, "SecurityResult is not OK");
        self.send(&[&[1u8][..], extra].concat()).await; // ClientInit, shared
        let width = self.u16().await;
        let height = self.u16().await;
        let pf = self.read(16).await;
        let name_len = self.u32().await as usize;
        assert!(
            name_len < 4096,
            "implausible desktop name length {name_len}"
        );
        let name = String::from_utf8_lossy(&self.read(name_len).await).into_owned();
        (self.width, self.height) = (width, height);
        ServerInit {
            width,
            height,
            bits_per_pixel: pf[0],
            name,
        }
    }

    /// Version 3.8, then expects the server to refuse with zero security types and a reason
    /// (RFB 3.8 section 7.1.2); returns the reason.
    pub async fn handshake_refused(&mut self) -> String {
        let version = self.read(12).await;
        assert_eq!(version, b"RFB 003.008\n");
        self.send(b"RFB 003.008\n").await;
        let n = self.u8().await;
        assert_eq!(n, 0, "expected a refusal (0 security types), got {n} types");
        let len = self.u32().await as usize;
        assert!(len < 4096, "implausible reason length {len}");
        String::from_utf8_lossy(&self.read(len).await).into_owned()
    }

    /// SetPixelFormat 32 bpp true colour (little endian, 8 bits per channel) and
    /// SetEncodings [Raw, DesktopSize].
    pub async fn set_raw_rgb32(&mut self) {
        let mut m = vec![0u8, 0, 0, 0];
        m.extend_from_slice(&[32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0]);
        self.send(&m).await;
        let mut m = vec![2u8, 0, 0, 2];
        m.extend_from_slice(&0i32.to_be_bytes());
        m.extend_from_slice(&(-223i32).to_be_bytes());
        self.send(&m).await;
        self.bytes_per_pixel = 4;
    }

    /// FramebufferUpdateRequest for the whole current screen.
    pub async fn request_update(&mut self, incremental: bool) {
        let mut m = vec![3u8, u8::from(incremental), 0, 0, 0, 0];
        m.extend_from_slice(&self.width.to_be_bytes());
        m.extend_from_slice(&self.height.to_be_bytes());
        self.send(&m).await;
    }

    /// Asks for full frames until one covers the whole screen (the firmware changes video
    /// modes while it starts, which arrives as DesktopSize updates); panics after `tries`.
    pub async fn full_frame(&mut self, tries: usize) -> Update {
        let mut seen = Vec::new();
        for _ in 0..tries {
            self.request_update(false).await;
            let u = self.next_update().await;
            if !u.rects.is_empty() && u.area == u64::from(self.width) * u64::from(self.height) {
                return u;
            }
            seen.push(u.rects);
        }
        panic!(
            "no full-screen update for {}x{} in {tries} tries; rectangles seen: {seen:?}",
            self.width, self.height
        );
    }

    /// Reads server messages until a FramebufferUpdate and decodes it. Skips Bell and
    /// ServerCutText; panics on anything it cannot parse.
    pub async fn next_update(&mut self) -> Update {
        loop {
            match self.u8().await {
                0 => return self.read_update_body().await,
                2 => {} // Bell
                3 => {
                    self.read(3).await;
                    let len = self.u32().await as usize;
                    self.read(len).await;
                }
                t => panic!("unexpected RFB server message type {t}"),
            }
        }
    }

    async fn read_update_body(&mut self) -> Update {
        self.read(1).await; // padding
        let n = self.u16().await;
        let mut u = Update {
            rects: Vec::new(),
            area: 0,
            nonblack: 0,
            bytes: 4,
        };
        for _ in 0..n {
            let x = self.u16().await;
            let y = self.u16().await;
            let w = self.u16().await;
            let h = self.u16().await;
            let enc = self.u32().await as i32;
            u.bytes += 12;
            u.rects.push((x, y, w, h, enc));
            match enc {
                0 => {
                    let len = usize::from(w) * usize::from(h) * self.bytes_per_pixel;
                    let px = self.read(len).await;
                    u.bytes += len;
                    u.area += u64::from(w) * u64::from(h);
                    u.nonblack += px
                        .chunks_exact(self.bytes_per_pixel)
                        .filter(|p| p[..3].iter().any(|&c| c != 0))
                        .count() as u64;
                }
                -223 => (self.width, self.height) = (w, h), // DesktopSize: header only
                other => panic!("unexpected rectangle encoding {other} (asked for Raw only)"),
            }
        }
        u
    }

    /// The websocket, for tests that go on below RFB (raw frames, close reasons).
    pub fn into_ws(self) -> Ws {
        self.ws
    }

    /// Waits for the websocket close frame; returns its code (1005 if it has none).
    pub async fn expect_close(&mut self, timeout: Duration) -> u16 {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Ok(Some(Ok(Message::Close(Some(f))))) => return u16::from(f.code),
                Ok(Some(Ok(Message::Close(None)))) => return 1005,
                Ok(Some(Ok(_))) => continue,
                Err(_) => panic!("no close frame within {timeout:?}"),
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }
}
