//! The browser→server half of one RFB connection as a gateway polices it, from the first
//! byte after ClientInit to the end of the connection.
//!
//! A filter must live as long as the connection: its state says where the next message
//! starts, and the server's parser keeps the same state. A second filter started in the
//! middle of a message would believe it stands at a boundary the server is not at, and
//! the bytes it forwards as harmless would be read by the server as input. So a gateway
//! makes one `ClientFilter` per viewer and feeds it every browser byte, however the
//! bytes were cut (handshake leftovers, websocket frames, socket reads).
//!
//! What it does, per `Policy`:
//! - view-only viewers lose their input: keys, pointer, clipboard, desktop size, power
//!   control (xvp), input devices (gii) and QEMU's extended key events;
//! - clipboard pastes are capped or disabled;
//! - viewers that may not receive the guest's clipboard have the extended-clipboard
//!   pseudo-encoding taken out of their SetEncodings, so the server never makes them a
//!   clipboard peer (QEMU sends ServerCutText only to such peers).
//!
//! Dropped messages are streamed past without being buffered; only a SetEncodings that
//! is rewritten is held, and its size is bounded.

use crate::client_msg::{self, Kind};
use crate::error::RfbError;

/// Bytes needed at most to know a client message's length.
const MAX_HEADER: usize = 12;

/// The extended clipboard pseudo-encoding (0xC0A1E5CE as a signed 32-bit number).
pub const EXTENDED_CLIPBOARD: i32 = 0xC0A1_E5CE_u32 as i32;

/// Most encodings in a SetEncodings the filter rewrites (noVNC sends about 25).
pub const MAX_REWRITTEN_ENCODINGS: u64 = 1024;

/// What one viewer may do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// No input reaches the server.
    pub view_only: bool,
    /// Largest clipboard text forwarded; `Some(0)` disables the clipboard both ways.
    pub max_clipboard: Option<u32>,
    /// A view-only viewer still receives the guest's clipboard (the owner allowed it).
    pub view_only_clipboard: bool,
}

impl Policy {
    /// Whether anything needs filtering at all; when not, the gateway relays raw bytes.
    pub fn filters(&self) -> bool {
        self.view_only || self.max_clipboard.is_some()
    }

    /// Whether the server may send this viewer its clipboard.
    pub fn receives_clipboard(&self) -> bool {
        self.max_clipboard != Some(0) && (!self.view_only || self.view_only_clipboard)
    }

    /// Whether a message of `kind` and total length `len` reaches the server.
    fn allows(&self, kind: Kind, len: u64) -> bool {
        if self.view_only && kind.is_input() {
            return false;
        }
        match (kind, self.max_clipboard) {
            (Kind::CutText, Some(max)) => max > 0 && len.saturating_sub(8) <= u64::from(max),
            _ => true,
        }
    }
}

/// The message being passed through.
#[derive(Debug, Clone)]
enum Current {
    /// Bytes left in a message that is forwarded as it streams.
    Forward(u64),
    /// Bytes left in a message that is dropped.
    Drop(u64),
    /// A SetEncodings held whole to be rewritten: the message so far and its length.
    Encodings(Vec<u8>, usize),
}

/// One viewer's filter for the whole life of its connection.
#[derive(Debug, Clone)]
pub struct ClientFilter {
    policy: Policy,
    header: [u8; MAX_HEADER],
    header_len: usize,
    current: Option<Current>,
    dropped: u64,
}

impl ClientFilter {
    /// A filter at the start of the client's message stream (after ClientInit).
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            header: [0; MAX_HEADER],
            header_len: 0,
            current: None,
            dropped: 0,
        }
    }

    /// What the filter lets through.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Messages dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// True when the next byte starts a message (nothing is held or half passed).
    pub fn at_boundary(&self) -> bool {
        self.header_len == 0 && self.current.is_none()
    }

    /// Appends the bytes of `input` that may reach the server to `out`. After an error
    /// the connection must end: the stream can no longer be framed.
    pub fn filter(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), RfbError> {
        while !input.is_empty() {
            match &mut self.current {
                Some(Current::Forward(remaining) | Current::Drop(remaining)) => {
                    let n = usize::try_from(*remaining)
                        .unwrap_or(usize::MAX)
                        .min(input.len());
                    if matches!(self.current, Some(Current::Forward(_))) {
                        out.extend_from_slice(&input[..n]);
                    }
                    input = &input[n..];
                    self.consumed(n as u64);
                    continue;
                }
                Some(Current::Encodings(held, len)) => {
                    let n = (*len - held.len()).min(input.len());
                    held.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    if held.len() == *len {
                        let held = std::mem::take(held);
                        self.current = None;
                        self.emit_encodings(&held, out);
                    }
                    continue;
                }
                None => {}
            }
            self.header[self.header_len] = input[0];
            self.header_len += 1;
            input = &input[1..];
            let Some(frame) = client_msg::frame(&self.header[..self.header_len])? else {
                if self.header_len == MAX_HEADER {
                    return Err(RfbError::Malformed("client message header"));
                }
                continue;
            };
            self.start(frame, out)?;
        }
        Ok(())
    }

    /// A message's header is complete: decide what happens to it.
    fn start(&mut self, frame: client_msg::Frame, out: &mut Vec<u8>) -> Result<(), RfbError> {
        let header_len = self.header_len;
        self.header_len = 0;
        let remaining = frame.len - header_len as u64;
        if !self.policy.allows(frame.kind, frame.len) {
            self.dropped += 1;
            self.current = (remaining > 0).then_some(Current::Drop(remaining));
            return Ok(());
        }
        if frame.kind == Kind::SetEncodings && !self.policy.receives_clipboard() {
            if (frame.len - 4) / 4 > MAX_REWRITTEN_ENCODINGS {
                return Err(RfbError::Malformed("too many encodings"));
            }
            let len = frame.len as usize;
            let mut held = Vec::with_capacity(len);
            held.extend_from_slice(&self.header[..header_len]);
            if held.len() == len {
                self.emit_encodings(&held, out);
            } else {
                self.current = Some(Current::Encodings(held, len));
            }
            return Ok(());
        }
        out.extend_from_slice(&self.header[..header_len]);
        self.current = (remaining > 0).then_some(Current::Forward(remaining));
        Ok(())
    }

    fn consumed(&mut self, n: u64) {
        if let Some(Current::Forward(remaining) | Current::Drop(remaining)) = &mut self.current {
            *remaining -= n;
            if *remaining == 0 {
                self.current = None;
            }
        }
    }

    /// Writes a whole SetEncodings without the extended clipboard pseudo-encoding.
    fn emit_encodings(&mut self, msg: &[u8], out: &mut Vec<u8>) {
        let kept: Vec<[u8; 4]> = msg[4..]
            .chunks_exact(4)
            .map(|c| [c[0], c[1], c[2], c[3]])
            .filter(|e| i32::from_be_bytes(*e) != EXTENDED_CLIPBOARD)
            .collect();
        // At most MAX_REWRITTEN_ENCODINGS entries, so the count fits its u16.
        let count = u16::try_from(kept.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&msg[..2]);
        out.extend_from_slice(&count.to_be_bytes());
        out.extend(kept.into_iter().flatten());
    }
}

impl Default for ClientFilter {
    fn default() -> Self {
        Self::new(Policy::default())
    }
}

#[cfg(test)]
mod tests;
