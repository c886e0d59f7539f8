//! The target side of a session: make sure the VNC server speaks RFB and, when darts
//! terminates security, authenticate to it (VNC password, or VeNCrypt with TLS).

use std::io;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use darts_vnc::client::{ClientConfig, ClientHandshake, Status};
use darts_vnc::security::Transport;
use darts_vnc::server_init;
use darts_vnc::{version, RfbError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::BackendSecurity;
use crate::target::Backend;

/// Most bytes buffered from a target during the handshake.
const MAX_HANDSHAKE_BYTES: usize = 16 * 1024;

/// Why the target could not be used. The browser only ever sees `browser_reason`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// Reading from or writing to the target failed.
    #[error("target I/O: {0}")]
    Io(#[from] io::Error),
    /// The target closed the connection during the named step.
    #[error("target closed the connection during {0}")]
    Closed(&'static str),
    /// A handshake step took longer than its timeout.
    #[error("target did not answer within {0:?}")]
    Timeout(Duration),
    /// The target is not a VNC server, refused darts, or broke the protocol.
    #[error(transparent)]
    Rfb(#[from] RfbError),
    /// The TLS handshake of VeNCrypt x509 failed.
    #[error("TLS with the target failed: {0}")]
    Tls(io::Error),
}

impl BackendError {
    /// What the browser is told: never a detail that helps an attacker.
    pub fn browser_reason(&self) -> &'static str {
        match self {
            Self::Rfb(RfbError::NotRfb) => "The server is not a VNC server",
            Self::Rfb(RfbError::AuthFailed(_) | RfbError::PasswordMissing) | Self::Tls(_) => {
                "The gateway could not authenticate to the VNC server"
            }
            Self::Rfb(RfbError::NoAcceptableSecurity { .. }) => {
                "The VNC server's security does not match the gateway's"
            }
            _ => "The VNC server is not answering",
        }
    }
}

/// Reads the server's version message. Returns it, to be relayed to the browser.
pub async fn check_version(
    backend: &mut Backend,
    timeout: Duration,
) -> Result<Bytes, BackendError> {
    let mut buf = BytesMut::with_capacity(version::LEN);
    let read = async {
        while buf.len() < version::LEN {
            if backend.read_buf(&mut buf).await? == 0 {
                return Err(BackendError::Closed("the RFB version"));
            }
            // Refuse early: an HTTP or SSH server is recognisable from its first bytes.
            version::parse(&buf[..buf.len().min(version::LEN)]).map_err(|_| RfbError::NotRfb)?;
        }
        Ok(())
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| BackendError::Timeout(timeout))??;
    Ok(buf.freeze())
}

/// Runs the client side of the RFB handshake up to a successful SecurityResult.
pub async fn authenticate(
    backend: Backend,
    security: &BackendSecurity,
    timeout: Duration,
) -> Result<Backend, BackendError> {
    let config = match security {
        BackendSecurity::None => ClientConfig {
            transport: Transport::Plain,
            password: None,
        },
        BackendSecurity::VncPassword(p) => ClientConfig {
            transport: Transport::Plain,
            password: Some(p.clone()),
        },
        BackendSecurity::X509 { password, .. } => ClientConfig {
            transport: Transport::X509,
            password: password.clone(),
        },
    };
    tokio::time::timeout(
        timeout,
        drive(backend, ClientHandshake::new(config), security),
    )
    .await
    .map_err(|_| BackendError::Timeout(timeout))?
}

async fn drive(
    mut backend: Backend,
    mut hs: ClientHandshake,
    security: &BackendSecurity,
) -> Result<Backend, BackendError> {
    let mut buf = BytesMut::with_capacity(256);
    let mut out = Vec::new();
    loop {
        let (used, status) = hs.advance(&buf, &mut out)?;
        buf.advance(used);
        if !out.is_empty() {
            backend.write_all(&out).await?;
            backend.flush().await?;
            out.clear();
        }
        match status {
            Status::Done => {
                if !buf.is_empty() {
                    return Err(RfbError::Malformed("bytes after the security result").into());
                }
                return Ok(backend);
            }
            Status::StartTls => {
                let BackendSecurity::X509 {
                    tls, server_name, ..
                } = security
                else {
                    return Err(RfbError::State("TLS requested without x509 settings").into());
                };
                if !buf.is_empty() {
                    return Err(RfbError::Malformed("plaintext bytes before TLS").into());
                }
                let connector = tokio_rustls::TlsConnector::from(tls.clone());
                let stream = connector
                    .connect(server_name.clone(), backend)
                    .await
                    .map_err(BackendError::Tls)?;
                backend = Backend::Tls(Box::new(stream));
                hs.tls_started()?;
            }
            Status::NeedMore => {
                if buf.len() >= MAX_HANDSHAKE_BYTES {
                    return Err(RfbError::TooLong {
                        what: "handshake",
                        len: buf.len() as u64,
                        max: MAX_HANDSHAKE_BYTES as u64,
                    }
                    .into());
                }
                match backend.read_buf(&mut buf).await {
                    Ok(0) => return Err(closed_in(&hs)),
                    Ok(_) => {}
                    // TLS 1.3: a refused client certificate shows up as a reset or EOF here.
                    Err(_) if matches!(backend, Backend::Tls(_)) => return Err(closed_in(&hs)),
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
}

/// End of stream in the middle of the handshake. Under TLS 1.3 this is how QEMU says it
/// refused darts' client certificate.
fn closed_in(hs: &ClientHandshake) -> BackendError {
    if hs.chosen().is_some_and(|c| c > 255) {
        BackendError::Rfb(RfbError::AuthFailed(
            "the VNC server closed the TLS connection (client certificate refused?)".into(),
        ))
    } else {
        BackendError::Closed("the security handshake")
    }
}

/// Sends ClientInit (always shared, so that other viewers stay connected) and reads the
/// server's ServerInit; returns its bytes to relay to the browser.
pub async fn exchange_init(
    backend: &mut Backend,
    timeout: Duration,
) -> Result<Bytes, BackendError> {
    backend.write_all(&[1]).await?;
    backend.flush().await?;
    let mut buf = BytesMut::with_capacity(256);
    let read = async {
        loop {
            if let Some((_, len)) = server_init::parse(&buf)? {
                return Ok::<_, BackendError>(len);
            }
            if backend.read_buf(&mut buf).await? == 0 {
                return Err(BackendError::Closed("ServerInit"));
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| BackendError::Timeout(timeout))??;
    // Anything after ServerInit is ordinary server traffic; relay it as well.
    Ok(buf.freeze())
}
