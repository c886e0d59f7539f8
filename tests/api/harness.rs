//! The web service under test, started in this process.

use std::net::SocketAddr;
use std::sync::Arc;

use darts::api::chain_login::SmtpMailer;
use darts::api::{ApiOptions, DartsApp, LoginCheck, Mailer};
use darts::config::Config;
use darts::session::Manager;
use darts_proxy::{Gateway, GatewayConfig, TokenMap};
use tokio_util::sync::CancellationToken;

use crate::client::Browser;
use crate::fakes::{FakeLogin, FakeMailer};
use crate::{qemu, service};

/// The mailer the application gets.
pub(crate) enum Mail {
    /// `FakeMailer`, kept in `Web::mailer`.
    Fake,
    /// `SmtpMailer` built from the configuration (a real SMTP server).
    Smtp,
    /// None configured.
    Off,
}

/// Configuration every test shares (on top of the session harness's scratch set-up).
pub(crate) const BASE: &str = r#"
user_admin = ["root"]
layout_title = "Test desktops"
layout_cpu = [1, 2, 4096]
layout_memory = [0.25, 0.5]
layout_lifetime = [1, 2]
service_trusted_proxies = ["127.0.0.1"]
login_max_failures = 2
"#;

/// The web service in this process.
pub(crate) struct Web {
    pub(crate) svc: service::Service,
    pub(crate) addr: SocketAddr,
    pub(crate) mailer: Arc<FakeMailer>,
    stop: CancellationToken,
}

impl Web {
    pub(crate) async fn start(name: &str, extra: &str) -> Self {
        Self::with(name, extra, Arc::new(FakeLogin), false).await
    }

    pub(crate) async fn with(
        name: &str,
        extra: &str,
        login: Arc<dyn LoginCheck>,
        open: bool,
    ) -> Self {
        Self::build(name, &format!("{BASE}\n{extra}"), login, open, Mail::Fake).await
    }

    /// `config` is the whole configuration on top of the session harness's.
    pub(crate) async fn build(
        name: &str,
        config: &str,
        login: Arc<dyn LoginCheck>,
        open: bool,
        mail: Mail,
    ) -> Self {
        let listen = "127.0.0.1:0".parse().unwrap();
        Self::build_on(listen, name, config, login, open, mail).await
    }

    /// Listening on `listen`; a dual-stack `[::]` listener is reached at 127.0.0.1, so its
    /// peers are IPv4-mapped (`::ffff:127.0.0.1`).
    pub(crate) async fn build_on(
        listen: SocketAddr,
        name: &str,
        config: &str,
        login: Arc<dyn LoginCheck>,
        open: bool,
        mail: Mail,
    ) -> Self {
        let svc = service::Service::configure(name, config);
        let config = Arc::new(Config::load(&svc.config).unwrap());
        let fake = Arc::new(FakeMailer::default());
        let mailer: Option<Arc<dyn Mailer>> = match mail {
            Mail::Fake => Some(fake.clone()),
            Mail::Smtp => Some(Arc::new(SmtpMailer::from_config(&config).unwrap())),
            Mail::Off => None,
        };
        let tokens = Arc::new(TokenMap::new());
        let manager = Manager::start(config, tokens.clone()).await.unwrap();
        let (events_tx, events_rx) =
            darts_proxy::ViewerEvents::channel(darts_proxy::events::VIEWER_EVENT_QUEUE);
        tokio::spawn(manager.clone().follow_viewers(events_rx));
        let app = DartsApp::new(ApiOptions {
            manager,
            login,
            mailer,
            open,
            prefix: "/darts".into(),
        });
        let mut gw = GatewayConfig::new(listen);
        gw.web_prefix = "/darts".into();
        gw.web_dir = Some(qemu::repo_path("web/novnc"));
        gw.viewer_events = Some(events_tx);
        gw.app = Some(Arc::new(app.clone()));
        let gateway = Gateway::bind(gw, tokens).await.unwrap();
        let mut addr = gateway.local_addr();
        if addr.ip().is_unspecified() {
            addr = SocketAddr::from(([127, 0, 0, 1], addr.port()));
        }
        app.set_listen_base(format!("http://{addr}/darts"));
        let stop = CancellationToken::new();
        tokio::spawn(gateway.run(stop.clone()));
        Self {
            svc,
            addr,
            mailer: fake,
            stop,
        }
    }

    pub(crate) fn browser(&self) -> Browser {
        Browser {
            addr: self.addr,
            cookie: None,
            csrf: None,
            headers: Vec::new(),
        }
    }

    /// Logs `user` in; panics unless it works.
    pub(crate) async fn login(&self, user: &str, password: &str) -> Browser {
        let mut b = self.browser();
        let r = b.login(user, password).await;
        assert_eq!(r.status, 200, "login of {user}: {}", r.text());
        b
    }
}

impl Drop for Web {
    fn drop(&mut self) {
        // The harness's own drop kills every QEMU under the scratch directory.
        self.stop.cancel();
    }
}
