//! The fake VNC server, run as its own process (`darts-load backend`) so its CPU is
//! neither the gateway's nor the client's. One listener per security and mode on
//! 127.0.0.1:
//!
//! * source: streams bytes as fast as the peer takes them;
//! * sink: reads and discards;
//! * echo: writes back whatever it reads;
//! * idle: sends nothing more (and reads until EOF);
//! * ticker: once the client sends a first byte, writes a 16-byte tick every `TICK`
//!   (sequence number and `CLOCK_MONOTONIC` time, both big-endian u64) while it reads
//!   and discards whatever the client sends: a screen that keeps updating while the
//!   user pastes.
//!
//! Without security every mode first sends the RFB greeting `RFB 003.008\n`, as a VNC
//! server does (and as darts checks before it relays anything). With `vnc-password` or
//! `x509` the backend runs the whole RFB handshake QEMU would (see `rfb::accept`), up to
//! ServerInit, and the mode runs over the result (TLS for x509).
//!
//! The process prints its ports on one line and exits when its standard input closes
//! (so it never outlives the tool) or after `lifetime`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::error::{LoadError, Result};
use crate::rfb::{self, Accepted};
use crate::security::{self, Security, ServerSecrets};

/// What a VNC server says first.
pub const GREETING: &[u8] = rfb::VERSION;
/// Bytes per write in source mode and per read in sink mode.
const IO_CHUNK: usize = 256 * 1024;
/// Bytes per read in echo mode.
const ECHO_CHUNK: usize = 64 * 1024;
/// How often the ticker writes a tick.
pub const TICK: Duration = Duration::from_millis(5);
/// Bytes of one tick.
pub const TICK_LEN: usize = 16;
/// Time a secured handshake gets.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Source,
    Sink,
    Echo,
    Idle,
    Ticker,
}

impl Mode {
    const ALL: [Mode; 5] = [
        Mode::Source,
        Mode::Sink,
        Mode::Echo,
        Mode::Idle,
        Mode::Ticker,
    ];

    fn name(self) -> &'static str {
        match self {
            Mode::Source => "source",
            Mode::Sink => "sink",
            Mode::Echo => "echo",
            Mode::Idle => "idle",
            Mode::Ticker => "ticker",
        }
    }
}

/// Every (security, mode) listener, in the order the ports line lists them.
fn listeners() -> impl Iterator<Item = (Security, Mode)> {
    Security::ALL
        .into_iter()
        .flat_map(|s| Mode::ALL.into_iter().map(move |m| (s, m)))
}

const LISTENERS: usize = Security::ALL.len() * Mode::ALL.len();

/// The ports of a running backend, one per security and mode.
#[derive(Debug, Clone, Copy)]
pub struct Ports([u16; LISTENERS]);

impl Ports {
    pub fn addr(&self, security: Security, mode: Mode) -> SocketAddr {
        let i = listeners().position(|l| l == (security, mode)).unwrap_or(0);
        SocketAddr::from(([127, 0, 0, 1], self.0[i]))
    }

    fn line(&self) -> String {
        listeners()
            .zip(self.0)
            .map(|((s, m), p)| format!("{}.{}={p}", s.name(), m.name()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn parse(line: &str) -> Option<Self> {
        let mut ports = [0u16; LISTENERS];
        for (slot, (s, m)) in ports.iter_mut().zip(listeners()) {
            let prefix = format!("{}.{}=", s.name(), m.name());
            *slot = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix(&prefix))?
                .parse()
                .ok()?;
        }
        Some(Self(ports))
    }
}

/// Serves all listeners until stdin closes or `lifetime` passes. Runs in the backend
/// process; writes the material darts needs for secured targets into `secrets_dir`.
pub async fn serve(lifetime: Duration, secrets_dir: &Path) -> Result<()> {
    let secrets = Arc::new(security::generate(secrets_dir)?);
    let mut ports = [0u16; LISTENERS];
    let mut bound = Vec::new();
    for slot in &mut ports {
        let l = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(LoadError::io("backend bind"))?;
        *slot = l
            .local_addr()
            .map_err(LoadError::io("backend bind"))?
            .port();
        bound.push(l);
    }
    println!("{}", Ports(ports).line());
    for (listener, (security, mode)) in bound.into_iter().zip(listeners()) {
        tokio::spawn(accept_loop(listener, security, mode, secrets.clone()));
    }
    let stdin_closed = async {
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 64];
        while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
    };
    tokio::select! {
        () = stdin_closed => {}
        () = tokio::time::sleep(lifetime) => {}
    }
    Ok(())
}

async fn accept_loop(
    listener: TcpListener,
    security: Security,
    mode: Mode,
    secrets: Arc<ServerSecrets>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                let secrets = secrets.clone();
                tokio::spawn(async move {
                    // A peer going away is the normal end of every connection.
                    let _ = handle(stream, security, mode, &secrets).await;
                });
            }
            // Out of descriptors: wait for some to be released.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

async fn handle(
    mut stream: TcpStream,
    security: Security,
    mode: Mode,
    secrets: &ServerSecrets,
) -> Result<()> {
    if security == Security::None {
        stream
            .write_all(GREETING)
            .await
            .map_err(LoadError::io("greeting"))?;
        return run_mode(stream, mode).await;
    }
    let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, rfb::accept(stream, security, secrets))
        .await
        .map_err(|_| LoadError::Timeout("backend handshake"))??;
    match accepted {
        Accepted::Plain(s) => run_mode(s, mode).await,
        Accepted::Tls(s) => run_mode(*s, mode).await,
    }
}

async fn run_mode<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, mode: Mode) -> Result<()> {
    let io = LoadError::io(mode.name());
    if mode == Mode::Ticker {
        return ticker(stream).await.map_err(io);
    }
    mode_io(&mut stream, mode).await.map_err(io)
}

/// Ticks every `TICK` from the client's first byte on, reading and discarding the rest.
async fn ticker<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> std::io::Result<()> {
    let mut first = [0u8; 1];
    if stream.read(&mut first).await? == 0 {
        return Ok(());
    }
    let (mut rx, mut tx) = tokio::io::split(stream);
    let discard = async move {
        let mut buf = vec![0u8; IO_CHUNK];
        while rx.read(&mut buf).await? > 0 {}
        std::io::Result::Ok(())
    };
    let tick = async move {
        let mut every = tokio::time::interval(TICK);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        for seq in 0u64.. {
            every.tick().await;
            let mut t = [0u8; TICK_LEN];
            t[..8].copy_from_slice(&seq.to_be_bytes());
            t[8..].copy_from_slice(&monotonic_ns().to_be_bytes());
            tx.write_all(&t).await?;
        }
        std::io::Result::Ok(())
    };
    // Whichever ends first (the client leaving) ends the connection.
    tokio::select! {
        r = discard => r,
        r = tick => r,
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process of this machine, so a
/// tick's age can be read by the client.
pub fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec as u64) * 1_000_000_000 + t.tv_nsec as u64
}

async fn mode_io<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    mode: Mode,
) -> std::io::Result<()> {
    match mode {
        Mode::Source => {
            let data: Vec<u8> = (0..IO_CHUNK).map(|i| (i % 251) as u8).collect();
            loop {
                stream.write_all(&data).await?;
            }
        }
        Mode::Sink => {
            let mut buf = vec![0u8; IO_CHUNK];
            while stream.read(&mut buf).await? > 0 {}
            Ok(())
        }
        Mode::Echo => {
            let mut buf = vec![0u8; ECHO_CHUNK];
            loop {
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    return Ok(());
                }
                stream.write_all(&buf[..n]).await?;
                // A no-op on TCP; pushes the record out under TLS.
                stream.flush().await?;
            }
        }
        Mode::Idle | Mode::Ticker => {
            let mut buf = [0u8; 256];
            while stream.read(&mut buf).await? > 0 {}
            Ok(())
        }
    }
}

/// The backend process as the tool sees it.
#[derive(Debug)]
pub struct Backend {
    child: Child,
    /// Closing it tells the backend to exit.
    stdin: Option<ChildStdin>,
    pub ports: Ports,
}

impl Backend {
    /// Starts `exe backend` and reads its ports; the backend writes the material darts
    /// needs for secured targets into `secrets_dir`.
    pub fn spawn(exe: &Path, secrets_dir: &Path) -> Result<Self> {
        let mut child = Command::new(exe)
            .arg("backend")
            .arg("--secrets")
            .arg(secrets_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(LoadError::io(format!("starting {} backend", exe.display())))?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| LoadError::Backend("no stdout".into()))?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(LoadError::io("reading the backend's ports"))?;
        let ports = Ports::parse(&line)
            .ok_or_else(|| LoadError::Backend(format!("unexpected first line {line:?}")))?;
        Ok(Self {
            child,
            stdin,
            ports,
        })
    }
}

impl Backend {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        drop(self.stdin.take());
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_line_round_trips() {
        let p = Ports(core::array::from_fn(|i| 1000 + i as u16));
        let parsed = Ports::parse(&p.line()).unwrap();
        assert_eq!(parsed.0, p.0);
        assert_eq!(parsed.addr(Security::None, Mode::Source).port(), 1000);
        assert_eq!(parsed.addr(Security::None, Mode::Idle).port(), 1003);
        assert_eq!(parsed.addr(Security::X509, Mode::Idle).port(), 1013);
        assert!(Ports::parse("none.source=1").is_none());
    }
}
