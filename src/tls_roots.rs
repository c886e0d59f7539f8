//! The certificates darts trusts for its outgoing TLS (authentication servers, mail,
//! downloads): Mozilla's roots plus the system store, loaded once per process, and the
//! operator's own PEM files of private CAs. Each client builds its trust from these.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// Why a CA file cannot be used. Each caller names the setting it came from.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct CaFileError {
    pub path: PathBuf,
    pub reason: String,
}

/// Mozilla's roots, then the system store's (which holds an administrator's own CAs),
/// loaded once per process. Certificates that do not parse are left to each client
/// (rustls skips them when it builds a root store).
pub fn public_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = webpki_root_certs::TLS_SERVER_ROOT_CERTS.to_vec();
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            tracing::debug!(error = %e, "system certificate store");
        }
        roots.extend(native.certs);
        roots
    })
}

/// Every certificate of the PEM file at `path`; a file without one is an error (a wrong
/// path in the settings should not silently trust nothing more).
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, CaFileError> {
    let err = |reason: String| CaFileError {
        path: path.to_owned(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate in it".into()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_roots_are_loaded_once() {
        let first = public_roots();
        assert!(first.len() >= webpki_root_certs::TLS_SERVER_ROOT_CERTS.len());
        assert!(std::ptr::eq(first, public_roots()));
    }

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = read_ca_file(&empty).unwrap_err();
        assert_eq!(e.path, empty);
        assert_eq!(e.reason, "no PEM certificate in it");
        let missing = dir.path().join("missing.pem");
        assert_eq!(read_ca_file(&missing).unwrap_err().path, missing);
    }
}
