//! The audit log of a real `darts serve`: logins through the web API (a custom
//! authentication program checks the password), sessions on the demo machine under
//! QEMU (created, watched, shared, extended, purged, ended by their VM, expired, refused),
//! then SIGTERM. Every event is one JSON line in `service_logfile`, the original's
//! START/STOP/ERROR lines are in `service_logfile_text`, and neither file holds the
//! password, a token, a cookie or a CSRF token.
//!
//! Needs qemu-system-x86_64 and the demo machine (`bash tests/setup.sh qemu guest`).

#[path = "support/qemu.rs"]
mod qemu;
#[path = "support/service.rs"]
mod service;
mod support;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use serde_json::{json, Value};
use service::Service;
use support::{read_bytes, send_binary, ws_connect};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PASSWORD: &str = "Aud1t-pw-7f3b9c";

/// A minimal HTTP/1.1 exchange: (status, head, body).
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<Value>,
    cookie: Option<&str>,
    csrf: Option<&str>,
) -> (u16, String, Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(c) = cookie {
        req.push_str(&format!("Cookie: {c}\r\n"));
    }
    if let Some(t) = csrf {
        req.push_str(&format!("X-CSRF-Token: {t}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(120), s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let json = serde_json::from_slice(&buf[split + 4..]).unwrap_or(Value::Null);
    (status, head, json)
}

fn token_of(url: &str) -> String {
    url.rsplit_once("token=").unwrap().1.to_owned()
}

/// Opens a viewer, answers the RFB version darts offers, then closes.
async fn watch(svc: &Service, token: &str) {
    let mut ws = ws_connect(&svc.ws_url(token), &[]).await.unwrap();
    let version = read_bytes(&mut ws, 12, Duration::from_secs(20)).await;
    assert!(version.starts_with(b"RFB 003."), "{version:?}");
    send_binary(&mut ws, b"RFB 003.008\n").await;
    let _ = futures_util::SinkExt::close(&mut ws).await;
}

fn events<'a>(lines: &'a [Value], name: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["event"] == name).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_event_is_one_json_line_and_no_secret_is_logged() {
    let logs = tempfile::tempdir().unwrap();
    let auth = logs.path().join("auth.sh");
    std::fs::write(
        &auth,
        format!(
            "#!/bin/sh\nif grep -q '\"password\":\"{PASSWORD}\"'; then echo SUCCESS; else echo FAILED; fi\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&auth, std::fs::Permissions::from_mode(0o755)).unwrap();
    let audit = logs.path().join("audit.log");
    let text = logs.path().join("service.log");
    let mut svc = Service::start(
        "audit",
        &format!(
            "check_user_custom = {:?}\nuser_admin = [\"alice\"]\nservice_logfile = {:?}\nservice_logfile_text = {:?}\n",
            auth.to_str().unwrap(),
            audit.to_str().unwrap(),
            text.to_str().unwrap()
        ),
    );
    let addr = svc.addr;

    // Logins: a wrong password, then the right one.
    let (status, _, _) = http(
        addr,
        "POST",
        "/darts/api/login",
        Some(json!({"user": "bob", "password": "not-the-password"})),
        None,
        None,
    )
    .await;
    assert_eq!(status, 401);
    let (status, head, body) = http(
        addr,
        "POST",
        "/darts/api/login",
        Some(json!({"user": "alice", "password": PASSWORD})),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200, "{head} {body}");
    let cookie = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or(l.strip_prefix("Set-Cookie: "))
        })
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let csrf = body["csrf"].as_str().unwrap().to_owned();
    let (c, t) = (Some(cookie.as_str()), Some(csrf.as_str()));

    // A session from the web: watched, shared, extended.
    let (status, _, created) = http(
        addr,
        "POST",
        "/darts/api/sessions",
        Some(json!({"machine": "demo.img"})),
        c,
        t,
    )
    .await;
    assert_eq!(status, 201, "{created}\n{}", svc.log());
    let name = created["session"]["name"].as_str().unwrap().to_owned();
    let token = token_of(created["url"].as_str().unwrap());
    let view_token = token_of(created["view_url"].as_str().unwrap());
    watch(&svc, &token).await;
    watch(&svc, &view_token).await;
    svc.wait_sessions("viewers gone", Duration::from_secs(20), |s| {
        s.iter().all(|s| s["viewers"] == 0)
    });
    let path = format!("/darts/api/sessions/{name}/extend");
    assert_eq!(http(addr, "POST", &path, None, c, t).await.0, 200);

    // From the command line: one ended by its VM, one by its lifetime, one refused.
    let by_vm = svc.start_session(&[]);
    let short = svc.start_session(&["--snapshot_lifetime=2"]);
    let refused = svc.cli(&["start", "absent.qcow2"]);
    assert!(!refused.status.success());
    let vm = service::pids_mentioning(&svc.scratch.0.join("snapshots").join(&by_vm.name));
    assert_eq!(vm.len(), 1, "one QEMU for {}", by_vm.name);
    std::process::Command::new("kill")
        .args(["-9", &vm[0].to_string()])
        .status()
        .unwrap();
    svc.wait_sessions("VM exit and expiry", Duration::from_secs(60), |s| {
        s.iter()
            .all(|s| s["name"] != by_vm.name.as_str() && s["name"] != short.name.as_str())
    });

    // An administrator's purge ends the web session.
    let (status, _, purged) = http(addr, "POST", "/darts/api/purge", None, c, t).await;
    assert_eq!(status, 200, "{purged}");
    let darts = svc.darts.take().unwrap();
    darts.signal("TERM");
    let (clean, log) = darts.wait_exit(Duration::from_secs(60));
    assert!(clean, "darts did not stop cleanly:\n{log}");

    // Every line is JSON with a time and an event.
    let raw = std::fs::read_to_string(&audit).unwrap();
    let lines: Vec<Value> = raw
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines
        .iter()
        .all(|l| l["time"].as_str().is_some_and(|t| t.ends_with('Z'))));
    assert_eq!(
        std::fs::metadata(&audit).unwrap().permissions().mode() & 0o777,
        0o640
    );
    assert_eq!(events(&lines, "service_start").len(), 1);
    assert_eq!(events(&lines, "service_stop").len(), 1);

    let logins = events(&lines, "login");
    assert!(
        logins.iter().any(|l| l["user"] == "bob"
            && l["success"] == false
            && l["reason"] == "invalid credentials"
            && l["client"] == "127.0.0.1"),
        "{logins:?}"
    );
    assert!(
        logins
            .iter()
            .any(|l| l["user"] == "alice" && l["success"] == true && l["method"] == "password"),
        "{logins:?}"
    );

    let started = events(&lines, "session_start");
    assert_eq!(started.len(), 3, "{started:?}");
    let web = started
        .iter()
        .find(|l| l["session"] == name.as_str())
        .unwrap();
    assert_eq!(web["user"], "alice");
    assert_eq!(web["machine"], "demo.img");
    assert_eq!(web["client"], "127.0.0.1");

    let opened = events(&lines, "viewer_open");
    let closed = events(&lines, "viewer_close");
    assert_eq!(
        (opened.len(), closed.len()),
        (2, 2),
        "{opened:?} {closed:?}"
    );
    for view_only in [false, true] {
        let c = closed
            .iter()
            .find(|l| l["view_only"] == view_only)
            .unwrap_or_else(|| panic!("no close with view_only={view_only}: {closed:?}"));
        assert_eq!(c["session"], name.as_str());
        assert_eq!(c["user"], "alice");
        assert!(c["client"].as_str().unwrap().starts_with("127.0.0.1:"));
        // The browser sent its RFB version (12 bytes in a masked frame) and a close;
        // darts sent its version.
        assert!(c["bytes_from_client"].as_u64().unwrap() >= 18, "{c}");
        assert!(c["bytes_to_client"].as_u64().unwrap() >= 14, "{c}");
        assert!(c["duration_s"].as_f64().unwrap() >= 0.0);
    }

    let extended = events(&lines, "session_extend");
    assert_eq!(extended.len(), 1);
    assert_eq!(extended[0]["by"], "alice");

    let errors = events(&lines, "session_error");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["machine"], "absent.qcow2");
    assert_eq!(errors[0]["code"], "machine_missing");

    let ended = events(&lines, "session_end");
    let how = |session: &str| {
        ended
            .iter()
            .find(|l| l["session"] == session)
            .map(|l| l["how"].as_str().unwrap().to_owned())
    };
    assert_eq!(how(&by_vm.name).as_deref(), Some("vm_exit"), "{ended:?}");
    assert_eq!(how(&short.name).as_deref(), Some("expire"), "{ended:?}");
    assert_eq!(how(&name).as_deref(), Some("stop"), "{ended:?}");

    let admin = events(&lines, "admin");
    assert_eq!(admin.len(), 1);
    assert_eq!(
        (&admin[0]["user"], &admin[0]["action"]),
        (&json!("alice"), &json!("purge"))
    );
    assert_eq!(admin[0]["sessions"], 1);

    // The original's lines: three starts, three stops, one error.
    let plain = std::fs::read_to_string(&text).unwrap();
    assert!(plain.starts_with("# qemu-web-desktop log file"), "{plain}");
    let count = |kind: &str| plain.lines().filter(|l| l.contains(kind)).count();
    assert_eq!(
        (count("] START "), count("] STOP  "), count("] ERROR ")),
        (3, 3, 1),
        "{plain}"
    );
    assert!(
        plain.contains(&format!("USER=alice VM=demo.img NAME={name}")),
        "{plain}"
    );
    assert!(plain.contains("VM=absent.qcow2"), "{plain}");

    // No secret anywhere.
    let cookie_value = cookie.split_once('=').unwrap().1;
    for secret in [
        PASSWORD,
        token.as_str(),
        view_token.as_str(),
        by_vm.token.as_str(),
        short.token.as_str(),
        csrf.as_str(),
        cookie_value,
    ] {
        assert!(!raw.contains(secret), "a secret is in the audit log");
        assert!(!plain.contains(secret), "a secret is in the text log");
    }
    assert!(!raw.contains("token=") && !raw.contains("\"password\":"));
}
