//! Secured targets: the backend can act as a VNC server that asks for a VNC password or
//! for VeNCrypt X509None with a client certificate, as QEMU does with `password=on` or
//! `tls-creds-x509,verify-peer=yes`. darts is then routed there by a token file line
//! carrying the matching `security=` options, answers the backend's security itself, and
//! offers security None to the client.
//!
//! The backend makes the material at start (a CA, a server certificate signed by it, a
//! client certificate for darts, a password) and writes what darts needs into a directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::crypto::ring as provider;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig};

use crate::error::{LoadError, Result};

/// The token of the one route in a token file written by the tool.
pub const TOKEN: &str = "darts-load";
/// The name the server certificate is issued for (and darts checks).
const SERVER_NAME: &str = "localhost";

/// How the backend protects a connection, and so what darts must answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Security {
    /// No security: the backend sends its version and goes straight to its mode.
    None,
    /// VNC authentication (type 2, DES challenge), answered by darts.
    VncPassword,
    /// VeNCrypt X509None (type 19, sub-type 260) with a client certificate from darts.
    X509,
}

impl Security {
    pub const ALL: [Security; 3] = [Security::None, Security::VncPassword, Security::X509];

    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::VncPassword => "vnc-password",
            Self::X509 => "x509",
        }
    }
}

/// Where the material darts needs lies.
#[derive(Debug, Clone)]
pub struct Secrets {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub password_file: PathBuf,
}

impl Secrets {
    /// The files in `dir`, as `generate` names them.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            ca: dir.join("ca-cert.pem"),
            cert: dir.join("client-cert.pem"),
            key: dir.join("client-key.pem"),
            password_file: dir.join("vnc-password"),
        }
    }

    /// The token file line routing `TOKEN` to `target` with `security`.
    pub fn token_line(&self, security: Security, target: SocketAddr) -> String {
        let options = match security {
            Security::None => String::new(),
            Security::VncPassword => format!(
                " security=vnc-password password-file={}",
                self.password_file.display()
            ),
            Security::X509 => format!(
                " security=x509 ca={} cert={} key={} server-name={SERVER_NAME}",
                self.ca.display(),
                self.cert.display(),
                self.key.display()
            ),
        };
        format!("{TOKEN}: {target}{options}\n")
    }
}

/// What the backend needs to check darts: the password, and a TLS configuration that
/// requires a client certificate from its CA.
#[derive(Debug, Clone)]
pub struct ServerSecrets {
    pub password: darts_vnc::vnc_auth::Password,
    pub tls: Arc<ServerConfig>,
}

/// Makes a CA, a server and a client certificate and a password; writes what darts needs
/// into `dir` (keys 0600) and returns what the backend needs.
pub fn generate(dir: &Path) -> Result<ServerSecrets> {
    let tls_err = |e: rcgen::Error| LoadError::Tls(e.to_string());
    let ca_key = KeyPair::generate().map_err(tls_err)?;
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "darts-load CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca = ca_params.self_signed(&ca_key).map_err(tls_err)?;

    let leaf = |cn: &str, sans: Vec<SanType>, purpose| -> Result<(rcgen::Certificate, KeyPair)> {
        let key = KeyPair::generate().map_err(tls_err)?;
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.subject_alt_names = sans;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![purpose];
        let cert = p.signed_by(&key, &ca, &ca_key).map_err(tls_err)?;
        Ok((cert, key))
    };
    let server_sans = vec![
        SanType::DnsName(SERVER_NAME.try_into().map_err(tls_err)?),
        SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
    ];
    let (server, server_key) = leaf(
        "darts-load backend",
        server_sans,
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    let (client, client_key) = leaf(
        "darts-load gateway",
        Vec::new(),
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    let password = format!("dl{:06}", std::process::id() % 1_000_000);

    let files = Secrets::in_dir(dir);
    write(&files.ca, ca.pem().as_bytes(), 0o644)?;
    write(&files.cert, client.pem().as_bytes(), 0o644)?;
    write(&files.key, client_key.serialize_pem().as_bytes(), 0o600)?;
    write(&files.password_file, password.as_bytes(), 0o600)?;

    let provider = Arc::new(provider::default_provider());
    let mut roots = RootCertStore::empty();
    roots
        .add(ca.der().clone())
        .map_err(|e| LoadError::Tls(e.to_string()))?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| LoadError::Tls(e.to_string()))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let mut tls = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| LoadError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![server.der().clone()], key)
        .map_err(|e| LoadError::Tls(e.to_string()))?;
    // Like QEMU's VNC server: no session resumption, every connection a full handshake.
    tls.session_storage = Arc::new(NoServerSessionStorage {});
    tls.send_tls13_tickets = 0;
    Ok(ServerSecrets {
        password: darts_vnc::vnc_auth::Password::new(password.into_bytes()),
        tls: Arc::new(tls),
    })
}

fn write(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let what = || format!("writing {}", path.display());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(LoadError::io(what()))?;
    f.write_all(data).map_err(LoadError::io(what()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_lines_carry_the_options_darts_reads() {
        let s = Secrets::in_dir(Path::new("/d"));
        let target: SocketAddr = "127.0.0.1:5900".parse().unwrap();
        assert_eq!(
            s.token_line(Security::None, target),
            "darts-load: 127.0.0.1:5900\n"
        );
        assert_eq!(
            s.token_line(Security::VncPassword, target),
            "darts-load: 127.0.0.1:5900 security=vnc-password password-file=/d/vnc-password\n"
        );
        assert_eq!(
            s.token_line(Security::X509, target),
            "darts-load: 127.0.0.1:5900 security=x509 ca=/d/ca-cert.pem \
             cert=/d/client-cert.pem key=/d/client-key.pem server-name=localhost\n"
        );
    }

    #[test]
    fn generated_material_is_written_with_private_keys_closed() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("darts-load-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secrets = generate(&dir).unwrap();
        let files = Secrets::in_dir(&dir);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&files.key), 0o600);
        assert_eq!(mode(&files.password_file), 0o600);
        let pw = std::fs::read(&files.password_file).unwrap();
        assert_eq!(pw, secrets.password.expose());
        assert!(std::fs::read_to_string(&files.ca)
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
