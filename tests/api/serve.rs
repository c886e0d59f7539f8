//! `darts serve` itself, as a process, without authentication.

use serde_json::json;

use crate::client::{assert_secure, rfb_through, token_of, Browser};
use crate::{service, support};

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

#[test]
fn a_slow_request_body_gets_408_within_the_deadline_and_others_are_served() {
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let svc = service::Service::start("api-slow-body", "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // A login whose body trickles in, one byte a second, far slower than it declares.
        let mut slow = tokio::net::TcpStream::connect(svc.addr).await.unwrap();
        let head = format!(
            "POST /darts/api/login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: 200\r\n\r\n{{\"user\": \"",
            svc.addr
        );
        slow.write_all(head.as_bytes()).await.unwrap();
        let started = Instant::now();
        let (mut reader, mut writer) = slow.into_split();
        let trickle = tokio::spawn(async move {
            for _ in 0..60 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if writer.write_all(b"a").await.is_err() {
                    break;
                }
            }
        });

        // Meanwhile other requests are answered at once.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let b = Browser {
            addr: svc.addr,
            cookie: None,
            csrf: None,
            headers: Vec::new(),
        };
        let quick = Instant::now();
        assert_eq!(b.get("/api/config").await.status, 200);
        assert!(quick.elapsed() < Duration::from_secs(5));

        // The slow one gets 408, then the connection is closed, all within the deadline
        // (10 s) and some slack.
        let mut answer = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(25), reader.read_to_end(&mut answer)).await;
        let elapsed = started.elapsed();
        trickle.abort();
        assert!(
            read.is_ok(),
            "no answer and no close after {elapsed:?}: {:?}",
            String::from_utf8_lossy(&answer)
        );
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(text.contains("\"code\":\"body_timeout\""), "{text}");
        assert!(
            (Duration::from_secs(9)..Duration::from_secs(16)).contains(&elapsed),
            "answered after {elapsed:?}"
        );
    });
}
