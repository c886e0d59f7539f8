//! The client's side of a session: connect straight to the backend or through a gateway
//! (plain or TLS), do the websocket upgrade when there is a gateway, and read the VNC
//! greeting every backend mode starts with, which proves the session reaches the backend.
//! When darts terminates the backend's security, the client instead speaks RFB as noVNC
//! does (darts offers None) up to the backend's ServerInit.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::backend::GREETING;
use crate::error::{LoadError, Result};
use crate::rfb::Browser;
use crate::security::TOKEN;
use crate::ws::{self, Decoder, OP_BINARY, OP_CLOSE, OP_CONTINUATION};

/// Where the client connects and what it speaks there.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// Websocket framing (through a gateway) or raw bytes (direct).
    pub ws: bool,
    /// The gateway routes by token file: the upgrade asks for `?token=`.
    pub token: bool,
    /// The gateway terminates the backend's security: speak RFB up to ServerInit.
    pub rfb: bool,
}

impl Endpoint {
    /// The path of the upgrade request.
    fn path(&self) -> String {
        if self.token {
            format!("/websockify?token={TOKEN}")
        } else {
            "/websockify".into()
        }
    }
}

/// Turns bytes read from the stream into the backend's bytes: websocket frames through a
/// gateway, as they are when direct.
#[derive(Debug)]
pub struct Payload {
    decoder: Option<Decoder>,
}

impl Payload {
    pub fn new(ws: bool) -> Self {
        Self {
            decoder: ws.then(Decoder::default),
        }
    }

    /// Calls `f` with each piece of backend data in `bytes`. A close frame from the
    /// gateway is an error: no scenario expects one.
    pub fn feed(&mut self, bytes: &[u8], mut f: impl FnMut(&[u8])) -> Result<()> {
        let Some(decoder) = &mut self.decoder else {
            f(bytes);
            return Ok(());
        };
        let mut closed = false;
        decoder.feed(bytes, |op, p| match op {
            OP_BINARY | OP_CONTINUATION => f(p),
            OP_CLOSE => closed = true,
            _ => {}
        })?;
        if closed {
            return Err(LoadError::Closed);
        }
        Ok(())
    }
}

/// An open plain session past the VNC greeting.
#[derive(Debug)]
pub struct Session {
    pub stream: TcpStream,
    pub payload: Payload,
    /// Backend bytes that arrived after the greeting, already consumed.
    pub extra: u64,
}

/// Connects (and upgrades, through a gateway) without TLS, and reads the greeting.
pub async fn open(ep: Endpoint) -> Result<Session> {
    let mut stream = TcpStream::connect(ep.addr)
        .await
        .map_err(LoadError::io(format!("connecting to {}", ep.addr)))?;
    stream
        .set_nodelay(true)
        .map_err(LoadError::io("setting TCP_NODELAY"))?;
    let early = if ep.ws {
        ws::handshake(&mut stream, &ep.addr.to_string(), &ep.path()).await?
    } else {
        Vec::new()
    };
    let mut payload = Payload::new(ep.ws);
    let extra = reach_backend(&mut stream, &early, &mut payload, ep.rfb).await?;
    Ok(Session {
        stream,
        payload,
        extra,
    })
}

/// One complete session set-up and tear-down: connect, TLS if `tls` is given, upgrade,
/// VNC greeting, close. Bounded by `timeout`.
pub async fn establish(ep: Endpoint, tls: Option<&TlsConnector>, timeout: Duration) -> Result<()> {
    let attempt = async {
        let Some(connector) = tls else {
            return open(ep).await.map(drop);
        };
        let tcp = TcpStream::connect(ep.addr)
            .await
            .map_err(LoadError::io(format!("connecting to {}", ep.addr)))?;
        tcp.set_nodelay(true)
            .map_err(LoadError::io("setting TCP_NODELAY"))?;
        let mut stream = connector
            .connect(crate::tls::server_name(), tcp)
            .await
            .map_err(|e| LoadError::Tls(e.to_string()))?;
        let early = ws::handshake(&mut stream, &ep.addr.to_string(), &ep.path()).await?;
        reach_backend(&mut stream, &early, &mut Payload::new(true), ep.rfb)
            .await
            .map(drop)
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| LoadError::Timeout("session set-up"))?
}

/// Proves the session reaches the backend: the VNC greeting, or with `rfb` the whole
/// handshake to ServerInit. Returns how many backend bytes came after it.
async fn reach_backend<S>(
    stream: &mut S,
    early: &[u8],
    payload: &mut Payload,
    rfb: bool,
) -> Result<u64>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if rfb {
        rfb_handshake(stream, early, payload).await
    } else {
        read_greeting(stream, early, payload).await
    }
}

/// The RFB handshake through darts, as noVNC does it, up to the backend's ServerInit.
async fn rfb_handshake<S>(stream: &mut S, early: &[u8], payload: &mut Payload) -> Result<u64>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut browser = Browser::default();
    let mut reply = Vec::new();
    let mut wire = Vec::new();
    let mut bytes = early.to_vec();
    let mut buf = [0u8; 4096];
    loop {
        let mut got = Vec::new();
        payload.feed(&bytes, |b| got.extend_from_slice(b))?;
        let done = browser.feed(&got, &mut reply)?;
        if !reply.is_empty() {
            wire.clear();
            ws::encode_masked(OP_BINARY, &reply, &mut wire);
            reply.clear();
            stream
                .write_all(&wire)
                .await
                .map_err(LoadError::io("sending the RFB handshake"))?;
            stream
                .flush()
                .await
                .map_err(LoadError::io("sending the RFB handshake"))?;
        }
        if let Some(extra) = done {
            return Ok(extra as u64);
        }
        let n = stream
            .read(&mut buf)
            .await
            .map_err(LoadError::io("reading the RFB handshake"))?;
        if n == 0 {
            return Err(LoadError::Closed);
        }
        bytes.clear();
        bytes.extend_from_slice(&buf[..n]);
    }
}

/// Reads until the whole VNC greeting has arrived; returns how many backend bytes came
/// after it.
async fn read_greeting<S>(stream: &mut S, early: &[u8], payload: &mut Payload) -> Result<u64>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn take(got: &mut Vec<u8>, extra: &mut u64, bytes: &[u8]) {
        let room = GREETING.len().saturating_sub(got.len()).min(bytes.len());
        got.extend_from_slice(&bytes[..room]);
        *extra += (bytes.len() - room) as u64;
    }
    let mut got = Vec::with_capacity(GREETING.len());
    let mut extra = 0u64;
    payload.feed(early, |b| take(&mut got, &mut extra, b))?;
    let mut buf = [0u8; 512];
    while got.len() < GREETING.len() {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(LoadError::io("reading the VNC greeting"))?;
        if n == 0 {
            return Err(LoadError::Closed);
        }
        payload.feed(&buf[..n], |b| take(&mut got, &mut extra, b))?;
    }
    if got != GREETING {
        return Err(LoadError::Scenario(format!(
            "unexpected greeting {:?}",
            String::from_utf8_lossy(&got)
        )));
    }
    Ok(extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_payload_passes_through_and_close_frames_fail() {
        let mut raw = Payload::new(false);
        let mut n = 0;
        raw.feed(b"abc", |p| n += p.len()).unwrap();
        assert_eq!(n, 3);
        let mut framed = Payload::new(true);
        let mut got = Vec::new();
        framed
            .feed(&[0x82, 2, b'h', b'i'], |p| got.extend_from_slice(p))
            .unwrap();
        assert_eq!(got, b"hi");
        assert!(matches!(
            framed.feed(&[0x88, 0], |_| {}),
            Err(LoadError::Closed)
        ));
    }
}
