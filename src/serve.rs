//! `darts serve`: the long-lived service. One port carries noVNC and every session's
//! websocket; the session manager owns the VMs; the control socket takes local commands.
//! Stopping darts leaves the VMs running: the next start re-adopts them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use darts_proxy::tls::CertPaths;
use darts_proxy::{Gateway, GatewayConfig, TokenMap};
use tokio_util::sync::CancellationToken;

use crate::api::chain_login::{ChainLogin, SmtpMailer};
use crate::api::login::{LoginCheck, OpenLogin};
use crate::api::{ApiOptions, DartsApp};
use crate::config::Config;
use crate::control::{self, LinkBase};
use crate::session::Manager;
use crate::signals;

/// What `darts serve` was asked to do.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub config: Arc<Config>,
    /// Listening address; default `127.0.0.1:service_port`.
    pub listen: Option<SocketAddr>,
}

/// Runs the service until SIGTERM or SIGINT.
pub async fn run(opts: ServeOptions) -> anyhow::Result<()> {
    let config = opts.config;
    let listen = opts.listen.unwrap_or(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        config.service_port,
    ));
    let open = !crate::api::login::auth_configured(&config);
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
    }
    let tokens = Arc::new(TokenMap::new());
    let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut gw = GatewayConfig::new(listen);
    gw.web_prefix = web_prefix(&config.service_reverse_proxy);
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
    tokio::spawn(manager.clone().follow_viewers(events_rx));

    if !config.dir_html.is_dir() {
        tracing::warn!(dir = %config.dir_html.display(), "dir_html does not exist; the web pages will not be served");
    }
    let login: Arc<dyn LoginCheck> = if open {
        Arc::new(OpenLogin)
    } else {
        Arc::new(ChainLogin::from_config(&config).context("authentication")?)
    };
    // Mail is needed for e-mail login links and second-factor codes; without a server
    // configured the API answers `mail_unavailable` / `mfa_unavailable` to such logins.
    if config.check_user_mfa && config.smtp_server.is_empty() {
        tracing::error!("check_user_mfa is on but smtp_server is not set: no login can succeed");
    }
    let wants_mail = config.check_user_with_email || config.check_user_mfa;
    let mailer: Option<Arc<dyn crate::api::login::Mailer>> =
        if wants_mail && !config.smtp_server.is_empty() {
            Some(Arc::new(
                SmtpMailer::from_config(&config).context("mail (smtp_server, email_from)")?,
            ))
        } else {
            None
        };
    let app = DartsApp::new(ApiOptions {
        manager: manager.clone(),
        login,
        mailer,
        open,
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

    let stop = CancellationToken::new();
    let handle = gateway.handle();
    signals::spawn(stop.clone(), move || handle.reload_tls())?;
    let control_task = tokio::spawn(control::serve(
        control::socket_path(&config),
        manager.clone(),
        links,
        stop.clone(),
    ));
    gateway.run(stop).await;
    manager.detach().await;
    if let Ok(Err(e)) = control_task.await {
        tracing::warn!(error = %e, "control socket");
    }
    Ok(())
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
