//! `darts config check`: every problem of a configuration, each with its file, line and
//! key. Errors (unknown keys, wrong types, values and combinations that cannot work) stop
//! `darts serve` from starting and a reload from being applied; warnings are reported and
//! the configuration is used.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::layers::{ConfigSource, Layers, Loaded, Origin, Setting};
use super::{keys, show, Config};
use crate::net::is_loopback_host;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem: where, which key, what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    pub origin: Option<Origin>,
    pub key: Option<String>,
    pub message: String,
}

impl Problem {
    pub fn error(origin: Option<Origin>, key: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            origin,
            key: key.map(str::to_owned),
            message: message.into(),
        }
    }

    pub fn warning(origin: Option<Origin>, key: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(origin, key, message)
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// `FILE:LINE: KEY: message`, leaving out what is not known.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(origin) = &self.origin {
            write!(f, "{origin}: ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// What `check` found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The configuration, when the layers could be read and every setting has a known
    /// key and a value of the right type.
    pub loaded: Option<Loaded>,
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| p.is_error())
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| !p.is_error())
    }

    pub fn has_errors(&self) -> bool {
        self.errors().next().is_some()
    }

    /// The configuration when it has no error.
    pub fn usable(&self) -> Option<&Loaded> {
        self.loaded.as_ref().filter(|_| !self.has_errors())
    }

    /// Every error on one line, for a log: `a.toml:3: key: message; b.toml:7: …`.
    pub fn errors_line(&self) -> String {
        self.errors()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Reads every layer of `source` and checks everything.
pub fn check(source: &ConfigSource) -> Report {
    let (layers, mut problems) = Layers::read(source);
    problems.extend(settings(&layers.settings));
    problems.extend(readable_secrets(&layers));
    let loaded = if problems.iter().any(Problem::is_error) {
        None
    } else {
        match Loaded::build(&layers) {
            Ok(loaded) => Some(loaded),
            Err(p) => {
                problems.push(p);
                None
            }
        }
    };
    if let Some(loaded) = &loaded {
        problems.extend(combinations(loaded));
    }
    Report { loaded, problems }
}

/// Unknown keys (with the likely intended one) and values of the wrong type.
pub fn settings(settings: &[Setting]) -> Vec<Problem> {
    settings.iter().filter_map(setting).collect()
}

fn setting(s: &Setting) -> Option<Problem> {
    let origin = Some(s.origin.clone());
    if keys::find(&s.key).is_none() {
        let message = if let Some(why) = keys::obsolete(&s.key) {
            format!("not used by darts: {why}; remove it")
        } else if let Some(new) = keys::suggest(&s.key) {
            format!("unknown key (did you mean {new}?)")
        } else {
            "unknown key (darts config keys lists them all)".to_owned()
        };
        return Some(Problem::error(origin, Some(&s.key), message));
    }
    let mut one = toml::Table::new();
    one.insert(s.key.clone(), s.value.clone());
    Config::deserialize(toml::Value::Table(one)).err().map(|e| {
        Problem::error(
            origin,
            Some(&s.key),
            type_message(&e.to_string(), &shown_value(&s.key, &s.value)),
        )
    })
}

/// A value for a message: secrets hidden (a password typed as a number is still one).
fn shown_value(key: &str, value: &toml::Value) -> String {
    show::redacted(key, value).map_or_else(|| value.to_string(), str::to_owned)
}

/// serde's message in an operator's words, without the key (already shown).
fn type_message(raw: &str, value: &str) -> String {
    let first = raw.lines().next().unwrap_or(raw).trim();
    let first = first
        .split_once(" for key `")
        .map_or(first, |(m, _)| m)
        .trim_end_matches('.');
    match first.split_once(", expected ") {
        Some((_, expected)) => {
            format!("wrong type: expected {}, got {value}", human_type(expected))
        }
        None => format!("wrong value: {first}"),
    }
}

/// `u16` → `a whole number from 0 to 65535`, and so on.
fn human_type(expected: &str) -> String {
    let range = |max: u64| format!("a whole number from 0 to {max}");
    match expected.trim() {
        "u8" => range(u8::MAX.into()),
        "u16" => range(u16::MAX.into()),
        "u32" => range(u32::MAX.into()),
        "u64" | "usize" => range(u64::MAX),
        "f64" | "f32" => "a number".into(),
        "a sequence" => "a list".into(),
        other => other.to_owned(),
    }
}

/// Secrets every user of the host can read: in a world-readable file, or on the command line.
fn readable_secrets(layers: &Layers) -> Vec<Problem> {
    layers
        .settings
        .iter()
        .filter(|s| show::redacted(&s.key, &s.value).is_some())
        .filter_map(|s| match &s.origin {
            Origin::File { path, .. } => std::fs::metadata(path)
                .ok()
                .filter(|m| m.permissions().mode() & 0o004 != 0)
                .map(|_| {
                    Problem::warning(
                        Some(s.origin.clone()),
                        Some(&s.key),
                        format!(
                            "a secret in a file every user can read: chmod o-r {}",
                            path.display()
                        ),
                    )
                }),
            Origin::CommandLine => Some(Problem::warning(
                Some(Origin::CommandLine),
                Some(&s.key),
                "a secret on the command line: every user of the host sees it in ps; put it in a file only darts can read",
            )),
            Origin::Default => None,
        })
        .collect()
}

/// Values and combinations that cannot work, on the effective configuration.
pub fn combinations(loaded: &Loaded) -> Vec<Problem> {
    let mut c = Checker {
        loaded,
        cfg: &loaded.config,
        problems: Vec::new(),
    };
    c.tls();
    c.mail();
    c.authentication();
    c.limits();
    c.layout();
    c.vnc_security();
    c.vnc_listen();
    c.directories();
    c.web();
    c.peers();
    c.token_registry();
    c.problems
}

struct Checker<'a> {
    loaded: &'a Loaded,
    cfg: &'a Config,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn error(&mut self, key: &str, message: impl Into<String>) {
        let origin = Some(self.loaded.origin(key));
        self.problems
            .push(Problem::error(origin, Some(key), message));
    }

    fn warning(&mut self, key: &str, message: impl Into<String>) {
        let origin = Some(self.loaded.origin(key));
        self.problems
            .push(Problem::warning(origin, Some(key), message));
    }

    /// Where `key` is set, for messages about another key.
    fn at(&self, key: &str) -> String {
        format!("{key} ({})", self.loaded.origin(key))
    }

    /// `fallback_servers` and the node settings, as `darts serve` builds them.
    fn peers(&mut self) {
        let prefix = crate::serve::web_prefix(&self.cfg.service_reverse_proxy);
        let (_, problems) = crate::nodes::Settings::build(self.cfg, &prefix);
        for (key, message) in problems {
            self.error(key, message);
        }
    }

    fn tls(&mut self) {
        let (crt, key) = (&self.cfg.certificate_crt, &self.cfg.certificate_key);
        if crt.is_empty() {
            if !key.is_empty() {
                self.error(
                    "certificate_key",
                    "set without certificate_crt: the service port would stay plain HTTP",
                );
            }
            return;
        }
        if !key.is_empty() {
            if let Err(e) = std::fs::File::open(key) {
                self.error("certificate_key", format!("cannot read {key}: {e}"));
                return;
            }
        }
        let paths = darts_proxy::tls::CertPaths {
            cert: PathBuf::from(crt),
            key: (!key.is_empty()).then(|| PathBuf::from(key)),
        };
        if let Err(e) = darts_proxy::tls::load_certified_key(&paths) {
            let hint = if key.is_empty() {
                " (certificate_key is empty, so the key must be in the same file)"
            } else {
                ""
            };
            self.error("certificate_crt", format!("{e}{hint}"));
        }
    }

    fn mail(&mut self) {
        let cfg = self.cfg;
        for (on, key, what) in [
            (cfg.check_user_mfa, "check_user_mfa", "second-factor codes"),
            (
                cfg.check_user_with_email,
                "check_user_with_email",
                "login links",
            ),
        ] {
            if !on {
                continue;
            }
            let missing: Vec<&str> = [
                ("smtp_server", &cfg.smtp_server),
                ("email_from", &cfg.email_from),
            ]
            .into_iter()
            .filter(|(_, v)| v.trim().is_empty())
            .map(|(k, _)| k)
            .collect();
            if !missing.is_empty() {
                self.error(
                    key,
                    format!("{what} are sent by mail: set {}", missing.join(" and ")),
                );
            }
        }
        if crate::mail::SmtpSecurity::parse(&cfg.smtp_use_ssl).is_none() {
            self.error(
                "smtp_use_ssl",
                format!("{:?}: expected starttls, tls or none", cfg.smtp_use_ssl),
            );
        } else if cfg.smtp_use_ssl.eq_ignore_ascii_case("none")
            && !cfg.smtp_server.is_empty()
            && !is_loopback_host(&cfg.smtp_server)
        {
            self.error(
                "smtp_use_ssl",
                format!(
                    "none sends passwords in clear: only a server on loopback may use it, not {}",
                    self.at("smtp_server")
                ),
            );
        }
        if !matches!(
            cfg.email_method.to_ascii_lowercase().as_str(),
            "auto" | "ssl" | "port" | "simple" | ""
        ) {
            self.error(
                "email_method",
                format!("{:?}: expected auto, SSL, port or simple", cfg.email_method),
            );
        }
        let wants_mail = cfg.check_user_mfa || cfg.check_user_with_email;
        if wants_mail && !cfg.smtp_server.is_empty() && !self.has_errors() {
            if let Err(e) = crate::mail::Mailer::from_config(cfg) {
                self.error("smtp_server", e.to_string());
            }
        }
    }

    fn authentication(&mut self) {
        let cfg = self.cfg;
        let needs = [
            (
                cfg.check_user_with_imap,
                "check_user_with_imap",
                "imap_server",
                &cfg.imap_server,
            ),
            (
                cfg.check_user_with_ldap,
                "check_user_with_ldap",
                "ldap_server",
                &cfg.ldap_server,
            ),
            (
                cfg.check_user_with_smtp,
                "check_user_with_smtp",
                "smtp_server",
                &cfg.smtp_server,
            ),
        ];
        for (on, key, server_key, server) in needs {
            if on && server.trim().is_empty() {
                self.error(key, format!("needs {server_key}"));
            }
        }
        if let Err(e) = crate::auth::imap::ImapSecurity::parse(&cfg.imap_security) {
            self.error("imap_security", auth_reason(&e));
        }
        match crate::auth::ldap::LdapSecurity::parse(&cfg.ldap_security) {
            Err(e) => self.error("ldap_security", auth_reason(&e)),
            Ok(crate::auth::ldap::LdapSecurity::None)
                if !cfg.ldap_server.is_empty() && !is_loopback_host(&cfg.ldap_server) =>
            {
                self.error(
                    "ldap_security",
                    format!(
                        "none sends passwords in clear: only a server on loopback may use it, not {}",
                        self.at("ldap_server")
                    ),
                );
            }
            Ok(_) => {}
        }
        if !cfg.auth_ca_file.is_empty() {
            if let Err(e) = std::fs::File::open(&cfg.auth_ca_file) {
                self.error(
                    "auth_ca_file",
                    format!("cannot read {}: {e}", cfg.auth_ca_file),
                );
            }
        }
        // What the service itself will build: catches the rest (a custom program that is
        // not there, a bad PAM service name, …).
        if !self.has_errors() {
            if let Err(e) = crate::auth::chain::AuthChain::from_config(cfg) {
                let key = match &e {
                    crate::auth::AuthError::Misconfigured { method, .. } => method_key(method),
                    _ => "check_user_custom",
                };
                self.error(key, auth_reason(&e));
            }
        }
        if !crate::api::login::auth_configured(cfg) {
            self.problems.push(Problem::warning(
                None,
                None,
                "no authentication method is set (check_user_*): darts serve accepts any user name and listens on loopback only unless allow_open_access",
            ));
        }
    }

    fn limits(&mut self) {
        let cfg = self.cfg;
        if cfg.snapshot_lifetime_max > 0 && cfg.snapshot_lifetime_max < cfg.snapshot_lifetime {
            self.error(
                "snapshot_lifetime_max",
                format!(
                    "{} is shorter than {} = {}",
                    cfg.snapshot_lifetime_max,
                    self.at("snapshot_lifetime"),
                    cfg.snapshot_lifetime
                ),
            );
        }
        // A per-user limit above the total is redundant, not impossible (the total is
        // the limit then): a warning, and only for a value someone wrote.
        let per_user_set = self.loaded.origin("service_max_session_nb_per_user") != Origin::Default;
        if per_user_set
            && cfg.service_max_session_nb > 0
            && cfg.service_max_session_nb_per_user > cfg.service_max_session_nb
        {
            self.warning(
                "service_max_session_nb_per_user",
                format!(
                    "{} is more than {} = {}",
                    cfg.service_max_session_nb_per_user,
                    self.at("service_max_session_nb"),
                    cfg.service_max_session_nb
                ),
            );
        }
        if !matches!(cfg.qemu_accel.as_str(), "auto" | "kvm" | "tcg" | "hvf") {
            self.error(
                "qemu_accel",
                format!("{:?}: expected auto, kvm, tcg or hvf", cfg.qemu_accel),
            );
        }
    }

    fn layout(&mut self) {
        let cfg = self.cfg;
        for (key, empty) in [
            ("layout_cpu", cfg.layout_cpu.is_empty()),
            ("layout_memory", cfg.layout_memory.is_empty()),
            ("layout_lifetime", cfg.layout_lifetime.is_empty()),
        ] {
            if empty {
                self.error(key, "empty: the landing page would offer no choice");
            }
        }
        if cfg.layout_cpu.contains(&0) {
            self.error("layout_cpu", "0 cores cannot be offered");
        }
        if cfg.layout_memory.iter().any(|m| *m <= 0.0) {
            self.error("layout_memory", "sizes must be more than 0 GB");
        }
        if cfg.layout_level > 2 {
            self.error(
                "layout_level",
                format!("{}: expected 0, 1 or 2", cfg.layout_level),
            );
        }
        if !matches!(cfg.layout_resize.as_str(), "remote" | "scale" | "") {
            self.error(
                "layout_resize",
                format!("{:?}: expected remote or scale", cfg.layout_resize),
            );
        }
        for (key, value) in [
            ("layout_header", &cfg.layout_header),
            ("layout_footer", &cfg.layout_footer),
            ("layout_terms", &cfg.layout_terms),
        ] {
            if value.starts_with('/') && !value.contains('<') {
                if let Err(e) = std::fs::File::open(value) {
                    self.warning(key, format!("cannot read {value}: {e}; shown as text"));
                }
            }
        }
    }

    fn vnc_security(&mut self) {
        let cfg = self.cfg;
        match cfg.qemu_vnc_security.as_str() {
            "password" => {}
            "x509" => {
                let dir = &cfg.qemu_vnc_x509_dir;
                if !dir.is_dir() {
                    self.error(
                        "qemu_vnc_x509_dir",
                        format!(
                            "{} does not exist, and {} is x509 (create it with darts certs init)",
                            dir.display(),
                            self.at("qemu_vnc_security")
                        ),
                    );
                    return;
                }
                let missing: Vec<String> = [
                    "server/ca-cert.pem",
                    "server/server-cert.pem",
                    "server/server-key.pem",
                    "client/ca-cert.pem",
                    "client/client-cert.pem",
                    "client/client-key.pem",
                ]
                .iter()
                .filter(|f| std::fs::File::open(dir.join(f)).is_err())
                .map(|f| (*f).to_owned())
                .collect();
                if !missing.is_empty() {
                    self.error(
                        "qemu_vnc_x509_dir",
                        format!(
                            "cannot read {} in {} (darts certs init writes them)",
                            missing.join(", "),
                            dir.display()
                        ),
                    );
                }
            }
            other => self.error(
                "qemu_vnc_security",
                format!("{other:?}: expected password or x509"),
            ),
        }
    }

    /// `qemu_vnc_listen`: VNC servers on TCP, protected as the network they are on needs.
    fn vnc_listen(&mut self) {
        use crate::session::vnc_port;
        use crate::vm::cmdline::VNC_BASE_PORT;
        let cfg = self.cfg;
        let ip = match vnc_port::listen_ip(cfg) {
            Ok(Some(ip)) => ip,
            Ok(None) => return,
            Err(e) => {
                self.error(
                    "qemu_vnc_listen",
                    format!("{e}: give the address gateways reach this host by, e.g. 10.0.0.5 or 127.0.0.1"),
                );
                return;
            }
        };
        if ip.is_unspecified() {
            self.error(
                "qemu_vnc_listen",
                format!("{ip} means every interface, and gateways cannot connect to it: give the one address they reach this host by"),
            );
            return;
        }
        let first = cfg.service_port_vnc;
        if first < VNC_BASE_PORT {
            self.error(
                "service_port_vnc",
                format!("{first} is below {VNC_BASE_PORT}: QEMU takes a VNC display number, the port minus {VNC_BASE_PORT}"),
            );
        }
        let range = vnc_port::port_range(cfg);
        let ports = u32::from(*range.end()) - u32::from(*range.start()) + 1;
        if cfg.service_max_session_nb > ports {
            self.warning(
                "service_port_vnc",
                format!(
                    "the VNC ports stop at 65535: {first}-65535 holds {ports} ports, fewer than {} = {}",
                    self.at("service_max_session_nb"),
                    cfg.service_max_session_nb
                ),
            );
        }
        if cfg.qemu_vnc_security != "x509" {
            if ip.is_loopback() {
                self.warning(
                    "qemu_vnc_listen",
                    "every local user can connect to the sessions' VNC ports, which only an 8-character VNC password protects: set qemu_vnc_security = \"x509\" (darts certs init), or leave it empty for a unix socket per session",
                );
            } else {
                self.error(
                    "qemu_vnc_listen",
                    format!("{ip} is reachable from other hosts, and a VNC password alone (8 characters) does not protect a desktop on a network: set qemu_vnc_security = \"x509\" (darts certs init) or listen on 127.0.0.1"),
                );
            }
            return;
        }
        let cert = cfg.qemu_vnc_x509_dir.join("server/server-cert.pem");
        // An unreadable certificate is reported by vnc_security.
        if let Ok(false) = crate::certs::issued_for_ip(&cert, ip) {
            self.error(
                "qemu_vnc_listen",
                format!(
                    "{} is not issued for {ip}, the address darts and other gateways check it against: make certificates with darts certs init --server-name {ip}",
                    cert.display()
                ),
            );
        }
    }

    fn directories(&mut self) {
        let cfg = self.cfg;
        // darts creates these at start; the others must be provided.
        let created = ["dir_snapshots", "dir_cfg", "dir_service"];
        let dirs: [(&str, &Path); 7] = [
            ("dir_machines", &cfg.dir_machines),
            ("dir_snapshots", &cfg.dir_snapshots),
            ("dir_cfg", &cfg.dir_cfg),
            ("dir_service", &cfg.dir_service),
            ("dir_novnc", &cfg.dir_novnc),
            ("dir_html", &cfg.dir_html),
            ("dir_etc", &cfg.dir_etc),
        ];
        for (key, dir) in dirs {
            match std::fs::metadata(dir) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if !created.contains(&key) {
                        self.warning(key, format!("{} does not exist", dir.display()));
                    }
                }
                Err(e) => self.error(key, format!("{}: {e}", dir.display())),
                Ok(m) if !m.is_dir() => {
                    self.error(key, format!("{} is not a directory", dir.display()))
                }
                Ok(_) => {
                    if let Err(e) = std::fs::read_dir(dir) {
                        self.error(key, format!("cannot read {}: {e}", dir.display()));
                    } else if key == "dir_novnc" && !dir.join("vnc.html").is_file() {
                        self.warning(key, format!("{} has no vnc.html", dir.display()));
                    }
                }
            }
        }
        for dir in &cfg.dir_mounts {
            if !dir.is_dir() {
                self.warning(
                    "dir_mounts",
                    format!(
                        "{} is not a directory: it will not be shared",
                        dir.display()
                    ),
                );
            }
        }
    }

    /// `token_redis`: a source darts can read, and the secret the gateways share.
    fn token_registry(&mut self) {
        let cfg = self.cfg;
        if cfg.token_redis.trim().is_empty() {
            if !cfg.token_redis_key.is_empty() {
                self.warning("token_redis_key", "unused: token_redis is empty");
            }
            return;
        }
        if let Err(e) = darts_proxy::token::redis::RedisSource::parse(&cfg.token_redis) {
            self.error("token_redis", e.to_string());
        }
        if cfg.token_redis_key.is_empty() {
            self.error(
                "token_redis_key",
                format!(
                    "needed with {}: a file with a secret of 32 bytes or more that every gateway holds (the sessions' VNC passwords are sealed under it in Redis)",
                    self.at("token_redis")
                ),
            );
        } else if let Err(e) =
            darts_proxy::token::redis::SealKey::from_file(Path::new(&cfg.token_redis_key))
        {
            self.error("token_redis_key", e.to_string());
        }
        if cfg.token_redis_resync == 0 {
            self.error("token_redis_resync", "must be at least 1 second");
        }
    }

    fn web(&mut self) {
        let cfg = self.cfg;
        let url = cfg.service_url.trim();
        if !url.is_empty() && !url.starts_with("http://") && !url.starts_with("https://") {
            self.error(
                "service_url",
                format!("{url:?}: expected an http:// or https:// address"),
            );
        }
        // The gateway's own parser: what it refuses here is what it would not trust.
        let bad: Vec<&String> = cfg
            .service_trusted_proxies
            .iter()
            .filter(|p| darts_proxy::forwarded::TrustedProxies::parse(&[p.as_str()]).is_err())
            .collect();
        if !bad.is_empty() {
            self.error(
                "service_trusted_proxies",
                format!("not IP addresses or networks (127.0.0.1, ::1, 10.0.0.0/8): {bad:?}"),
            );
        }
        // One page load takes several connections and each viewer one more; users
        // behind one NAT share an address.
        let per_ip = cfg.service_max_connections_per_ip;
        if per_ip > 0 && per_ip < MIN_CONNECTIONS_PER_IP {
            self.warning(
                "service_max_connections_per_ip",
                format!(
                    "{per_ip} is below {MIN_CONNECTIONS_PER_IP}: a browser holds several pending connections per page and users behind one NAT share an address, so their connections would push each other out"
                ),
            );
        }
    }

    fn has_errors(&self) -> bool {
        self.problems.iter().any(Problem::is_error)
    }
}

/// Below this, `service_max_connections_per_ip` refuses ordinary browsers.
const MIN_CONNECTIONS_PER_IP: usize = 16;

/// The key that turns on an authentication method.
fn method_key(method: &str) -> &'static str {
    match method {
        "local" | "pam" => "check_user_with_local",
        "imap" => "check_user_with_imap",
        "smtp" => "check_user_with_smtp",
        "ldap" => "check_user_with_ldap",
        "email" => "check_user_with_email",
        _ => "check_user_custom",
    }
}

/// An authentication error's reason, without the method prefix the key already says.
fn auth_reason(e: &crate::auth::AuthError) -> String {
    match e {
        crate::auth::AuthError::Misconfigured { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
