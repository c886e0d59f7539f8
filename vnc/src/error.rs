//! Errors of the RFB core. "Need more bytes" is never an error: parsers return
//! `Ok(None)` / `Status::NeedMore` for it.

/// Why an RFB exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RfbError {
    /// The first bytes were not an RFB version message: not a VNC peer at all.
    #[error("peer does not speak RFB")]
    NotRfb,
    /// The peer announced a version (major, minor) older than 3.3.
    #[error("RFB version {0}.{1} is not supported")]
    UnsupportedVersion(u16, u16),
    /// A length the peer sent is over darts' bound, refused before anything is read.
    #[error("{what} of {len} bytes exceeds the limit of {max}")]
    TooLong {
        /// The field, for the message: "desktop name", "failure reason".
        what: &'static str,
        /// The length the peer announced.
        len: u64,
        /// The bound.
        max: u64,
    },
    /// Bytes that cannot be what the protocol allows there; names the field.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// Nothing the server offered meets the configured transport.
    #[error("no acceptable security type (server offered {offered:?})")]
    NoAcceptableSecurity {
        /// The security types (or VeNCrypt sub-types) offered, for the log.
        offered: Vec<u32>,
    },
    /// The server closed the handshake with this reason, or refused a VeNCrypt step.
    #[error("server refused the connection: {0}")]
    Refused(String),
    /// The security result was a failure: most often a wrong password.
    #[error("authentication failed: {0}")]
    AuthFailed(String),
    /// The server asks for VNC authentication and the client config has no password.
    #[error("a password is needed but none is configured")]
    PasswordMissing,
    /// A client message type the framing does not know, so its length is unknown and
    /// the stream cannot be followed past it.
    #[error("unknown client message type {0}")]
    UnknownMessage(u8),
    /// A method called at a point of the handshake where it makes no sense: a bug of
    /// the caller.
    #[error("called in the wrong state: {0}")]
    State(&'static str),
}
