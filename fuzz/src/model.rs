//! What the pump must do with a browser's byte stream, written from RFC 6455 and the
//! gateway's documented rules rather than from the pump's code: which payload bytes reach
//! the VNC server, which pings must be answered, and how the session ends.
//!
//! Frame headers are decoded with `parse_client_header` (the `ws_frame_header` target
//! checks that function on its own); everything after the header — sequencing, size
//! limits, control frames, unmasking — is modelled here independently.

use darts_proxy::ws::close;
use darts_proxy::ws::frame::{parse_client_header, Opcode};

/// The size limits the pump runs with.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    pub max_frame: u64,
    pub max_message: u64,
}

/// How the browser's stream ends, as far as the pump is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The bytes stop between frames or inside one: the pump waits for more, or treats
    /// end of stream as a normal end (close code 1000).
    NeedMore,
    /// A valid close frame: the pump echoes its code (1000 when it carried none).
    PeerClose(u16),
    /// A protocol violation: the pump closes with this code and reads nothing more.
    Violation(u16),
}

/// The model's verdict on one browser stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Unmasked data payload, in order: exactly what the target must receive.
    pub forwarded: Vec<u8>,
    /// Unmasked payloads of the complete pings, in order.
    pub pings: Vec<Vec<u8>>,
    pub ending: Ending,
}

/// Runs the model over everything the browser sent.
pub fn expect(stream: &[u8], limits: StreamLimits) -> Expected {
    let mut out = Expected {
        forwarded: Vec::new(),
        pings: Vec::new(),
        ending: Ending::NeedMore,
    };
    let mut pos = 0usize;
    let mut in_message = false;
    let mut message_len = 0u64;
    loop {
        let (header, header_len) = match parse_client_header(&stream[pos..]) {
            Err(_) => return out.end(Ending::Violation(close::PROTOCOL_ERROR)),
            Ok(None) => return out.end(Ending::NeedMore),
            Ok(Some(h)) => h,
        };
        let key = header
            .mask
            .expect("a parsed client header carries a masking key");
        let body = &stream[pos + header_len..];
        if header.opcode.is_control() {
            let len = usize::try_from(header.payload_len).expect("control payloads are small");
            if body.len() < len {
                return out.end(Ending::NeedMore);
            }
            let payload = unmask(&body[..len], key);
            pos += header_len + len;
            match header.opcode {
                Opcode::Ping => out.pings.push(payload),
                Opcode::Close => {
                    let ending = match close_code(&payload) {
                        Some(code) => Ending::PeerClose(code),
                        None => Ending::Violation(close::PROTOCOL_ERROR),
                    };
                    return out.end(ending);
                }
                _ => {}
            }
            continue;
        }
        let violation = match header.opcode {
            // The gateway relays binary RFB only.
            Opcode::Text => Some(close::UNSUPPORTED_DATA),
            Opcode::Binary if in_message => Some(close::PROTOCOL_ERROR),
            Opcode::Continuation if !in_message => Some(close::PROTOCOL_ERROR),
            _ if header.payload_len > limits.max_frame => Some(close::MESSAGE_TOO_BIG),
            _ => None,
        };
        if let Some(code) = violation {
            return out.end(Ending::Violation(code));
        }
        let before = if header.opcode == Opcode::Binary {
            0
        } else {
            message_len
        };
        message_len = before.saturating_add(header.payload_len);
        if message_len > limits.max_message {
            return out.end(Ending::Violation(close::MESSAGE_TOO_BIG));
        }
        in_message = !header.fin;
        let available = body
            .len()
            .min(usize::try_from(header.payload_len).unwrap_or(usize::MAX));
        out.forwarded.extend(unmask(&body[..available], key));
        pos += header_len + available;
        if (available as u64) < header.payload_len {
            return out.end(Ending::NeedMore);
        }
    }
}

impl Expected {
    fn end(mut self, ending: Ending) -> Self {
        self.ending = ending;
        self
    }
}

/// Byte-at-a-time unmasking, the RFC's definition (§5.3).
pub fn unmask(data: &[u8], key: [u8; 4]) -> Vec<u8> {
    data.iter()
        .enumerate()
        .map(|(i, b)| b ^ key[i % 4])
        .collect()
}

/// The code a close payload asks to echo, or `None` if the payload is invalid (RFC 6455
/// §5.5.1 and §7.4: a lone byte, a reserved or unassigned code, a reason not in UTF-8).
pub fn close_code(payload: &[u8]) -> Option<u16> {
    if payload.is_empty() {
        return Some(close::NORMAL);
    }
    let (code, reason) = payload.split_at_checked(2)?;
    let code = u16::from_be_bytes([code[0], code[1]]);
    let sendable = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999);
    (sendable && std::str::from_utf8(reason).is_ok()).then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: StreamLimits = StreamLimits {
        max_frame: 100,
        max_message: 150,
    };

    fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let key = [1, 2, 3, 4];
        let mut v = vec![b0, 0x80 | payload.len() as u8];
        v.extend_from_slice(&key);
        v.extend(unmask(payload, key));
        v
    }

    #[test]
    fn forwards_binary_payloads_and_answers_pings() {
        let mut s = frame(0x02, b"ab");
        s.extend(frame(0x89, b"hi"));
        s.extend(frame(0x80, b"cd"));
        s.extend(frame(0x82, b"e"));
        let e = expect(&s, LIMITS);
        assert_eq!(e.forwarded, b"abcde");
        assert_eq!(e.pings, vec![b"hi".to_vec()]);
        assert_eq!(e.ending, Ending::NeedMore);
    }

    #[test]
    fn ends_on_close_and_violations() {
        let mut s = frame(0x82, b"x");
        s.extend(frame(0x88, &[0x0f, 0xa0]));
        s.extend(frame(0x82, b"never"));
        let e = expect(&s, LIMITS);
        assert_eq!(
            (e.forwarded.as_slice(), e.ending),
            (&b"x"[..], Ending::PeerClose(4000))
        );
        assert_eq!(
            expect(&frame(0x81, b"t"), LIMITS).ending,
            Ending::Violation(1003)
        );
        assert_eq!(
            expect(&frame(0x80, b"t"), LIMITS).ending,
            Ending::Violation(1002)
        );
        assert_eq!(
            expect(&frame(0x82, &[0; 101]), LIMITS).ending,
            Ending::Violation(1009)
        );
        let mut s = frame(0x02, &[0; 100]);
        s.extend(frame(0x80, &[0; 51]));
        assert_eq!(expect(&s, LIMITS).ending, Ending::Violation(1009));
        assert_eq!(
            expect(&frame(0x88, &[3]), LIMITS).ending,
            Ending::Violation(1002)
        );
    }
}
