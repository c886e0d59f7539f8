//! Creating, viewing, sharing, extending and stopping sessions, and who may do each.

use serde_json::{json, Value};

use crate::client::{assert_api_headers, rfb_through, token_of, Resp};
use crate::harness::Web;
use crate::support::ws_connect;

/// The names in a session list answer.
fn list(r: Resp) -> Vec<String> {
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
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

/// The catalogue is checked once a second in the background; a request naming a machine
/// added since is not refused as unknown while that check is still to come.
#[tokio::test(flavor = "multi_thread")]
async fn a_machine_just_added_is_known_to_the_next_request() {
    let web = Web::start("api-machine-just-added", "").await;
    let alice = web.login("alice", "alice-pw").await;
    let root = &web.svc.scratch.0;
    let mut conf = String::from("[demo.img]\n");
    for i in 0..10 {
        let name = format!("added-{i}.img");
        std::fs::copy(
            root.join("machines/demo.img"),
            root.join("machines").join(&name),
        )
        .unwrap();
        conf.push_str(&format!("\n[{name}]\ndescription=Added {i}\n"));
        std::fs::write(root.join("etc/machines.conf"), &conf).unwrap();
        // A memory size not offered: refused, but for the memory, so the machine was found.
        let body = json!({ "machine": name, "memory": 4 });
        let r = alice.send("POST", "/api/sessions", Some(body)).await;
        let e = r.assert_error(400, "invalid_field");
        assert_eq!(e["field"], "memory", "{name}: {e}");
    }
}

/// The manager's viewer counts come back right after the gateway dropped viewer events
/// (a full queue): counts are re-read from the gateway, and a one-shot session whose
/// close event was lost still ends.
#[tokio::test(flavor = "multi_thread")]
async fn viewer_counts_are_resynced_after_dropped_events() {
    let web = Web::held_viewer_events("api-viewer-resync", "", 1).await;
    let alice = web.login("alice", "alice-pw").await;
    let bob = web.login("bob", "bob-pw").await;
    let sessions = |r: Resp| -> Vec<Value> {
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["sessions"].as_array().unwrap().clone()
    };
    let create = |b: &crate::client::Browser, oneshot: bool| {
        let body = json!({ "machine": "demo.img", "memory": 0.25, "oneshot": oneshot });
        let b = b.clone();
        async move {
            let r = b.send("POST", "/api/sessions", Some(body)).await;
            assert_eq!(r.status, 201, "{}", r.text());
            r.json()
        }
    };
    let shared = create(&alice, false).await;
    let once = create(&bob, true).await;
    let url = shared["url"].as_str().unwrap().to_owned();
    // Three viewers of alice's session, one of which leaves; bob's one-shot viewer
    // comes and goes. Six events, one place in the queue: five dropped.
    let mut viewers = Vec::new();
    for _ in 0..3 {
        viewers.push(rfb_through(web.addr, token_of(&url)).await.0);
    }
    drop(viewers.pop());
    let (one, _) = rfb_through(web.addr, token_of(once["url"].as_str().unwrap())).await;
    drop(one);
    let dropped = "\ndarts_viewer_events_dropped_total 5\n";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = web.browser().get("/metrics").await;
        if r.text().contains(dropped) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", r.text());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    web.follow_viewers();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let mine = sessions(alice.get("/api/sessions").await);
        let bobs = sessions(bob.get("/api/sessions").await);
        if mine[0]["viewers"] == 2 && bobs.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "alice's {mine:?}, bob's {bobs:?}\nlog:\n{}",
            web.svc.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    drop(viewers);
}

/// A stop that cannot finish within its bound (here: the creation is stuck reading a
/// boot script from a FIFO nobody writes) is answered 202 "stopping", with where to
/// follow it, never "stopped"; once the creation goes on, the session ends and leaves.
#[tokio::test(flavor = "multi_thread")]
async fn a_stop_that_cannot_finish_yet_is_answered_stopping_with_where_to_follow() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("boot-script");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let web = Web::start(
        "api-stop-stuck",
        &format!("config_script = [\"file://{}\"]", fifo.display()),
    )
    .await;
    let alice = web.login("alice", "alice-pw").await;
    let creating = {
        let alice = alice.clone();
        tokio::spawn(async move {
            alice
                .send(
                    "POST",
                    "/api/sessions",
                    Some(json!({ "machine": "demo.img" })),
                )
                .await
        })
    };
    let name = loop {
        if let Some(n) = list(alice.get("/api/sessions").await).pop() {
            break n;
        }
        assert!(
            !creating.is_finished(),
            "the creation did not wait for its script"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let path = format!("/api/sessions/{name}");
    let r = alice
        .with_header("Origin", &format!("http://{}", web.addr))
        .send("DELETE", &path, None)
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    let j = r.json();
    assert_eq!(j["stopping"], name.as_str(), "{j}");
    assert_eq!(j["follow"], format!("api/sessions/{name}"), "{j}");
    assert!(j.get("stopped").is_none(), "{j}");
    assert_eq!(list(alice.get("/api/sessions").await), vec![name.clone()]);

    // The script arrives (empty: skipped); the creation goes on and the stop it was
    // handed ends the session.
    let writer = std::thread::spawn(move || std::fs::write(&fifo, b""));
    let _ = tokio::time::timeout(std::time::Duration::from_secs(120), creating)
        .await
        .expect("the creation never finished");
    writer.join().unwrap().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let r = alice.get(&path).await;
        if r.status == 404 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} never ended after its stop: {}\nlog:\n{}",
            r.text(),
            web.svc.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(list(alice.get("/api/sessions").await).is_empty());
}
