//! The service configuration, under the original qemu-web-desktop key names so that an
//! operator's settings carry over. Read from TOML; every key has the original's default
//! except the directories, which move from `/tmp` and `qemu-web-desktop` to darts' own
//! state directory (sessions must survive a reboot of the host's `/tmp` cleaner).
//!
//! Where values come from: `/etc/darts/config.toml` (or `-c FILE`), then `config.d/*.toml`
//! beside it in name order, then `--key=value` on the command line, later layers winning
//! key by key ([`layers`]). [`check`] finds every problem with its file, line and key;
//! [`keys`] is the one table of keys, their documentation and whether a change needs a
//! restart; [`show`] prints the effective values and their origins; [`import`] converts
//! the original's `config.pl`.

pub mod check;
pub mod import;
pub mod keys;
pub mod layers;
pub mod show;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

pub use layers::{ConfigSource, Loaded, Origin};

/// Errors reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// Unknown keys or values of the wrong type, each with its file, line and key.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<check::Problem>),
}

/// Every option darts understands. Field names are the original's `$config{...}` keys;
/// [`keys::KEYS`] documents each one. `Debug` hides secrets (`email_passwd`, …).
#[derive(Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    // Directories.
    /// Where the machine images (or symlinks to them) live.
    pub dir_machines: PathBuf,
    /// Per-session working directories (overlay disks, scripts).
    pub dir_snapshots: PathBuf,
    /// Session state (one JSON per session). The original used `/tmp`.
    pub dir_cfg: PathBuf,
    /// Service state root (catalogue downloads, node keys).
    pub dir_service: PathBuf,
    /// Host directories shared with every guest over 9p as `host_<last component>`.
    #[serde(deserialize_with = "one_or_many")]
    pub dir_mounts: Vec<PathBuf>,
    /// The noVNC client served to browsers.
    pub dir_novnc: PathBuf,
    /// The service's own pages (landing, connect, manage) and their assets.
    pub dir_html: PathBuf,
    /// Catalogue: `machines.conf` and `config.d/*.ini` live here.
    pub dir_etc: PathBuf,

    // Service.
    pub service_port: u16,
    /// First TCP port of the sessions' VNC servers when `qemu_vnc_listen` is set; the
    /// range holds `service_max_session_nb` ports (up to 65535 when that is 0).
    pub service_port_vnc: u16,
    pub service_reverse_proxy: String,
    pub service_proxy: String,
    pub service_max_session_nb: u32,
    pub service_max_session_nb_per_user: u32,
    pub service_max_load: f64,
    pub service_max_cpu_fraction_nb_per_user: f64,
    pub service_max_mem_fraction_nb_per_user: f64,
    pub service_max_gpu_nb_per_user: u32,
    pub service_max_script_length: usize,
    /// Audit log, one JSON line per event (`src/audit.rs`). Empty: `/var/log/darts/audit.log`
    /// when writable, else `<dir_service>/audit.log`; `none`: off.
    pub service_logfile: String,
    /// The original's plain START/STOP/ERROR lines, for scripts that read them (empty: off).
    pub service_logfile_text: String,
    /// Size in bytes at which both logs are rotated (0: never).
    pub service_logfile_max_size: u64,
    /// Rotated files kept (`audit.log.1` is the newest).
    pub service_logfile_keep: u32,

    // Sessions.
    /// Default cores per session.
    pub snapshot_alloc_cpu: u32,
    /// Default memory per session, GB.
    pub snapshot_alloc_mem: f64,
    /// Blank disk size for ISO sessions, GB.
    pub snapshot_alloc_disk: u32,
    /// Session lifetime in seconds; extend adds 24 h, never past `snapshot_lifetime_max`.
    pub snapshot_lifetime: u64,
    /// Longest a session may live with extensions, seconds (0: 4 × `snapshot_lifetime`).
    pub snapshot_lifetime_max: u64,
    /// Run on the master image itself (administration of images).
    #[serde(deserialize_with = "flexible_bool")]
    pub snapshot_use_master: bool,
    /// Every session is one-shot (and the form shows the checkbox).
    #[serde(deserialize_with = "flexible_bool")]
    pub oneshot: bool,
    /// Default machine.
    pub machine: String,
    /// Accepted for compatibility; darts waits for QMP and VNC instead of sleeping.
    pub boot_delay: u64,
    /// Stopping a session: seconds to wait for the guest to power off, then for QEMU to
    /// quit, before it is killed.
    pub session_stop_grace: u64,

    // QEMU.
    pub qemu_exec: String,
    pub qemu_exec_options: String,
    /// `auto` (KVM when it really works, else TCG), `kvm`, `tcg`, `hvf`.
    pub qemu_accel: String,
    /// VNC security between darts and QEMU: `password` (default) or `x509`.
    pub qemu_vnc_security: String,
    /// Directory of `ca-cert.pem`, `server-cert.pem`/`server-key.pem` (QEMU side) and
    /// `client-cert.pem`/`client-key.pem` (darts side), as `darts certs init` writes them.
    pub qemu_vnc_x509_dir: PathBuf,
    /// IP address on which each session's VNC server listens on TCP (a port from
    /// `service_port_vnc`), so gateways on other hosts can reach it; off loopback it needs
    /// `qemu_vnc_security = "x509"`. Empty: a unix socket in the session directory.
    pub qemu_vnc_listen: String,
    #[serde(deserialize_with = "one_or_many")]
    pub config_script: Vec<String>,

    // GPUs.
    #[serde(deserialize_with = "one_or_many_split")]
    pub gpu_blacklist: Vec<String>,
    pub gpu_model: String,
    pub gpu_name: String,
    pub gpu_pci: String,

    // Users.
    #[serde(deserialize_with = "one_or_many")]
    pub user_admin: Vec<String>,

    // Authentication, tried in this order until one succeeds (then `check_user_custom`).
    /// A one-time login link mailed to the address typed as user name.
    #[serde(deserialize_with = "flexible_bool")]
    pub check_user_with_email: bool,
    /// PAM on this host (service `pam_service`). Never SSH to a host from the request.
    #[serde(deserialize_with = "flexible_bool")]
    pub check_user_with_local: bool,
    #[serde(deserialize_with = "flexible_bool")]
    pub check_user_with_imap: bool,
    #[serde(deserialize_with = "flexible_bool")]
    pub check_user_with_smtp: bool,
    #[serde(deserialize_with = "flexible_bool")]
    pub check_user_with_ldap: bool,
    /// An external command: gets the login request as JSON on stdin, answers SUCCESS or
    /// FAILED on stdout (the original's Perl hook, as a program).
    pub check_user_custom: String,
    /// A second factor sent by e-mail, required before the desktop opens.
    #[serde(deserialize_with = "flexible_bool")]
    pub check_user_mfa: bool,
    /// PAM service name for `check_user_with_local`.
    pub pam_service: String,
    pub imap_server: String,
    pub imap_port: u16,
    /// `tls` (IMAPS, default) or `starttls`.
    pub imap_security: String,
    pub smtp_server: String,
    pub smtp_port: u16,
    /// `starttls` (default) or `tls` (SMTPS); `none` only for a server on loopback.
    pub smtp_use_ssl: String,
    pub ldap_server: String,
    pub ldap_port: u16,
    /// `dc=<ldap_domain>` is the search base unless `ldap_base_dn` is set.
    pub ldap_domain: String,
    pub ldap_base_dn: String,
    /// `ldaps`, `starttls` (default) or `none` (loopback only).
    pub ldap_security: String,
    /// Search filter; `{user}` is replaced by the escaped login.
    pub ldap_filter: String,
    /// Bind DN template used instead of a search when set, e.g. `uid={user},ou=people,dc=x`.
    pub ldap_bind_template: String,
    /// CA file trusted for the IMAP, SMTP and LDAP servers besides the system's.
    pub auth_ca_file: String,
    /// Servers whose certificate is not verified (host names); for tests and legacy only.
    #[serde(deserialize_with = "one_or_many_split")]
    pub auth_insecure_servers: Vec<String>,
    /// Sender of mails (login links, second factor).
    pub email_from: String,
    pub email_passwd: String,
    pub email_method: String,

    // TLS for the service port.
    pub certificate_crt: String,
    pub certificate_key: String,

    // Landing page.
    pub layout_cpu: Vec<u32>,
    pub layout_memory: Vec<f64>,
    pub layout_lifetime: Vec<u32>,
    #[serde(deserialize_with = "flexible_bool")]
    pub layout_gpu: bool,
    pub layout_level: u8,
    pub layout_title: String,
    pub layout_header: String,
    pub layout_footer: String,
    pub layout_resize: String,
    /// Terms and conditions shown next to Create: a file path or an HTML string (empty:
    /// the built-in text).
    pub layout_terms: String,

    // Web service.
    /// Public address of the service, e.g. `https://server/darts`: the base of mailed
    /// login links and of session links. Empty: session links follow the request's
    /// `Host`, and mailed links use the listening address.
    pub service_url: String,
    /// Reverse proxies (IP addresses) whose `X-Forwarded-For` names the client, for the
    /// login rate limits and the session records.
    #[serde(deserialize_with = "one_or_many_split")]
    pub service_trusted_proxies: Vec<String>,
    /// Connections from `service_trusted_proxies` may start with a PROXY protocol header
    /// (v1 or v2) naming the client, as a TCP proxy sends it (nginx `stream` with
    /// `proxy_protocol on`, HAProxy `send-proxy`).
    #[serde(deserialize_with = "flexible_bool")]
    pub service_proxy_protocol: bool,
    /// Pending connections (accepted, not yet a session with a valid token) one client
    /// address may hold on `service_port` (0: no limit); a newer one pushes out the
    /// oldest. The address is the one a trusted proxy's PROXY header names, else the TCP
    /// peer's (trusted proxies themselves are not counted); IPv6 per /64.
    pub service_max_connections_per_ip: usize,
    /// Websocket sessions one token (session link) may hold at once (0: no limit).
    pub service_max_viewers_per_token: usize,
    /// Splice target → browser bytes (zero-copy) between plain sockets; off copies them.
    #[serde(deserialize_with = "flexible_bool")]
    pub service_splice: bool,
    /// Serve on a non-loopback address although no authenticator is configured (anyone
    /// may then start sessions under any name).
    #[serde(deserialize_with = "flexible_bool")]
    pub allow_open_access: bool,
    /// How long a web login lasts, seconds.
    pub login_lifetime: u64,
    /// Failed logins allowed per user and per client address: the last of them locks
    /// them out for 1 s, each further one for twice as long (2 s, 4 s, … up to 15 minutes).
    /// Attempts under way count as failures until answered.
    pub login_max_failures: u32,
    /// Web logins one user may hold at once; opening one more closes that user's oldest.
    pub login_max_per_user: usize,

    // Peers.
    #[serde(deserialize_with = "one_or_many_split")]
    pub fallback_servers: Vec<String>,
    /// This node's name among its peers (hop lists, the Manage page); default: the host name.
    pub node_name: String,
    /// File holding the secret shared by the nodes (at least 32 bytes): signs every
    /// node-to-node request. Without it this node neither forwards nor accepts.
    pub fallback_key: String,
    /// CA certificate(s) that peers' HTTPS certificates must chain to, besides the
    /// system's roots.
    pub fallback_ca: String,
    /// Nodes allowed to create and manage sessions here on behalf of their users: node
    /// names, addresses or networks; empty: any node holding the key.
    #[serde(deserialize_with = "one_or_many_split")]
    pub fallback_accept_from: Vec<String>,
    /// Bound on asking a peer for its status or its sessions, seconds.
    pub fallback_timeout: u64,
    /// Bound on a peer creating a session, seconds.
    pub fallback_create_timeout: u64,
    /// How long a peer's status is reused, seconds.
    pub fallback_status_cache: u64,

    // Shared token registry.
    /// Redis shared by the gateways behind one load balancer: each publishes its sessions'
    /// routes there and looks up the tokens it does not know, so any gateway routes any
    /// session. websockify's `host[:port[:db[:password[:namespace]]]]` or a `redis://`,
    /// `rediss://`, `redis+unix://` or `unix:` URL (namespace as `?namespace=NAME`).
    /// Empty: no registry.
    pub token_redis: String,
    /// File with the secret (32 bytes or more) every gateway of `token_redis` holds: the
    /// sessions' VNC passwords are sealed under it in Redis. Needed with `token_redis`.
    pub token_redis_key: String,
    /// How often this node publishes all its routes again, seconds; an entry not
    /// published again lives three such periods (or until its session's end).
    pub token_redis_resync: u64,
}

impl Default for Config {
    fn default() -> Self {
        let state = PathBuf::from("/var/lib/darts");
        Self {
            dir_machines: state.join("machines"),
            dir_snapshots: state.join("snapshots"),
            dir_cfg: state.join("sessions"),
            dir_service: state,
            dir_mounts: vec!["/mnt".into(), "/media".into()],
            dir_novnc: "/usr/share/darts/novnc".into(),
            dir_html: "/usr/share/darts/html".into(),
            dir_etc: "/etc/darts".into(),
            service_port: 6080,
            service_port_vnc: 5901,
            service_reverse_proxy: "/darts".into(),
            service_proxy: String::new(),
            service_max_session_nb: 10,
            service_max_session_nb_per_user: 3,
            service_max_load: 0.8,
            service_max_cpu_fraction_nb_per_user: 0.3,
            service_max_mem_fraction_nb_per_user: 0.3,
            service_max_gpu_nb_per_user: 1,
            service_max_script_length: 65535,
            service_logfile: String::new(),
            service_logfile_text: String::new(),
            service_logfile_max_size: 10 * 1024 * 1024,
            service_logfile_keep: 5,
            snapshot_alloc_cpu: 1,
            snapshot_alloc_mem: 4.0,
            snapshot_alloc_disk: 30,
            snapshot_lifetime: 4 * 86400,
            snapshot_lifetime_max: 0,
            snapshot_use_master: false,
            oneshot: false,
            machine: "-".into(),
            boot_delay: 5,
            session_stop_grace: 10,
            qemu_exec: "auto".into(),
            qemu_exec_options: "auto".into(),
            qemu_accel: "auto".into(),
            qemu_vnc_security: "password".into(),
            qemu_vnc_x509_dir: "/etc/darts/vnc-tls".into(),
            qemu_vnc_listen: String::new(),
            config_script: Vec::new(),
            gpu_blacklist: Vec::new(),
            gpu_model: "auto".into(),
            gpu_name: "auto".into(),
            gpu_pci: "auto".into(),
            user_admin: Vec::new(),
            check_user_with_email: false,
            check_user_with_local: false,
            check_user_with_imap: false,
            check_user_with_smtp: false,
            check_user_with_ldap: false,
            check_user_custom: String::new(),
            check_user_mfa: false,
            pam_service: "login".into(),
            imap_server: String::new(),
            imap_port: 993,
            imap_security: "tls".into(),
            smtp_server: String::new(),
            smtp_port: 587,
            smtp_use_ssl: "starttls".into(),
            ldap_server: String::new(),
            ldap_port: 389,
            ldap_domain: "EXP".into(),
            ldap_base_dn: String::new(),
            ldap_security: "starttls".into(),
            ldap_filter: "(|(uid={user})(cn={user})(mail={user}))".into(),
            ldap_bind_template: String::new(),
            auth_ca_file: String::new(),
            auth_insecure_servers: Vec::new(),
            email_from: String::new(),
            email_passwd: String::new(),
            email_method: "auto".into(),
            certificate_crt: String::new(),
            certificate_key: String::new(),
            layout_cpu: vec![2, 4, 8],
            layout_memory: vec![4.0, 8.0],
            layout_lifetime: vec![1, 2, 4],
            layout_gpu: false,
            layout_level: 1,
            layout_title: "Data Analysis Remote Treatment Service".into(),
            layout_header: String::new(),
            layout_footer: String::new(),
            layout_resize: "remote".into(),
            layout_terms: String::new(),
            service_url: String::new(),
            service_trusted_proxies: Vec::new(),
            service_proxy_protocol: false,
            service_max_connections_per_ip: darts_proxy::config::DEFAULT_MAX_CONNECTIONS_PER_IP,
            service_max_viewers_per_token: darts_proxy::config::DEFAULT_MAX_VIEWERS_PER_TOKEN,
            service_splice: true,
            allow_open_access: false,
            login_lifetime: 8 * 3600,
            login_max_failures: 5,
            login_max_per_user: 20,
            fallback_servers: Vec::new(),
            node_name: String::new(),
            fallback_key: String::new(),
            fallback_ca: String::new(),
            fallback_accept_from: Vec::new(),
            fallback_timeout: 3,
            fallback_create_timeout: 120,
            fallback_status_cache: 5,
            token_redis: String::new(),
            token_redis_key: String::new(),
            token_redis_resync: 30,
        }
    }
}

impl Config {
    /// Reads one TOML file. Unknown keys are errors, naming the key.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// The effective configuration: `file` (or `/etc/darts/config.toml` when it exists and
    /// no file is named, or the defaults), then `config.d/*.toml` beside it in name order,
    /// then `key=value` overrides from the command line. An override's value is read as
    /// TOML when it parses (`8`, `true`, `[2,4]`), else as a string, so
    /// `--machine=demo.qcow2` needs no quotes. Unknown keys and wrong types are errors
    /// naming file, line and key; combinations are checked by [`check::check`].
    pub fn from_layers(
        file: Option<&Path>,
        overrides: &[(String, String)],
    ) -> Result<Self, ConfigError> {
        Loaded::load(&ConfigSource::new(file, overrides)).map(|l| l.config)
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Longest lifetime a session may reach with extensions, seconds.
    pub fn lifetime_cap(&self) -> u64 {
        if self.snapshot_lifetime_max > 0 {
            self.snapshot_lifetime_max
        } else {
            self.snapshot_lifetime.saturating_mul(4)
        }
    }

    /// Whether `user` is an administrator.
    pub fn is_admin(&self, user: &str) -> bool {
        !user.is_empty() && self.user_admin.iter().any(|a| a == user)
    }
}

impl Config {
    /// Every key and its value, as TOML (the shape `config show` prints).
    pub fn to_table(&self) -> toml::Table {
        match toml::Value::try_from(self) {
            Ok(toml::Value::Table(t)) => t,
            // Only a path that is not UTF-8 can fail; such a value is left out.
            _ => toml::Table::new(),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Config");
        for (key, value) in &self.to_table() {
            match show::redacted(key, value) {
                Some(hidden) => s.field(key, &format_args!("{hidden}")),
                None => s.field(key, &format_args!("{value}")),
            };
        }
        s.finish()
    }
}

/// Where the service looks for its configuration when none is named.
pub const DEFAULT_FILE: &str = "/etc/darts/config.toml";

/// A command-line value as TOML: numbers, booleans and arrays keep their type.
pub(crate) fn override_value(raw: &str) -> toml::Value {
    format!("x = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("x"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

/// Splits `key=value` (a leading `--` is allowed), as the original's command line took them.
pub fn parse_override(arg: &str) -> Option<(String, String)> {
    let arg = arg.strip_prefix("--").unwrap_or(arg);
    let (k, v) = arg.split_once('=')?;
    (!k.is_empty()).then(|| (k.replace('-', "_"), v.to_owned()))
}

/// Booleans as TOML writes them, or as the original's configuration did: `1`/`0`,
/// `"yes"`/`"no"`, `"on"`/`"off"` (so `--snapshot_use_master=1` works as it did).
fn flexible_bool<'de, D>(d: D) -> Result<bool, D::Error>
where
    D: Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flexible {
        Bool(bool),
        Int(i64),
        Text(String),
    }
    match Flexible::deserialize(d)? {
        Flexible::Bool(b) => Ok(b),
        Flexible::Int(0) => Ok(false),
        Flexible::Int(1) => Ok(true),
        Flexible::Text(t) => match t.to_ascii_lowercase().as_str() {
            "1" | "yes" | "on" | "true" => Ok(true),
            "0" | "no" | "off" | "false" | "" => Ok(false),
            _ => Err(serde::de::Error::custom(format!(
                "{t:?} is not a boolean (true/false, 1/0, yes/no)"
            ))),
        },
        Flexible::Int(n) => Err(serde::de::Error::custom(format!(
            "{n} is not a boolean (true/false, 1/0)"
        ))),
    }
}

/// Accepts `key = "a"` as well as `key = ["a", "b"]` (the original allowed both).
fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        One(T),
        Many(Vec<T>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(v) => vec![v],
        OneOrMany::Many(v) => v,
    })
}

/// Like [`one_or_many`], and a single string is split on commas and spaces
/// (`gpu_blacklist = "06:05.0,00:1b.0"`, `fallback_servers = "a, b"`).
fn one_or_many_split<'de, D>(d: D) -> Result<Vec<String>, D::Error>
where
    D: Deserializer<'de>,
{
    let items: Vec<String> = one_or_many(d)?;
    Ok(items
        .iter()
        .flat_map(|s| s.split([',', ' ', '\t']))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_originals() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.service_max_session_nb, 10);
        assert_eq!(c.snapshot_lifetime, 345600);
        assert_eq!(c.layout_cpu, vec![2, 4, 8]);
        assert_eq!(
            c.dir_mounts,
            vec![PathBuf::from("/mnt"), PathBuf::from("/media")]
        );
    }

    #[test]
    fn single_strings_and_lists() {
        let c = Config::parse(
            "gpu_blacklist = \"06:05.0,00:1b.0 01:00.0\"\nconfig_script = \"exec: true\"\nuser_admin = [\"root\", \"ops\"]",
        )
        .unwrap();
        assert_eq!(c.gpu_blacklist, vec!["06:05.0", "00:1b.0", "01:00.0"]);
        assert_eq!(c.config_script, vec!["exec: true"]);
        assert!(c.is_admin("ops"));
        assert!(!c.is_admin(""));
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_named() {
        let e = Config::parse("service_max_sesion_nb = 3").unwrap_err();
        assert!(e.contains("service_max_sesion_nb"), "{e}");
        let e = Config::parse("service_max_session_nb = \"ten\"").unwrap_err();
        assert!(e.contains("service_max_session_nb"), "{e}");
    }

    #[test]
    fn overrides_keep_types_and_win() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "service_max_session_nb = 4\nmachine = \"a.iso\"").unwrap();
        let o = vec![
            parse_override("--machine=demo.qcow2").unwrap(),
            parse_override("snapshot_alloc_mem=8").unwrap(),
            parse_override("--layout-cpu=[1,2]").unwrap(),
        ];
        let c = Config::from_layers(Some(&f), &o).unwrap();
        assert_eq!(c.machine, "demo.qcow2");
        assert_eq!(c.snapshot_alloc_mem, 8.0);
        assert_eq!(c.service_max_session_nb, 4);
        assert_eq!(c.layout_cpu, vec![1, 2]);
        let bad = vec![parse_override("--no_such_key=1").unwrap()];
        let e = Config::from_layers(Some(&f), &bad).unwrap_err().to_string();
        assert!(e.contains("no_such_key"), "{e}");
    }

    #[test]
    fn booleans_as_the_original_wrote_them() {
        let c = Config::parse("snapshot_use_master = 1\noneshot = \"yes\"\nlayout_gpu = false")
            .unwrap();
        assert!(c.snapshot_use_master && c.oneshot && !c.layout_gpu);
        let e = Config::parse("oneshot = 2").unwrap_err();
        assert!(e.contains("oneshot"), "{e}");
    }

    #[test]
    fn lifetime_cap() {
        let c = Config::parse("snapshot_lifetime = 100").unwrap();
        assert_eq!(c.lifetime_cap(), 400);
        let c = Config::parse("snapshot_lifetime = 100\nsnapshot_lifetime_max = 150").unwrap();
        assert_eq!(c.lifetime_cap(), 150);
    }
}
