//! The web service: session manager, gateway and `DartsApp` in this process on
//! 127.0.0.1, the demo machine under real QEMU (TCG), driven over HTTP the way the pages
//! and scripts do. Covers every endpoint, who may do what, CSRF, login back-off, bad
//! bodies, unknown routes, security headers, the pages, and a whole session from Create
//! through its link's websocket to Stop; plus `darts serve` itself without authentication.
//!
//! Logins go through `FakeLogin`, a fixed user/password table standing in for the
//! authentication chain: the chain's methods are tested against real servers in their
//! own test files, here only the API's handling of each outcome matters. The second
//! factor's code travels through a real SMTP server (`support/smtp_sink.rs`) and is read
//! back from the stored mail.
//!
//! Needs qemu-system-x86_64, the demo machine and python3-aiosmtpd (`bash tests/setup.sh`).

#[path = "support/qemu.rs"]
mod qemu;
#[path = "support/service.rs"]
mod service;
#[path = "support/smtp_sink.rs"]
mod smtp_sink;
mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use darts::api::chain_login::SmtpMailer;
use darts::api::login::{LoginFuture, MailFuture, OpenLogin};
use darts::api::{ApiOptions, DartsApp, LoginCheck, LoginOutcome, Mailer};
use darts::auth::Credentials;
use darts::config::Config;
use darts::session::Manager;
use darts_proxy::{Gateway, GatewayConfig, TokenMap};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use qemu::RfbOverWs;
use support::ws_connect;

const USERS: &[(&str, &str)] = &[
    ("alice", "alice-pw"),
    ("bob", "bob-pw"),
    ("root", "root-pw"),
];
const INVALID: &str = "Invalid user name or password.";

/// The user table; a user name with `@` asks for an e-mail link.
#[derive(Debug)]
struct FakeLogin;

impl LoginCheck for FakeLogin {
    fn check<'a>(&'a self, creds: &'a Credentials) -> LoginFuture<'a> {
        Box::pin(async move {
            if creds.user.contains('@') {
                return LoginOutcome::EmailLink {
                    email: creds.user.clone(),
                };
            }
            match USERS.iter().find(|(u, _)| *u == creds.user) {
                Some((u, p)) if *p == creds.password => LoginOutcome::Authenticated {
                    user: (*u).to_owned(),
                    email: None,
                },
                _ => LoginOutcome::Rejected,
            }
        })
    }
}

/// Keeps every link and second-factor code it is asked to send.
#[derive(Debug, Default)]
struct FakeMailer {
    sent: Mutex<Vec<(String, String)>>,
    codes: Mutex<Vec<(String, String)>>,
}

impl Mailer for FakeMailer {
    fn send_login_link<'a>(&'a self, to: &'a str, link: &'a str) -> MailFuture<'a> {
        self.sent
            .lock()
            .unwrap()
            .push((to.to_owned(), link.to_owned()));
        Box::pin(async { Ok(()) })
    }

    fn send_mfa_code<'a>(&'a self, to: &'a str, code: &'a str) -> MailFuture<'a> {
        self.codes
            .lock()
            .unwrap()
            .push((to.to_owned(), code.to_owned()));
        Box::pin(async { Ok(()) })
    }
}

/// Users as a directory knows them: Erin has an e-mail address, Frank none.
#[derive(Debug)]
struct MfaLogin;

impl LoginCheck for MfaLogin {
    fn check<'a>(&'a self, creds: &'a Credentials) -> LoginFuture<'a> {
        Box::pin(async move {
            match (creds.user.as_str(), creds.password.as_str()) {
                ("erin", "erin-pw") => LoginOutcome::Authenticated {
                    user: "erin".into(),
                    email: Some("erin@e2e.test".into()),
                },
                ("frank", "frank-pw") => LoginOutcome::Authenticated {
                    user: "frank".into(),
                    email: None,
                },
                _ => LoginOutcome::Rejected,
            }
        })
    }
}

/// The mailer the application gets.
enum Mail {
    /// `FakeMailer`, kept in `Web::mailer`.
    Fake,
    /// `SmtpMailer` built from the configuration (a real SMTP server).
    Smtp,
    /// None configured.
    Off,
}

/// Configuration every test shares (on top of the session harness's scratch set-up).
const BASE: &str = r#"
user_admin = ["root"]
layout_title = "Test desktops"
layout_cpu = [1, 2, 4096]
layout_memory = [0.25, 0.5]
layout_lifetime = [1, 2]
service_trusted_proxies = ["127.0.0.1"]
login_max_failures = 2
"#;

/// The web service in this process.
struct Web {
    svc: service::Service,
    addr: SocketAddr,
    mailer: Arc<FakeMailer>,
    stop: CancellationToken,
}

impl Web {
    async fn start(name: &str, extra: &str) -> Self {
        Self::with(name, extra, Arc::new(FakeLogin), false).await
    }

    async fn with(name: &str, extra: &str, login: Arc<dyn LoginCheck>, open: bool) -> Self {
        Self::build(name, &format!("{BASE}\n{extra}"), login, open, Mail::Fake).await
    }

    /// `config` is the whole configuration on top of the session harness's.
    async fn build(
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
        let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(manager.clone().follow_viewers(events_rx));
        let app = DartsApp::new(ApiOptions {
            manager,
            login,
            mailer,
            open,
            prefix: "/darts".into(),
        });
        let mut gw = GatewayConfig::new("127.0.0.1:0".parse().unwrap());
        gw.web_prefix = "/darts".into();
        gw.web_dir = Some(qemu::repo_path("web/novnc"));
        gw.viewer_events = Some(events_tx);
        gw.app = Some(Arc::new(app.clone()));
        let gateway = Gateway::bind(gw, tokens).await.unwrap();
        let addr = gateway.local_addr();
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

    fn browser(&self) -> Browser {
        Browser {
            addr: self.addr,
            cookie: None,
            csrf: None,
            headers: Vec::new(),
        }
    }

    /// Logs `user` in; panics unless it works.
    async fn login(&self, user: &str, password: &str) -> Browser {
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

/// An HTTP answer.
#[derive(Debug)]
struct Resp {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    /// Every value of a repeated header (`Set-Cookie`).
    fn headers(&self, name: &str) -> Vec<String> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_owned())
            })
            .collect()
    }

    /// The `Set-Cookie` of cookie `name`.
    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers("set-cookie")
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.head, self.text()))
    }

    /// An API error answer with `status` and `code`.
    fn assert_error(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "{}\n{}", self.head, self.text());
        let body = self.json();
        assert_eq!(body["code"], code, "{body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        body
    }
}

/// Sends raw bytes as one request (`Connection: close`) and reads the whole answer.
async fn exchange(addr: SocketAddr, request: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The server may answer (and close) before reading a refused body to its end.
    let _ = s.write_all(request).await;
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 16384];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(120), read)
        .await
        .expect("no answer within 120 s");
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header block in {:?}", String::from_utf8_lossy(&buf)));
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Resp {
        status,
        head,
        body: buf[split + 4..].to_vec(),
    }
}

async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: Option<&[u8]>,
) -> Resp {
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n").into_bytes();
    for (k, v) in headers {
        req.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    if let Some(b) = body {
        req.extend_from_slice(format!("Content-Length: {}\r\n", b.len()).as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    if let Some(b) = body {
        req.extend_from_slice(b);
    }
    exchange(addr, &req).await
}

/// A client that keeps the login cookie and sends the CSRF token, as the pages do.
#[derive(Debug, Clone)]
struct Browser {
    addr: SocketAddr,
    cookie: Option<String>,
    csrf: Option<String>,
    /// Extra headers on every request.
    headers: Vec<(String, String)>,
}

impl Browser {
    fn with_header(&self, k: &str, v: &str) -> Self {
        let mut b = self.clone();
        b.headers.push((k.to_owned(), v.to_owned()));
        b
    }

    /// A client at another address, as a trusted proxy reports it.
    fn at_addr(&self, ip: &str) -> Self {
        self.with_header("X-Forwarded-For", ip)
    }

    async fn login(&mut self, user: &str, password: &str) -> Resp {
        let r = self
            .send_raw(
                "POST",
                "/darts/api/login",
                Some(
                    json!({ "user": user, "password": password })
                        .to_string()
                        .as_bytes(),
                ),
                "application/json",
            )
            .await;
        if r.status == 200 {
            let cookie = r.header("set-cookie").unwrap();
            self.cookie = Some(cookie.split(';').next().unwrap().to_owned());
            self.csrf = Some(r.json()["csrf"].as_str().unwrap().to_owned());
        }
        r
    }

    /// After a 202 `mfa_required`: keeps the pending login's cookie and CSRF token.
    fn hold_pending(&mut self, r: &Resp) {
        let cookie = r.set_cookie("darts_mfa").expect("a darts_mfa cookie");
        self.cookie = Some(cookie.split(';').next().unwrap().to_owned());
        self.csrf = Some(r.json()["csrf"].as_str().unwrap().to_owned());
    }

    /// Sends a second-factor code; on success keeps the login as `login` does.
    async fn send_code(&mut self, code: &str) -> Resp {
        let r = self
            .send("POST", "/api/login/mfa", Some(json!({ "code": code })))
            .await;
        if r.status == 200 {
            let cookie = r.set_cookie("darts_login").expect("a darts_login cookie");
            self.cookie = Some(cookie.split(';').next().unwrap().to_owned());
            self.csrf = Some(r.json()["csrf"].as_str().unwrap().to_owned());
        }
        r
    }

    fn all_headers(&self, content_type: Option<&str>) -> Vec<(String, String)> {
        let mut h = self.headers.clone();
        if let Some(c) = &self.cookie {
            h.push(("Cookie".into(), c.clone()));
        }
        if let Some(t) = &self.csrf {
            h.push(("X-CSRF-Token".into(), t.clone()));
        }
        if let Some(ct) = content_type {
            h.push(("Content-Type".into(), ct.into()));
        }
        h
    }

    async fn get(&self, path: &str) -> Resp {
        request(
            self.addr,
            "GET",
            &format!("/darts{path}"),
            &self.all_headers(None),
            None,
        )
        .await
    }

    /// A JSON request to `/darts{path}`.
    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        let body = body.map(|b| b.to_string());
        let ct = body.as_ref().map(|_| "application/json");
        request(
            self.addr,
            method,
            &format!("/darts{path}"),
            &self.all_headers(ct),
            body.as_deref().map(str::as_bytes),
        )
        .await
    }

    async fn send_raw(&self, method: &str, path: &str, body: Option<&[u8]>, ct: &str) -> Resp {
        request(self.addr, method, path, &self.all_headers(Some(ct)), body).await
    }
}

fn token_of(url: &str) -> &str {
    url.rsplit_once("path=?token=").unwrap().1
}

/// Opens the websocket the way noVNC does with a link's token and reads the guest's RFB
/// handshake through darts (which answers QEMU's VNC password itself).
async fn rfb_through(addr: SocketAddr, token: &str) -> (RfbOverWs, qemu::ServerInit) {
    let ws = ws_connect(&format!("ws://{addr}/darts/vnc.html?token={token}"), &[])
        .await
        .unwrap_or_else(|s| panic!("websocket refused with {s}"));
    let mut rfb = RfbOverWs::new(ws, Duration::from_secs(30));
    let init = rfb.handshake().await;
    (rfb, init)
}

fn assert_secure(r: &Resp) {
    let csp = r.header("content-security-policy").expect("a CSP");
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(
        r.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert_eq!(r.header("referrer-policy").as_deref(), Some("no-referrer"));
}

fn assert_api_headers(r: &Resp) {
    assert_secure(r);
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn create_view_share_extend_and_stop_each_by_its_owner_only() {
    let web = Web::start("api-flow", "service_max_session_nb_per_user = 1").await;
    let alice = web.login("alice", "alice-pw").await;
    let bob = web.login("bob", "bob-pw").await;
    let root = web.login("root", "root-pw").await;
    let nobody = web.browser();

    // Create: the desktop is ready when the answer comes.
    let r = alice
        .send(
            "POST",
            "/api/sessions",
            Some(json!({ "machine": "demo.img", "cpu": 1, "memory": 0.25, "lifetime": 1 })),
        )
        .await;
    assert_eq!(r.status, 201, "{}\nlog:\n{}", r.text(), web.svc.log());
    assert_api_headers(&r);
    let created = r.json();
    let s = &created["session"];
    let name = s["name"].as_str().unwrap().to_owned();
    assert_eq!(
        r.header("location"),
        Some(format!("/darts/api/sessions/{name}"))
    );
    assert_eq!(s["user"], "alice");
    assert_eq!(s["machine"], "demo.img");
    assert_eq!(
        (s["cpu"].as_u64(), s["memory_mb"].as_u64()),
        (Some(1), Some(256))
    );
    assert_eq!(s["phase"], "running");
    assert_eq!(s["extendable"], true);
    assert!(s["time_left"].as_u64().unwrap() <= 86400);
    assert_eq!(s["remote_host"], "127.0.0.1");
    let url = created["url"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with(&format!(
            "http://{}/darts/vnc.html?resize=remote&autoconnect=true&path=?token=",
            web.addr
        )),
        "{url}"
    );
    let view_url = created["view_url"].as_str().unwrap().to_owned();
    assert_ne!(token_of(&url), token_of(&view_url));
    let qr = created["qr_svg"].as_str().unwrap();
    assert!(qr.contains("<svg") && qr.contains("<path"), "{qr}");

    // The link reaches the guest: its RFB greeting and desktop name come through darts.
    let (first, init) = rfb_through(web.addr, token_of(&url)).await;
    assert!(init.name.contains(&name), "desktop name {:?}", init.name);
    let (watcher, _) = rfb_through(web.addr, token_of(&view_url)).await;
    drop((first, watcher));

    // Alice's quota is one session: the manager's refusal, its code and words.
    let r = alice
        .send(
            "POST",
            "/api/sessions",
            Some(json!({ "machine": "demo.img" })),
        )
        .await;
    let body = r.assert_error(409, "too_many_user_sessions");
    assert_eq!(body["needs_fallback"], false);
    assert!(body["message"]
        .as_str()
        .unwrap()
        .starts_with("Too many opened sessions ("));

    // Who sees what.
    let list = |r: Resp| -> Vec<String> {
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(list(alice.get("/api/sessions").await), vec![name.clone()]);
    assert!(list(bob.get("/api/sessions").await).is_empty());
    assert_eq!(list(root.get("/api/sessions").await), vec![name.clone()]);
    assert_eq!(root.get("/api/sessions").await.json()["admin"], true);
    nobody
        .get("/api/sessions")
        .await
        .assert_error(401, "login_required");

    // Bob can neither see, extend, get links for, nor stop Alice's session, nor purge.
    let path = format!("/api/sessions/{name}");
    for (method, p) in [
        ("GET", path.clone()),
        ("POST", format!("{path}/extend")),
        ("POST", format!("{path}/connect")),
        ("DELETE", path.clone()),
    ] {
        bob.send(method, &p, None)
            .await
            .assert_error(403, "forbidden");
        nobody
            .send(method, &p, None)
            .await
            .assert_error(401, "login_required");
    }
    bob.send("POST", "/api/purge", None)
        .await
        .assert_error(403, "forbidden");
    bob.get("/api/sessions/darts-zzzzzzzzzzzz")
        .await
        .assert_error(404, "not_found");

    // CSRF: Alice's own cookie is not enough to change anything.
    let mut no_token = alice.clone();
    no_token.csrf = None;
    no_token
        .send("DELETE", &path, None)
        .await
        .assert_error(403, "csrf");
    let mut wrong = alice.clone();
    wrong.csrf = Some("0123456789abcdefghijABCDEFGHIJxy".into());
    wrong
        .send("POST", &format!("{path}/extend"), None)
        .await
        .assert_error(403, "csrf");
    alice
        .with_header("Origin", "http://evil.example")
        .send("DELETE", &path, None)
        .await
        .assert_error(403, "csrf");
    // Bob's token with Alice's cookie is no better.
    let mut mixed = alice.clone();
    mixed.csrf = bob.csrf.clone();
    mixed
        .send("DELETE", &path, None)
        .await
        .assert_error(403, "csrf");
    // All of that left the session as it was.
    let r = alice.get(&path).await;
    assert_eq!(r.status, 200);
    assert_api_headers(&r);
    let expires = r.json()["session"]["expires"].as_u64().unwrap();

    // +24 h.
    let r = alice.send("POST", &format!("{path}/extend"), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["session"]["expires"].as_u64(),
        Some(expires + 86400)
    );

    // Fresh links: they work, and so do the first ones.
    let r = alice.send("POST", &format!("{path}/connect"), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let fresh = r.json();
    let fresh_url = fresh["url"].as_str().unwrap();
    assert_ne!(token_of(fresh_url), token_of(&url));
    assert!(fresh["view_url"].is_string() && fresh["qr_svg"].is_string());
    let (again, init) = rfb_through(web.addr, token_of(fresh_url)).await;
    assert!(init.name.contains(&name));
    let (old, _) = rfb_through(web.addr, token_of(&url)).await;
    drop((again, old));

    // Stop, from a page of this server (its Origin is accepted).
    let r = alice
        .with_header("Origin", &format!("http://{}", web.addr))
        .send("DELETE", &path, None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["stopped"], name.as_str());
    alice.get(&path).await.assert_error(404, "not_found");
    assert!(list(root.get("/api/sessions").await).is_empty());
    for t in [token_of(&url), token_of(&view_url), token_of(fresh_url)] {
        assert_eq!(
            ws_connect(&format!("ws://{}/darts/vnc.html?token={t}", web.addr), &[])
                .await
                .err(),
            Some(404),
            "a link still routes after stop"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn administrators_see_the_server_and_purge_everyone() {
    let web = Web::start("api-admin", "").await;
    let bob = web.login("bob", "bob-pw").await;
    let root = web.login("root", "root-pw").await;
    let r = bob
        .send(
            "POST",
            "/api/sessions",
            Some(json!({ "machine": "demo.img" })),
        )
        .await;
    assert_eq!(r.status, 201, "{}\nlog:\n{}", r.text(), web.svc.log());
    let name = r.json()["session"]["name"].as_str().unwrap().to_owned();

    // The server card: every figure for administrators, a summary for the others.
    let r = root.get("/api/status").await;
    assert_eq!(r.status, 200);
    assert_api_headers(&r);
    let status = r.json();
    assert_eq!(status["summary"], false);
    assert!(status["ncpu"].as_u64().unwrap() >= 1);
    assert!(status["memory_total_gb"].as_f64().unwrap() > 0.0);
    assert!(status["memory_available_gb"].as_f64().is_some());
    assert_eq!(status["sessions"], 1);
    assert!(status["gpus"].is_array());
    let summary = bob.get("/api/status").await.json();
    assert_eq!(summary["summary"], true);
    assert_eq!(summary["sessions"], 1);
    assert!(summary.get("ncpu").is_none() && summary.get("memory_total_gb").is_none());
    web.browser()
        .get("/api/status")
        .await
        .assert_error(401, "login_required");

    // An administrator sees and may act on anyone's session; purge ends them all.
    let r = root.get(&format!("/api/sessions/{name}")).await;
    assert_eq!(r.json()["session"]["user"], "bob");
    let r = root.send("POST", "/api/purge", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["stopped"], 1);
    assert!(bob.get("/api/sessions").await.json()["sessions"]
        .as_array()
        .unwrap()
        .is_empty());
    bob.get(&format!("/api/sessions/{name}"))
        .await
        .assert_error(404, "not_found");
}

#[tokio::test(flavor = "multi_thread")]
async fn creation_refusals_name_the_field_or_keep_the_managers_words() {
    let web = Web::start("api-refusals", "").await;
    let alice = web.login("alice", "alice-pw").await;
    let create = |body: Value| {
        let a = alice.clone();
        async move { a.send("POST", "/api/sessions", Some(body)).await }
    };
    for (body, field) in [
        (json!({ "machine": "nope.qcow2" }), "machine"),
        (json!({ "machine": "demo.img", "cpu": 3 }), "cpu"),
        (json!({ "machine": "demo.img", "memory": 4 }), "memory"),
        (json!({ "machine": "demo.img", "lifetime": 7 }), "lifetime"),
        (json!({ "machine": "demo.img", "gpu": true }), "gpu"),
    ] {
        let r = create(body.clone()).await;
        let e = r.assert_error(400, "invalid_field");
        assert_eq!(e["field"], field, "{body}: {e}");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{field}: ")),
            "{e}"
        );
    }
    // The offered choices are named.
    let e = create(json!({ "machine": "demo.img", "cpu": 3 }))
        .await
        .json();
    assert!(e["message"].as_str().unwrap().contains("1, 2, 4096"), "{e}");

    // An image nobody downloaded: 503, not a fallback case.
    let e = create(json!({ "machine": "absent.qcow2" }))
        .await
        .assert_error(503, "machine_missing");
    assert_eq!(e["needs_fallback"], false);
    // More CPUs than this host has: the original's message, and another node might.
    let e = create(json!({ "machine": "demo.img", "cpu": 4096 }))
        .await
        .assert_error(503, "cpu_above_host");
    assert_eq!(e["needs_fallback"], true);
    assert!(e["message"]
        .as_str()
        .unwrap()
        .starts_with("Too many CPUs requested (4096)"));

    // Nothing was left behind.
    assert!(alice.get("/api/sessions").await.json()["sessions"]
        .as_array()
        .unwrap()
        .is_empty());
    assert!(web.svc.entries("snapshots").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn login_config_and_logout() {
    let web = Web::start("api-login", "").await;
    let anonymous = web.browser();

    // Before logging in: the page set-up, no user, no CSRF token.
    let r = anonymous.get("/api/config").await;
    assert_eq!(r.status, 200);
    assert_api_headers(&r);
    let c = r.json();
    assert_eq!(c["title"], "Test desktops");
    assert_eq!(c["layout"]["cpu"], json!([1, 2, 4096]));
    assert_eq!(c["layout"]["memory"], json!([0.25, 0.5]));
    assert_eq!(c["layout"]["lifetime"], json!([1, 2]));
    assert_eq!(c["layout"]["level"], 1);
    assert_eq!(c["layout"]["resize"], "remote");
    assert_eq!(c["layout"]["gpu"], false);
    assert!(c["layout"]["terms"].as_str().unwrap().contains("Terms and"));
    assert_eq!(
        c["machines"],
        json!([{ "name": "demo.img", "description": "Test guest" }])
    );
    assert_eq!(c["auth"]["open"], false);
    assert!(c["user"].is_null() && c.get("csrf").is_none());
    // The whole catalogue, with what can run.
    let m = anonymous.get("/api/machines").await.json();
    assert_eq!(
        m["machines"],
        json!([
            { "name": "demo.img", "description": "Test guest", "available": true },
            { "name": "absent.qcow2", "description": "Not downloaded", "available": false },
        ])
    );

    // A wrong password and an unknown user get the same answer.
    let mut b = web.browser();
    let wrong = b.login("alice", "nope").await;
    let unknown = b.at_addr("192.0.2.50").login("mallory", "x").await;
    for r in [&wrong, &unknown] {
        let e = r.assert_error(401, "invalid_credentials");
        assert_eq!(e["message"], INVALID);
        assert!(r.header("set-cookie").is_none());
    }
    assert_eq!(wrong.body, unknown.body);

    // Logging in sets a strict, HttpOnly cookie under the prefix (not Secure on plain HTTP).
    let r = b.login("root", "root-pw").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_api_headers(&r);
    let body = r.json();
    assert_eq!(
        (body["user"].as_str(), body["admin"].as_bool()),
        (Some("root"), Some(true))
    );
    let cookie = r.header("set-cookie").unwrap();
    assert!(cookie.starts_with("darts_login="), "{cookie}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/darts"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "{cookie}");
    // Behind a TLS-terminating proxy it is Secure.
    let mut tls = web.browser().with_header("X-Forwarded-Proto", "https");
    let r = tls.login("bob", "bob-pw").await;
    assert!(r.header("set-cookie").unwrap().contains("; Secure"));

    let c = b.get("/api/config").await.json();
    assert_eq!(c["user"]["name"], "root");
    assert_eq!(c["user"]["admin"], true);
    assert_eq!(c["csrf"].as_str(), b.csrf.as_deref());
    let bob = web.login("bob", "bob-pw").await;
    assert_eq!(bob.get("/api/config").await.json()["user"]["admin"], false);

    // Logging in again replaces the browser's login.
    let before = b.clone();
    assert_eq!(b.login("root", "root-pw").await.status, 200);
    assert_ne!(before.cookie, b.cookie);
    before
        .get("/api/sessions")
        .await
        .assert_error(401, "login_required");

    // Logout needs the CSRF token, then ends the login.
    let mut no_token = b.clone();
    no_token.csrf = None;
    no_token
        .send("POST", "/api/logout", None)
        .await
        .assert_error(403, "csrf");
    let r = b.send("POST", "/api/logout", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert!(b.get("/api/config").await.json()["user"].is_null());
    b.get("/api/sessions")
        .await
        .assert_error(401, "login_required");
    // Bob's login is untouched.
    assert_eq!(bob.get("/api/sessions").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_logins_back_off_per_user_and_per_address() {
    // login_max_failures = 2: the third failure locks for 1 s, the next for 2 s, …
    let web = Web::start("api-backoff", "").await;

    // Per user: Alice's password guessed from three addresses.
    for ip in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
        let r = web.browser().at_addr(ip).login("alice", "guess").await;
        r.assert_error(401, "invalid_credentials");
    }
    // Now even the right password, from a fresh address, is refused unseen.
    let mut b = web.browser().at_addr("192.0.2.4");
    let r = b.login("alice", "alice-pw").await;
    let e = r.assert_error(429, "rate_limited");
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    assert_eq!(e["retry_after"], wait);
    assert_api_headers(&r);
    // Other users are not affected.
    assert_eq!(
        web.browser()
            .at_addr("192.0.2.5")
            .login("bob", "bob-pw")
            .await
            .status,
        200
    );

    // Per address: one client trying many user names is locked out, whoever it tries next.
    for user in ["u1", "u2", "u3"] {
        web.browser()
            .at_addr("198.51.100.7")
            .login(user, "x")
            .await
            .assert_error(401, "invalid_credentials");
    }
    web.browser()
        .at_addr("198.51.100.7")
        .login("root", "root-pw")
        .await
        .assert_error(429, "rate_limited");

    // The lock ends after Retry-After; then the right password works again.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let r = b.login("alice", "alice-pw").await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_oversized_and_mistyped_bodies_are_refused() {
    let web = Web::start("api-bodies", "").await;
    let b = web.browser();
    let login = |body: &'static [u8], ct: &'static str| {
        let b = b.clone();
        async move { b.send_raw("POST", "/darts/api/login", Some(body), ct).await }
    };
    login(
        br#"{"user": "alice", "password": "alice-pw"}"#,
        "text/plain",
    )
    .await
    .assert_error(415, "unsupported_media_type");
    let e = login(br#"{"user": "alice", "password": "#, "application/json")
        .await
        .assert_error(400, "bad_json");
    assert!(
        e["message"].as_str().unwrap().contains("malformed JSON"),
        "{e}"
    );
    let e = login(br#"{"user": "alice", "pasword": "x"}"#, "application/json")
        .await
        .assert_error(400, "bad_json");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `pasword`"),
        "{e}"
    );
    let e = login(br#"{"user": 42}"#, "application/json")
        .await
        .assert_error(400, "bad_json");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .starts_with("user: invalid type"),
        "{e}"
    );
    login(br#"{"user": "alice"} {"user": "bob"}"#, "application/json")
        .await
        .assert_error(400, "bad_json");
    login(b"", "application/json")
        .await
        .assert_error(400, "bad_json");
    let e = login(
        br#"{"user": "al/ice", "password": "x"}"#,
        "application/json",
    )
    .await
    .assert_error(400, "invalid_field");
    assert_eq!(e["field"], "user");

    // Over 64 KiB: refused from the declared length, or while reading a chunked body.
    let r = request(
        web.addr,
        "POST",
        "/darts/api/login",
        &[
            ("Content-Type".into(), "application/json".into()),
            ("Content-Length".into(), "70000".into()),
        ],
        None,
    )
    .await;
    r.assert_error(413, "body_too_large");
    let mut chunked = format!(
        "POST /darts/api/login HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        web.addr
    )
    .into_bytes();
    let piece = vec![b' '; 8192];
    for _ in 0..9 {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(&piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    exchange(web.addr, &chunked)
        .await
        .assert_error(413, "body_too_large");

    // The same rules for creating a session, once logged in.
    let alice = web.login("alice", "alice-pw").await;
    let e = alice
        .send(
            "POST",
            "/api/sessions",
            Some(json!({ "machine": "demo.img", "cpu": "two" })),
        )
        .await
        .assert_error(400, "bad_json");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .starts_with("cpu: invalid type"),
        "{e}"
    );
    let e = alice
        .send("POST", "/api/sessions", Some(json!({ "cpu": 1 })))
        .await
        .assert_error(400, "bad_json");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("missing field `machine`"),
        "{e}"
    );
    alice
        .send(
            "POST",
            "/api/sessions",
            Some(json!({ "machine": "demo.img", "disk": 9 })),
        )
        .await
        .assert_error(400, "bad_json");
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_unknown_routes_headers_and_the_openapi_document() {
    let web = Web::start("api-routes", "").await;
    let b = web.browser();

    // Unknown API routes and wrong methods: JSON errors with the security headers.
    let r = b.get("/api/nope").await;
    r.assert_error(404, "not_found");
    assert_api_headers(&r);
    let r = b.send("PUT", "/api/sessions", None).await;
    r.assert_error(405, "method_not_allowed");
    assert_eq!(r.header("allow").as_deref(), Some("GET, POST"));
    b.send("GET", "/api/purge", None)
        .await
        .assert_error(405, "method_not_allowed");

    // Pages, with the CSP and no inline script in them.
    for (path, marker) in [
        ("/", "assets/landing.js"),
        ("/manage", "assets/manage.js"),
        ("/connect/darts-abcdefgh1234", "../assets/connect.js"),
    ] {
        let r = b.get(path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_secure(&r);
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("text/html; charset=utf-8")
        );
        let html = r.text();
        assert!(html.contains(marker), "{path}");
        assert!(
            !html.contains("<script>") && !html.contains("onclick="),
            "{path}"
        );
    }
    // The landing page's form keeps the original's field names.
    let landing = b.get("/").await.text();
    for field in [
        "name=\"user\"",
        "name=\"password\"",
        "name=\"machine\"",
        "name=\"cpu\"",
        "name=\"memory\"",
        "name=\"snapshot_lifetime\"",
        "name=\"gpu\"",
        "name=\"oneshot\"",
        "name=\"create\"",
        "name=\"manage\"",
    ] {
        assert!(landing.contains(field), "{field}");
    }
    let r = b.get("").await;
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location").as_deref(), Some("darts/"));
    let r = b.get("/assets/common.js").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("text/javascript; charset=utf-8")
    );
    assert_secure(&r);
    for bad in [
        "/connect/not-a-session",
        "/assets/.hidden",
        "/assets/%2e%2e%2findex.html",
        "/assets/nope.js",
    ] {
        let r = b.get(bad).await;
        assert_eq!(r.status, 404, "{bad}");
        assert_secure(&r);
    }
    // noVNC stays the gateway's.
    let r = b.get("/vnc.html").await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("noVNC"));

    // The OpenAPI document describes every route of the router.
    let r = b.get("/api/openapi.json").await;
    assert_eq!(r.status, 200);
    assert_api_headers(&r);
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["servers"][0]["url"], "/darts");
    for route in darts::api::routes::ROUTES {
        assert!(
            doc["paths"][route.path][route.method.to_lowercase()].is_object(),
            "{} {} is missing from the OpenAPI document",
            route.method,
            route.path
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_email_address_gets_a_one_time_login_link() {
    let web = Web::start("api-email", "").await;
    let mut b = web.browser();
    let r = b.login("carol@example.org", "").await;
    assert_eq!(r.status, 202, "{}", r.text());
    let body = r.json();
    assert_eq!(body["code"], "email_sent");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("carol@example.org"));
    assert!(r.header("set-cookie").is_none());

    let (to, link) = web.mailer.sent.lock().unwrap()[0].clone();
    assert_eq!(to, "carol@example.org");
    let prefix = format!("http://{}/darts/api/login/link?token=", web.addr);
    assert!(link.starts_with(&prefix), "{link}");
    let path = &link[format!("http://{}", web.addr).len()..];

    // The link logs in once, and sends the browser on to the landing page.
    let r = request(web.addr, "GET", path, &[], None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_secure(&r);
    assert!(r.text().contains("url=../../"));
    let cookie = r.header("set-cookie").unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    b.cookie = Some(cookie.split(';').next().unwrap().to_owned());
    let c = b.get("/api/config").await.json();
    assert_eq!(c["user"]["name"], "carol@example.org");
    assert_eq!(c["user"]["email"], "carol@example.org");
    let again = request(web.addr, "GET", path, &[], None).await;
    assert_eq!(again.status, 401);
    assert!(again.header("set-cookie").is_none());
}

/// Settings for a second factor mailed through `sink` (STARTTLS, its CA trusted).
fn mfa_mail_config(sink: &smtp_sink::SmtpSink) -> String {
    format!(
        r#"check_user_mfa = true
smtp_server = "127.0.0.1"
smtp_port = {port}
smtp_use_ssl = "starttls"
auth_ca_file = "{ca}"
email_from = "darts@e2e.test"
email_passwd = "senderpw"
"#,
        port = sink.port,
        ca = sink.ca_pem.display()
    )
}

/// The code in a second-factor mail: the line that is 8 digits.
fn code_in(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| l.len() == 8 && l.bytes().all(|c| c.is_ascii_digit()))
        .unwrap_or_else(|| panic!("no code in {text:?}"))
        .to_owned()
}

/// A code that is not `code`.
fn other_code(code: &str) -> String {
    let last = code.as_bytes()[7];
    format!("{}{}", &code[..7], if last == b'0' { '1' } else { '0' })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mailed_second_factor_opens_the_login() {
    let sink = smtp_sink::SmtpSink::start(&[("darts@e2e.test", "senderpw")]);
    let config = format!("{BASE}\n{}", mfa_mail_config(&sink));
    let web = Web::build("api-mfa", &config, Arc::new(MfaLogin), false, Mail::Smtp).await;
    assert_eq!(
        web.browser().get("/api/config").await.json()["auth"]["mfa"],
        true
    );

    // The right password does not open the login: a code is mailed instead.
    let mut b = web.browser();
    let r = b.login("erin", "erin-pw").await;
    assert_eq!(r.status, 202, "{}\nsink log:\n{}", r.text(), sink.log());
    assert_api_headers(&r);
    let body = r.json();
    assert_eq!(body["code"], "mfa_required");
    assert_eq!(body["user"], "erin");
    assert_eq!(body["expires_in"], 300);
    assert!(
        body["message"].as_str().unwrap().contains("e***@e2e.test"),
        "{body}"
    );
    assert!(r.set_cookie("darts_login").is_none(), "{}", r.head);
    let pending = r.set_cookie("darts_mfa").unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/darts", "Max-Age=300"] {
        assert!(pending.contains(attr), "{pending}");
    }
    b.hold_pending(&r);
    assert!(b.get("/api/config").await.json()["user"].is_null());
    b.get("/api/sessions")
        .await
        .assert_error(401, "login_required");

    // The mail: from darts' account to Erin, the code in the text, none in the subject.
    let mails = sink.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    assert_eq!(mail.rcpt_to, "erin@e2e.test");
    assert_eq!(mail.auth_user, "darts@e2e.test");
    assert_eq!(mail.subject, "Test desktops: your sign-in code");
    let code = code_in(mail.text.as_deref().unwrap());
    assert!(!mail.subject.contains(&code));
    assert!(
        !mail.subject.chars().any(|c| c.is_ascii_digit()),
        "{}",
        mail.subject
    );

    // A wrong code is refused, with the tries left; the login stays closed.
    let e = b
        .send_code(&other_code(&code))
        .await
        .assert_error(401, "mfa_wrong_code");
    assert_eq!(e["remaining"], 4);
    assert!(b.get("/api/config").await.json()["user"].is_null());
    // The pending login's CSRF token is required.
    let mut no_token = b.clone();
    no_token.csrf = None;
    no_token.send_code(&code).await.assert_error(403, "csrf");
    // Another browser, without the pending cookie, cannot use the code.
    web.browser()
        .send_code(&code)
        .await
        .assert_error(401, "mfa_not_pending");

    // The right code (as people type it) opens the login and ends the pending one.
    let typed = format!("{} {}", &code[..4], &code[4..]);
    let pending_browser = b.clone();
    let r = b.send_code(&typed).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_api_headers(&r);
    assert_eq!(r.json()["user"], "erin");
    let login = r.set_cookie("darts_login").unwrap();
    assert!(login.contains("HttpOnly") && login.contains("SameSite=Strict"));
    assert!(r.set_cookie("darts_mfa").unwrap().contains("Max-Age=0"));
    let c = b.get("/api/config").await.json();
    assert_eq!(c["user"]["name"], "erin");
    assert_eq!(c["user"]["email"], "erin@e2e.test");
    assert_eq!(b.get("/api/sessions").await.status, 200);
    // The code worked once.
    pending_browser
        .clone()
        .send_code(&code)
        .await
        .assert_error(401, "mfa_not_pending");
    assert_eq!(sink.mails().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn second_factor_refusals_and_limits() {
    let mfa = "check_user_mfa = true";
    // login_max_failures = 2: wrong codes count as failed logins.
    let web = Web::build(
        "api-mfa-limits",
        &format!("{BASE}\n{mfa}"),
        Arc::new(MfaLogin),
        false,
        Mail::Fake,
    )
    .await;
    // A wrong password is refused as ever, and mails nothing.
    web.browser()
        .login("erin", "nope")
        .await
        .assert_error(401, "invalid_credentials");
    // No address known: refused with a clear reason.
    let r = web.browser().login("frank", "frank-pw").await;
    r.assert_error(403, "mfa_no_email");
    assert!(r.headers("set-cookie").is_empty());
    assert!(web.mailer.codes.lock().unwrap().is_empty());

    let mut b = web.browser().at_addr("192.0.2.80");
    let r = b.login("erin", "erin-pw").await;
    assert_eq!(r.status, 202, "{}", r.text());
    b.hold_pending(&r);
    let (to, code) = web.mailer.codes.lock().unwrap()[0].clone();
    assert_eq!(to, "erin@e2e.test");
    b.send_code("12ab").await.assert_error(400, "invalid_field");
    for remaining in [4, 3] {
        let e = b
            .send_code(&other_code(&code))
            .await
            .assert_error(401, "mfa_wrong_code");
        assert_eq!(e["remaining"], remaining);
    }
    // The third failure (the wrong password above was the first) locks Erin out for a
    // while, even with the right code.
    let r = b.send_code(&code).await;
    r.assert_error(429, "rate_limited");
    assert!(r.header("retry-after").is_some());

    // Too many wrong codes throw the code and the pending login away.
    let lenient = BASE.replace("login_max_failures = 2", "login_max_failures = 20");
    let web = Web::build(
        "api-mfa-attempts",
        &format!("{lenient}\n{mfa}"),
        Arc::new(MfaLogin),
        false,
        Mail::Fake,
    )
    .await;
    let mut b = web.browser();
    let r = b.login("erin", "erin-pw").await;
    b.hold_pending(&r);
    let (_, code) = web.mailer.codes.lock().unwrap()[0].clone();
    for remaining in (1..=4).rev() {
        let e = b
            .send_code(&other_code(&code))
            .await
            .assert_error(401, "mfa_wrong_code");
        assert_eq!(e["remaining"], remaining);
    }
    let r = b.send_code(&other_code(&code)).await;
    r.assert_error(401, "mfa_too_many_attempts");
    assert!(r.set_cookie("darts_mfa").unwrap().contains("Max-Age=0"));
    b.send_code(&code)
        .await
        .assert_error(401, "mfa_not_pending");
    // Logging in again mails a new code, which works.
    let r = b.login("erin", "erin-pw").await;
    b.hold_pending(&r);
    let (_, code) = web.mailer.codes.lock().unwrap()[1].clone();
    assert_eq!(b.send_code(&code).await.status, 200);
    assert_eq!(b.get("/api/config").await.json()["user"]["name"], "erin");

    // No mail server configured: refused with a clear reason.
    let web = Web::build(
        "api-mfa-nomail",
        &format!("{BASE}\n{mfa}"),
        Arc::new(MfaLogin),
        false,
        Mail::Off,
    )
    .await;
    let r = web.browser().login("erin", "erin-pw").await;
    let e = r.assert_error(503, "mfa_unavailable");
    assert!(e["message"].as_str().unwrap().contains("cannot send mail"));
    assert!(r.headers("set-cookie").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_authenticator_any_name_is_accepted() {
    let web = Web::with("api-open", "", Arc::new(OpenLogin), true).await;
    let b = web.browser();
    assert_eq!(b.get("/api/config").await.json()["auth"]["open"], true);
    let dave = web.login("dave", "").await;
    let c = dave.get("/api/config").await.json();
    assert_eq!(c["user"]["name"], "dave");
    assert_eq!(c["user"]["admin"], false);
    // Still one user per name, and names keep the original's character class.
    assert!(dave.get("/api/sessions").await.json()["sessions"]
        .as_array()
        .unwrap()
        .is_empty());
    web.browser()
        .login("../../etc", "")
        .await
        .assert_error(400, "invalid_field");
}

#[test]
fn darts_serve_without_authentication_stays_on_loopback() {
    // The embedded default: no authenticator, pages and API on 127.0.0.1, a loud warning.
    let svc = service::Service::start("api-serve", "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut b = Browser {
        addr: svc.addr,
        cookie: None,
        csrf: None,
        headers: Vec::new(),
    };
    let (page, config) = rt.block_on(async { (b.get("/").await, b.get("/api/config").await) });
    assert_eq!(page.status, 200, "log:\n{}", svc.log());
    assert!(page.text().contains("assets/landing.js"));
    assert_secure(&page);
    assert_eq!(config.json()["auth"]["open"], true);
    assert!(svc.log().contains("NO AUTHENTICATION"), "{}", svc.log());

    // A whole session through the real binary; its debug log holds none of the secrets.
    let created = rt.block_on(async {
        let r = b.login("dave", "hunter2-secret").await;
        assert_eq!(r.status, 200, "{}", r.text());
        let r = b
            .send(
                "POST",
                "/api/sessions",
                Some(json!({ "machine": "demo.img" })),
            )
            .await;
        assert_eq!(r.status, 201, "{}\nlog:\n{}", r.text(), svc.log());
        let created = r.json();
        let url = created["url"].as_str().unwrap();
        let (_rfb, init) = rfb_through(svc.addr, token_of(url)).await;
        let name = created["session"]["name"].as_str().unwrap();
        assert!(init.name.contains(name));
        let r = b
            .send("DELETE", &format!("/api/sessions/{name}"), None)
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        created
    });
    let log = svc.log();
    let cookie = b.cookie.clone().unwrap();
    for secret in [
        token_of(created["url"].as_str().unwrap()),
        token_of(created["view_url"].as_str().unwrap()),
        "hunter2-secret",
        cookie.split_once('=').unwrap().1,
        b.csrf.as_deref().unwrap(),
    ] {
        assert!(!log.contains(secret), "a secret reached the log");
    }
    assert!(log.contains("session created from the web"), "{log}");

    // Opening it to the network needs an explicit option; nothing is bound without it.
    let port = support::free_port();
    let out = std::process::Command::new(support::darts_bin())
        .args(["serve", "--listen", &format!("0.0.0.0:{port}"), "-c"])
        .arg(&svc.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--allow-open-access=true"), "{err}");
}
