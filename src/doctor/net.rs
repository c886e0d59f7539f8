//! The service port and the authentication servers.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use super::host::Identity;
use super::Check;
use crate::config::Config;

/// Whether darts can listen on `listen`: free, or already held by a running darts.
pub async fn port(config: &Config, listen: SocketAddr) -> Check {
    match std::net::TcpListener::bind(listen) {
        Ok(_) => Check::ok("port", format!("{listen} is free")),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            let socket = crate::control::socket_path(config);
            if tokio::net::UnixStream::connect(&socket).await.is_ok() {
                Check::ok(
                    "port",
                    format!(
                        "{listen} is in use by darts (its control socket {} answers)",
                        socket.display()
                    ),
                )
            } else {
                Check::fail(
                    "port",
                    format!("{listen} is in use by another program"),
                    format!(
                        "find it with ss -ltnp 'sport = :{}', or change service_port",
                        listen.port()
                    ),
                )
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Check::fail(
            "port",
            format!("{listen}: permission denied"),
            "ports below 1024 need CAP_NET_BIND_SERVICE: keep darts on a high port behind the reverse proxy",
        ),
        Err(e) => Check::fail(
            "port",
            format!("{listen}: {e}"),
            "listen on an address of this host (darts serve --listen)",
        ),
    }
}

/// The authentication methods configured: their servers accept a TCP connection, PAM
/// and the custom program are in place.
pub async fn authentication(
    config: &Config,
    who: &Identity,
    timeout: Duration,
    root: &Path,
) -> Vec<Check> {
    let mut out = Vec::new();
    let mut servers: Vec<(&str, &str, &str, u16)> = Vec::new();
    if config.check_user_with_imap {
        servers.push((
            "imap_server",
            "check_user_with_imap",
            &config.imap_server,
            config.imap_port,
        ));
    }
    if config.check_user_with_ldap {
        servers.push((
            "ldap_server",
            "check_user_with_ldap",
            &config.ldap_server,
            config.ldap_port,
        ));
    }
    let mail = config.check_user_with_email || config.check_user_mfa;
    if config.check_user_with_smtp || mail {
        let why = if config.check_user_with_smtp {
            "check_user_with_smtp"
        } else if config.check_user_mfa {
            "check_user_mfa"
        } else {
            "check_user_with_email"
        };
        servers.push(("smtp_server", why, &config.smtp_server, config.smtp_port));
    }
    let probes = servers.iter().map(|(key, why, host, port)| async move {
        if host.trim().is_empty() {
            return Check::fail(
                *key,
                format!("{why} is on but {key} is empty"),
                format!("set {key} (or turn {why} off)"),
            );
        }
        reach(key, host.trim(), *port, timeout).await
    });
    out.extend(futures_util::future::join_all(probes).await);
    if config.check_user_with_local {
        out.push(pam(config, who, root));
    }
    let custom = config.check_user_custom.trim();
    if !custom.is_empty() {
        out.push(custom_program(custom, who));
    }
    if !crate::api::login::auth_configured(config) {
        out.push(Check::warn(
            "authentication",
            "no check_user_* method is configured: darts serve accepts any user name and listens on loopback only",
            "turn on one of check_user_with_imap/ldap/smtp/local/email",
        ));
    }
    out
}

/// A TCP connection to `host:port` within `timeout`.
async fn reach(key: &str, host: &str, port: u16, timeout: Duration) -> Check {
    let started = Instant::now();
    let target = format!("{host}:{port}");
    let hint = format!(
        "check {key} and its port ({port}), that the server runs, and that the firewall lets this host reach it"
    );
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&target)).await {
        Ok(Ok(_)) => Check::ok(
            key,
            format!(
                "{target} accepts connections ({} ms)",
                started.elapsed().as_millis()
            ),
        ),
        Ok(Err(e)) => Check::fail(key, format!("cannot reach {target}: {e}"), hint),
        Err(_) => Check::fail(
            key,
            format!("cannot reach {target}: no answer within {timeout:?}"),
            hint,
        ),
    }
}

/// PAM: the service's file exists (or `other` stands in), and the service may read
/// `/etc/shadow` to check other users' passwords.
fn pam(config: &Config, who: &Identity, root: &Path) -> Check {
    let service = config.pam_service.trim();
    let file = root.join("etc/pam.d").join(service);
    let used = if file.is_file() {
        file.clone()
    } else {
        root.join("etc/pam.d/other")
    };
    if !used.is_file() {
        return Check::fail(
            "pam_service",
            format!("neither {} nor /etc/pam.d/other exists", file.display()),
            "apt install libpam-runtime, or set pam_service to a file in /etc/pam.d",
        );
    }
    match std::fs::metadata(root.join("etc/shadow")) {
        Ok(meta) if !who.may(&meta, 4) => Check::warn(
            "pam_service",
            format!(
                "{} cannot read /etc/shadow: PAM can then check only {}'s own password",
                who.name, who.name
            ),
            format!(
                "adduser {} shadow, and SupplementaryGroups=kvm shadow in the unit (systemctl edit darts)",
                who.name
            ),
        ),
        _ => Check::ok("pam_service", format!("{service} ({})", used.display())),
    }
}

/// `check_user_custom`: its program exists and the service may run it.
fn custom_program(command: &str, who: &Identity) -> Check {
    let program = shell_words::split(command)
        .ok()
        .and_then(|w| w.into_iter().next())
        .unwrap_or_default();
    match which::which(&program) {
        Ok(path) => match std::fs::metadata(&path) {
            Ok(meta) if who.may(&meta, 5) => {
                Check::ok("check_user_custom", path.display().to_string())
            }
            _ => Check::fail(
                "check_user_custom",
                format!("{} may not run {}", who.name, path.display()),
                format!("chmod 0755 {}", path.display()),
            ),
        },
        Err(e) => Check::fail(
            "check_user_custom",
            format!("{program:?}: {e}"),
            "give the program's absolute path",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;

    #[tokio::test]
    async fn an_open_port_a_closed_port_and_a_missing_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap().port();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let t = Duration::from_secs(3);
        assert_eq!(
            reach("imap_server", "127.0.0.1", open, t).await.status,
            Status::Ok
        );
        let c = reach("imap_server", "127.0.0.1", closed, t).await;
        assert_eq!(c.status, Status::Fail);
        assert!(c.message.contains("cannot reach 127.0.0.1:"), "{c:?}");
        let config = Config {
            check_user_with_ldap: true,
            ..Config::default()
        };
        let who = super::super::host::current();
        let checks = authentication(&config, &who, t, Path::new("/")).await;
        assert_eq!(checks[0].name, "ldap_server");
        assert!(checks[0].message.contains("is empty"));
    }

    #[tokio::test]
    async fn a_port_held_by_someone_else_fails() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            dir_service: dir.path().to_owned(),
            ..Config::default()
        };
        let c = port(&config, held.local_addr().unwrap()).await;
        assert_eq!(c.status, Status::Fail);
        assert!(c.hint.unwrap().contains("ss -ltnp"));
        // The same port with darts' control socket answering is darts itself.
        let _control =
            std::os::unix::net::UnixListener::bind(crate::control::socket_path(&config)).unwrap();
        let c = port(&config, held.local_addr().unwrap()).await;
        assert_eq!(c.status, Status::Ok, "{c:?}");
        drop(held);
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert_eq!(port(&config, free).await.status, Status::Ok);
    }
}
