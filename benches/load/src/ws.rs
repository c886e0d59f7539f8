//! A minimal websocket client, just what the load needs and as cheap as possible: the
//! opening handshake, masked client frames, and a streaming parser of server frames that
//! hands payload slices to a callback without copying or assembling messages.
//!
//! The mask key is a constant (RFC 6455 only requires that the client mask; a predictable
//! key is legal), so a payload can be masked once and sent many times.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::{LoadError, Result};

/// The constant mask key of every frame the tool sends.
pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
/// The key of RFC 6455's example; the tool does not check the accept value.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// Largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xa;

/// The upgrade request noVNC would send (less cookies and origin).
pub fn upgrade_request(host: &str, path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n\r\n"
    )
    .into_bytes()
}

/// Sends the upgrade request and reads the response head. Returns the bytes that came
/// after the head (the start of the websocket stream).
pub async fn handshake<S>(stream: &mut S, host: &str, path: &str) -> Result<Vec<u8>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream
        .write_all(&upgrade_request(host, path))
        .await
        .map_err(LoadError::io("sending the upgrade request"))?;
    stream
        .flush()
        .await
        .map_err(LoadError::io("sending the upgrade request"))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(LoadError::io("reading the upgrade response"))?;
        if n == 0 {
            return Err(LoadError::Handshake(
                "connection closed before the response".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find_head_end(&buf) {
            let status = buf.split(|&b| b == b'\r').next().unwrap_or_default();
            match status_code(status) {
                Some(101) => {}
                Some(code) => return Err(LoadError::Refused(code)),
                None => {
                    return Err(LoadError::Handshake(format!(
                        "unreadable status line {:?}",
                        String::from_utf8_lossy(status)
                    )))
                }
            }
            return Ok(buf.split_off(end));
        }
        if buf.len() > MAX_HEAD {
            return Err(LoadError::Handshake("response head too long".into()));
        }
    }
}

/// The code of an `HTTP/1.x NNN reason` status line.
fn status_code(line: &[u8]) -> Option<u16> {
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let code = rest.get(2..5)?;
    std::str::from_utf8(code).ok()?.parse().ok()
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Appends one masked client frame (FIN set) carrying `payload` to `out`.
pub fn encode_masked(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&MASK);
    out.extend(
        payload
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ MASK[i % MASK.len()]),
    );
}

/// Streaming parser of server (unmasked) frames.
#[derive(Debug, Default)]
pub struct Decoder {
    head: [u8; 10],
    head_len: usize,
    /// Payload bytes of the current frame still to come.
    remaining: u64,
    opcode: u8,
}

impl Decoder {
    /// Parses `buf`, calling `on_payload(opcode, bytes)` for each piece of payload (and
    /// once with an empty slice for an empty frame). Continuation frames report their
    /// own opcode 0.
    pub fn feed(&mut self, buf: &[u8], mut on_payload: impl FnMut(u8, &[u8])) -> Result<()> {
        let mut i = 0;
        while i < buf.len() {
            if self.remaining > 0 {
                let n = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(buf.len() - i);
                on_payload(self.opcode, &buf[i..i + n]);
                self.remaining -= n as u64;
                i += n;
                continue;
            }
            self.head[self.head_len] = buf[i];
            self.head_len += 1;
            i += 1;
            if let Some((opcode, len)) = parse_head(&self.head[..self.head_len])? {
                self.head_len = 0;
                self.opcode = opcode;
                self.remaining = len;
                if len == 0 {
                    on_payload(opcode, &[]);
                }
            }
        }
        Ok(())
    }
}

/// `Some((opcode, payload length))` once `head` is a complete server frame header.
fn parse_head(head: &[u8]) -> Result<Option<(u8, u64)>> {
    if head.len() < 2 {
        return Ok(None);
    }
    if head[1] & 0x80 != 0 {
        return Err(LoadError::Frame("masked frame"));
    }
    let opcode = head[0] & 0x0f;
    match head[1] & 0x7f {
        126 if head.len() < 4 => Ok(None),
        126 => Ok(Some((
            opcode,
            u64::from(u16::from_be_bytes([head[2], head[3]])),
        ))),
        127 if head.len() < 10 => Ok(None),
        127 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&head[2..10]);
            Ok(Some((opcode, u64::from_be_bytes(b))))
        }
        n => Ok(Some((opcode, u64::from(n)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0x80 | opcode];
        let len = payload.len();
        if len < 126 {
            out.push(len as u8);
        } else if len <= 65535 {
            out.push(126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn decodes_frames_split_anywhere() {
        let payloads: Vec<Vec<u8>> = [0usize, 5, 125, 126, 300, 70_000]
            .iter()
            .map(|&n| (0..n).map(|i| (i % 251) as u8).collect())
            .collect();
        let mut wire = Vec::new();
        for p in &payloads {
            wire.extend(server_frame(OP_BINARY, p));
        }
        wire.extend(server_frame(OP_CLOSE, &[3, 232]));
        for step in [1usize, 3, 7, 1000, wire.len()] {
            let mut d = Decoder::default();
            let mut got = Vec::new();
            let mut frames = 0;
            let mut close = false;
            for piece in wire.chunks(step) {
                d.feed(piece, |op, bytes| match op {
                    OP_CLOSE => close = true,
                    _ => {
                        frames += usize::from(bytes.is_empty());
                        got.extend_from_slice(bytes);
                    }
                })
                .unwrap();
            }
            let want: Vec<u8> = payloads.concat();
            assert_eq!(got, want, "step {step}");
            assert_eq!(frames, 1, "one empty frame reported");
            assert!(close);
        }
    }

    #[test]
    fn masked_server_frames_are_refused() {
        let mut d = Decoder::default();
        assert!(d.feed(&[0x82, 0x81, 0, 0, 0, 0, 1], |_, _| {}).is_err());
    }

    #[test]
    fn client_frames_unmask_to_the_payload() {
        for len in [0usize, 10, 125, 126, 65_535, 65_536] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let mut out = Vec::new();
            encode_masked(OP_BINARY, &payload, &mut out);
            let head = match len {
                0..=125 => 2,
                126..=65_535 => 4,
                _ => 10,
            };
            assert_eq!(out[0], 0x82);
            assert_eq!(out.len(), head + 4 + len);
            let key = &out[head..head + 4];
            let unmasked: Vec<u8> = out[head + 4..]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4])
                .collect();
            assert_eq!(unmasked, payload);
        }
    }

    #[test]
    fn status_codes_are_read() {
        assert_eq!(status_code(b"HTTP/1.1 101 Switching Protocols"), Some(101));
        assert_eq!(status_code(b"HTTP/1.1 404 Not Found"), Some(404));
        assert_eq!(status_code(b"HTTP/1.0 503"), Some(503));
        assert_eq!(status_code(b"SSH-2.0"), None);
    }

    #[test]
    fn head_end_is_found() {
        assert_eq!(find_head_end(b"HTTP/1.1 101 X\r\n\r\nab"), Some(18));
        assert_eq!(find_head_end(b"HTTP/1.1 101 X\r\n"), None);
    }
}
