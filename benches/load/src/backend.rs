//! The fake VNC server, run as its own process (`darts-load backend`) so its CPU is
//! neither the gateway's nor the client's. One listener per mode on 127.0.0.1:
//!
//! * source: streams bytes as fast as the peer takes them;
//! * sink: reads and discards;
//! * echo: writes back whatever it reads;
//! * idle: sends nothing more (and reads until EOF).
//!
//! Every mode first sends the RFB greeting `RFB 003.008\n`, as a VNC server does (and
//! as darts checks before it relays anything).
//!
//! The process prints its ports on one line and exits when its standard input closes
//! (so it never outlives the tool) or after `lifetime`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::error::{LoadError, Result};

/// What a VNC server says first.
pub const GREETING: &[u8] = b"RFB 003.008\n";
/// Bytes per write in source mode and per read in sink mode.
const IO_CHUNK: usize = 256 * 1024;
/// Bytes per read in echo mode.
const ECHO_CHUNK: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Source,
    Sink,
    Echo,
    Idle,
}

impl Mode {
    const ALL: [Mode; 4] = [Mode::Source, Mode::Sink, Mode::Echo, Mode::Idle];

    fn name(self) -> &'static str {
        match self {
            Mode::Source => "source",
            Mode::Sink => "sink",
            Mode::Echo => "echo",
            Mode::Idle => "idle",
        }
    }
}

/// The ports of a running backend, one per mode.
#[derive(Debug, Clone, Copy)]
pub struct Ports([u16; 4]);

impl Ports {
    pub fn addr(&self, mode: Mode) -> SocketAddr {
        let i = Mode::ALL.iter().position(|m| *m == mode).unwrap_or(0);
        SocketAddr::from(([127, 0, 0, 1], self.0[i]))
    }

    fn line(&self) -> String {
        Mode::ALL
            .iter()
            .zip(self.0)
            .map(|(m, p)| format!("{}={p}", m.name()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn parse(line: &str) -> Option<Self> {
        let mut ports = [0u16; 4];
        for (slot, mode) in ports.iter_mut().zip(Mode::ALL) {
            let prefix = format!("{}=", mode.name());
            *slot = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix(&prefix))?
                .parse()
                .ok()?;
        }
        Some(Self(ports))
    }
}

/// Serves all modes until stdin closes or `lifetime` passes. Runs in the backend process.
pub async fn serve(lifetime: Duration) -> Result<()> {
    let mut ports = [0u16; 4];
    let mut listeners = Vec::new();
    for slot in &mut ports {
        let l = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(LoadError::io("backend bind"))?;
        *slot = l
            .local_addr()
            .map_err(LoadError::io("backend bind"))?
            .port();
        listeners.push(l);
    }
    println!("{}", Ports(ports).line());
    for (listener, mode) in listeners.into_iter().zip(Mode::ALL) {
        tokio::spawn(accept_loop(listener, mode));
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

async fn accept_loop(listener: TcpListener, mode: Mode) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    // A peer going away is the normal end of every connection.
                    let _ = handle(stream, mode).await;
                });
            }
            // Out of descriptors: wait for some to be released.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

async fn handle(mut stream: TcpStream, mode: Mode) -> std::io::Result<()> {
    stream.write_all(GREETING).await?;
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
            }
        }
        Mode::Idle => {
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
    /// Starts `exe backend` and reads its ports.
    pub fn spawn(exe: &std::path::Path) -> Result<Self> {
        let mut child = Command::new(exe)
            .arg("backend")
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
        let p = Ports([1, 2, 3, 4]);
        let parsed = Ports::parse(&p.line()).unwrap();
        assert_eq!(parsed.0, [1, 2, 3, 4]);
        assert_eq!(parsed.addr(Mode::Idle).port(), 4);
        assert!(Ports::parse("source=1").is_none());
    }
}
