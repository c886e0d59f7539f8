//! `darts serve`: the long-lived service. One port carries noVNC and every session's
//! websocket; the session manager owns the VMs; the control socket takes local commands.
//! Stopping darts leaves the VMs running: the next start re-adopts them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use darts_proxy::forwarded::TrustedProxies;
use darts_proxy::tls::CertPaths;
use darts_proxy::{Gateway, GatewayConfig, TokenMap};
use tokio_util::sync::CancellationToken;

use crate::api::chain_login::{ChainLogin, SmtpMailer};
use crate::api::login::{LoginCheck, OpenLogin};
use crate::api::{ApiOptions, DartsApp};
use crate::config::check::check;
use crate::config::{Config, ConfigSource};
use crate::control::{self, LinkBase};
use crate::reload::{self, Reloader};
use crate::session::Manager;
use crate::signals;

/// What `darts serve` was asked to do.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub config: Arc<Config>,
    /// Listening address; default `127.0.0.1:service_port`.
    pub listen: Option<SocketAddr>,
    /// Where `config` was read from. When set, the files are checked at start (errors
    /// refuse to start), then watched and reloaded on change and on SIGHUP.
    pub source: Option<ConfigSource>,
}

/// Runs the service until SIGTERM or SIGINT.
pub async fn run(opts: ServeOptions) -> anyhow::Result<()> {
    let (config, source) = match opts.source {
        Some(source) => {
            let baseline = reload::Snapshot::take(&source);
            let report = check(&source);
            for w in report.warnings() {
                tracing::warn!(problem = %w, "configuration");
            }
            let Some(loaded) = report.usable() else {
                let errors: Vec<String> = report.errors().map(ToString::to_string).collect();
                anyhow::bail!(
                    "configuration refused (darts config check):\n  {}",
                    errors.join("\n  ")
                );
            };
            (Arc::new(loaded.config.clone()), Some((source, baseline)))
        }
        None => (opts.config, None),
    };
    let listen = opts.listen.unwrap_or(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        config.service_port,
    ));
    let auth = web_auth(&config, listen)?;
    let audit = crate::audit::install(crate::audit::LogOptions::from_config(&config))
        .context("audit log (service_logfile)")?;
    if let Some(path) = &audit.options().json {
        tracing::info!(file = %path.display(), "audit log");
    }
    let (events_tx, events_rx) =
        darts_proxy::ViewerEvents::channel(darts_proxy::events::VIEWER_EVENT_QUEUE);
    let tokens = Arc::new(token_map(&config, events_tx.clone())?);
    let mut gw = GatewayConfig::new(listen);
    gw.web_prefix = web_prefix(&config.service_reverse_proxy);
    // A proxy may pass the prefix on (deploy/) or strip it (the original's Apache block).
    gw.accept_unprefixed = true;
    gw.trusted_proxies = TrustedProxies::parse(&config.service_trusted_proxies)
        .context("service_trusted_proxies")?;
    gw.proxy_protocol = config.service_proxy_protocol;
    gw.max_connections_per_ip = config.service_max_connections_per_ip;
    gw.max_viewers_per_token = config.service_max_viewers_per_token;
    gw.splice = config.service_splice;
    if gw.proxy_protocol && gw.trusted_proxies.is_empty() {
        tracing::warn!("service_proxy_protocol is on but service_trusted_proxies is empty: no PROXY header will be read");
    }
    if config.dir_novnc.is_dir() {
        gw.web_dir = Some(config.dir_novnc.clone());
    } else {
        tracing::warn!(dir = %config.dir_novnc.display(), "dir_novnc does not exist; the noVNC client will not be served");
    }
    if !config.certificate_crt.is_empty() {
        gw.tls = Some(CertPaths {
            cert: PathBuf::from(&config.certificate_crt),
            key: (!config.certificate_key.is_empty())
                .then(|| PathBuf::from(&config.certificate_key)),
        });
    }
    gw.viewer_events = Some(events_tx);
    let tls = gw.tls.is_some();
    let prefix = gw.web_prefix.trim_end_matches('/').to_owned();

    let manager = Manager::start(config.clone(), tokens.clone())
        .await
        .context("starting the session manager")?;
    let stop = CancellationToken::new();
    manager.set_service_stop(stop.clone());
    tokio::spawn(manager.clone().follow_viewers(events_rx));

    if !config.dir_html.is_dir() {
        tracing::warn!(dir = %config.dir_html.display(), "dir_html does not exist; the web pages will not be served");
    }
    let app = DartsApp::new(ApiOptions {
        manager: manager.clone(),
        login: auth.login,
        mailer: auth.mailer,
        open: auth.open,
        prefix: prefix.clone(),
    });
    gw.app = Some(Arc::new(app.clone()));

    let gateway = Gateway::bind(gw, tokens).await?;
    let addr = gateway.local_addr();
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        match addr.ip() {
            IpAddr::V6(v6) => format!("[{v6}]"),
            ip => ip.to_string(),
        }
    };
    let links = LinkBase {
        base: format!(
            "{}://{host}:{}{prefix}",
            if tls { "https" } else { "http" },
            addr.port()
        ),
        resize: if config.layout_resize.is_empty() {
            "scale".into()
        } else {
            config.layout_resize.clone()
        },
    };
    app.set_listen_base(links.base.clone());
    tracing::info!(address = %addr, url = %links.base, "darts serving");
    crate::audit::emit(crate::audit::Event::ServiceStart {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        listen: addr.to_string(),
    });

    let handle = gateway.handle();
    match source {
        Some((source, baseline)) => {
            let targets = reload::Targets {
                manager: manager.clone(),
                app: app.clone(),
                gateway: handle,
                listen,
                tls,
            };
            let hup = Arc::new(tokio::sync::Notify::new());
            let reloader = Reloader::new(source, baseline, config.clone(), targets);
            tokio::spawn(reloader.run(hup.clone(), stop.clone()));
            signals::spawn(stop.clone(), move || hup.notify_one())?;
        }
        None => signals::spawn(stop.clone(), move || handle.reload_tls())?,
    }
    let control_task = tokio::spawn(control::serve(
        control::socket_path(&config),
        manager.clone(),
        links,
        stop.clone(),
    ));
    gateway.run(stop).await;
    manager.detach().await;
    crate::audit::emit(crate::audit::Event::ServiceStop {});
    // The writer flushes and ends; joining it is blocking work.
    let _ = tokio::task::spawn_blocking(move || drop(audit)).await;
    if let Ok(Err(e)) = control_task.await {
        tracing::warn!(error = %e, "control socket");
    }
    Ok(())
}

/// How the web service authenticates, built from the configuration (at start and on
/// every reload).
#[derive(Debug)]
pub struct WebAuth {
    pub login: Arc<dyn LoginCheck>,
    /// Sends login links and second-factor codes, when they are on and a server is set.
    pub mailer: Option<Arc<dyn crate::api::login::Mailer>>,
    /// No method is configured: every user name is accepted.
    pub open: bool,
}

/// The authentication chain and mailer of `config`. Without any method, refuses a
/// `listen` address off loopback unless `allow_open_access`.
pub fn web_auth(config: &Config, listen: SocketAddr) -> anyhow::Result<WebAuth> {
    let open = !crate::api::login::auth_configured(config);
    if open {
        if !listen.ip().is_loopback() && !config.allow_open_access {
            anyhow::bail!(
                "no authentication method is configured (check_user_*), so anyone could start \
                 sessions: refusing to listen on {listen}. Configure authentication, listen on \
                 loopback, or pass --allow-open-access=true to open it anyway"
            );
        }
        tracing::warn!(
            address = %listen,
            "NO AUTHENTICATION: no check_user_* method is configured; every user name is accepted as typed"
        );
        if config.allow_open_access {
            tracing::warn!("allow_open_access is on: requests from other hosts and through reverse proxies are served without authentication");
        } else {
            tracing::warn!("requests forwarded by a reverse proxy (X-Forwarded-For, Forwarded, Via) or from other hosts are refused with 403 until authentication is configured or allow_open_access is set");
        }
    }
    let login: Arc<dyn LoginCheck> = if open {
        Arc::new(OpenLogin)
    } else {
        Arc::new(ChainLogin::from_config(config).context("authentication")?)
    };
    // Mail is needed for e-mail login links and second-factor codes; without a server
    // configured the API answers `mail_unavailable` / `mfa_unavailable` to such logins
    // (`darts config check` refuses such a configuration).
    let wants_mail = config.check_user_with_email || config.check_user_mfa;
    let mailer: Option<Arc<dyn crate::api::login::Mailer>> =
        if wants_mail && !config.smtp_server.is_empty() {
            Some(Arc::new(
                SmtpMailer::from_config(config).context("mail (smtp_server, email_from)")?,
            ))
        } else {
            None
        };
    Ok(WebAuth {
        login,
        mailer,
        open,
    })
}

/// The routing map; shared through Redis when `token_redis` is set (read once: a new
/// value needs a restart).
/// The gateway's routes; with `token_redis`, shared through Redis, and viewers of this
/// node's routes carried by other gateways reported to `viewer_events`.
fn token_map(
    config: &Config,
    viewer_events: darts_proxy::ViewerEvents,
) -> anyhow::Result<TokenMap> {
    use darts_proxy::token::redis::{self, RedisSource, RegistryConfig, SealKey};
    let tokens = TokenMap::new();
    if config.token_redis.trim().is_empty() {
        return Ok(tokens);
    }
    let source = RedisSource::parse(&config.token_redis).context("token_redis")?;
    tracing::info!(registry = %source, "shared token registry");
    let mut registry = RegistryConfig::new(source);
    if config.token_redis_key.is_empty() {
        anyhow::bail!(
            "token_redis needs token_redis_key (a file with the secret the gateways share)"
        );
    }
    registry.seal = Some(
        SealKey::from_file(std::path::Path::new(&config.token_redis_key))
            .context("token_redis_key")?,
    );
    registry.resync_every = std::time::Duration::from_secs(config.token_redis_resync.max(1));
    registry.peer_events = Some(viewer_events);
    // x509 routes other gateways publish are answered with this node's client certificate.
    let client = config.qemu_vnc_x509_dir.join("client");
    if client.join("client-cert.pem").is_file() {
        match redis::x509_client_from_dir(&client) {
            Ok(tls) => registry.x509_client = Some(tls),
            Err(e) => {
                tracing::warn!(dir = %client.display(), error = %e, "VNC client certificate unusable for registry routes")
            }
        }
    }
    Ok(tokens.with_registry(registry)?)
}

/// `service_reverse_proxy` as a path prefix: `/darts` stays, `""` and `":port"` (the
/// original's fixed-port variant) serve at the root.
pub fn web_prefix(reverse_proxy: &str) -> String {
    let p = reverse_proxy.trim();
    if p.is_empty() || p.starts_with(':') {
        return "/".into();
    }
    format!("/{}", p.trim_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::web_prefix;

    #[test]
    fn prefixes() {
        assert_eq!(web_prefix("/darts"), "/darts");
        assert_eq!(web_prefix("darts/"), "/darts");
        assert_eq!(web_prefix(""), "/");
        assert_eq!(web_prefix(":6080"), "/");
    }
}
