//! The browser side of the RFB handshake, spoken inside websocket frames before the pump
//! starts. Only whole frames are consumed here (handshake frames are tiny), so whatever is
//! left unparsed starts on a frame boundary and is handed to the pump as is.

use std::io;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use darts_vnc::server::{ServerHandshake, Status};
use darts_vnc::RfbError;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::ws::close;
use crate::ws::frame::{self, Opcode};
use crate::ws::mask;
use crate::ws::write::{send_close, write_frame};

/// Largest frame accepted from the browser during the handshake.
const MAX_HANDSHAKE_FRAME: u64 = 64 * 1024;

/// Why the browser's side of the RFB handshake failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrowserError {
    /// Reading from or writing to the browser failed.
    #[error("browser I/O: {0}")]
    Io(#[from] io::Error),
    /// The browser closed the connection or sent a close frame.
    #[error("browser closed the connection during the RFB handshake")]
    Closed,
    /// A bad, text or oversized frame; with the close code to answer.
    #[error("browser broke the websocket protocol: {0}")]
    Protocol(&'static str, u16),
    /// The RFB messages inside the frames were wrong.
    #[error("browser broke the RFB protocol: {0}")]
    Rfb(#[from] RfbError),
    /// The handshake took longer than the given time.
    #[error("browser did not finish the RFB handshake within {0:?}")]
    Timeout(Duration),
    /// darts refused the browser (a `refusing` handshake); the reason has been sent.
    #[error("browser refused: {0}")]
    Refused(&'static str),
}

impl BrowserError {
    /// Close code for the browser.
    pub fn close_code(&self) -> u16 {
        match self {
            Self::Protocol(_, code) => *code,
            Self::Rfb(_) => close::POLICY_VIOLATION,
            _ => close::INTERNAL_ERROR,
        }
    }
}

/// Websocket messages to and from the browser during the handshake.
#[derive(Debug)]
pub struct BrowserLink<'a, C> {
    client: &'a mut C,
    /// Bytes read but not yet parsed as a frame.
    raw: BytesMut,
    /// Unmasked payload bytes not yet consumed.
    data: BytesMut,
}

impl<'a, C: AsyncRead + AsyncWrite + Unpin> BrowserLink<'a, C> {
    /// Talks over `client`, starting with `early`, the bytes read before the upgrade.
    pub fn new(client: &'a mut C, early: Bytes) -> Self {
        Self {
            client,
            raw: BytesMut::from(&early[..]),
            data: BytesMut::new(),
        }
    }

    /// Sends `payload` as one binary frame.
    pub async fn send(&mut self, payload: &[u8]) -> io::Result<()> {
        write_frame(self.client, Opcode::Binary, payload).await
    }

    /// Reads frames until at least `n` payload bytes are buffered.
    async fn fill(&mut self, n: usize) -> Result<(), BrowserError> {
        while self.data.len() < n {
            match frame::parse_client_header(&self.raw) {
                Err(e) => return Err(BrowserError::Protocol("malformed frame", e.close_code())),
                Ok(Some((h, _))) if h.payload_len > MAX_HANDSHAKE_FRAME => {
                    return Err(BrowserError::Protocol(
                        "frame too big during the handshake",
                        close::MESSAGE_TOO_BIG,
                    ));
                }
                Ok(Some((h, hlen))) if self.raw.len() >= hlen + h.payload_len as usize => {
                    self.raw.advance(hlen);
                    let mut payload = self.raw.split_to(h.payload_len as usize);
                    mask::apply(&mut payload, h.mask.unwrap_or_default(), 0);
                    match h.opcode {
                        Opcode::Binary | Opcode::Continuation => {
                            self.data.extend_from_slice(&payload)
                        }
                        Opcode::Text => {
                            return Err(BrowserError::Protocol(
                                "text frames are not supported",
                                close::UNSUPPORTED_DATA,
                            ))
                        }
                        Opcode::Ping => write_frame(self.client, Opcode::Pong, &payload).await?,
                        Opcode::Pong => {}
                        Opcode::Close => return Err(BrowserError::Closed),
                    }
                    continue;
                }
                Ok(_) => {}
            }
            if self.client.read_buf(&mut self.raw).await? == 0 {
                return Err(BrowserError::Closed);
            }
        }
        Ok(())
    }

    /// Runs the server side of the RFB handshake with the browser, up to security done.
    pub async fn handshake(&mut self, mut hs: ServerHandshake) -> Result<(), BrowserError> {
        self.send(hs.start()).await?;
        let mut out = Vec::new();
        loop {
            let (used, status) = hs.advance(&self.data, &mut out)?;
            self.data.advance(used);
            if !out.is_empty() {
                self.send(&out).await?;
                out.clear();
            }
            match status {
                Status::Done => return Ok(()),
                Status::Refused => {
                    self.client.flush().await?;
                    return Err(BrowserError::Refused("refused during the RFB handshake"));
                }
                Status::NeedMore => {
                    let need = self.data.len() + 1;
                    self.fill(need).await?;
                }
            }
        }
    }

    /// Reads the browser's ClientInit (one byte: shared flag).
    pub async fn client_init(&mut self) -> Result<u8, BrowserError> {
        self.fill(1).await?;
        let shared = self.data[0];
        self.data.advance(1);
        Ok(shared)
    }

    /// What is left: raw bytes for the pump, and payload already unmasked.
    pub fn into_parts(self) -> (Bytes, Bytes) {
        (self.raw.freeze(), self.data.freeze())
    }
}

/// Tells the browser, in RFB terms, that the VNC server cannot be used, then closes the
/// websocket with 1011. noVNC shows `reason`.
pub async fn refuse<C: AsyncRead + AsyncWrite + Unpin>(
    client: &mut C,
    early: Bytes,
    reason: &str,
    timeout: Duration,
) {
    let attempt = async {
        let mut link = BrowserLink::new(client, early);
        let _ = link.handshake(ServerHandshake::refusing(reason)).await;
    };
    let _ = tokio::time::timeout(timeout, attempt).await;
    send_close(client, close::INTERNAL_ERROR, reason).await;
}
