//! Close codes (RFC 6455 §7.4) and close-frame payloads.

use bytes::{BufMut, Bytes, BytesMut};

/// Longest payload a control frame (close, ping, pong) may carry (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Normal closure; also darts' close of an idle session.
pub const NORMAL: u16 = 1000;
/// Going away: the gateway shuts down, or the browser stopped answering pings.
pub const GOING_AWAY: u16 = 1001;
/// The peer broke the websocket protocol.
pub const PROTOCOL_ERROR: u16 = 1002;
/// A data type not accepted: darts takes binary frames only.
pub const UNSUPPORTED_DATA: u16 = 1003;
/// Stands for "no status code" locally; never sent in a close frame.
pub const NO_STATUS: u16 = 1005;
/// Payload inconsistent with its message type (text that is not UTF-8).
pub const INVALID_PAYLOAD: u16 = 1007;
/// Policy violation: an unexpected RFB message, or a frame left unfinished too long.
pub const POLICY_VIOLATION: u16 = 1008;
/// A frame or message over the size limits.
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// Internal error: the session cannot go on, mostly because the VNC server failed or
/// cannot be used.
pub const INTERNAL_ERROR: u16 = 1011;

/// What a peer's close frame said, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerClose {
    /// A valid frame; `None` when it carried no status code.
    Valid(Option<u16>),
    /// A code peers may not send, a one-byte payload, or a reason that is not UTF-8.
    Invalid,
}

/// Checks an unmasked close payload.
pub fn parse(payload: &[u8]) -> PeerClose {
    match payload {
        [] => PeerClose::Valid(None),
        [_] => PeerClose::Invalid,
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            let allowed = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999);
            if allowed && std::str::from_utf8(reason).is_ok() {
                PeerClose::Valid(Some(code))
            } else {
                PeerClose::Invalid
            }
        }
    }
}

/// Builds a close payload; the reason is cut to fit the 125-byte control-frame limit.
pub fn payload(code: u16, reason: &str) -> Bytes {
    let mut cut = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = BytesMut::with_capacity(2 + cut);
    out.put_u16(code);
    out.put_slice(&reason.as_bytes()[..cut]);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_codes_and_reasons() {
        assert_eq!(parse(&[]), PeerClose::Valid(None));
        assert_eq!(
            parse(&[0x03, 0xE8, b'o', b'k']),
            PeerClose::Valid(Some(1000))
        );
        assert_eq!(parse(&[0x03]), PeerClose::Invalid);
        assert_eq!(parse(&1005u16.to_be_bytes()), PeerClose::Invalid);
        assert_eq!(parse(&[0x03, 0xE8, 0xFF]), PeerClose::Invalid);
        assert_eq!(parse(&4000u16.to_be_bytes()), PeerClose::Valid(Some(4000)));
    }

    #[test]
    fn long_reasons_are_cut_on_a_char_boundary() {
        let p = payload(1011, &"é".repeat(100));
        assert!(p.len() <= 125);
        assert!(std::str::from_utf8(&p[2..]).is_ok());
        assert_eq!(&p[..2], &1011u16.to_be_bytes());
    }
}
