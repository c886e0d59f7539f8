//! The web service under test, started in this process.

use std::net::SocketAddr;
use std::sync::Arc;

use darts::api::chain_login::SmtpMailer;
use darts::api::{ApiOptions, DartsApp, LoginCheck, Mailer};
use darts::config::Config;
use darts::session::Manager;
use darts_proxy::events::VIEWER_EVENT_QUEUE;
use darts_proxy::{Gateway, GatewayConfig, TokenMap, ViewerEvents, ViewerEventsRx};
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
    manager: Arc<Manager>,
    /// Viewer events nobody reads yet (`held_viewer_events`).
    held: std::sync::Mutex<Option<ViewerEventsRx>>,
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
        let events = ViewerEvents::channel(VIEWER_EVENT_QUEUE);
        Self::build_full(listen, name, config, (login, open, mail), events, true).await
    }

    /// With a viewer event queue of `capacity` that the manager does not read until
    /// `follow_viewers`: events past it are dropped.
    pub(crate) async fn held_viewer_events(name: &str, extra: &str, capacity: usize) -> Self {
        let listen = "127.0.0.1:0".parse().unwrap();
        let config = format!("{BASE}\n{extra}");
        let auth = (
            Arc::new(FakeLogin) as Arc<dyn LoginCheck>,
            false,
            Mail::Fake,
        );
        let events = ViewerEvents::channel(capacity);
        Self::build_full(listen, name, &config, auth, events, false).await
    }

    /// The manager starts reading the held viewer events.
    pub(crate) fn follow_viewers(&self) {
        let rx = self
            .held
            .lock()
            .unwrap()
            .take()
            .expect("held viewer events");
        tokio::spawn(self.manager.clone().follow_viewers(rx));
    }

    async fn build_full(
        listen: SocketAddr,
        name: &str,
        config: &str,
        (login, open, mail): (Arc<dyn LoginCheck>, bool, Mail),
        (events_tx, events_rx): (ViewerEvents, ViewerEventsRx),
        follow: bool,
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
        let manager = Manager::start(config.clone(), tokens.clone())
            .await
            .unwrap();
        let held = if follow {
            tokio::spawn(manager.clone().follow_viewers(events_rx));
            None
        } else {
            Some(events_rx)
        };
        let app = DartsApp::new(ApiOptions {
            manager: manager.clone(),
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
        // The gateway tells the application who the client is, after these proxies.
        gw.trusted_proxies =
            darts_proxy::forwarded::TrustedProxies::parse(&config.service_trusted_proxies).unwrap();
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
            manager,
            held: std::sync::Mutex::new(held),
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
