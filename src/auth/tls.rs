//! TLS towards authentication servers (IMAP, SMTP, LDAP): one rustls client configuration
//! trusting Mozilla's roots, the system store and `auth_ca_file`, plus an unverified one
//! used only for the hosts listed in `auth_insecure_servers`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::config::Config;
use crate::tls_roots;

/// Why the TLS settings for authentication servers cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("auth_ca_file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("TLS set-up: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Client TLS settings shared by the authentication methods.
#[derive(Clone)]
pub struct AuthTls {
    verified: Arc<ClientConfig>,
    unverified: Arc<ClientConfig>,
    extra_roots: Vec<CertificateDer<'static>>,
    insecure_servers: Vec<String>,
}

impl std::fmt::Debug for AuthTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthTls")
            .field("extra_roots", &self.extra_roots.len())
            .field("insecure_servers", &self.insecure_servers)
            .finish_non_exhaustive()
    }
}

impl AuthTls {
    /// From `auth_ca_file` (empty: none) and `auth_insecure_servers`.
    pub fn from_config(config: &Config) -> Result<Self, TlsError> {
        let ca_file = (!config.auth_ca_file.is_empty()).then(|| Path::new(&config.auth_ca_file));
        Self::new(ca_file, &config.auth_insecure_servers)
    }

    /// Trusts the public roots plus every certificate of `ca_file`; skips verification
    /// for the servers named in `insecure_servers` (host names or addresses, as configured).
    pub fn new(ca_file: Option<&Path>, insecure_servers: &[String]) -> Result<Self, TlsError> {
        let extra_roots = match ca_file {
            Some(path) => tls_roots::read_ca_file(path).map_err(|e| TlsError::CaFile {
                path: e.path,
                reason: e.reason,
            })?,
            None => Vec::new(),
        };
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(tls_roots::public_roots().iter().cloned());
        for cert in &extra_roots {
            roots.add(cert.clone()).map_err(|e| TlsError::CaFile {
                path: ca_file.map(Path::to_owned).unwrap_or_default(),
                reason: e.to_string(),
            })?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verified = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let unverified = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth();
        Ok(Self {
            verified: Arc::new(verified),
            unverified: Arc::new(unverified),
            extra_roots,
            insecure_servers: insecure_servers.to_vec(),
        })
    }

    /// Whether `server`'s certificate is verified (it is, unless listed as insecure).
    pub fn verifies(&self, server: &str) -> bool {
        !self
            .insecure_servers
            .iter()
            .any(|s| s.eq_ignore_ascii_case(server))
    }

    /// The rustls configuration to use towards `server`.
    pub fn client_config(&self, server: &str) -> Arc<ClientConfig> {
        if self.verifies(server) {
            self.verified.clone()
        } else {
            self.unverified.clone()
        }
    }

    /// The certificates read from `auth_ca_file` (for clients that take their own roots).
    pub fn extra_roots(&self) -> &[CertificateDer<'static>] {
        &self.extra_roots
    }

    /// TLS handshake as a client of `server` over `stream`.
    pub async fn connect<S>(&self, server: &str, stream: S) -> io::Result<TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name = ServerName::try_from(server.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        TlsConnector::from(self.client_config(server))
            .connect(name, stream)
            .await
    }
}

/// An operator-readable account of a connection failure, with a hint for certificates.
pub fn describe_io_error(e: &io::Error) -> String {
    if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return describe_rustls_error(tls);
    }
    e.to_string()
}

/// Same, for a rustls error.
pub fn describe_rustls_error(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(reason) => format!(
            "server certificate refused ({reason:?}); trust its CA with auth_ca_file, \
             or list the server in auth_insecure_servers"
        ),
        other => format!("TLS: {other}"),
    }
}

/// Accepts any certificate, but still checks that the server holds its key (handshake
/// signatures), so the connection is at least encrypted to whoever presented it.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_servers_skip_verification() {
        let tls = AuthTls::new(None, &["Mail.Example.org".into()]).unwrap();
        assert!(!tls.verifies("mail.example.org"));
        assert!(tls.verifies("ldap.example.org"));
        assert!(Arc::ptr_eq(
            &tls.client_config("ldap.example.org"),
            &tls.verified
        ));
        assert!(Arc::ptr_eq(
            &tls.client_config("mail.example.org"),
            &tls.unverified
        ));
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = AuthTls::new(Some(&path), &[]).unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        let missing = dir.path().join("missing.pem");
        assert!(matches!(
            AuthTls::new(Some(&missing), &[]),
            Err(TlsError::CaFile { .. })
        ));
    }
}
