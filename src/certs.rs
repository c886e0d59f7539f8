//! `darts certs`: a private CA, a server certificate for QEMU's VNC server and a client
//! certificate for darts, in the layout QEMU's `tls-creds-x509,dir=` reads
//! (`ca-cert.pem`, `server-cert.pem`, `server-key.pem`; libvirt's `/etc/pki/libvirt-vnc`
//! uses the same names), with the permissions the libvirt guide asks for: directories
//! 0750, private keys 0600 (the server key 0640, for a `qemu` group), certificates 0644.
//!
//! ```text
//! DIR/ca/ca-cert.pem ca-key.pem [ca-crl.pem]
//! DIR/server/ca-cert.pem server-cert.pem server-key.pem [ca-crl.pem]   ← QEMU endpoint=server
//! DIR/client/ca-cert.pem client-cert.pem client-key.pem                 ← darts (x509 targets)
//! ```

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{0} already exists; use --force to replace it")]
    Exists(PathBuf),
    #[error("{0}: not a readable PEM certificate: {1}")]
    Parse(PathBuf, String),
}

/// What to put in the certificates.
#[derive(Debug, Clone)]
pub struct Request {
    pub dir: PathBuf,
    /// DNS names and IP addresses of the VNC server (subjectAltName).
    pub server_names: Vec<String>,
    pub client_name: String,
    pub days: i64,
    pub crl: bool,
    pub force: bool,
}

/// Creates CA, server and client material under `req.dir`; returns the files written.
pub fn init(req: &Request) -> Result<Vec<PathBuf>, CertsError> {
    let ca_key_path = req.dir.join("ca/ca-key.pem");
    if ca_key_path.exists() && !req.force {
        return Err(CertsError::Exists(ca_key_path));
    }
    for sub in ["", "ca", "server", "client"] {
        make_dir(&req.dir.join(sub))?;
    }
    let (not_before, not_after) = validity(req.days);
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "darts VNC CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca = ca_params.self_signed(&ca_key)?;

    let leaf = |cn: &str,
                sans: &[String],
                purpose: ExtendedKeyUsagePurpose|
     -> Result<(String, String), CertsError> {
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.subject_alt_names = sans
            .iter()
            .map(|s| match s.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => s.clone().try_into().map(SanType::DnsName),
            })
            .collect::<Result<_, _>>()?;
        // QEMU (gnutls) wants both usages on a leaf when the extension is critical.
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![purpose];
        p.not_before = not_before;
        p.not_after = not_after;
        p.key_identifier_method = KeyIdMethod::Sha256;
        let cert = p.signed_by(&key, &ca, &ca_key)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let server_cn = req
        .server_names
        .first()
        .cloned()
        .unwrap_or_else(|| "localhost".into());
    let (server_cert, server_key) = leaf(
        &server_cn,
        &req.server_names,
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    let (client_cert, client_key) =
        leaf(&req.client_name, &[], ExtendedKeyUsagePurpose::ClientAuth)?;

    let ca_pem = ca.pem();
    let d = &req.dir;
    let mut written = vec![
        write(&d.join("ca/ca-cert.pem"), &ca_pem, 0o644)?,
        write(&ca_key_path, &ca_key.serialize_pem(), 0o600)?,
        write(&d.join("server/ca-cert.pem"), &ca_pem, 0o644)?,
        write(&d.join("server/server-cert.pem"), &server_cert, 0o644)?,
        write(&d.join("server/server-key.pem"), &server_key, 0o640)?,
        write(&d.join("client/ca-cert.pem"), &ca_pem, 0o644)?,
        write(&d.join("client/client-cert.pem"), &client_cert, 0o644)?,
        write(&d.join("client/client-key.pem"), &client_key, 0o600)?,
    ];
    if req.crl {
        let crl = CertificateRevocationListParams {
            this_update: OffsetDateTime::now_utc(),
            next_update: OffsetDateTime::now_utc() + Duration::days(30),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&ca, &ca_key)?;
        let pem = crl.pem()?;
        written.push(write(&d.join("ca/ca-crl.pem"), &pem, 0o644)?);
        written.push(write(&d.join("server/ca-crl.pem"), &pem, 0o644)?);
    }
    Ok(written)
}

/// Whether the PEM certificate at `path` lists `ip` among its subjectAltName IP
/// addresses, which is what a TLS client connecting to `ip` checks.
pub fn issued_for_ip(path: &Path, ip: std::net::IpAddr) -> Result<bool, CertsError> {
    use x509_parser::extensions::GeneralName;
    let bytes = fs::read(path).map_err(|e| CertsError::Io(path.to_owned(), e))?;
    let parse = |e: String| CertsError::Parse(path.to_owned(), e);
    let (_, pem) = x509_parser::pem::parse_x509_pem(&bytes).map_err(|e| parse(e.to_string()))?;
    let cert = pem.parse_x509().map_err(|e| parse(e.to_string()))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| parse(e.to_string()))?;
    let octets = match ip {
        std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
        std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    Ok(san.is_some_and(|san| {
        san.value
            .general_names
            .iter()
            .any(|n| matches!(n, GeneralName::IPAddress(a) if *a == octets.as_slice()))
    }))
}

fn validity(days: i64) -> (OffsetDateTime, OffsetDateTime) {
    // Backdated a little so that a clock slightly behind does not reject a new certificate.
    let now = OffsetDateTime::now_utc();
    (now - Duration::hours(1), now + Duration::days(days.max(1)))
}

fn make_dir(dir: &Path) -> Result<(), CertsError> {
    fs::create_dir_all(dir).map_err(|e| CertsError::Io(dir.to_owned(), e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o750))
        .map_err(|e| CertsError::Io(dir.to_owned(), e))
}

/// Writes a file created with `mode` from the start (no window with wider permissions).
fn write(path: &Path, text: &str, mode: u32) -> Result<PathBuf, CertsError> {
    let err = |e| CertsError::Io(path.to_owned(), e);
    let tmp = path.with_extension("pem.tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).map_err(err)?;
    fs::rename(&tmp, path).map_err(err)?;
    Ok(path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(dir: &Path, server_names: &[&str]) -> Request {
        Request {
            dir: dir.to_owned(),
            server_names: server_names.iter().map(|s| (*s).to_owned()).collect(),
            client_name: "darts".into(),
            days: 1,
            crl: false,
            force: true,
        }
    }

    #[test]
    fn the_server_certificate_names_the_addresses_it_was_made_for() {
        let dir = tempfile::tempdir().unwrap();
        init(&request(dir.path(), &["localhost", "127.0.0.1"])).unwrap();
        let cert = dir.path().join("server/server-cert.pem");
        assert!(issued_for_ip(&cert, [127, 0, 0, 1].into()).unwrap());
        assert!(!issued_for_ip(&cert, [10, 0, 0, 5].into()).unwrap());
        assert!(!issued_for_ip(&cert, "::1".parse().unwrap()).unwrap());
        init(&request(dir.path(), &["10.0.0.5", "::1"])).unwrap();
        assert!(issued_for_ip(&cert, [10, 0, 0, 5].into()).unwrap());
        assert!(issued_for_ip(&cert, "::1".parse().unwrap()).unwrap());
        assert!(!issued_for_ip(&cert, [127, 0, 0, 1].into()).unwrap());
        // The client certificate names no address.
        let client = dir.path().join("client/client-cert.pem");
        assert!(!issued_for_ip(&client, [10, 0, 0, 5].into()).unwrap());
        std::fs::write(&cert, "not a certificate").unwrap();
        assert!(matches!(
            issued_for_ip(&cert, [10, 0, 0, 5].into()),
            Err(CertsError::Parse(..))
        ));
    }
}
