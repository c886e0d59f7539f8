//! RFB awareness at the edges of a session: darts as the security proxy.
//!
//! Before the pump starts, `start` checks that the target speaks RFB and, depending on
//! the route's `BackendSecurity`, completes the VNC password or VeNCrypt x509 handshake
//! with the target itself, while the browser is offered security None. The password and
//! the client certificate never reach the browser. After that the pump relays bytes as
//! before; only a `ClientFilter` (view-only, clipboard cap), made once per connection,
//! looks at browser input.

pub mod backend;
pub mod browser;

use std::sync::Arc;

use darts_vnc::vnc_auth::Password;
use rustls::pki_types::ServerName;

pub use darts_vnc::client_filter::{ClientFilter, Policy};

/// How darts authenticates to a target's VNC server.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum BackendSecurity {
    /// Relay bytes as they are; the browser answers whatever the server asks.
    #[default]
    None,
    /// darts answers the VNC challenge; the browser is offered None.
    VncPassword(Password),
    /// VeNCrypt x509 (X509None, or X509Vnc with a password); darts is the TLS client.
    X509 {
        /// Trusts the target's CA and carries darts' client certificate, if any.
        tls: Arc<rustls::ClientConfig>,
        /// The name the target's certificate must carry.
        server_name: ServerName<'static>,
        /// The VNC password inside TLS (X509Vnc); `None` for X509None.
        password: Option<Password>,
    },
}

impl BackendSecurity {
    /// Short name for logs: `none`, `vnc-password`, `x509`, `x509+password`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::VncPassword(_) => "vnc-password",
            Self::X509 { password: None, .. } => "x509",
            Self::X509 {
                password: Some(_), ..
            } => "x509+password",
        }
    }

    /// Whether darts terminates the RFB security handshake itself.
    pub fn terminates(&self) -> bool {
        !matches!(self, Self::None)
    }
}

impl std::fmt::Debug for BackendSecurity {
    /// Never prints a password or key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl PartialEq for BackendSecurity {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::None, Self::None) => true,
            (Self::VncPassword(a), Self::VncPassword(b)) => a == b,
            (
                Self::X509 {
                    tls: a,
                    server_name: n,
                    password: p,
                },
                Self::X509 {
                    tls: b,
                    server_name: m,
                    password: q,
                },
            ) => Arc::ptr_eq(a, b) && n == m && p == q,
            _ => false,
        }
    }
}

impl Eq for BackendSecurity {}
