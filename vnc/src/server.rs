//! The server side of the RFB handshake: darts talking to a browser (noVNC).
//!
//! darts offers the browser security type None: the browser is already authenticated by
//! its token, and the real security (VNC password, x509) is handled by darts towards
//! QEMU. `fail` produces the RFB failure message that makes noVNC show a reason.

use crate::error::RfbError;
use crate::security::kind;
use crate::version;

/// The version darts announces.
pub const VERSION: &[u8; version::LEN] = b"RFB 003.008\n";

/// Where the handshake stands after `advance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The browser must send more bytes before the handshake can go on.
    NeedMore,
    /// Security done; the browser's ClientInit comes next.
    Done,
    /// The refusal has been produced; close the connection once it is written.
    Refused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Version,
    Choice,
    Done,
}

/// Handshake with one browser.
#[derive(Debug)]
pub struct ServerHandshake {
    state: State,
    minor: u16,
    /// Set by `refusing`: answer the version with this failure reason.
    refusal: Option<Vec<u8>>,
}

impl Default for ServerHandshake {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerHandshake {
    /// A handshake that offers security None to the browser: darts authenticates
    /// viewers by their token before any RFB byte is exchanged.
    pub fn new() -> Self {
        Self {
            state: State::Version,
            minor: 8,
            refusal: None,
        }
    }

    /// A handshake that refuses the browser with `reason` (shown by noVNC) right after
    /// the version exchange, e.g. because the VNC server could not be reached.
    /// Reasons are cut to 255 bytes.
    pub fn refusing(reason: &str) -> Self {
        let mut cut = reason.len().min(255);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        Self {
            refusal: Some(reason.as_bytes()[..cut].to_vec()),
            ..Self::new()
        }
    }

    /// The first bytes to send: the server's version.
    pub fn start(&self) -> &'static [u8] {
        VERSION
    }

    /// The RFB minor version agreed with the browser (3, 7 or 8).
    pub fn minor(&self) -> u16 {
        self.minor
    }

    /// Consumes browser bytes, appends replies to `out`; returns bytes used and status.
    pub fn advance(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(usize, Status), RfbError> {
        let mut used = 0;
        loop {
            let rest = &input[used..];
            match self.state {
                State::Version => {
                    let Some(v) = version::parse(rest).map_err(|_| RfbError::NotRfb)? else {
                        return Ok((used, Status::NeedMore));
                    };
                    used += version::LEN;
                    self.minor = v.agree()?;
                    if let Some(reason) = &self.refusal {
                        // 3.3: security type 0 (u32); 3.7+: zero security types (u8).
                        if self.minor == 3 {
                            out.extend_from_slice(&0u32.to_be_bytes());
                        } else {
                            out.push(0);
                        }
                        out.extend_from_slice(&(reason.len() as u32).to_be_bytes());
                        out.extend_from_slice(reason);
                        return Ok((used, Status::Refused));
                    }
                    if self.minor == 3 {
                        out.extend_from_slice(&u32::from(kind::NONE).to_be_bytes());
                        self.state = State::Done;
                    } else {
                        out.extend_from_slice(&[1, kind::NONE]);
                        self.state = State::Choice;
                    }
                }
                State::Choice => {
                    let Some(&choice) = rest.first() else {
                        return Ok((used, Status::NeedMore));
                    };
                    used += 1;
                    if choice != kind::NONE {
                        return Err(RfbError::Malformed(
                            "security type the server did not offer",
                        ));
                    }
                    if self.minor == 8 {
                        out.extend_from_slice(&0u32.to_be_bytes());
                    }
                    self.state = State::Done;
                }
                State::Done => return Ok((used, Status::Done)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfb_38_offers_none_and_confirms() {
        let mut s = ServerHandshake::new();
        assert_eq!(s.start(), b"RFB 003.008\n");
        let mut out = Vec::new();
        assert_eq!(
            s.advance(b"RFB 003.0", &mut out).unwrap(),
            (0, Status::NeedMore)
        );
        assert_eq!(
            s.advance(b"RFB 003.008\n", &mut out).unwrap(),
            (12, Status::NeedMore)
        );
        assert_eq!(out, [1, 1]);
        out.clear();
        assert_eq!(s.advance(&[1, 9, 9], &mut out).unwrap(), (1, Status::Done));
        assert_eq!(out, [0, 0, 0, 0]);
    }

    #[test]
    fn rfb_37_and_33_clients() {
        let mut s = ServerHandshake::new();
        let mut out = Vec::new();
        s.advance(b"RFB 003.007\n", &mut out).unwrap();
        assert_eq!(s.advance(&[1], &mut out).unwrap(), (1, Status::Done));
        assert_eq!(out, [1, 1], "no SecurityResult for None in 3.7");
        let mut s = ServerHandshake::new();
        let mut out = Vec::new();
        assert_eq!(
            s.advance(b"RFB 003.003\n", &mut out).unwrap(),
            (12, Status::Done)
        );
        assert_eq!(out, [0, 0, 0, 1]);
    }

    #[test]
    fn refuses_garbage_and_unoffered_types() {
        let mut s = ServerHandshake::new();
        assert_eq!(
            s.advance(b"GET / HTTP/1.1\r\n", &mut Vec::new()),
            Err(RfbError::NotRfb)
        );
        let mut s = ServerHandshake::new();
        s.advance(b"RFB 003.008\n", &mut Vec::new()).unwrap();
        assert!(s.advance(&[2], &mut Vec::new()).is_err());
        assert!(ServerHandshake::new()
            .advance(b"RFB 002.000\n", &mut Vec::new())
            .is_err());
    }

    #[test]
    fn refusals_carry_the_reason_in_the_clients_version() {
        let mut s = ServerHandshake::refusing("VNC server unreachable");
        let mut out = Vec::new();
        assert_eq!(
            s.advance(b"RFB 003.008\n", &mut out).unwrap(),
            (12, Status::Refused)
        );
        assert_eq!(out[0], 0, "zero security types");
        assert_eq!(
            u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize,
            "VNC server unreachable".len()
        );
        assert_eq!(&out[5..], b"VNC server unreachable");
        let mut s = ServerHandshake::refusing("x");
        let mut out = Vec::new();
        s.advance(b"RFB 003.003\n", &mut out).unwrap();
        assert_eq!(out, [0, 0, 0, 0, 0, 0, 0, 1, b'x']);
        let long = "é".repeat(300);
        let mut out = Vec::new();
        ServerHandshake::refusing(&long)
            .advance(b"RFB 003.008\n", &mut out)
            .unwrap();
        assert!(out.len() <= 5 + 255);
    }
}
