//! ServerInit (RFC 6143 §7.3.2): framebuffer size, pixel format and desktop name.
//!
//! ```text
//! u16 width, u16 height, 16-byte PIXEL_FORMAT, u32 name-length, name bytes
//! ```

use crate::error::RfbError;

/// Longest desktop name accepted (QEMU sends "QEMU" or "QEMU (vm name)").
pub const MAX_NAME: u32 = 4096;
const FIXED: usize = 24;

/// The server's description of its desktop, sent once the handshake is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInit {
    /// Framebuffer width in pixels.
    pub width: u16,
    /// Framebuffer height in pixels.
    pub height: u16,
    /// The PIXEL_FORMAT structure as sent, passed on without interpretation.
    pub pixel_format: [u8; 16],
    /// The desktop name, lossily decoded (RFB does not fix its encoding).
    pub name: String,
}

/// Parses a ServerInit at the start of `buf`; returns it with its length in bytes.
pub fn parse(buf: &[u8]) -> Result<Option<(ServerInit, usize)>, RfbError> {
    let Some(fixed) = buf.get(..FIXED) else {
        return Ok(None);
    };
    let name_len = u32::from_be_bytes([fixed[20], fixed[21], fixed[22], fixed[23]]);
    if name_len > MAX_NAME {
        return Err(RfbError::TooLong {
            what: "desktop name",
            len: name_len.into(),
            max: MAX_NAME.into(),
        });
    }
    let total = FIXED + name_len as usize;
    let Some(name) = buf.get(FIXED..total) else {
        return Ok(None);
    };
    let mut pixel_format = [0u8; 16];
    pixel_format.copy_from_slice(&fixed[4..20]);
    Ok(Some((
        ServerInit {
            width: u16::from_be_bytes([fixed[0], fixed[1]]),
            height: u16::from_be_bytes([fixed[2], fixed[3]]),
            pixel_format,
            name: String::from_utf8_lossy(name).into_owned(),
        },
        total,
    )))
}

impl ServerInit {
    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FIXED + self.name.len());
        out.extend_from_slice(&self.width.to_be_bytes());
        out.extend_from_slice(&self.height.to_be_bytes());
        out.extend_from_slice(&self.pixel_format);
        out.extend_from_slice(&(self.name.len() as u32).to_be_bytes());
        out.extend_from_slice(self.name.as_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_bounds() {
        let init = ServerInit {
            width: 720,
            height: 400,
            pixel_format: [32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0],
            name: "QEMU (vm1)".into(),
        };
        let wire = init.encode();
        assert_eq!(parse(&wire), Ok(Some((init.clone(), wire.len()))));
        for cut in 0..wire.len() {
            assert_eq!(parse(&wire[..cut]), Ok(None));
        }
        let mut huge = wire.clone();
        huge[20..24].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(parse(&huge), Err(RfbError::TooLong { .. })));
    }
}
