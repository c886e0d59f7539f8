//! Decodes what the gateway wrote to the browser, enforcing what a browser enforces on a
//! server (RFC 6455 §5): no mask, no reserved bits, final control frames of at most 125
//! bytes, and — the encoder's own promise — lengths in their shortest form.

/// One frame written by the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFrame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// Splits a server→browser byte stream into frames; `Err` says what a browser would reject.
pub fn decode_all(mut bytes: &[u8]) -> Result<Vec<ServerFrame>, String> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let (frame, used) = decode_one(bytes)?;
        frames.push(frame);
        bytes = &bytes[used..];
    }
    Ok(frames)
}

fn decode_one(bytes: &[u8]) -> Result<(ServerFrame, usize), String> {
    let [b0, b1, ..] = *bytes else {
        return Err(format!("truncated header: {bytes:02x?}"));
    };
    if b0 & 0x70 != 0 {
        return Err(format!("reserved bits set: {b0:#04x}"));
    }
    if b1 & 0x80 != 0 {
        return Err("server frames must not be masked".into());
    }
    let opcode = b0 & 0x0F;
    if !matches!(opcode, 0x0..=0x2 | 0x8..=0xA) {
        return Err(format!("reserved opcode {opcode:#x}"));
    }
    let (len, header_len) = match b1 & 0x7F {
        126 => {
            let raw = bytes.get(2..4).ok_or("truncated 16-bit length")?;
            let len = u64::from(u16::from_be_bytes([raw[0], raw[1]]));
            if len < 126 {
                return Err(format!("length {len} not in its shortest form"));
            }
            (len, 4)
        }
        127 => {
            let raw = bytes.get(2..10).ok_or("truncated 64-bit length")?;
            let mut be = [0u8; 8];
            be.copy_from_slice(raw);
            let len = u64::from_be_bytes(be);
            if len <= 0xFFFF || len >> 63 != 0 {
                return Err(format!("64-bit length {len} not allowed here"));
            }
            (len, 10)
        }
        n => (u64::from(n), 2),
    };
    let fin = b0 & 0x80 != 0;
    if opcode >= 0x8 && (!fin || len > 125) {
        return Err(format!("bad control frame: fin {fin}, length {len}"));
    }
    let end = usize::try_from(len)
        .ok()
        .and_then(|l| l.checked_add(header_len))
        .filter(|&end| end <= bytes.len())
        .ok_or_else(|| format!("truncated payload: {len} announced"))?;
    let frame = ServerFrame {
        fin,
        opcode,
        payload: bytes[header_len..end].to_vec(),
    };
    Ok((frame, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_rejects() {
        let frames = decode_all(&[0x82, 2, b'h', b'i', 0x88, 2, 3, 0xE8]).expect("valid");
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].payload, b"hi");
        assert_eq!(frames[1].opcode, CLOSE);
        assert!(decode_all(&[0x82, 0x82, 0, 0, 0, 0, 1, 1]).is_err());
        assert!(decode_all(&[0x82, 126, 0, 5, 1, 2, 3, 4, 5]).is_err());
        assert!(decode_all(&[0x09, 0]).is_err());
        assert!(decode_all(&[0x82, 3, 1]).is_err());
    }
}
