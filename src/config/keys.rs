//! The one table of configuration keys: name, one line of documentation, and whether a
//! change applies to the running service. Defaults are never written here: they come from
//! `Config::default()`, so `darts config keys`, `darts serve --help` and the service cannot
//! disagree. A test checks that the table and the fields of `Config` are the same set.

use super::Config;

/// Whether a running `darts serve` can take a new value without a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Apply {
    /// Applied on reload (file change or SIGHUP), sessions kept.
    Live,
    /// Read once at start (listening socket, state directories, TLS file names): a new
    /// value is reported as "needs a restart" and the running one stays.
    Restart,
}

/// One configuration key.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub name: &'static str,
    pub doc: &'static str,
    pub apply: Apply,
}

const fn live(name: &'static str, doc: &'static str) -> Key {
    Key {
        name,
        doc,
        apply: Apply::Live,
    }
}

const fn restart(name: &'static str, doc: &'static str) -> Key {
    Key {
        name,
        doc,
        apply: Apply::Restart,
    }
}

/// Every key, in the order `config keys` and `config show` print them.
pub const KEYS: &[Key] = &[
    // Directories.
    live("dir_machines", "Machine images (or symlinks to them) offered in the catalogue."),
    live("dir_snapshots", "Per-session working directories (overlay disks, scripts)."),
    restart("dir_cfg", "Session state, one JSON record per session (the original used /tmp)."),
    restart("dir_service", "Service state root: catalogue downloads and the control socket darts.sock."),
    live("dir_mounts", "Host directories shared with every guest over 9p as host_<last component>."),
    restart("dir_novnc", "The noVNC client served to browsers (must hold vnc.html)."),
    live("dir_html", "The service's own pages (landing, connect, manage) and their assets."),
    live("dir_etc", "Catalogue directory: machines.conf and config.d/*.ini."),
    // Service.
    restart("service_port", "Port of the service: pages, API, noVNC and every session's websocket."),
    live("service_port_vnc", "First TCP port of the sessions' VNC servers with qemu_vnc_listen (at least 5900); the range holds service_max_session_nb ports."),
    restart("service_reverse_proxy", "URL prefix, e.g. /darts as in the Apache block; \"\" or \":port\" serve at the root."),
    live("service_proxy", "Outbound HTTP proxy for downloads and boot scripts, e.g. http://proxy:3128/."),
    live("service_max_session_nb", "Most sessions at once on this server (0: no limit)."),
    live("service_max_session_nb_per_user", "Most sessions one user may hold (0: no limit)."),
    live("service_max_load", "Refuse new sessions above this load per core, 0-1 (outside (0,1): off)."),
    live("service_max_cpu_fraction_nb_per_user", "Share of the cores one user may hold, 0-1 (outside (0,1): off)."),
    live("service_max_mem_fraction_nb_per_user", "Share of the available memory one user may hold, 0-1 (outside (0,1): off)."),
    live("service_max_gpu_nb_per_user", "Most GPUs one user may hold (0: no limit)."),
    live("service_max_script_length", "Longest boot script accepted, bytes."),
    restart("service_logfile", "Audit log, one JSON line per event (empty: /var/log/darts/audit.log if writable, else in dir_service; none: off)."),
    restart("service_logfile_text", "The original's START/STOP/ERROR session lines, in this file (empty: off)."),
    restart("service_logfile_max_size", "Size in bytes at which the logs are rotated (0: never)."),
    restart("service_logfile_keep", "Rotated log files kept."),
    // Sessions.
    live("snapshot_alloc_cpu", "Default cores per session."),
    live("snapshot_alloc_mem", "Default memory per session, GB."),
    live("snapshot_alloc_disk", "Blank disk size for ISO sessions, GB."),
    live("snapshot_lifetime", "Session lifetime, seconds; extending adds 24 h."),
    live("snapshot_lifetime_max", "Longest a session may live with extensions, seconds (0: 4 x snapshot_lifetime)."),
    live("snapshot_use_master", "Allow administrators to run a session on the master image itself."),
    live("oneshot", "Every session is one-shot: it ends when its one connection closes."),
    live("machine", "Default machine of the landing page."),
    live("boot_delay", "Accepted for compatibility; darts waits for QMP and VNC instead of sleeping."),
    live("session_stop_grace", "Seconds to wait for the guest to power off, then for QEMU to quit, before a kill."),
    // QEMU.
    live("qemu_exec", "QEMU binary, or auto for the host's architecture."),
    live("qemu_exec_options", "Extra QEMU options, or auto."),
    live("qemu_accel", "Accelerator: auto (KVM when it really works, else TCG), kvm, tcg or hvf."),
    live("qemu_vnc_security", "VNC between darts and QEMU: password, or x509 (VeNCrypt, see darts certs init)."),
    live("qemu_vnc_x509_dir", "Directory written by darts certs init: server/ for QEMU, client/ for darts."),
    live("qemu_vnc_listen", "IP address where new sessions' VNC servers listen on TCP, for gateways on other hosts (off loopback needs qemu_vnc_security = x509); empty: a unix socket per session."),
    live("config_script", "Boot scripts: URL, path, exec:, virt-customize:, qemu-system-*:, each optionally if(EXPR):."),
    // GPUs.
    live("gpu_blacklist", "PCI addresses of GPUs never given to sessions, e.g. \"06:05.0,00:1b.0\"."),
    live("gpu_model", "GPU models offered, or auto (from lspci)."),
    live("gpu_name", "GPU names offered, or auto (from lspci)."),
    live("gpu_pci", "GPU PCI addresses offered, or auto (from lspci)."),
    // Users.
    live("user_admin", "Administrators: see and stop every session, run on master images."),
    // Authentication.
    live("check_user_with_email", "Log in with a one-time link mailed to the address typed as user name."),
    live("check_user_with_local", "Check passwords with PAM on this host (service pam_service)."),
    live("check_user_with_imap", "Check passwords against imap_server."),
    live("check_user_with_smtp", "Check passwords with SMTP AUTH against smtp_server."),
    live("check_user_with_ldap", "Check passwords with an LDAP bind against ldap_server."),
    live("check_user_custom", "A program with the last word: gets the login as JSON on stdin, prints SUCCESS or FAILED."),
    live("check_user_mfa", "Require a second factor: a code mailed to the user (needs smtp_server, email_from)."),
    live("pam_service", "PAM service name for check_user_with_local."),
    live("imap_server", "IMAP server for check_user_with_imap."),
    live("imap_port", "IMAP port."),
    live("imap_security", "IMAP protection: tls (IMAPS) or starttls."),
    live("smtp_server", "SMTP server for mail and check_user_with_smtp."),
    live("smtp_port", "SMTP port."),
    live("smtp_use_ssl", "SMTP protection: starttls, tls, or none (loopback only)."),
    live("ldap_server", "LDAP server for check_user_with_ldap."),
    live("ldap_port", "LDAP port."),
    live("ldap_domain", "LDAP search base dc=<ldap_domain>, unless ldap_base_dn is set."),
    live("ldap_base_dn", "LDAP search base (empty: from ldap_domain)."),
    live("ldap_security", "LDAP protection: ldaps, starttls, or none (loopback only)."),
    live("ldap_filter", "LDAP search filter; {user} is the escaped login."),
    live("ldap_bind_template", "Bind DN used instead of a search, e.g. uid={user},ou=people,dc=example."),
    live("auth_ca_file", "CA file trusted for the IMAP, SMTP and LDAP servers besides the system's."),
    live("auth_insecure_servers", "Servers whose certificate is not verified (tests and legacy only)."),
    live("email_from", "Sender of mails (login links, second-factor codes)."),
    live("email_passwd", "Password of email_from on smtp_server (empty: no SMTP AUTH)."),
    live("email_method", "How mail is sent: auto, SSL, port or simple."),
    // TLS.
    restart("certificate_crt", "PEM certificate for HTTPS on the service port (a changed file is reloaded; a new name needs a restart)."),
    restart("certificate_key", "PEM key of certificate_crt (empty: in the certificate file)."),
    // Landing page.
    live("layout_cpu", "Core counts offered on the landing page."),
    live("layout_memory", "Memory sizes offered on the landing page, GB."),
    live("layout_lifetime", "Lifetimes offered on the landing page, days."),
    live("layout_gpu", "Offer a GPU on the landing page."),
    live("layout_level", "Detail of the connect page: 0 minimal, 1 normal, 2 verbose."),
    live("layout_title", "Title of the pages."),
    live("layout_header", "Page header: a file path or an HTML string."),
    live("layout_footer", "Page footer: a file path or an HTML string."),
    live("layout_resize", "noVNC resize mode: remote or scale."),
    live("layout_terms", "Terms shown next to Create: a file path or an HTML string (empty: built-in text)."),
    // Web service.
    live("service_url", "Public address, e.g. https://server/darts: base of session and mailed links."),
    restart("service_trusted_proxies", "Reverse proxies (IP addresses or networks, e.g. 127.0.0.1, 10.0.0.0/8) whose X-Forwarded-For, X-Forwarded-Proto and Host headers are believed."),
    restart("service_proxy_protocol", "Read a PROXY protocol v1/v2 header from service_trusted_proxies' connections."),
    restart("service_max_connections_per_ip", "Pending connections (not yet a session with a valid token) one client address (IPv6: one /64) may hold on service_port; a newer one pushes out the oldest (0: no limit)."),
    restart("service_max_viewers_per_token", "Viewers (websocket sessions) one session link may hold at once; more are refused with 429 (0: no limit)."),
    restart("service_splice", "Move VM display bytes to the browser with splice(2) (zero-copy) when neither side uses TLS and the viewer is not view-only; false copies them."),
    live("allow_open_access", "With no authentication configured, serve anyway on a non-loopback address and to requests forwarded by a reverse proxy (otherwise refused with 403)."),
    live("login_lifetime", "How long a web login lasts, seconds."),
    restart("login_max_failures", "Failed logins per user and address before back-off (1 s, then doubling); attempts under way count."),
    restart("login_max_per_user", "Web logins one user may hold at once; one more closes that user's oldest."),
    // Peers.
    live("fallback_servers", "Peers (URLs, e.g. https://b/darts) that take a request this one has no room for."),
    live("node_name", "This node's name among its peers; default: the host name."),
    live("fallback_key", "File with the secret shared by the nodes (32 bytes or more) that signs node-to-node requests."),
    live("fallback_ca", "CA certificate(s) for peers' HTTPS certificates, besides the system's roots."),
    live("fallback_accept_from", "Nodes (names, addresses or networks) that may create sessions here; empty: any with the key."),
    live("fallback_timeout", "Bound on asking a peer for its status or sessions, seconds."),
    live("fallback_create_timeout", "Bound on a peer creating a session, seconds."),
    live("fallback_status_cache", "How long a peer's status is reused, seconds."),
    // Shared token registry.
    restart("token_redis", "Redis shared by the gateways (host[:port[:db[:password[:namespace]]]] or redis://, rediss://, unix: URL): any gateway routes any session; empty: off."),
    restart("token_redis_key", "File with the secret (32 bytes or more) the gateways of token_redis share; VNC passwords are sealed under it."),
    restart("token_redis_resync", "How often this node publishes all its routes to token_redis again, seconds."),
];

/// Keys of the original that darts has no use for, and why. `config check` and
/// `config import` explain them instead of calling them unknown.
pub const OBSOLETE: &[(&str, &str)] = &[
    (
        "service_port_multiple",
        "darts serves every session, one-shot ones too, on service_port",
    ),
    (
        "dir_websockify",
        "the websocket gateway is built into darts",
    ),
    ("service", "the service name is fixed"),
    ("version", "the version is darts' own (darts --version)"),
    (
        "service_monitor",
        "use `darts status` or the Manage sessions page",
    ),
    ("service_purge", "use `darts purge`"),
    ("session_purge", "use `darts purge`"),
    ("session_stop", "use `darts stop SESSION`"),
    (
        "session_watch",
        "each session has its own monitor inside darts",
    ),
    (
        "service_allow_persistent",
        "sessions always survive a restart of darts",
    ),
    (
        "service_use_vnc_token",
        "tokens are separate from the VNC password, which browsers never see",
    ),
    (
        "service_min_port",
        "darts serves every session on service_port",
    ),
    ("qemu_video", "the display device follows the machine"),
];

/// Old spellings of keys, as older documentation and releases wrote them.
pub const RENAMED: &[(&str, &str)] = &[
    ("certificate_cert", "certificate_crt"),
    ("service_max_instance_nb", "service_max_session_nb"),
];

/// The entry for `name`.
pub fn find(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// Why darts does not use `name`, when it is one of the original's keys.
pub fn obsolete(name: &str) -> Option<&'static str> {
    OBSOLETE
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, why)| *why)
}

/// The current name of an old spelling.
pub fn renamed(name: &str) -> Option<&'static str> {
    RENAMED
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, new)| *new)
}

/// The key `name` was probably meant to be: a renamed key, or the nearest key by edit
/// distance when it is close enough to be a typo.
pub fn suggest(name: &str) -> Option<&'static str> {
    if let Some(new) = renamed(name) {
        return Some(new);
    }
    let budget = (name.len() / 4).clamp(2, 4);
    KEYS.iter()
        .map(|k| (strsim::damerau_levenshtein(name, k.name), k.name))
        .filter(|(d, _)| *d <= budget)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Every key's default value, as TOML.
pub fn defaults() -> toml::Table {
    Config::default().to_table()
}

/// `--key=VALUE [default]` then the key's documentation, one key per line, as the
/// original's `qemu-web-desktop.pl -h` listed them.
pub fn help_text() -> String {
    let defaults = defaults();
    let mut out = String::from(
        "Configuration keys (in /etc/darts/config.toml, config.d/*.toml, or as --key=value):\n",
    );
    for key in KEYS {
        let default = defaults.get(key.name).map(default_text).unwrap_or_default();
        let restart = if key.apply == Apply::Restart {
            " A change needs a restart."
        } else {
            ""
        };
        out.push_str(&format!(
            "  --{}=VALUE [{default}]\n      {}{restart}\n",
            key.name, key.doc
        ));
    }
    out
}

/// The long help of `darts serve`: the configuration commands, then every key.
pub fn serve_help() -> String {
    format!(
        "The configuration: /etc/darts/config.toml (or -c FILE), then config.d/*.toml beside it, \
         then --key=value. `darts config keys` lists the keys, `darts config check` checks them, \
         `darts config show` prints the values in effect and where each was set, and \
         `darts config import` converts the original's config.pl. darts serve reloads the files \
         when they change and on SIGHUP.\n\n{}",
        help_text()
    )
}

/// A default as the help shows it: strings bare, the rest as TOML.
fn default_text(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn the_table_covers_every_field_of_config_and_nothing_else() {
        let fields: BTreeSet<String> = defaults().keys().cloned().collect();
        let table: BTreeSet<String> = KEYS.iter().map(|k| k.name.to_owned()).collect();
        assert_eq!(
            fields.difference(&table).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "fields of Config missing from KEYS"
        );
        assert_eq!(
            table.difference(&fields).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "KEYS entries that are not fields of Config"
        );
        assert_eq!(table.len(), KEYS.len(), "a key is listed twice");
        for key in KEYS {
            assert!(
                !key.doc.is_empty() && !key.doc.contains('\n'),
                "{}",
                key.name
            );
        }
    }

    #[test]
    fn obsolete_and_renamed_keys_are_not_keys() {
        for (k, _) in OBSOLETE.iter().chain(RENAMED) {
            assert!(find(k).is_none(), "{k}");
        }
        for (_, new) in RENAMED {
            assert!(find(new).is_some(), "{new}");
        }
    }

    #[test]
    fn suggestions_for_typos_and_old_names() {
        assert_eq!(
            suggest("service_max_sesion_nb"),
            Some("service_max_session_nb")
        );
        assert_eq!(suggest("snapshot_lifetim"), Some("snapshot_lifetime"));
        assert_eq!(suggest("certificate_cert"), Some("certificate_crt"));
        assert_eq!(suggest("wallpaper"), None);
    }

    #[test]
    fn help_lists_every_key_with_its_default() {
        let help = help_text();
        assert!(
            help.contains("--service_max_session_nb=VALUE [10]"),
            "{help}"
        );
        assert!(help.contains("--layout_cpu=VALUE [[2, 4, 8]]"), "{help}");
        assert!(help.contains("--machine=VALUE [-]"), "{help}");
        assert_eq!(help.matches("\n  --").count(), KEYS.len());
    }
}
