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
