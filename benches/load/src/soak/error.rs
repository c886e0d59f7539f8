//! What can go wrong with one step of a soak run. Every error has a kind, the key under
//! which the report counts it.

use std::io;

use crate::error::LoadError;

#[derive(Debug, thiserror::Error)]
pub enum SoakError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    /// The HTTP exchange itself failed (connection refused or cut, bad response).
    #[error("{what}: {detail}")]
    Http { what: &'static str, detail: String },
    /// The API answered with an error.
    #[error("{what} refused: HTTP {status} {code}: {message}")]
    Refused {
        what: &'static str,
        status: u16,
        code: String,
        message: String,
    },
    #[error("websocket refused with HTTP {0}")]
    WsRefused(u16),
    #[error("websocket handshake: {0}")]
    WsHandshake(String),
    /// The RFB handshake through the gateway failed.
    #[error("RFB handshake: {0}")]
    Rfb(String),
    /// The RFB stream after the handshake could not be followed.
    #[error("RFB stream: {0}")]
    Stream(String),
    /// The gateway closed the websocket (close code, if any) or the connection ended.
    #[error("connection closed by the server{}", .0.map(|c| format!(" (code {c})")).unwrap_or_default())]
    Closed(Option<u16>),
    #[error("{0} timed out")]
    Timeout(&'static str),
    #[error("{0}")]
    Setup(String),
}

impl SoakError {
    /// Wraps an I/O error with what was being done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }

    /// The report's key for this error.
    pub fn kind(&self) -> String {
        match self {
            Self::Io { .. } => "connection error".into(),
            Self::Http { what, .. } => format!("{what}: no answer"),
            Self::Refused {
                what, status, code, ..
            } => format!("{what} refused: {status} {code}"),
            Self::WsRefused(status) => format!("websocket refused: {status}"),
            Self::WsHandshake(_) => "websocket handshake failed".into(),
            Self::Rfb(_) => "RFB handshake failed".into(),
            Self::Stream(_) => "RFB stream error".into(),
            Self::Closed(Some(code)) => format!("unexpected close: {code}"),
            Self::Closed(None) => "unexpected close".into(),
            Self::Timeout(what) => format!("timeout: {what}"),
            Self::Setup(_) => "setup".into(),
        }
    }

    /// A refusal with this HTTP status.
    pub fn is_status(&self, wanted: u16) -> bool {
        matches!(self, Self::Refused { status, .. } | Self::WsRefused(status) if *status == wanted)
    }
}

impl From<LoadError> for SoakError {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Io { what, source } => Self::Io { what, source },
            LoadError::Refused(status) => Self::WsRefused(status),
            LoadError::Handshake(why) => Self::WsHandshake(why),
            LoadError::Closed => Self::Closed(None),
            LoadError::Frame(why) => Self::Stream(why.into()),
            LoadError::Timeout(what) => Self::Timeout(what),
            other => Self::Rfb(other.to_string()),
        }
    }
}

pub type Result<T, E = SoakError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_group_by_cause_not_detail() {
        let refused = |code: &str| SoakError::Refused {
            what: "create",
            status: 503,
            code: code.into(),
            message: "full".into(),
        };
        assert_eq!(
            refused("service_full").kind(),
            "create refused: 503 service_full"
        );
        assert_eq!(SoakError::WsRefused(404).kind(), "websocket refused: 404");
        assert_eq!(
            SoakError::Closed(Some(1011)).kind(),
            "unexpected close: 1011"
        );
        assert_eq!(
            SoakError::Rfb("a".into()).kind(),
            SoakError::Rfb("b".into()).kind()
        );
        assert!(SoakError::WsRefused(404).is_status(404));
        assert!(refused("x").is_status(503));
        assert!(!SoakError::Timeout("x").is_status(404));
        assert_eq!(
            SoakError::from(LoadError::Refused(403)).kind(),
            "websocket refused: 403"
        );
    }
}
