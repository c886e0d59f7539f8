//! The RFB handshakes the load needs when darts terminates VNC security.
//!
//! * Backend side (`accept`): the server half of RFB 3.8 as QEMU speaks it, with VNC
//!   authentication or VeNCrypt X509None, then ClientInit/ServerInit. The checks reuse
//!   `darts-vnc` (version parsing, the DES response, ServerInit encoding).
//! * Client side (`Browser`): what noVNC does through darts, which offers security None:
//!   `darts-vnc`'s client state machine, then ClientInit and ServerInit.
//!
//! ```text
//! server: "RFB 003.008\n"              client: "RFB 003.008\n"
//! server: [1, type]                    client: type
//! type 2:  16-byte challenge           client: DES response
//! type 19: [0, 2]                      client: [0, 2]
//!          [0, 1, u32 260]             client: u32 260
//!          [1], TLS (client certificate required)
//! server: u32 0 (SecurityResult OK)    client: ClientInit (1 byte)
//! server: ServerInit
//! ```

use darts_vnc::client::{ClientConfig, ClientHandshake, Status};
use darts_vnc::security::{kind, vencrypt, Transport};
use darts_vnc::server_init::{self, ServerInit};
use darts_vnc::{version, vnc_auth};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::error::{LoadError, Result};
use crate::security::{Security, ServerSecrets};

/// The version the backend announces.
pub const VERSION: &[u8; version::LEN] = b"RFB 003.008\n";

/// A backend connection after its handshake: plain TCP, or TLS for VeNCrypt.
#[derive(Debug)]
pub enum Accepted {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// The ServerInit the backend sends: 1024×768, 32 bpp true colour.
fn server_init() -> Vec<u8> {
    ServerInit {
        width: 1024,
        height: 768,
        pixel_format: [32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0],
        name: "darts-load".into(),
    }
    .encode()
}

fn rfb_err(e: impl std::fmt::Display) -> LoadError {
    LoadError::Scenario(format!("RFB: {e}"))
}

/// Runs the server side of a secured handshake (`security` is not `None`) up to and
/// including ServerInit.
pub async fn accept(
    mut stream: TcpStream,
    security: Security,
    secrets: &ServerSecrets,
) -> Result<Accepted> {
    let io = |what: &'static str| LoadError::io(what);
    stream.write_all(VERSION).await.map_err(io("version"))?;
    let mut theirs = [0u8; version::LEN];
    stream
        .read_exact(&mut theirs)
        .await
        .map_err(io("version"))?;
    let v = version::parse(&theirs)
        .map_err(rfb_err)?
        .ok_or_else(|| rfb_err("short version"))?;
    if v.agree().map_err(rfb_err)? != 8 {
        return Err(rfb_err("the fake server speaks RFB 3.8 only"));
    }
    let offered = match security {
        Security::VncPassword => kind::VNC_AUTH,
        Security::X509 => kind::VENCRYPT,
        Security::None => return Err(rfb_err("no security to negotiate")),
    };
    stream
        .write_all(&[1, offered])
        .await
        .map_err(io("security types"))?;
    if stream.read_u8().await.map_err(io("security choice"))? != offered {
        return Err(rfb_err("client chose a type that was not offered"));
    }
    let mut stream = if security == Security::VncPassword {
        vnc_auth_challenge(&mut stream, secrets).await?;
        Accepted::Plain(stream)
    } else {
        vencrypt_x509(stream, secrets).await?
    };
    match &mut stream {
        Accepted::Plain(s) => finish(s).await?,
        Accepted::Tls(s) => finish(s.as_mut()).await?,
    }
    Ok(stream)
}

async fn vnc_auth_challenge(stream: &mut TcpStream, secrets: &ServerSecrets) -> Result<()> {
    let mut challenge = [0u8; vnc_auth::CHALLENGE_LEN];
    provider_random(&mut challenge)?;
    stream
        .write_all(&challenge)
        .await
        .map_err(LoadError::io("challenge"))?;
    let mut answer = [0u8; vnc_auth::CHALLENGE_LEN];
    stream
        .read_exact(&mut answer)
        .await
        .map_err(LoadError::io("challenge"))?;
    if answer != vnc_auth::response(&challenge, &secrets.password) {
        let reason = b"wrong password";
        let mut fail = 1u32.to_be_bytes().to_vec();
        fail.extend_from_slice(&(reason.len() as u32).to_be_bytes());
        fail.extend_from_slice(reason);
        let _ = stream.write_all(&fail).await;
        return Err(rfb_err("the client answered the challenge wrongly"));
    }
    Ok(())
}

async fn vencrypt_x509(mut stream: TcpStream, secrets: &ServerSecrets) -> Result<Accepted> {
    let io = |what: &'static str| LoadError::io(what);
    stream.write_all(&[0, 2]).await.map_err(io("VeNCrypt"))?;
    let mut theirs = [0u8; 2];
    stream
        .read_exact(&mut theirs)
        .await
        .map_err(io("VeNCrypt"))?;
    if theirs != [0, 2] {
        return Err(rfb_err("VeNCrypt version other than 0.2"));
    }
    let mut offer = vec![0, 1];
    offer.extend_from_slice(&vencrypt::X509_NONE.to_be_bytes());
    stream.write_all(&offer).await.map_err(io("VeNCrypt"))?;
    if stream.read_u32().await.map_err(io("VeNCrypt"))? != vencrypt::X509_NONE {
        return Err(rfb_err("client chose a sub-type that was not offered"));
    }
    stream.write_all(&[1]).await.map_err(io("VeNCrypt"))?;
    let tls = TlsAcceptor::from(secrets.tls.clone())
        .accept(stream)
        .await
        .map_err(|e| LoadError::Tls(e.to_string()))?;
    Ok(Accepted::Tls(Box::new(tls)))
}

/// SecurityResult OK, ClientInit, ServerInit.
async fn finish<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> Result<()> {
    let io = |what: &'static str| LoadError::io(what);
    stream
        .write_all(&0u32.to_be_bytes())
        .await
        .map_err(io("SecurityResult"))?;
    stream.flush().await.map_err(io("SecurityResult"))?;
    stream.read_u8().await.map_err(io("ClientInit"))?;
    stream
        .write_all(&server_init())
        .await
        .map_err(io("ServerInit"))?;
    stream.flush().await.map_err(io("ServerInit"))
}

fn provider_random(buf: &mut [u8]) -> Result<()> {
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(buf)
        .map_err(|_| LoadError::Tls("no randomness".into()))
}

/// The client's side through darts: the RFB handshake (darts offers None), ClientInit,
/// ServerInit. Fed the backend bytes as they arrive; says what to send.
#[derive(Debug)]
pub struct Browser {
    hs: ClientHandshake,
    /// Backend bytes not consumed yet.
    input: Vec<u8>,
    init_sent: bool,
}

impl Default for Browser {
    fn default() -> Self {
        Self {
            hs: ClientHandshake::new(ClientConfig {
                transport: Transport::Plain,
                password: None,
            }),
            input: Vec::new(),
            init_sent: false,
        }
    }
}

impl Browser {
    /// Consumes `bytes`; appends what to send to `out`. Returns `Some(n)` once ServerInit
    /// has arrived, with `n` the backend bytes that came after it.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<Option<usize>> {
        self.input.extend_from_slice(bytes);
        if !self.init_sent {
            let (used, status) = self.hs.advance(&self.input, out).map_err(rfb_err)?;
            self.input.drain(..used);
            match status {
                Status::NeedMore => return Ok(None),
                Status::StartTls => return Err(rfb_err("darts asked the client for TLS")),
                Status::Done => {
                    if self.hs.chosen() != Some(u32::from(kind::NONE)) {
                        return Err(rfb_err("darts did not offer security None"));
                    }
                    out.push(1);
                    self.init_sent = true;
                }
            }
        }
        Ok(server_init::parse(&self.input)
            .map_err(rfb_err)?
            .map(|(_, len)| self.input.len() - len))
    }

    /// Once `feed` returned `Some`: the ServerInit and the backend bytes after it.
    pub fn finish(mut self) -> Result<(ServerInit, Vec<u8>)> {
        let (init, len) = server_init::parse(&self.input)
            .map_err(rfb_err)?
            .ok_or_else(|| rfb_err("no ServerInit yet"))?;
        Ok((init, self.input.split_off(len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browser_goes_from_version_to_server_init() {
        let mut b = Browser::default();
        let mut out = Vec::new();
        assert_eq!(b.feed(b"RFB 003.008\n", &mut out).unwrap(), None);
        assert_eq!(out, b"RFB 003.008\n");
        out.clear();
        assert_eq!(b.feed(&[1, kind::NONE], &mut out).unwrap(), None);
        assert_eq!(out, [kind::NONE]);
        out.clear();
        assert_eq!(b.feed(&0u32.to_be_bytes(), &mut out).unwrap(), None);
        assert_eq!(out, [1], "ClientInit, shared");
        let mut init = server_init();
        let half = init.len() / 2;
        assert_eq!(b.feed(&init[..half], &mut out).unwrap(), None);
        init.extend_from_slice(b"more");
        assert_eq!(b.feed(&init[half..], &mut out).unwrap(), Some(4));
        let (init, rest) = b.finish().unwrap();
        assert_eq!((init.width, init.name.as_str()), (1024, "darts-load"));
        assert_eq!(rest, b"more");
    }

    #[test]
    fn browser_refuses_other_security() {
        let mut b = Browser::default();
        let mut out = Vec::new();
        b.feed(b"RFB 003.008\n", &mut out).unwrap();
        assert!(b.feed(&[1, kind::VENCRYPT], &mut out).is_err());
        // A password prompt passed through to the client: it has no password to give.
        let mut b = Browser::default();
        b.feed(b"RFB 003.008\n", &mut out).unwrap();
        b.feed(&[1, kind::VNC_AUTH], &mut out).unwrap();
        assert!(b.feed(&[0; 16], &mut out).is_err());
    }
}
