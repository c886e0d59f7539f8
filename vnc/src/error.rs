//! Errors of the RFB core. "Need more bytes" is never an error: parsers return
//! `Ok(None)` / `Status::NeedMore` for it.

/// Why an RFB exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RfbError {
    #[error("peer does not speak RFB")]
    NotRfb,
    #[error("RFB version {0}.{1} is not supported")]
    UnsupportedVersion(u16, u16),
    #[error("{what} of {len} bytes exceeds the limit of {max}")]
    TooLong {
        what: &'static str,
        len: u64,
        max: u64,
    },
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("no acceptable security type (server offered {offered:?})")]
    NoAcceptableSecurity { offered: Vec<u32> },
    #[error("server refused the connection: {0}")]
    Refused(String),
    #[error("authentication failed: {0}")]
    AuthFailed(String),
    #[error("a password is needed but none is configured")]
    PasswordMissing,
    #[error("unknown client message type {0}")]
    UnknownMessage(u8),
    #[error("called in the wrong state: {0}")]
    State(&'static str),
}
