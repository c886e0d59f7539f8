//! One viewer of a session, as noVNC 1.3 is one: a websocket at the site root with the
//! link's token (`/?token=T`), the RFB handshake (darts offers security None), then
//! framebuffer update requests, pointer and key events. Framing is the load tool's own
//! (`crate::ws`); server pings are answered.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, Instant};

use super::error::{Result, SoakError};
use super::screen::{self, Screen};
use crate::rfb::Browser;
use crate::ws::{self, Decoder, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG};

/// Connect, upgrade and RFB handshake together.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(60);
/// While streaming, at least one update must come within this (QEMU under TCG is slow).
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Time between two rounds of input while streaming.
const TICK: Duration = Duration::from_millis(500);
/// Every this many ticks, a full (non-incremental) update is asked for.
const FULL_EVERY: u64 = 4;
/// Shift: pressing it types nothing in the guest.
const KEY_SHIFT: u32 = 0xffe1;
/// Bytes read from the gateway at once.
const READ_CHUNK: usize = 64 * 1024;

/// Bytes a viewer moved, for the report.
#[derive(Debug, Default, Clone, Copy)]
pub struct Traffic {
    pub down: u64,
    pub up: u64,
    pub updates: u64,
}

#[derive(Debug)]
pub struct Viewer {
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    decoder: Decoder,
    screen: Screen,
    /// The desktop name from ServerInit (QEMU's `-name`, which holds the session name).
    pub desktop: String,
    traffic: Traffic,
    ticks: u64,
}

/// Opens a viewer on `token` and completes the RFB handshake.
pub async fn open(addr: SocketAddr, token: &str) -> Result<Viewer> {
    tokio::time::timeout(OPEN_TIMEOUT, open_inner(addr, token))
        .await
        .map_err(|_| SoakError::Timeout("viewer open"))?
}

async fn open_inner(addr: SocketAddr, token: &str) -> Result<Viewer> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(SoakError::io(format!("connecting to {addr}")))?;
    stream
        .set_nodelay(true)
        .map_err(SoakError::io("setting TCP_NODELAY"))?;
    let early = ws::handshake(&mut stream, &addr.to_string(), &format!("/?token={token}")).await?;
    let (rd, wr) = stream.into_split();
    let mut v = Viewer {
        rd,
        wr,
        decoder: Decoder::default(),
        screen: Screen::new(0, 0, 4),
        desktop: String::new(),
        traffic: Traffic::default(),
        ticks: 0,
    };
    let mut browser = Browser::default();
    let mut reply = Vec::new();
    let mut payload = v.unframe(&early).await?;
    loop {
        let done = browser
            .feed(&payload, &mut reply)
            .map_err(|e| SoakError::Rfb(e.to_string()))?;
        if !reply.is_empty() {
            v.send(&reply).await?;
            reply.clear();
        }
        if done.is_some() {
            break;
        }
        payload = v.read_payload().await.map_err(|e| match e {
            SoakError::Closed(_) => SoakError::Rfb("closed during the handshake".into()),
            e => e,
        })?;
    }
    let (init, rest) = browser
        .finish()
        .map_err(|e| SoakError::Rfb(e.to_string()))?;
    v.desktop = init.name;
    v.screen = Screen::new(init.width, init.height, 4);
    v.send(&screen::setup_messages()).await?;
    v.screen.feed(&rest).map_err(SoakError::Stream)?;
    Ok(v)
}

impl Viewer {
    pub fn traffic(&self) -> Traffic {
        Traffic {
            updates: self.screen.updates,
            ..self.traffic
        }
    }

    /// Until `until`: input and update requests every tick, updates read as they come.
    /// Fails if no update arrives within [`STALL_TIMEOUT`].
    pub async fn stream(&mut self, until: Instant) -> Result<()> {
        let mut last_update = (self.screen.updates, Instant::now());
        let mut next_tick = Instant::now();
        self.send(&screen::update_request(
            false,
            self.screen.width,
            self.screen.height,
        ))
        .await?;
        let mut buf = vec![0u8; READ_CHUNK];
        while Instant::now() < until {
            tokio::select! {
                r = self.rd.read(&mut buf) => {
                    let n = r.map_err(|e| closed_or(e, "reading the stream"))?;
                    self.take(&buf[..n]).await?;
                }
                () = sleep_until(next_tick.min(until)) => {
                    if Instant::now() >= next_tick {
                        self.tick().await?;
                        next_tick += TICK;
                    }
                }
            }
            if self.screen.updates != last_update.0 {
                last_update = (self.screen.updates, Instant::now());
            } else if last_update.1.elapsed() > STALL_TIMEOUT {
                return Err(SoakError::Timeout("framebuffer update"));
            }
        }
        Ok(())
    }

    /// Until `until`: sends nothing, reads (and answers pings) to notice a close.
    pub async fn idle(&mut self, until: Instant) -> Result<()> {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            tokio::select! {
                r = self.rd.read(&mut buf) => {
                    let n = r.map_err(|e| closed_or(e, "reading while idle"))?;
                    self.take(&buf[..n]).await?;
                }
                () = sleep_until(until) => return Ok(()),
            }
        }
    }

    /// Asks for a full update and waits for it: the session's bytes flow.
    pub async fn one_update(&mut self) -> Result<()> {
        let before = self.screen.updates;
        self.send(&screen::update_request(
            false,
            self.screen.width,
            self.screen.height,
        ))
        .await?;
        let deadline = Instant::now() + STALL_TIMEOUT;
        let mut buf = vec![0u8; READ_CHUNK];
        while self.screen.updates == before {
            let n = tokio::time::timeout_at(deadline, self.rd.read(&mut buf))
                .await
                .map_err(|_| SoakError::Timeout("framebuffer update"))?
                .map_err(|e| closed_or(e, "reading an update"))?;
            self.take(&buf[..n]).await?;
        }
        Ok(())
    }

    /// Sends a close frame and waits briefly for the server's; the socket is dropped
    /// either way.
    pub async fn close(mut self) -> Traffic {
        let mut frame = Vec::new();
        ws::encode_masked(OP_CLOSE, &1000u16.to_be_bytes(), &mut frame);
        if self.wr.write_all(&frame).await.is_ok() {
            let wait = async {
                let mut buf = [0u8; 4096];
                while matches!(self.rd.read(&mut buf).await, Ok(n) if n > 0) {}
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), wait).await;
        }
        self.traffic()
    }

    async fn tick(&mut self) -> Result<()> {
        self.ticks += 1;
        let (w, h) = (self.screen.width.max(1), self.screen.height.max(1));
        let t = self.ticks;
        let mut msg = screen::pointer(
            (t * 37 % u64::from(w)) as u16,
            (t * 23 % u64::from(h)) as u16,
        );
        if t % 3 == 0 {
            msg.extend(screen::key_press(KEY_SHIFT));
        }
        msg.extend(screen::update_request(t % FULL_EVERY != 0, w, h));
        self.send(&msg).await
    }

    /// Bytes read from the gateway, into the follower; no bytes is the end of the stream.
    async fn take(&mut self, bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() {
            return Err(SoakError::Closed(None));
        }
        let payload = self.unframe(bytes).await?;
        self.screen.feed(&payload).map_err(SoakError::Stream)
    }

    /// Reads until some RFB payload arrives.
    async fn read_payload(&mut self) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let n = self
                .rd
                .read(&mut buf)
                .await
                .map_err(SoakError::io("reading from the gateway"))?;
            if n == 0 {
                return Err(SoakError::Closed(None));
            }
            let payload = self.unframe(&buf[..n]).await?;
            if !payload.is_empty() {
                return Ok(payload);
            }
        }
    }

    /// Websocket frames to RFB bytes; answers pings; a close frame is an error.
    async fn unframe(&mut self, bytes: &[u8]) -> Result<Vec<u8>> {
        self.traffic.down += bytes.len() as u64;
        let mut payload = Vec::new();
        let mut pings: Vec<Vec<u8>> = Vec::new();
        let mut close: Option<Vec<u8>> = None;
        // The gateway sends one binary frame per read, never fragmented control frames.
        self.decoder.feed(bytes, |op, p| match op {
            OP_BINARY | OP_CONTINUATION => payload.extend_from_slice(p),
            OP_PING => pings.push(p.to_vec()),
            OP_CLOSE => close.get_or_insert_with(Vec::new).extend_from_slice(p),
            _ => {}
        })?;
        for p in pings {
            let mut frame = Vec::new();
            ws::encode_masked(OP_PONG, &p, &mut frame);
            self.write(&frame).await?;
        }
        if let Some(c) = close {
            let code = (c.len() >= 2).then(|| u16::from_be_bytes([c[0], c[1]]));
            return Err(SoakError::Closed(code));
        }
        Ok(payload)
    }

    async fn send(&mut self, rfb: &[u8]) -> Result<()> {
        let mut frame = Vec::with_capacity(rfb.len() + 14);
        ws::encode_masked(OP_BINARY, rfb, &mut frame);
        self.write(&frame).await
    }

    async fn write(&mut self, frame: &[u8]) -> Result<()> {
        self.traffic.up += frame.len() as u64;
        self.wr
            .write_all(frame)
            .await
            .map_err(|e| closed_or(e, "writing to the gateway"))
    }
}

/// A connection reset or end of stream counts as a close; other errors stay I/O errors.
fn closed_or(e: std::io::Error, what: &str) -> SoakError {
    use std::io::ErrorKind::*;
    match e.kind() {
        UnexpectedEof | ConnectionReset | BrokenPipe | ConnectionAborted => SoakError::Closed(None),
        _ => SoakError::io(what)(e),
    }
}
