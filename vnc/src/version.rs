//! The RFB ProtocolVersion message (RFC 6143 §7.1.1): `RFB xxx.yyy\n`, 12 bytes.

/// Length of the version message.
pub const LEN: usize = 12;

/// A protocol version announced by a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    /// The `xxx` of `RFB xxx.yyy`.
    pub major: u16,
    /// The `yyy` of `RFB xxx.yyy`.
    pub minor: u16,
}

/// Why a version message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// The bytes do not match `RFB ddd.ddd\n`.
    #[error("not an RFB protocol version message")]
    NotRfb,
}

/// Parses the start of `buf`. `Ok(None)`: fewer than 12 bytes so far, all consistent with
/// a version message.
pub fn parse(buf: &[u8]) -> Result<Option<Version>, VersionError> {
    const PATTERN: &[u8; LEN] = b"RFB 000.000\n";
    for (&b, &p) in buf.iter().zip(PATTERN.iter()) {
        let ok = if p == b'0' {
            b.is_ascii_digit()
        } else {
            b == p
        };
        if !ok {
            return Err(VersionError::NotRfb);
        }
    }
    if buf.len() < LEN {
        return Ok(None);
    }
    let num = |s: &[u8]| s.iter().fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    Ok(Some(Version {
        major: num(&buf[4..7]),
        minor: num(&buf[8..11]),
    }))
}

impl Version {
    /// The minor version darts speaks with a peer announcing `self`: 3.8 for 3.8 and
    /// later (and 4.x), 3.7, or 3.3 for 3.3-3.6 (UltraVNC's 3.4/3.6 behave as 3.3).
    pub fn agree(self) -> Result<u16, crate::RfbError> {
        match (self.major, self.minor) {
            (3, m) if m >= 8 => Ok(8),
            (3, 7) => Ok(7),
            (3, 3..=6) => Ok(3),
            (major, _) if major > 3 => Ok(8),
            (major, minor) => Err(crate::RfbError::UnsupportedVersion(major, minor)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions_and_partial_input() {
        assert_eq!(
            parse(b"RFB 003.008\n"),
            Ok(Some(Version { major: 3, minor: 8 }))
        );
        assert_eq!(parse(b"RFB 003.00"), Ok(None));
        assert_eq!(parse(b""), Ok(None));
        assert_eq!(parse(b"HTTP/1.1 200"), Err(VersionError::NotRfb));
        assert_eq!(parse(b"RFB 00x"), Err(VersionError::NotRfb));
    }
}
