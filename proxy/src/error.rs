//! The proxy crate's errors. Each says which side failed so the caller can pick a log
//! level and a metric: the client (browser), the upstream target, or our own setup.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Starting the gateway failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The configured listen address.
        addr: String,
        /// The error from `bind`.
        source: io::Error,
    },
    /// The TLS certificate or key could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A token file or directory could not be used.
    #[error(transparent)]
    TokenFile(#[from] TokenFileError),
    /// The web directory is missing or not a directory.
    #[error("web directory {0} is not a readable directory")]
    WebDir(PathBuf),
}

/// Loading a certificate and key failed; the previous ones (if any) stay in use.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, io::Error),
    /// The certificate (or CA) file holds no certificate.
    #[error("no certificate found in {0}")]
    NoCertificate(PathBuf),
    /// The file holds no private key.
    #[error("no private key found in {0}")]
    NoKey(PathBuf),
    /// The crypto provider cannot sign with the private key (unsupported or malformed).
    #[error("private key in {path} not usable: {reason}")]
    BadKey {
        /// The file the key came from.
        path: PathBuf,
        /// The provider's reason.
        reason: String,
    },
    /// The private key is not the certificate's.
    #[error("certificate and private key do not match ({0})")]
    Mismatch(String),
    /// rustls refused the configuration built from the files (versions, CA, client
    /// certificate).
    #[error("TLS configuration refused: {0}")]
    Config(String),
}

/// A token file or directory could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenFileError {
    /// The path could not be read, or the thread watching it not started.
    #[error("token source {0}: {1}")]
    Read(PathBuf, io::Error),
}

/// Connecting to a target failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The connection was refused or failed.
    #[error("connect failed: {0}")]
    Io(#[from] io::Error),
    /// No connection within the timeout it names.
    #[error("connect timed out after {0:?}")]
    Timeout(Duration),
}

/// Why a session ended, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEnd {
    /// Close handshake completed or both sides reached end of stream.
    Closed,
    /// The browser broke the websocket protocol (bad frame, text frame, too big).
    ClientProtocol,
    /// Reading from or writing to the browser failed.
    ClientIo,
    /// Reading from or writing to the target failed.
    TargetIo,
    /// The target could not be reached.
    TargetConnect,
    /// The target is not a VNC server, or refused darts' credentials.
    TargetRefused,
    /// No traffic for the idle timeout.
    IdleTimeout,
    /// The browser stopped answering heartbeat pings.
    HeartbeatTimeout,
    /// The browser left a frame unfinished past the frame timeout.
    FrameTimeout,
    /// The gateway is shutting down.
    Shutdown,
    /// Removed by the control plane (token revoked, session stopped).
    Revoked,
}

impl SessionEnd {
    /// Stable label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::ClientProtocol => "client_protocol",
            Self::ClientIo => "client_io",
            Self::TargetIo => "target_io",
            Self::TargetConnect => "target_connect",
            Self::TargetRefused => "target_refused",
            Self::IdleTimeout => "idle_timeout",
            Self::HeartbeatTimeout => "heartbeat_timeout",
            Self::FrameTimeout => "frame_timeout",
            Self::Shutdown => "shutdown",
            Self::Revoked => "revoked",
        }
    }

    /// Every variant, in the order of the metrics' counters.
    pub const ALL: [SessionEnd; 11] = [
        Self::Closed,
        Self::ClientProtocol,
        Self::ClientIo,
        Self::TargetIo,
        Self::TargetConnect,
        Self::TargetRefused,
        Self::IdleTimeout,
        Self::HeartbeatTimeout,
        Self::FrameTimeout,
        Self::Shutdown,
        Self::Revoked,
    ];
}
