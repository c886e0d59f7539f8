//! darts behind real reverse proxies: Debian's apache2 and nginx, started on loopback by the
//! tests (tests/support/web_proxies.rs) with the snippets shipped in deploy/, in front of a
//! real `darts serve` whose demo machine runs under QEMU (TCG).
//!
//! - Through each shipped block under /darts, in headless Chromium: the landing page loads
//!   (drawn from the API), a session is created, noVNC opens the connect link and shows
//!   the guest's screen, the API describes the session, Stop works.
//! - The Apache block with a TLS backend (`Define DARTS_TLS`), and the original's block
//!   unchanged in front of a TLS darts (`RewriteRule … wss://`, prefix stripped: pages
//!   reach darts as `//vnc.html`, the upgrade as `/?token=T`).
//! - The proxies connect from 127.0.0.2 and the browser from 127.0.0.1: darts records and
//!   logs the browser's address (`service_trusted_proxies = ["127.0.0.2"]`), and ignores
//!   forwarding headers from anyone else.
//! - PROXY protocol: nginx `stream` with `proxy_protocol on` in front of darts with
//!   `service_proxy_protocol = true`, for plain HTTP and TLS.
//!
//! Needs apache2 and nginx (`bash tests/setup.sh proxies`), QEMU and the demo machine,
//! Chromium and tests/e2e/node/node_modules (`bash tests/setup.sh`).

#[path = "support/qemu.rs"]
mod qemu;
#[path = "support/service.rs"]
mod service;
mod support;
#[path = "support/web_proxies.rs"]
mod web_proxies;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use qemu::{artifacts_dir, browser_tools, repo_path, script_json, RfbOverWs};
use serde_json::Value;
use service::Service;
use support::{http_get, ws_connect};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use web_proxies::WebProxy;

/// The original's block from its documentation ("Hiding the service port"), as operators
/// have it in /etc/apache2/conf-available/qemu-web-desktop.conf; only the port changes.
const SEED_BLOCK: &str = r#"# redirect QWD port 6080 to /darts/
# Applied globally to all <VirtualHost>
RewriteEngine On
RewriteCond %{HTTP:Upgrade} =websocket [NC]
RewriteRule      /darts wss://127.0.0.1:6080/ [P,L]

ProxyPass        /darts ws://127.0.0.1:6080/
ProxyPassReverse /darts ws://127.0.0.1:6080/
"#;

/// The name the browser uses for the proxy (mapped to 127.0.0.1 in Chromium).
const SITE: &str = "darts.test";
/// The proxies connect from 127.0.0.2. The services of these tests have no authentication,
/// so they serve forwarded requests only because the operator said so.
const TRUST_THE_PROXIES: &str =
    "service_trusted_proxies = [\"127.0.0.2\"]\nallow_open_access = true\n";

fn apache_block() -> PathBuf {
    repo_path("deploy/apache/darts.conf")
}

/// The nginx snippet with darts' port put in, as an operator adapts it.
fn nginx_block(darts: SocketAddr) -> String {
    let text = std::fs::read_to_string(repo_path("deploy/nginx/darts.conf")).unwrap();
    assert!(text.contains("proxy_pass http://127.0.0.1:6080;"), "{text}");
    text.replace("127.0.0.1:6080", &darts.to_string())
}

/// Polls darts' log until `pred` holds: its stderr is read by a thread, so a line
/// written before an answer may reach the log a moment after it.
fn wait_log(svc: &Service, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let log = svc.log();
        if pred(&log) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "darts' log never showed {what}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Log lines containing every one of `parts`.
fn lines_with<'a>(log: &'a str, parts: &[&str]) -> Vec<&'a str> {
    log.lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .collect()
}

/// No request, session or refusal was logged with the proxy (127.0.0.2) as the client.
/// (Connection-level lines name the TCP peer, which is the proxy.)
fn assert_no_proxy_as_client(log: &str) {
    for what in ["web request", "session opened", "websocket refused"] {
        let wrong = lines_with(log, &[what, "client.addr=127.0.0.2"]);
        assert!(
            wrong.is_empty(),
            "the proxy's address was logged as the client:\n{}",
            wrong.join("\n")
        );
    }
}

/// A CA and a certificate for darts at 127.0.0.1 that both Apache (CN: it compares the
/// host with DNS names and the CN) and rustls (IP address SAN) accept.
struct Tls {
    ca: PathBuf,
    ca_pem: String,
    cert: PathBuf,
    key: PathBuf,
}

fn tls_material(dir: &Path) -> Tls {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "darts reverse proxy test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let tls = Tls {
        ca: dir.join("ca.pem"),
        ca_pem: ca.pem(),
        cert: dir.join("darts.crt"),
        key: dir.join("darts.key"),
    };
    std::fs::write(&tls.ca, ca.pem()).unwrap();
    std::fs::write(&tls.cert, cert.pem()).unwrap();
    std::fs::write(&tls.key, key.serialize_pem()).unwrap();
    tls
}

/// darts with a certificate: TLS and plain on its one port.
fn tls_service(name: &str, extra: &str) -> (Service, Tls) {
    let mut svc = Service::configure(name, "");
    let tls = tls_material(&svc.scratch.0);
    let mut config = std::fs::read_to_string(&svc.config).unwrap();
    config.push_str(&format!(
        "certificate_crt = \"{}\"\ncertificate_key = \"{}\"\n{extra}",
        tls.cert.display(),
        tls.key.display()
    ));
    std::fs::write(&svc.config, config).unwrap();
    svc.launch();
    (svc, tls)
}

/// Runs tests/e2e/node/darts-proxied.js against `http://darts.test:PORT/darts/`.
fn browse(proxy: &WebProxy, svc: &Service, name: &str) -> Value {
    let (node, chromium) = browser_tools();
    let base = format!("http://{SITE}:{}/darts/", proxy.port);
    let out = Command::new(node)
        .arg(repo_path("tests/e2e/node/darts-proxied.js"))
        .args(["--base", &base, "--user", "alice", "--machine", "demo.img"])
        .args(["--name", name, "--resolve", &format!("{SITE}=127.0.0.1")])
        .arg("--out")
        .arg(artifacts_dir())
        .env("CHROMIUM", chromium)
        .output()
        .expect("run node");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let j = script_json("darts-proxied.js", &out);
    eprintln!("darts-proxied.js through {name}: {j}");
    assert!(
        out.status.success(),
        "the browser run through {name} failed: {j}\nstderr:\n{stderr}\n{}\ndarts log (tail):\n{}",
        proxy.logs(),
        tail(&svc.log(), 60)
    );
    j
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// What every browser run through a shipped block must show.
fn assert_browser_run(j: &Value, proxy: &WebProxy, svc: &Service) {
    assert_eq!(j["landing_status"], 200, "{j}");
    assert!(!j["title"].as_str().unwrap_or("").is_empty(), "{j}");
    // Links follow the host and port the browser used, under the prefix.
    let href = j["connect_href"].as_str().unwrap();
    assert!(
        href.starts_with(&format!(
            "http://{SITE}:{}/darts/vnc.html?resize=",
            proxy.port
        )) && href.contains("&path=?token="),
        "{href}"
    );
    // noVNC 1.3 opened its websocket at the site's root; the block sent it to darts.
    let sockets = j["websockets"].as_array().unwrap();
    assert!(
        sockets.iter().any(|u| u
            .as_str()
            .unwrap()
            .starts_with(&format!("ws://{SITE}:{}/", proxy.port))),
        "{j}"
    );
    assert!(
        j["novnc_status"].as_str().unwrap().contains("Connected"),
        "{j}"
    );
    assert!(j["screen"]["nonblack"].as_f64().unwrap() > 0.002, "{j}");
    // The API, through the proxy: the session and the address darts recorded for it.
    assert_eq!(j["session_info"]["status"], 200, "{j}");
    let session = &j["session_info"]["body"]["session"];
    assert_eq!(session["name"], j["session"], "{j}");
    assert_eq!(session["remote_host"], "127.0.0.1", "{j}");
    assert!(
        j["stop_message"].as_str().unwrap().contains("stopped"),
        "{j}"
    );
    svc.wait_sessions("the session stopped", Duration::from_secs(60), |s| {
        s.is_empty()
    });

    // darts logged the viewer's websocket with the browser's address, never the proxy's.
    let log = wait_log(svc, "the session's websocket", |l| {
        !lines_with(
            l,
            &["session opened", "client.addr=127.0.0.1", "via_proxy=true"],
        )
        .is_empty()
    });
    assert_no_proxy_as_client(&log);
    // The proxy saw the browser; darts saw the proxy (127.0.0.2) and believed it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !proxy.access_log().contains("127.0.0.1") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(proxy.access_log().contains("127.0.0.1"), "{}", proxy.logs());
    // The audit log records the browser's address for the session and its viewer.
    let audit_path = svc.scratch.0.join("service/audit.log");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let audit = loop {
        let text = std::fs::read_to_string(&audit_path).unwrap_or_default();
        if text.contains("\"event\":\"viewer_close") || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let viewer_lines: Vec<&str> = audit
        .lines()
        .filter(|l| l.contains("\"event\":\"viewer_") || l.contains("\"event\":\"session_start"))
        .collect();
    assert!(
        !viewer_lines.is_empty(),
        "no viewer event in the audit log:\n{audit}"
    );
    for l in &viewer_lines {
        assert!(
            l.contains("127.0.0.1"),
            "viewer event without the browser's address: {l}"
        );
    }
    assert!(
        !audit.contains("127.0.0.2"),
        "the proxy's address in the audit log:\n{audit}"
    );
}

/// Requests through `proxy` that need no browser: the site's own root is not taken
/// over, `/darts` gets its slash, and a forged `X-Forwarded-For` from the client is
/// not believed (the proxy appends the real address; darts takes that one).
async fn assert_plain_requests(proxy: &WebProxy, svc: &Service) {
    let (status, _, body) = http_get(proxy.addr(), "/", "").await;
    assert_eq!((status, body.as_slice()), (200, &b"site root\n"[..]));
    let (status, head, _) = http_get(proxy.addr(), "/darts", "").await;
    assert_eq!(status, 308, "{head}");
    let location = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("location:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    assert!(location.ends_with("/darts/"), "{head}");
    let (status, head, body) = http_get(
        proxy.addr(),
        "/darts/api/config",
        "X-Forwarded-For: 203.0.113.9\r\nForwarded: for=203.0.113.10\r\n",
    )
    .await;
    assert_eq!(status, 200, "{head}\n{}", proxy.logs());
    let config: Value = serde_json::from_slice(&body).unwrap();
    assert!(config.is_object(), "{config}");
    let log = wait_log(svc, "the API request", |l| {
        !lines_with(l, &["web request", "/api/config", "client.addr=127.0.0.1"]).is_empty()
    });
    assert!(!log.contains("203.0.113."), "a forged address was believed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apache_block_novnc_shows_the_guest_and_darts_sees_the_browser() {
    browser_tools();
    let svc = Service::start("rp-apache", TRUST_THE_PROXIES);
    let site = format!(
        "Define DARTS_PORT {}\nInclude \"{}\"\n",
        svc.addr.port(),
        apache_block().display()
    );
    let apache = web_proxies::apache(&svc.scratch.0, &site);
    assert_plain_requests(&apache, &svc).await;
    let j = tokio::task::block_in_place(|| browse(&apache, &svc, "apache"));
    assert_browser_run(&j, &apache, &svc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_block_novnc_shows_the_guest_and_darts_sees_the_browser() {
    browser_tools();
    let svc = Service::start("rp-nginx", TRUST_THE_PROXIES);
    let (nginx, _) = web_proxies::nginx(&svc.scratch.0, &nginx_block(svc.addr), "");
    assert_plain_requests(&nginx, &svc).await;
    let j = tokio::task::block_in_place(|| browse(&nginx, &svc, "nginx"));
    assert_browser_run(&j, &nginx, &svc);
}

/// A websocket through `proxy` to `path`, as a browser on `darts.test` opens it, then
/// the RFB handshake and a full frame of the guest's screen.
async fn rfb_through(proxy: &WebProxy, path: &str) -> (u16, u16) {
    let url = format!("ws://127.0.0.1:{}{path}", proxy.port);
    let host = format!("{SITE}:{}", proxy.port);
    let origin = format!("http://{host}");
    let ws = ws_connect(&url, &[("host", &host), ("origin", &origin)])
        .await
        .unwrap_or_else(|status| panic!("{url}: HTTP {status}\n{}", proxy.logs()));
    let mut rfb = RfbOverWs::new(ws, Duration::from_secs(30));
    let init = rfb.handshake().await;
    rfb.set_raw_rgb32().await;
    let frame = rfb.full_frame(30).await;
    assert!(frame.bytes > 0);
    (init.width, init.height)
}

/// `darts_tls_connections_total`, read through `proxy`.
async fn tls_connections(proxy: &WebProxy, path: &str) -> u64 {
    let (status, _, body) = http_get(proxy.addr(), path, "").await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("darts_tls_connections_total "))
        .unwrap_or_else(|| panic!("no TLS counter in {text}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apache_block_with_a_tls_backend() {
    let (svc, tls) = tls_service("rp-apache-tls", TRUST_THE_PROXIES);
    let site = format!(
        "Define DARTS_PORT {}\nDefine DARTS_TLS\nDefine DARTS_CA \"{}\"\nInclude \"{}\"\n",
        svc.addr.port(),
        tls.ca.display(),
        apache_block().display()
    );
    let apache = web_proxies::apache(&svc.scratch.0, &site);
    let (status, _, body) = http_get(apache.addr(), "/darts/", "").await;
    assert_eq!(status, 200, "{}", apache.logs());
    assert!(String::from_utf8_lossy(&body).contains("<html"));
    let (status, _, _) = http_get(apache.addr(), "/darts/api/config", "").await;
    assert_eq!(status, 200);
    let before = tls_connections(&apache, "/darts/metrics").await;
    assert!(before >= 1, "the pages did not reach darts over TLS");

    let started = svc.start_session(&[]);
    // Where noVNC 1.3 opens it (the site's root), and under the prefix as newer ones do.
    let (w, h) = rfb_through(&apache, &format!("/?token={}", started.token)).await;
    assert!(w >= 320 && h >= 200, "{w}x{h}");
    rfb_through(&apache, &format!("/darts/vnc.html?token={}", started.token)).await;
    assert!(tls_connections(&apache, "/darts/metrics").await > before);
    let log = wait_log(&svc, "the sessions' websockets", |l| {
        lines_with(
            l,
            &["session opened", "client.addr=127.0.0.1", "via_proxy=true"],
        )
        .len()
            >= 2
    });
    assert_no_proxy_as_client(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_originals_apache_block_unchanged_with_a_tls_backend() {
    // The operator's darts configuration keeps service_reverse_proxy = "/darts" (the
    // default) although this block strips the prefix.
    let (svc, tls) = tls_service("rp-seed", TRUST_THE_PROXIES);
    let site = format!(
        "SSLProxyEngine On\nSSLProxyVerify require\nSSLProxyCheckPeerName On\n\
         SSLProxyCACertificateFile \"{}\"\n{}",
        tls.ca.display(),
        SEED_BLOCK.replace("6080", &svc.addr.port().to_string())
    );
    let apache = web_proxies::apache(&svc.scratch.0, &site);

    // Pages arrive as //vnc.html, //api/config: served.
    let (status, _, body) = http_get(apache.addr(), "/darts/vnc.html", "").await;
    assert_eq!(status, 200, "{}", apache.logs());
    assert!(String::from_utf8_lossy(&body).contains("noVNC"));
    let (status, _, body) = http_get(apache.addr(), "/darts/api/config", "").await;
    assert_eq!(status, 200, "{}", apache.logs());
    assert!(serde_json::from_slice::<Value>(&body).unwrap().is_object());
    let before = tls_connections(&apache, "/darts/metrics").await;

    // The upgrade goes through the RewriteRule to wss://, arriving as /?token=T; the
    // browser's Origin (darts.test) is checked against the host Apache received.
    let started = svc.start_session(&[]);
    let (w, _) = rfb_through(&apache, &format!("/darts/vnc.html?token={}", started.token)).await;
    assert!(w >= 320);
    assert!(
        tls_connections(&apache, "/darts/metrics").await > before,
        "the upgrade did not reach darts over TLS"
    );
    let log = wait_log(&svc, "the session's websocket", |l| {
        !lines_with(
            l,
            &["session opened", "client.addr=127.0.0.1", "via_proxy=true"],
        )
        .is_empty()
    });
    assert_no_proxy_as_client(&log);
    // Apache writes its access log after the response: wait for the line (bounded).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !apache.access_log().contains("GET /darts/vnc.html?token=")
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        apache.access_log().contains("GET /darts/vnc.html?token="),
        "{}",
        apache.logs()
    );
}

/// A websocket upgrade sent straight to darts with `extra` headers; returns the status.
async fn raw_upgrade(addr: SocketAddr, path: &str, extra: &str) -> u16 {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 1, "closed after {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head);
    text.split(' ').nth(1).unwrap().parse().unwrap()
}

/// Without authentication and without `allow_open_access`, what nginx forwards may come
/// from the internet: refused, pages and API alike, while the host's own user is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_darts_refuses_what_a_proxy_forwards() {
    let svc = Service::start("rp-open", "service_trusted_proxies = [\"127.0.0.2\"]\n");
    let (nginx, _) = web_proxies::nginx(&svc.scratch.0, &nginx_block(svc.addr), "");
    for path in ["/darts/api/config", "/darts/"] {
        let (status, head, body) = http_get(nginx.addr(), path, "").await;
        assert_eq!(status, 403, "{path}: {head}\n{}", nginx.logs());
        if path.contains("api") {
            let body: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["code"], "open_access_forwarded", "{body}");
        }
    }
    let (status, _, _) = http_get(svc.addr, "/darts/api/config", "").await;
    assert_eq!(status, 200, "darts' own host is served directly");
    wait_log(&svc, "the start-up warning", |l| {
        l.contains("forwarded by a reverse proxy") && l.contains("refused")
    });
}

#[tokio::test]
async fn forwarding_headers_from_anyone_else_are_ignored() {
    let svc = Service::start("rp-untrusted", TRUST_THE_PROXIES);
    let forged = "X-Forwarded-For: 203.0.113.9\r\nForwarded: for=203.0.113.10;proto=https\r\n\
                  X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\n";
    let (status, head, _) = http_get(svc.addr, "/darts/api/config", forged).await;
    assert_eq!(status, 200, "{head}");
    // A page of evil.example cannot open a websocket by naming itself as forwarded host.
    let evil = format!("{forged}Origin: http://evil.example\r\n");
    assert_eq!(raw_upgrade(svc.addr, "/?token=nope", &evil).await, 403);
    assert_eq!(raw_upgrade(svc.addr, "/?token=nope", forged).await, 404);
    let log = wait_log(&svc, "the refusals", |l| {
        lines_with(l, &["websocket refused", "client.addr=127.0.0.1"]).len() >= 2
            && !lines_with(l, &["web request", "client.addr=127.0.0.1"]).is_empty()
    });
    assert!(
        !log.contains("203.0.113."),
        "{}",
        lines_with(&log, &["203.0.113."]).join("\n")
    );
}

/// An HTTP/1.1 request over `stream`; returns the status line's code.
async fn status_of<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    request_line: &str,
) -> Option<u16> {
    let req = format!("{request_line} HTTP/1.1\r\nHost: {SITE}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    text.split(' ').nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_stream_with_proxy_protocol() {
    let extra = format!("{TRUST_THE_PROXIES}service_proxy_protocol = true\n");
    let (svc, tls) = tls_service("rp-proxy-protocol", &extra);
    let stream = format!(
        "server {{ listen 127.0.0.1:{{stream_port}}; proxy_pass {}; proxy_protocol on; \
         proxy_bind 127.0.0.2; }}",
        svc.addr
    );
    let (nginx, stream_port) = web_proxies::nginx(&svc.scratch.0, "", &stream);
    let front: SocketAddr = ([127, 0, 0, 1], stream_port).into();

    // Plain HTTP from 127.0.0.3: nginx connects from 127.0.0.2 and names 127.0.0.3.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(([127, 0, 0, 3], 0).into()).unwrap();
    let conn = socket.connect(front).await.unwrap();
    assert_eq!(
        status_of(conn, "GET /darts/api/config").await,
        Some(200),
        "{}\n{}",
        nginx.logs(),
        tail(&svc.log(), 30)
    );
    wait_log(&svc, "the client named by the PROXY header", |l| {
        !lines_with(l, &["web request", "/api/config", "client.addr=127.0.0.3"]).is_empty()
    });

    // TLS after the PROXY header: a websocket with an unknown token, refused by darts,
    // which logs the client (127.0.0.1), not nginx (127.0.0.2).
    let url = format!("wss://127.0.0.1:{stream_port}/darts/?token=unknown");
    let err = support::wss_connect(&url, &tls.ca_pem).await.err().unwrap();
    assert!(err.contains("404"), "{err}");
    wait_log(&svc, "the refusal over TLS", |l| {
        !lines_with(l, &["websocket refused", "client.addr=127.0.0.1"]).is_empty()
    });

    // A trusted HTTP proxy (no PROXY header) on the same listener is still served, even
    // with a request that starts with "P" like the signature.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(([127, 0, 0, 2], 0).into()).unwrap();
    let conn = socket.connect(svc.addr).await.unwrap();
    assert_eq!(status_of(conn, "PUT /darts/api/config").await, Some(405));

    // Straight from an untrusted address, a PROXY header is not believed: it is not
    // HTTP, and the connection ends without an answer from the application.
    let mut direct = tokio::net::TcpStream::connect(svc.addr).await.unwrap();
    direct
        .write_all(b"PROXY TCP4 203.0.113.9 127.0.0.1 1111 2222\r\n")
        .await
        .unwrap();
    assert_ne!(status_of(direct, "GET /darts/api/config").await, Some(200));
    let log = svc.log();
    assert!(!log.contains("203.0.113.9"), "{log}");
    assert_no_proxy_as_client(&log);
}
