//! What can go wrong in a load run. A failed scenario ends as one of these; a missed
//! target is never an error.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{0} did not start listening within {1} s (log: {2})")]
    GatewayStart(String, u64, String),
    #[error("{0} exited early with {1} (log: {2})")]
    GatewayExited(String, String, String),
    #[error("backend: {0}")]
    Backend(String),
    #[error("websocket handshake: {0}")]
    Handshake(String),
    /// The server answered the upgrade with this status instead of 101.
    #[error("websocket refused with HTTP {0}")]
    Refused(u16),
    #[error("websocket frame from the server: {0}")]
    Frame(&'static str),
    #[error("the gateway closed the session")]
    Closed,
    #[error("{0} timed out")]
    Timeout(&'static str),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Scenario(String),
}

impl LoadError {
    /// Wraps an I/O error with what was being done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}

pub type Result<T, E = LoadError> = std::result::Result<T, E>;
