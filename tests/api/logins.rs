//! Logging in and out: passwords, back-off, e-mailed links, no authenticator.

use std::sync::Arc;
use std::time::Duration;

use darts::api::chain_login::ChainLogin;
use darts::api::login::OpenLogin;
use darts::config::Config;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::auth_servers::{Dovecot, TestCa};
use crate::client::{assert_api_headers, assert_secure, request};
use crate::fakes::INVALID;
use crate::harness::{Mail, Web, BASE};
use crate::support::Scratch;

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
    // login_max_failures = 2: the second failure locks for 1 s, the next for 2 s, …
    let web = Web::start("api-backoff", "").await;

    // Per user: Alice's password guessed from two addresses.
    for ip in ["192.0.2.1", "192.0.2.2"] {
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
    for user in ["u1", "u2"] {
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

/// Sends every request at once (all connected first, then all written), and returns each
/// answer's status and `Retry-After`.
async fn all_at_once(addr: std::net::SocketAddr, requests: Vec<Vec<u8>>) -> Vec<(u16, u64)> {
    let mut streams = Vec::new();
    for _ in &requests {
        streams.push(TcpStream::connect(addr).await.unwrap());
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(requests.len()));
    let tasks: Vec<_> = streams
        .into_iter()
        .zip(requests)
        .map(|(mut s, req)| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                s.write_all(&req).await.unwrap();
                let mut answer = Vec::new();
                tokio::time::timeout(Duration::from_secs(120), s.read_to_end(&mut answer))
                    .await
                    .expect("an answer within 120 s")
                    .unwrap();
                let head = String::from_utf8_lossy(&answer).into_owned();
                let status = head.split(' ').nth(1).unwrap().parse().unwrap();
                let retry = head
                    .lines()
                    .find_map(|l| l.strip_prefix("retry-after: "))
                    .map_or(0, |v| v.trim().parse().unwrap());
                (status, retry)
            })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    answers
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_wrong_passwords_reach_the_server_at_most_login_max_failures_times() {
    // The real chain against a real dovecot, which logs every password it checks.
    let scratch = Scratch::new("api-backoff-race-imap");
    let ca = TestCa::new(&scratch.0, "imap");
    let dovecot = Dovecot::start(&scratch.0, &ca, &[("alice", "alicepw")]);
    let auth = format!(
        "check_user_with_imap = true\nimap_server = \"127.0.0.1\"\nimap_port = {}\n\
         imap_security = \"tls\"\nauth_ca_file = \"{}\"\n",
        dovecot.imaps_port,
        ca.ca_file.display()
    );
    let config = Config {
        check_user_with_imap: true,
        imap_server: "127.0.0.1".into(),
        imap_port: dovecot.imaps_port,
        imap_security: "tls".into(),
        auth_ca_file: ca.ca_file.display().to_string(),
        ..Config::default()
    };
    let login = Arc::new(ChainLogin::from_config(&config).unwrap());
    // BASE has login_max_failures = 2.
    let max_failures = 2;
    let web = Web::build(
        "api-backoff-race",
        &format!("{BASE}\n{auth}"),
        login,
        false,
        Mail::Off,
    )
    .await;

    // 100 wrong passwords for Alice from one address, all at once.
    let requests = (0..100)
        .map(|i| {
            let body = json!({ "user": "alice", "password": format!("guess-{i}") }).to_string();
            format!(
                "POST /darts/api/login HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
                 X-Forwarded-For: 192.0.2.66\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                web.addr,
                body.len()
            )
            .into_bytes()
        })
        .collect();
    let answers = all_at_once(web.addr, requests).await;
    let refused = answers.iter().filter(|(s, _)| *s == 401).count();
    let limited = answers.iter().filter(|(s, _)| *s == 429).count();
    assert_eq!(refused + limited, 100, "{answers:?}");

    // Dovecot's own count of the passwords it was asked to check.
    let reached = dovecot.password_mismatches("alice");
    assert!(
        (1..=max_failures).contains(&reached),
        "{reached} wrong passwords reached dovecot (at most {max_failures} may)"
    );
    assert_eq!(
        reached, refused,
        "every answered guess was checked, no other"
    );

    // Once the lock is over, Alice's right password works, from that same address.
    let wait = answers.iter().map(|(_, r)| *r).max().unwrap();
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let r = web
        .browser()
        .at_addr("192.0.2.66")
        .login("alice", "alicepw")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
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

/// With no authentication, a request that came through a reverse proxy may come from
/// anywhere: it is refused (pages and API alike), so no one on the internet becomes the
/// administrator by typing that name. Direct loopback requests are still served.
#[tokio::test(flavor = "multi_thread")]
async fn without_an_authenticator_forwarded_requests_are_refused() {
    let web = Web::with("api-open-proxy", "", Arc::new(OpenLogin), true).await;
    // The evidence: a login as the administrator through the trusted proxy at 127.0.0.1.
    let mut far = web.browser().at_addr("203.0.113.9");
    far.login("root", "")
        .await
        .assert_error(403, "open_access_forwarded");
    assert_eq!(far.get("/api/config").await.status, 403);
    assert_eq!(far.get("/").await.status, 403);
    // A proxy that is not declared trusted still says it forwarded the request.
    let mut undeclared = web.browser().with_header("Forwarded", "for=198.51.100.7");
    undeclared
        .login("root", "")
        .await
        .assert_error(403, "open_access_forwarded");
    // The local user on loopback is served as before.
    let local = web.login("root", "").await;
    assert_eq!(local.get("/api/config").await.json()["user"]["admin"], true);

    // An operator who really wants open access behind a proxy says so.
    let web = Web::with(
        "api-open-proxy-allowed",
        "allow_open_access = true",
        Arc::new(OpenLogin),
        true,
    )
    .await;
    let mut far = web.browser().at_addr("203.0.113.9");
    assert_eq!(far.login("dave", "").await.status, 200);
}

/// A trusted proxy on loopback seen through a dual-stack `[::]` listener arrives as
/// `::ffff:127.0.0.1`: it is the same proxy for every rule (client address, scheme,
/// Origin host), so a browser behind it on https can log in with a Secure cookie.
#[tokio::test(flavor = "multi_thread")]
async fn a_trusted_proxy_on_a_dual_stack_listener_is_trusted_for_everything() {
    let web = Web::build_on(
        "[::]:0".parse().unwrap(),
        "api-dual-stack",
        &format!(
            "{}\nservice_trusted_proxies = [\"127.0.0.0/8\"]",
            crate::harness::BASE.replace("service_trusted_proxies = [\"127.0.0.1\"]", "")
        ),
        Arc::new(crate::fakes::FakeLogin),
        false,
        crate::harness::Mail::Fake,
    )
    .await;
    let mut b = web
        .browser()
        .with_header("X-Forwarded-For", "192.0.2.7")
        .with_header("X-Forwarded-Proto", "https")
        .with_header("X-Forwarded-Host", "desktops.example.org")
        .with_header("Origin", "https://desktops.example.org");
    let r = b.login("root", "root-pw").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("set-cookie").unwrap().contains("; Secure"));
    let c = b.get("/api/config").await.json();
    assert_eq!(c["user"]["name"], "root");
}

#[tokio::test(flavor = "multi_thread")]
async fn logins_per_user_are_capped_and_the_oldest_goes() {
    let web = Web::start("api-logins-per-user", "login_max_per_user = 2").await;
    let bob = web.login("bob", "bob-pw").await;
    let first = web.login("alice", "alice-pw").await;
    let second = web.login("alice", "alice-pw").await;
    let third = web.login("alice", "alice-pw").await;
    // Alice's oldest login is closed; her two newest, and Bob's, still work.
    first
        .get("/api/sessions")
        .await
        .assert_error(401, "login_required");
    for b in [&second, &third, &bob] {
        assert_eq!(b.get("/api/sessions").await.status, 200);
    }
    assert_eq!(
        third.get("/api/config").await.json()["user"]["name"],
        "alice"
    );
}
