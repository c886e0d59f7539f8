//! RFC 6455 frame headers, sans-IO: parse what a browser sends, encode what the server sends.
//!
//! Only headers are handled here. Payloads are never buffered whole by the data path: the
//! pump unmasks and forwards them chunk by chunk (see `mask::apply`), so memory does not
//! depend on the size of a frame a peer announces.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! ```

use std::fmt;

/// Longest header a server writes: 2 bytes + 8 bytes of extended length, never a mask.
pub const MAX_SERVER_HEADER: usize = 10;
pub use super::close::MAX_CONTROL_PAYLOAD;

/// Frame opcodes (RFC 6455 §5.2). Reserved opcodes are rejected while parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// The next part of a fragmented message.
    Continuation,
    /// A UTF-8 text message (refused by darts: RFB is binary).
    Text,
    /// A binary message: RFB bytes.
    Binary,
    /// Starts or answers the closing handshake.
    Close,
    /// Asks for a pong with the same payload.
    Ping,
    /// Answers a ping.
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Self> {
        Some(match bits {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Control frames may not be fragmented and carry at most 125 bytes.
    pub fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Last frame of its message.
    pub fin: bool,
    /// The frame's type.
    pub opcode: Opcode,
    /// Masking key; every frame from a browser must carry one.
    pub mask: Option<[u8; 4]>,
    /// Payload length as the header announces it.
    pub payload_len: u64,
}

/// Why a frame header was refused. Each maps to the close code the peer is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// RSV bits set although no extension was negotiated.
    ReservedBits,
    /// Opcode 0x3-0x7 or 0xB-0xF.
    ReservedOpcode(u8),
    /// A control frame with FIN clear or a payload over 125 bytes.
    BadControlFrame,
    /// A 64-bit length with its most significant bit set.
    LengthOverflow,
    /// A client frame without a masking key (RFC 6455 §5.1).
    Unmasked,
}

impl FrameError {
    /// The close code the peer gets for this error.
    pub fn close_code(self) -> u16 {
        crate::ws::close::PROTOCOL_ERROR
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReservedBits => f.write_str("reserved bits set"),
            Self::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            Self::BadControlFrame => f.write_str("fragmented or oversized control frame"),
            Self::LengthOverflow => f.write_str("payload length overflows 63 bits"),
            Self::Unmasked => f.write_str("client frame not masked"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Parses one frame header from the start of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a header ("need more bytes"), which
/// is distinct from `Err` ("malformed"). On success, also returns the header's length.
pub fn parse_client_header(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, FrameError> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(FrameError::ReservedBits);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = Opcode::from_bits(b0 & 0x0F).ok_or(FrameError::ReservedOpcode(b0 & 0x0F))?;
    let masked = b1 & 0x80 != 0;
    let (payload_len, mut pos) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut raw = [0u8; 8];
                raw.copy_from_slice(b);
                let len = u64::from_be_bytes(raw);
                if len >> 63 != 0 {
                    return Err(FrameError::LengthOverflow);
                }
                (len, 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if opcode.is_control() && (!fin || payload_len > MAX_CONTROL_PAYLOAD as u64) {
        return Err(FrameError::BadControlFrame);
    }
    if !masked {
        return Err(FrameError::Unmasked);
    }
    let Some(key) = buf.get(pos..pos + 4) else {
        return Ok(None);
    };
    let mask = Some([key[0], key[1], key[2], key[3]]);
    pos += 4;
    Ok(Some((
        FrameHeader {
            fin,
            opcode,
            mask,
            payload_len,
        },
        pos,
    )))
}

/// Encodes an unmasked, final server frame header into `out`; returns its length.
pub fn encode_server_header(
    opcode: Opcode,
    payload_len: usize,
    out: &mut [u8; MAX_SERVER_HEADER],
) -> usize {
    out[0] = 0x80 | opcode.bits();
    if payload_len < 126 {
        out[1] = payload_len as u8;
        2
    } else if let Ok(len) = u16::try_from(payload_len) {
        out[1] = 126;
        out[2..4].copy_from_slice(&len.to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
        10
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_frame(fin: bool, op: u8, len_bytes: &[u8]) -> Vec<u8> {
        let mut v = vec![(if fin { 0x80 } else { 0 }) | op];
        v.extend_from_slice(len_bytes);
        v.extend_from_slice(&[1, 2, 3, 4]);
        v
    }

    #[test]
    fn parses_all_three_length_forms() {
        let (h, n) = parse_client_header(&client_frame(true, 2, &[0x80 | 5]))
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.payload_len, n, h.opcode, h.fin),
            (5, 6, Opcode::Binary, true)
        );
        let (h, n) = parse_client_header(&client_frame(true, 2, &[0x80 | 126, 1, 0]))
            .unwrap()
            .unwrap();
        assert_eq!((h.payload_len, n), (256, 8));
        let (h, n) = parse_client_header(&client_frame(
            false,
            0,
            &[0x80 | 127, 0, 0, 0, 1, 0, 0, 0, 0],
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            (h.payload_len, n, h.opcode, h.fin),
            (1 << 32, 14, Opcode::Continuation, false)
        );
        assert_eq!(h.mask, Some([1, 2, 3, 4]));
    }

    #[test]
    fn every_truncation_asks_for_more_bytes() {
        let full = client_frame(true, 2, &[0x80 | 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        for cut in 0..full.len() {
            assert_eq!(parse_client_header(&full[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(parse_client_header(&full).unwrap().is_some());
    }

    #[test]
    fn refuses_malformed_headers() {
        assert_eq!(
            parse_client_header(&[0xC2, 0x80]),
            Err(FrameError::ReservedBits)
        );
        assert_eq!(
            parse_client_header(&[0x83, 0x80]),
            Err(FrameError::ReservedOpcode(3))
        );
        assert_eq!(
            parse_client_header(&[0x09, 0x80]),
            Err(FrameError::BadControlFrame)
        );
        assert_eq!(
            parse_client_header(&[0x89, 0x80 | 126, 0, 126]),
            Err(FrameError::BadControlFrame)
        );
        assert_eq!(
            parse_client_header(&[0x82, 0x05]),
            Err(FrameError::Unmasked)
        );
        let huge = client_frame(true, 2, &[0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(parse_client_header(&huge), Err(FrameError::LengthOverflow));
    }

    #[test]
    fn server_headers_use_the_shortest_length_form() {
        let mut out = [0u8; MAX_SERVER_HEADER];
        assert_eq!(encode_server_header(Opcode::Binary, 125, &mut out), 2);
        assert_eq!(&out[..2], &[0x82, 125]);
        assert_eq!(encode_server_header(Opcode::Binary, 126, &mut out), 4);
        assert_eq!(&out[..4], &[0x82, 126, 0, 126]);
        assert_eq!(encode_server_header(Opcode::Close, 65535, &mut out), 4);
        assert_eq!(encode_server_header(Opcode::Binary, 65536, &mut out), 10);
        assert_eq!(&out[..10], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }
}
