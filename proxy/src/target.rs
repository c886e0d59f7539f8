//! Where a session's bytes go: a TCP address or a unix socket, and how to reach it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::error::ConnectError;
use crate::pump::splice::{RawSocket, SocketRef};

/// A VNC server a token routes to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// `host:port`; the host is resolved at connect time.
    Tcp {
        /// A name or an IP literal (without brackets).
        host: String,
        /// The TCP port.
        port: u16,
    },
    /// A unix socket path, as in websockify's `unix_socket:/path`.
    Unix(PathBuf),
}

impl Target {
    /// Parses websockify's target syntax: `host:port`, `[v6]:port` or `unix_socket:/path`.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if let Some(path) = s.strip_prefix("unix_socket:") {
            let path = path.trim();
            return (!path.is_empty()).then(|| Self::Unix(PathBuf::from(path)));
        }
        let (host, port) = s.rsplit_once(':')?;
        // Brackets are for IPv6 literals only, and IPv6 literals need them.
        let host = match host.strip_prefix('[') {
            Some(inner) => {
                let inner = inner.strip_suffix(']')?;
                inner.parse::<std::net::Ipv6Addr>().ok()?;
                inner
            }
            None if host.contains(':') => return None,
            None => host,
        };
        let port: u16 = port.parse().ok()?;
        let odd = |c: char| c.is_whitespace() || c == '[' || c == ']';
        if host.is_empty() || port == 0 || host.contains(odd) {
            return None;
        }
        Some(Self::Tcp {
            host: host.to_owned(),
            port,
        })
    }

    /// Opens a connection, bounded by `timeout`; sets `TCP_NODELAY` on TCP.
    pub async fn connect(&self, timeout: Duration) -> Result<Backend, ConnectError> {
        let attempt = async {
            match self {
                Self::Tcp { host, port } => {
                    let stream = TcpStream::connect((host.as_str(), *port)).await?;
                    stream.set_nodelay(true)?;
                    Ok(Backend::Tcp(stream))
                }
                Self::Unix(path) => Ok(Backend::Unix(connect_unix(path).await?)),
            }
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(b)) => Ok(b),
            Ok(Err(e)) => Err(ConnectError::Io(e)),
            Err(_) => Err(ConnectError::Timeout(timeout)),
        }
    }
}

/// Pause between two connects to a unix socket whose accept queue is full.
const UNIX_BUSY_PAUSE: Duration = Duration::from_millis(5);

/// Connects to a unix socket. Unlike TCP, a full accept queue (several viewers opening a
/// session at once) fails at once with `EAGAIN`; the listener is alive and about to
/// accept, so the connect is tried again until the caller's deadline.
async fn connect_unix(path: &std::path::Path) -> std::io::Result<UnixStream> {
    loop {
        match UnixStream::connect(path).await {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                tokio::time::sleep(UNIX_BUSY_PAUSE).await;
            }
            other => return other,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Self::Tcp { host, port } => write!(f, "{host}:{port}"),
            Self::Unix(p) => write!(f, "unix_socket:{}", p.display()),
        }
    }
}

/// An open connection to a target.
#[derive(Debug)]
pub enum Backend {
    /// A TCP connection (`TCP_NODELAY` set).
    Tcp(TcpStream),
    /// A unix socket connection.
    Unix(UnixStream),
    /// VeNCrypt: TLS inside the RFB handshake, on top of the TCP or unix connection.
    Tls(Box<tokio_rustls::client::TlsStream<Backend>>),
}

impl RawSocket for Backend {
    /// TCP and unix connections can be spliced from; VeNCrypt's TLS cannot.
    fn raw_socket(&self) -> Option<SocketRef<'_>> {
        match self {
            Self::Tcp(s) => s.raw_socket(),
            Self::Unix(s) => s.raw_socket(),
            Self::Tls(_) => None,
        }
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Backend::Tcp($s) => {
                let $s = std::pin::Pin::new($s);
                $e
            }
            Backend::Unix($s) => {
                let $s = std::pin::Pin::new($s);
                $e
            }
            Backend::Tls($s) => {
                let $s = std::pin::Pin::new($s.as_mut());
                $e
            }
        }
    };
}

impl AsyncRead for Backend {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Backend {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }
    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        delegate!(self, s => s.poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_unix_socket_with_a_full_accept_queue_is_waited_for() {
        let dir = tempfile_dir();
        let path = dir.join("vnc.sock");
        let socket = tokio::net::UnixSocket::new_stream().unwrap();
        socket.bind(&path).unwrap();
        let listener = socket.listen(1).unwrap();
        // Fill the queue: connects that nobody accepts, until one is refused with EAGAIN.
        let mut held = Vec::new();
        loop {
            match UnixStream::connect(&path).await {
                Ok(s) => held.push(s),
                Err(e) => {
                    assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}");
                    break;
                }
            }
            assert!(held.len() < 64, "the accept queue never filled");
        }
        // The listener accepts a little later: the connect waits for it, within its bound.
        let accepting = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut accepted = Vec::new();
            for _ in 0..=held.len() {
                accepted.push(listener.accept().await.unwrap());
            }
            (accepted, held)
        });
        let target = Target::Unix(path.clone());
        assert!(matches!(
            target.connect(Duration::from_secs(5)).await,
            Ok(Backend::Unix(_))
        ));
        drop(accepting.await.unwrap());
        // Nobody listening at all is still an immediate error, not a wait.
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            target.connect(Duration::from_secs(5)).await,
            Err(ConnectError::Io(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!("darts-target-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn parses_websockify_target_syntax() {
        assert_eq!(
            Target::parse(" 127.0.0.1:5901 "),
            Some(Target::Tcp {
                host: "127.0.0.1".into(),
                port: 5901
            })
        );
        assert_eq!(
            Target::parse("[::1]:5900"),
            Some(Target::Tcp {
                host: "::1".into(),
                port: 5900
            })
        );
        assert_eq!(
            Target::parse("unix_socket:/run/vnc.sock"),
            Some(Target::Unix("/run/vnc.sock".into()))
        );
        for bad in [
            "",
            "host",
            "host:",
            ":5900",
            "host:99999",
            "host:0",
            "unix_socket:",
            "a b:1",
            "[unix_socket]:5900",
            "[[]]:1",
            "[[x]]:1",
            "::1:5900",
            "[x]:1",
        ] {
            assert_eq!(Target::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn displays_round_trip() {
        for s in ["127.0.0.1:5901", "[::1]:5900", "unix_socket:/run/vnc.sock"] {
            assert_eq!(Target::parse(s).unwrap().to_string(), s);
        }
    }
}
