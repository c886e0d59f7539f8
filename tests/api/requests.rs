//! Bad bodies, unknown routes, the pages, their security headers and the OpenAPI document.

use serde_json::json;

use crate::client::{assert_api_headers, assert_secure, exchange, request};
use crate::harness::Web;

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
