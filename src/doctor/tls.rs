//! Certificates: the service port's (`certificate_crt`/`certificate_key`) and, with
//! `qemu_vnc_security = "x509"`, those between darts and QEMU.

use std::path::{Path, PathBuf};

use darts_proxy::tls::{load_certified_key, CertPaths};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::host::{describe, Identity};
use super::Check;
use crate::config::Config;

/// Days before expiry from which a certificate is reported.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

pub fn certificates(config: &Config, who: &Identity, root: &Path) -> Vec<Check> {
    let mut out = Vec::new();
    if config.certificate_crt.trim().is_empty() {
        out.push(Check::ok(
            "certificate_crt",
            "none: plain HTTP on the service port (TLS from the reverse proxy)",
        ));
    } else {
        let paths = CertPaths {
            cert: PathBuf::from(config.certificate_crt.trim()),
            key: Some(config.certificate_key.trim())
                .filter(|k| !k.is_empty())
                .map(PathBuf::from),
        };
        out.extend(certificate(
            "certificate_crt",
            &paths,
            who,
            root,
            "put a renewed certificate in place: darts reloads it without a restart (systemctl reload darts)",
        ));
    }
    if config.qemu_vnc_security.trim() == "x509" {
        let dir = &config.qemu_vnc_x509_dir;
        let renew = format!(
            "darts certs init --force {} (then restart the sessions)",
            dir.display()
        );
        for (name, side) in [("vnc x509 server", "server"), ("vnc x509 client", "client")] {
            let paths = CertPaths {
                cert: dir.join(side).join(format!("{side}-cert.pem")),
                key: Some(dir.join(side).join(format!("{side}-key.pem"))),
            };
            out.extend(certificate(name, &paths, who, root, &renew));
        }
    }
    out
}

/// One certificate and its key: they load and match, the key is readable by the
/// service, and the leaf is valid now and for a while.
fn certificate(
    name: &str,
    paths: &CertPaths,
    who: &Identity,
    root: &Path,
    renew: &str,
) -> Vec<Check> {
    let certified = match load_certified_key(paths) {
        Ok(c) => c,
        Err(e) => {
            return vec![Check::fail(
            name,
            e.to_string(),
            "check the PEM files: the chain first, then a key that matches its first certificate",
        )]
        }
    };
    let mut out = Vec::new();
    let key = paths.key.as_deref().unwrap_or(&paths.cert);
    if let Ok(meta) = std::fs::metadata(key) {
        if !who.may(&meta, 4) {
            out.push(Check::fail(
                name,
                format!(
                    "{} cannot read the key {} ({})",
                    who.name,
                    key.display(),
                    describe(&meta, root)
                ),
                format!(
                    "chgrp {} {} && chmod 0640 {}",
                    super::host::group_name(who.gid, root),
                    key.display(),
                    key.display()
                ),
            ));
        }
    }
    let Some(leaf) = certified.cert.first() else {
        return out;
    };
    out.push(match X509Certificate::from_der(leaf.as_ref()) {
        Err(e) => Check::fail(
            name,
            format!(
                "{}: not a readable X.509 certificate: {e}",
                paths.cert.display()
            ),
            "check the PEM file",
        ),
        Ok((_, cert)) => validity(
            name,
            &paths.cert,
            &cert,
            renew,
            time::OffsetDateTime::now_utc(),
        ),
    });
    out
}

/// The verdict on a certificate's dates at `now`.
fn validity(
    name: &str,
    file: &Path,
    cert: &X509Certificate<'_>,
    renew: &str,
    now: time::OffsetDateTime,
) -> Check {
    let v = cert.validity();
    let (from, until) = (v.not_before.to_datetime(), v.not_after.to_datetime());
    let day = |t: time::OffsetDateTime| t.date().to_string();
    let subject = cert.subject().to_string();
    if now > until {
        return Check::fail(
            name,
            format!(
                "{} ({subject}) expired on {} ({} days ago)",
                file.display(),
                day(until),
                (now - until).whole_days()
            ),
            renew,
        );
    }
    if now < from {
        return Check::fail(
            name,
            format!(
                "{} ({subject}) is not valid before {}",
                file.display(),
                day(from)
            ),
            "check the host's clock, or the certificate's dates",
        );
    }
    let left = (until - now).whole_days();
    let message = format!(
        "{} ({subject}) valid until {} ({left} days left)",
        file.display(),
        day(until)
    );
    if left < EXPIRY_WARNING_DAYS {
        Check::warn(name, message, renew)
    } else {
        Check::ok(name, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;
    use rcgen::{CertificateParams, KeyPair};
    use time::{Duration, OffsetDateTime};

    /// A self-signed certificate for localhost valid from `from` to `until` days from now.
    fn cert_files(dir: &Path, from: i64, until: i64) -> CertPaths {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["localhost".into()]).unwrap();
        let now = OffsetDateTime::now_utc();
        p.not_before = now + Duration::days(from);
        p.not_after = now + Duration::days(until);
        let cert = p.self_signed(&key).unwrap();
        let paths = CertPaths {
            cert: dir.join(format!("c{from}_{until}.pem")),
            key: Some(dir.join(format!("k{from}_{until}.pem"))),
        };
        std::fs::write(&paths.cert, cert.pem()).unwrap();
        std::fs::write(paths.key.as_ref().unwrap(), key.serialize_pem()).unwrap();
        paths
    }

    fn root_id() -> Identity {
        Identity {
            name: "root".into(),
            uid: 0,
            gid: 0,
            groups: vec![],
        }
    }

    #[test]
    fn expired_soon_and_good_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let check = |from, until| {
            let paths = cert_files(dir.path(), from, until);
            certificate(
                "certificate_crt",
                &paths,
                &root_id(),
                Path::new("/"),
                "renew it",
            )
        };
        let expired = check(-400, -2);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].status, Status::Fail);
        assert!(
            expired[0].message.contains("expired on"),
            "{:?}",
            expired[0]
        );
        assert_eq!(expired[0].hint.as_deref(), Some("renew it"));
        let soon = check(-10, 10);
        assert_eq!(soon[0].status, Status::Warn);
        assert!(soon[0].message.contains("days left"), "{:?}", soon[0]);
        let future = check(5, 100);
        assert_eq!(future[0].status, Status::Fail);
        assert!(future[0].message.contains("not valid before"));
        let good = check(-1, 365);
        assert_eq!(good[0].status, Status::Ok, "{:?}", good[0]);
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = cert_files(dir.path(), -1, 100);
        let b = cert_files(dir.path(), -2, 100);
        let mixed = CertPaths {
            cert: a.cert,
            key: b.key,
        };
        let c = certificate("certificate_crt", &mixed, &root_id(), Path::new("/"), "x");
        assert_eq!(c[0].status, Status::Fail);
        assert!(c[0].hint.as_deref().unwrap().contains("key that matches"));
    }
}
