//! `parse_client_header` on arbitrary bytes, checked bit by bit against RFC 6455 §5.2.
//!
//! * A parsed header agrees with the raw bits, is at most the input, obeys the rules for
//!   control frames and masking, every shorter prefix of it asks for more bytes, and the
//!   server encoder writes the same length in a form that parses back (with a mask added).
//! * "Need more" happens only below the 14-byte maximum and below the length the first
//!   bytes announce; 14 bytes always give an answer.
//! * An error states a fact about the input and does not change when more bytes follow.

#![no_main]

use darts_proxy::ws::frame::{
    encode_server_header, parse_client_header, FrameError, Opcode, MAX_CONTROL_PAYLOAD,
    MAX_SERVER_HEADER,
};
use libfuzzer_sys::fuzz_target;

/// 2 bytes, 8 bytes of extended length, 4 bytes of masking key.
const MAX_CLIENT_HEADER: usize = 14;

fn opcode_bits(op: Opcode) -> u8 {
    match op {
        Opcode::Continuation => 0x0,
        Opcode::Text => 0x1,
        Opcode::Binary => 0x2,
        Opcode::Close => 0x8,
        Opcode::Ping => 0x9,
        Opcode::Pong => 0xA,
    }
}

/// Bytes of extended length announced by the second header byte.
fn extended(b1: u8) -> usize {
    match b1 & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    }
}

fn check(buf: &[u8]) {
    let result = parse_client_header(buf);
    match result {
        Ok(Some((h, n))) => {
            let (b0, b1) = (buf[0], buf[1]);
            assert!(
                n <= buf.len(),
                "header of {n} bytes from {} bytes",
                buf.len()
            );
            assert_eq!(n, 2 + extended(b1) + 4, "header length");
            assert_eq!(b0 & 0x70, 0, "reserved bits accepted");
            assert_eq!(h.fin, b0 & 0x80 != 0);
            assert_eq!(opcode_bits(h.opcode), b0 & 0x0F);
            assert!(b1 & 0x80 != 0, "unmasked frame accepted");
            assert_eq!(
                h.mask,
                Some([buf[n - 4], buf[n - 3], buf[n - 2], buf[n - 1]])
            );
            let len = match extended(b1) {
                0 => u64::from(b1 & 0x7F),
                2 => u64::from(u16::from_be_bytes([buf[2], buf[3]])),
                _ => u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")),
            };
            assert_eq!(h.payload_len, len);
            assert!(len < 1 << 63, "length with the top bit set accepted");
            if h.opcode.is_control() {
                assert!(
                    h.fin && len <= MAX_CONTROL_PAYLOAD as u64,
                    "bad control frame"
                );
            }
            for cut in 0..n {
                assert_eq!(parse_client_header(&buf[..cut]), Ok(None), "prefix {cut}");
            }
            assert_eq!(
                parse_client_header(&buf[..n]),
                result,
                "bytes after the header"
            );
            reencode(h.opcode, h.fin, len, h.mask.unwrap_or_default(), n);
        }
        Ok(None) => {
            assert!(buf.len() < MAX_CLIENT_HEADER);
            if let [_, b1, ..] = *buf {
                assert!(
                    buf.len() < 2 + extended(b1) + 4,
                    "complete header not parsed"
                );
            }
            let mut padded = buf.to_vec();
            padded.resize(MAX_CLIENT_HEADER, 0);
            assert_ne!(
                parse_client_header(&padded),
                Ok(None),
                "14 bytes must decide"
            );
        }
        Err(e) => {
            let (b0, b1) = (buf[0], buf.get(1).copied().unwrap_or(0));
            let holds = match e {
                FrameError::ReservedBits => b0 & 0x70 != 0,
                FrameError::ReservedOpcode(op) => {
                    op == b0 & 0x0F && matches!(op, 0x3..=0x7 | 0xB..=0xF)
                }
                FrameError::BadControlFrame => {
                    b0 & 0x08 != 0 && (b0 & 0x80 == 0 || b1 & 0x7F > MAX_CONTROL_PAYLOAD as u8)
                }
                FrameError::LengthOverflow => {
                    b1 & 0x7F == 127 && buf.get(2).is_some_and(|b| b & 0x80 != 0)
                }
                FrameError::Unmasked => buf.len() >= 2 && b1 & 0x80 == 0,
            };
            assert!(holds, "{e:?} does not hold for {buf:02x?}");
            assert_eq!(e.close_code(), 1002);
            assert!(!e.to_string().is_empty());
            let mut longer = buf.to_vec();
            longer.extend_from_slice(&[0xA5; MAX_CLIENT_HEADER]);
            assert_eq!(
                parse_client_header(&longer),
                result,
                "more bytes changed the verdict"
            );
        }
    }
}

/// The server encoder's header for the same frame, with the mask bit and key added, must
/// parse back to the same header, never longer than the client's (shortest length form).
fn reencode(opcode: Opcode, fin: bool, len: u64, key: [u8; 4], client_len: usize) {
    let (Ok(size), true) = (usize::try_from(len), fin) else {
        return;
    };
    let mut out = [0u8; MAX_SERVER_HEADER];
    let n = encode_server_header(opcode, size, &mut out);
    assert!(n <= MAX_SERVER_HEADER);
    let mut masked = out[..n].to_vec();
    masked[1] |= 0x80;
    masked.extend_from_slice(&key);
    let (h, m) = parse_client_header(&masked)
        .expect("encoded header is valid")
        .expect("encoded header is complete");
    assert_eq!(
        (h.opcode, h.fin, h.payload_len, h.mask),
        (opcode, true, len, Some(key))
    );
    assert_eq!(m, n + 4);
    assert!(
        m <= client_len,
        "encoder used a longer length form than needed"
    );
}

fuzz_target!(|data: &[u8]| check(data));
