//! A real SMTP server for tests: `tests/support/smtp-sink.py` (aiosmtpd) on a free
//! loopback port, requiring AUTH after STARTTLS with a certificate from a CA made here,
//! and storing every accepted mail as `NNNNN.eml` so tests can read what was sent.
//! Killed on drop. Needs Debian's python3-aiosmtpd (`bash tests/setup.sh mail`).
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use mailparse::MailHeaderMap;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

/// Debian's interpreter: the one that sees python3-aiosmtpd (a pyenv `python3` may not).
const PYTHON: &str = "/usr/bin/python3";
const READY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct SmtpSink {
    pub port: u16,
    /// The CA that signed the sink's certificate (SAN 127.0.0.1 and localhost).
    pub ca_pem: PathBuf,
    pub maildir: PathBuf,
    dir: tempfile::TempDir,
    child: Child,
}

/// One stored mail, parsed.
#[derive(Debug)]
pub struct StoredMail {
    pub file: PathBuf,
    /// Envelope, as the sink recorded it.
    pub mail_from: String,
    pub rcpt_to: String,
    pub auth_user: String,
    /// Headers of the message itself.
    pub from: String,
    pub to: String,
    pub subject: String,
    pub message_id: String,
    /// Decoded bodies (transfer encodings undone).
    pub text: Option<String>,
    pub html: Option<String>,
}

/// A self-signed CA and a server certificate for 127.0.0.1/localhost signed by it:
/// (CA PEM, server certificate PEM, server key PEM).
pub fn test_ca(name: &str) -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.distinguished_name.push(DnType::CommonName, name);
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca.self_signed(&ca_key).unwrap();

    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::default();
    leaf.distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    leaf.subject_alt_names = vec![
        SanType::IpAddress("127.0.0.1".parse().unwrap()),
        SanType::DnsName("localhost".try_into().unwrap()),
    ];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = leaf.signed_by(&key, &ca, &ca_key).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

impl SmtpSink {
    /// Starts the sink with these `user:password` accounts, ready when this returns.
    pub fn start(users: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = test_ca("darts test mail CA");
        let ca_pem = dir.path().join("ca.pem");
        std::fs::write(&ca_pem, ca).unwrap();
        std::fs::write(dir.path().join("server.pem"), cert).unwrap();
        std::fs::write(dir.path().join("server-key.pem"), key).unwrap();
        let maildir = dir.path().join("mail");
        // The port is free when picked but may be taken before the sink binds it: retry.
        for _ in 0..5 {
            let port = free_port();
            if let Some(child) = spawn(dir.path(), port, &maildir, users) {
                return Self {
                    port,
                    ca_pem,
                    maildir,
                    dir,
                    child,
                };
            }
        }
        panic!(
            "smtp-sink did not start (is python3-aiosmtpd installed? bash tests/setup.sh mail); its log:\n{}",
            std::fs::read_to_string(dir.path().join("sink.log")).unwrap_or_default()
        );
    }

    /// The sink's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sink.log")).unwrap_or_default()
    }

    /// Every stored mail, oldest first. The sink answers `250` only after the file is
    /// in place, so a mail whose send returned Ok is here.
    pub fn mails(&self) -> Vec<StoredMail> {
        let Ok(entries) = std::fs::read_dir(&self.maildir) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        files.sort();
        files.into_iter().map(|f| parse(&f)).collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the sink on `port` and waits for its "listening" line; `None` if it exited.
fn spawn(dir: &Path, port: u16, maildir: &Path, users: &[(&str, &str)]) -> Option<Child> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp-sink.py");
    let log = std::fs::File::create(dir.join("sink.log")).unwrap();
    let mut child = Command::new(PYTHON)
        .arg(script)
        .arg(port.to_string())
        .arg(maildir)
        .args(users.iter().map(|(u, p)| format!("{u}:{p}")))
        .env("SMTP_TLS_CERT", dir.join("server.pem"))
        .env("SMTP_TLS_KEY", dir.join("server-key.pem"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {PYTHON}: {e}"));
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let ready = BufReader::new(stdout).read_line(&mut line).is_ok()
            && line.starts_with("smtp-sink listening");
        let _ = tx.send(ready);
    });
    match rx.recv_timeout(READY_TIMEOUT) {
        Ok(true) => Some(child),
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    }
}

fn parse(file: &Path) -> StoredMail {
    let raw = std::fs::read(file).unwrap();
    let mail = mailparse::parse_mail(&raw).unwrap();
    let header = |name: &str| mail.headers.get_first_value(name).unwrap_or_default();
    let (mut text, mut html) = (None, None);
    let mut parts = vec![&mail];
    while let Some(part) = parts.pop() {
        parts.extend(part.subparts.iter());
        match part.ctype.mimetype.as_str() {
            "text/plain" => text = Some(part.get_body().unwrap()),
            "text/html" => html = Some(part.get_body().unwrap()),
            _ => {}
        }
    }
    StoredMail {
        file: file.to_owned(),
        mail_from: header("X-Mail-From"),
        rcpt_to: header("X-Rcpt-To"),
        auth_user: header("X-Auth-User"),
        from: header("From"),
        to: header("To"),
        subject: header("Subject"),
        message_id: header("Message-ID"),
        text,
        html,
    }
}
