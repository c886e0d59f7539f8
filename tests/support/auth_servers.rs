//! Real authentication servers for tests, on free loopback ports: dovecot (IMAP, with
//! STARTTLS and IMAPS) and slapd (LDAP with StartTLS, and LDAPS), seeded with users, with
//! certificates from a test CA made by rcgen. Each runs in the foreground as a child of
//! the test (no daemon, no systemd, nothing under /etc touched) and is stopped on drop.
//! Also: a throwaway local account for PAM, removed on drop.
//!
//! Declared from a test file with `#[path = "support/auth_servers.rs"] mod auth_servers;`
//! after `mod support;`. Needs `bash tests/setup.sh auth` (dovecot-imapd, slapd, ldap-utils).
#![allow(dead_code, clippy::unwrap_used)]

use std::fs::File;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{free_port, make_certs, rand_u64};

/// A CA and a server certificate for 127.0.0.1 and localhost, as PEM files.
pub struct TestCa {
    /// The CA certificate: what `auth_ca_file` points at.
    pub ca_file: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    pub fn new(dir: &Path, stem: &str) -> Self {
        let certs = make_certs(dir, stem, &["127.0.0.1", "localhost"]);
        let ca_file = dir.join(format!("{stem}-ca.pem"));
        std::fs::write(&ca_file, &certs.ca_pem).unwrap();
        Self {
            ca_file,
            cert: certs.cert,
            key: certs.key,
        }
    }
}

/// A server process, stopped (SIGTERM, then SIGKILL) and reaped on drop.
pub struct ServerProcess {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl ServerProcess {
    fn spawn(name: &'static str, command: &mut Command, log: PathBuf) -> Self {
        let out = File::create(&log).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {name} ({e}): run `bash tests/setup.sh auth`")
            });
        Self { name, child, log }
    }

    /// Waits until every port accepts connections; panics with the log if the server
    /// exits or does not listen within 20 s.
    fn wait_listening(&mut self, ports: &[u16]) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for &port in ports {
            loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break;
                }
                if let Ok(Some(status)) = self.child.try_wait() {
                    panic!(
                        "{} exited with {status} before listening on {port}:\n{}",
                        self.name,
                        self.log_text()
                    );
                }
                assert!(
                    Instant::now() < deadline,
                    "{} did not listen on {port} within 20 s:\n{}",
                    self.name,
                    self.log_text()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the server now (e.g. to test a server going away).
    pub fn stop(&mut self) {
        use rustix::process::{kill_process, Pid, Signal};
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        if let Some(pid) = Pid::from_raw(self.child.id() as i32) {
            let _ = kill_process(pid, Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Login and password of a seeded user.
pub type User<'a> = (&'a str, &'a str);

/// dovecot with a passwd-file of `users`: IMAP with STARTTLS on `imap_port` (LOGIN
/// refused before it), IMAPS on `imaps_port`. Its authentication log (`auth_verbose`)
/// tells how many password checks reached it.
pub struct Dovecot {
    pub imap_port: u16,
    pub imaps_port: u16,
    pub process: ServerProcess,
    log: PathBuf,
}

impl Dovecot {
    pub fn start(dir: &Path, tls: &TestCa, users: &[User<'_>]) -> Self {
        let dir = dir.join("dovecot");
        for sub in ["run", "state", "home"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        set_mode(&dir.join("home"), 0o777);
        let passwd: String = users
            .iter()
            .map(|(user, pw)| format!("{user}:{{PLAIN}}{pw}::::::\n"))
            .collect();
        std::fs::write(dir.join("users"), passwd).unwrap();
        set_mode(&dir.join("users"), 0o644);
        let (imap_port, imaps_port) = (free_port(), free_port());
        let d = dir.display();
        let conf = format!(
            r#"base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = yes
auth_mechanisms = plain login
auth_failure_delay = 0
# User names match without case, as on most mail servers.
auth_username_format = %Lu
# Each password check is logged, so tests can count what reached the server.
auth_verbose = yes
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={d}/home/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
"#,
            cert = tls.cert.display(),
            key = tls.key.display(),
        );
        let conf_path = dir.join("dovecot.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut process = ServerProcess::spawn(
            "dovecot",
            Command::new("dovecot").arg("-F").arg("-c").arg(&conf_path),
            dir.join("stderr.log"),
        );
        process.wait_listening(&[imap_port, imaps_port]);
        Self {
            imap_port,
            imaps_port,
            process,
            log: dir.join("dovecot.log"),
        }
    }

    /// Wrong passwords for `user` that dovecot checked, as its log counts them once it
    /// has been still for a second (its log process writes behind the answers).
    pub fn password_mismatches(&self, user: &str) -> usize {
        let needle = format!("passwd-file({user},");
        let count = || {
            std::fs::read_to_string(&self.log)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains(&needle) && l.contains("Password mismatch"))
                .count()
        };
        let mut last = count();
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let now = count();
            if now == last {
                return now;
            }
            last = now;
        }
    }
}

/// slapd with suffix `dc=darts,dc=test`: `users` under `ou=people` (inetOrgPerson, `mail`
/// `<uid>@darts.test`), plus two entries sharing the `cn` "Twin" (uids `twin1`, `twin2`,
/// password `twinpw`). Plain LDAP with StartTLS on `ldap_port`, LDAPS on `ldaps_port`.
pub struct Slapd {
    pub ldap_port: u16,
    pub ldaps_port: u16,
    pub process: ServerProcess,
}

pub const LDAP_BASE: &str = "dc=darts,dc=test";

impl Slapd {
    pub fn start(dir: &Path, tls: &TestCa, users: &[User<'_>]) -> Self {
        let dir = dir.join("slapd");
        std::fs::create_dir_all(dir.join("db")).unwrap();
        let d = dir.display();
        let conf = format!(
            r#"include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
pidfile  {d}/slapd.pid
argsfile {d}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
TLSCertificateFile {cert}
TLSCertificateKeyFile {key}
database mdb
maxsize 16777216
suffix "{LDAP_BASE}"
rootdn "cn=admin,{LDAP_BASE}"
rootpw adminpw
directory {d}/db
access to attrs=userPassword by self write by anonymous auth by * none
access to * by * read
"#,
            cert = tls.cert.display(),
            key = tls.key.display(),
        );
        let conf_path = dir.join("slapd.conf");
        std::fs::write(&conf_path, conf).unwrap();

        let mut ldif = format!(
            "dn: {LDAP_BASE}\nobjectClass: top\nobjectClass: dcObject\nobjectClass: organization\no: darts\ndc: darts\n\n\
             dn: ou=people,{LDAP_BASE}\nobjectClass: organizationalUnit\nou: people\n\n"
        );
        let person = |uid: &str, cn: &str, pw: &str| {
            format!(
                "dn: uid={uid},ou=people,{LDAP_BASE}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {cn}\nsn: {cn}\nmail: {uid}@darts.test\nuserPassword: {hash}\n\n",
                hash = slappasswd(pw)
            )
        };
        for (user, pw) in users {
            ldif.push_str(&person(user, user, pw));
        }
        ldif.push_str(&person("twin1", "Twin", "twinpw"));
        ldif.push_str(&person("twin2", "Twin", "twinpw"));
        let ldif_path = dir.join("seed.ldif");
        std::fs::write(&ldif_path, ldif).unwrap();
        let out = Command::new("slapadd")
            .args(["-q", "-f"])
            .arg(&conf_path)
            .arg("-l")
            .arg(&ldif_path)
            .output()
            .expect("slapadd runs: run `bash tests/setup.sh auth`");
        assert!(
            out.status.success(),
            "slapadd: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        let (ldap_port, ldaps_port) = (free_port(), free_port());
        let urls = format!("ldap://127.0.0.1:{ldap_port}/ ldaps://127.0.0.1:{ldaps_port}/");
        // `-d 0` keeps slapd in the foreground.
        let mut process = ServerProcess::spawn(
            "slapd",
            Command::new("slapd")
                .args(["-d", "0", "-f"])
                .arg(&conf_path)
                .arg("-h")
                .arg(urls),
            dir.join("stderr.log"),
        );
        process.wait_listening(&[ldap_port, ldaps_port]);
        Self {
            ldap_port,
            ldaps_port,
            process,
        }
    }
}

fn slappasswd(password: &str) -> String {
    let out = Command::new("slappasswd")
        .args(["-s", password])
        .output()
        .expect("slappasswd runs: run `bash tests/setup.sh auth`");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A local account with a password, for PAM; deleted on drop. Needs root.
pub struct LocalAccount {
    pub name: String,
}

impl LocalAccount {
    pub fn create(password: &str) -> Self {
        let name = format!("dartst{:08x}", rand_u64() as u32);
        // useradd and userdel lock /etc/passwd: another test doing the same may hold it.
        let mut tries = 0;
        loop {
            let status = Command::new("useradd")
                .args(["--no-create-home", "--shell", "/usr/sbin/nologin", &name])
                .status()
                .expect("useradd runs (tests run as root)");
            if status.success() {
                break;
            }
            tries += 1;
            assert!(tries < 20, "useradd {name} failed: {status}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let account = Self { name };
        let mut chpasswd = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut stdin = chpasswd.stdin.take().unwrap();
            writeln!(stdin, "{}:{password}", account.name).unwrap();
        }
        assert!(chpasswd.wait().unwrap().success(), "chpasswd failed");
        account
    }
}

impl Drop for LocalAccount {
    fn drop(&mut self) {
        for _ in 0..20 {
            match Command::new("userdel").arg(&self.name).status() {
                Ok(s) if s.success() => return,
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        eprintln!("could not remove local test account {}", self.name);
    }
}

/// A loopback port with nothing listening.
pub fn dead_port() -> u16 {
    free_port()
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
