//! In-process TLS: a rustls server configuration whose certificate can be replaced while
//! the gateway runs. New connections get the new certificate; connections already open
//! keep theirs. A certificate that fails to load is refused and the old one stays.

use std::fs;
use std::io::BufReader;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::ring as provider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use crate::error::TlsError;
use crate::metrics::Metrics;

/// How often the certificate files are checked for changes.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// The PEM files a certificate comes from (`certificate_crt` / `certificate_key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPaths {
    /// PEM file of the certificate chain.
    pub cert: PathBuf,
    /// `None`: the key is in the certificate file (websockify's `self.pem` style).
    pub key: Option<PathBuf>,
}

impl CertPaths {
    fn key_path(&self) -> &Path {
        self.key.as_deref().unwrap_or(&self.cert)
    }
}

/// Reads a certificate chain and its private key, and checks that they belong together.
pub fn load_certified_key(paths: &CertPaths) -> Result<CertifiedKey, TlsError> {
    let read = |p: &Path| fs::read(p).map_err(|e| TlsError::Read(p.to_owned(), e));
    let cert_pem = read(&paths.cert)?;
    let chain: Vec<_> = rustls_pemfile::certs(&mut BufReader::new(cert_pem.as_slice()))
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Read(paths.cert.clone(), e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(paths.cert.clone()));
    }
    let key_path = paths.key_path();
    let key_pem = if paths.key.is_some() {
        read(key_path)?
    } else {
        cert_pem
    };
    let key = rustls_pemfile::private_key(&mut BufReader::new(key_pem.as_slice()))
        .map_err(|e| TlsError::Read(key_path.to_owned(), e))?
        .ok_or_else(|| TlsError::NoKey(key_path.to_owned()))?;
    let signing_key = provider::sign::any_supported_type(&key).map_err(|e| TlsError::BadKey {
        path: key_path.to_owned(),
        reason: e.to_string(),
    })?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified
        .keys_match()
        .map_err(|e| TlsError::Mismatch(e.to_string()))?;
    Ok(certified)
}

/// A TLS client configuration for VeNCrypt x509: trust only `ca`, and present the
/// client certificate `cert`/`key` when given (QEMU's `verify-peer=yes` requires one).
pub fn client_config(
    ca: &Path,
    client: Option<&CertPaths>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let ca_pem = fs::read(ca).map_err(|e| TlsError::Read(ca.to_owned(), e))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut BufReader::new(ca_pem.as_slice())) {
        let cert = cert.map_err(|e| TlsError::Read(ca.to_owned(), e))?;
        roots
            .add(cert)
            .map_err(|e| TlsError::Config(format!("CA {}: {e}", ca.display())))?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoCertificate(ca.to_owned()));
    }
    let builder =
        rustls::ClientConfig::builder_with_provider(Arc::new(provider::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots);
    let config = match client {
        Some(paths) => {
            // Loading it as a CertifiedKey first checks that key and certificate match.
            let chain = load_certified_key(paths)?.cert;
            builder
                .with_client_auth_cert(chain, load_private_key_der(paths)?)
                .map_err(|e| TlsError::Config(e.to_string()))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn load_private_key_der(
    paths: &CertPaths,
) -> Result<rustls::pki_types::PrivateKeyDer<'static>, TlsError> {
    let key_path = paths.key_path();
    let pem = fs::read(key_path).map_err(|e| TlsError::Read(key_path.to_owned(), e))?;
    rustls_pemfile::private_key(&mut BufReader::new(pem.as_slice()))
        .map_err(|e| TlsError::Read(key_path.to_owned(), e))?
        .ok_or_else(|| TlsError::NoKey(key_path.to_owned()))
}

/// Hands rustls whatever certificate is current.
#[derive(Debug)]
struct CurrentCert(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

/// File identity used to notice a replaced certificate without reading it.
type Stamp = Option<(i64, i64, u64, u64)>;

fn stamp(p: &Path) -> Stamp {
    fs::metadata(p)
        .ok()
        .map(|m| (m.mtime(), m.mtime_nsec(), m.ino(), m.len()))
}

/// The TLS side of the listener: acceptor plus reload.
pub struct TlsState {
    paths: CertPaths,
    current: Arc<CurrentCert>,
    acceptor: TlsAcceptor,
    seen: Mutex<(Stamp, Stamp)>,
}

impl std::fmt::Debug for TlsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsState")
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

impl TlsState {
    /// Loads the certificate; fails if it cannot be used.
    pub fn new(paths: CertPaths) -> Result<Self, TlsError> {
        let certified = load_certified_key(&paths)?;
        let current = Arc::new(CurrentCert(ArcSwap::from_pointee(certified)));
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(provider::default_provider()))
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                .map_err(|e| TlsError::Config(e.to_string()))?
                .with_no_client_auth()
                .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let seen = Mutex::new((stamp(&paths.cert), stamp(paths.key_path())));
        Ok(Self {
            paths,
            current,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            seen,
        })
    }

    /// Accepts TLS with whichever certificate is current at the handshake.
    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Re-reads the files. On failure the running certificate stays and the error is returned.
    pub fn reload(&self) -> Result<(), TlsError> {
        let certified = load_certified_key(&self.paths)?;
        self.current.0.store(Arc::new(certified));
        Ok(())
    }

    /// Reloads if either file changed since the last look; logs and counts the outcome.
    pub fn reload_if_changed(&self, metrics: &Metrics) {
        let now = (stamp(&self.paths.cert), stamp(self.paths.key_path()));
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if *seen == now {
                return;
            }
            *seen = now;
        }
        self.reload_logged(metrics, "file change");
    }

    /// Reloads now (SIGHUP); logs and counts the outcome.
    pub fn reload_logged(&self, metrics: &Metrics, why: &str) {
        match self.reload() {
            Ok(()) => {
                metrics.tls_reload(true);
                tracing::info!(cert = %self.paths.cert.display(), trigger = why, "TLS certificate reloaded");
            }
            Err(e) => {
                metrics.tls_reload(false);
                tracing::error!(cert = %self.paths.cert.display(), trigger = why, error = %e, "new TLS certificate refused; the previous one stays in use");
            }
        }
    }
}
