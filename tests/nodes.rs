//! Three darts nodes on loopback, each with its own port, state and VMs (real QEMU under
//! TCG), joined by `fallback_servers` over verified TLS: a full node places the session on
//! the best peer, the user lands there through the hand-off, every node lists the user's
//! sessions on all of them, a peer killed or hung during a request is skipped within the
//! bound, and a request never goes back to a node it went through.
//!
//! Needs qemu-system-x86_64 and the demo guest (`bash tests/setup.sh`).

#[path = "support/qemu.rs"]
mod qemu;
#[path = "support/service.rs"]
mod service;
mod support;
#[path = "support/web.rs"]
mod web;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use darts::nodes::sign::{apply, Envelope, NodeKey};
use qemu::RfbOverWs;
use serde_json::{json, Value};
use service::Service;
use support::{client_tls, make_certs, wss_connect, Scratch, TestCerts};
use web::{Browser, Resp, Server};

const KEY: &str = "a node key that is long enough to sign requests 0123456789";

/// What every node of a test shares: the key file and one certificate for 127.0.0.1.
struct Mesh {
    _scratch: Scratch,
    key: PathBuf,
    certs: TestCerts,
    ca: PathBuf,
}

impl Mesh {
    fn new(name: &str) -> Self {
        let scratch = Scratch::new(name);
        let key = scratch.path("fallback.key");
        std::fs::write(&key, KEY).unwrap();
        let certs = make_certs(&scratch.0, "node", &["127.0.0.1", "localhost"]);
        let ca = scratch.path("ca.pem");
        std::fs::write(&ca, &certs.ca_pem).unwrap();
        Self {
            _scratch: scratch,
            key,
            certs,
            ca,
        }
    }

    /// Configures (not starts) node `name` over HTTPS, allowing `max` sessions.
    fn node(&self, name: &str, max: u32, extra: &str) -> Service {
        Service::configure(
            &format!("nodes-{name}"),
            &format!(
                r#"node_name = "{name}"
fallback_key = "{key}"
fallback_ca = "{ca}"
service_max_session_nb = {max}
certificate_crt = "{crt}"
certificate_key = "{tls_key}"
{extra}"#,
                key = self.key.display(),
                ca = self.ca.display(),
                crt = self.certs.cert.display(),
                tls_key = self.certs.key.display(),
            ),
        )
    }

    /// Nodes B and C (allowing `b_max` and `c_max` sessions), then A (one session, plus
    /// `a_extra` settings) whose peers are B then C; all three started.
    fn three(&self, b_max: u32, c_max: u32, a_extra: &str) -> (Service, Service, Service) {
        let mut b = self.node("b", b_max, "");
        let mut c = self.node("c", c_max, "");
        b.launch();
        c.launch();
        let mut a = self.node(
            "a",
            1,
            &format!(
                "fallback_servers = [\"{}\", \"{}\"]\n{a_extra}",
                url_of(&b),
                url_of(&c)
            ),
        );
        a.launch();
        (a, b, c)
    }

    fn tls(&self) -> Arc<rustls::ClientConfig> {
        client_tls(&self.certs.ca_pem)
    }

    fn server(&self, node: &Service) -> Server {
        Server {
            addr: node.addr,
            tls: Some(self.tls()),
        }
    }
}

fn url_of(node: &Service) -> String {
    format!("https://127.0.0.1:{}/darts", node.addr.port())
}

fn body_text(r: &Resp) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

fn token_of(url: &str) -> &str {
    url.rsplit_once("token=").unwrap().1
}

async fn create(user: &Browser) -> Resp {
    user.send(
        "POST",
        "/api/sessions",
        Some(json!({ "machine": "demo.img" })),
    )
    .await
}

/// The session's link works on the node it names: the websocket reaches the guest's VNC.
async fn reaches_guest(mesh: &Mesh, created: &Value) {
    let url = created["url"].as_str().unwrap();
    let port = url
        .split("://127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap();
    let ws = wss_connect(
        &format!(
            "wss://127.0.0.1:{port}/darts/vnc.html?token={}",
            token_of(url)
        ),
        &mesh.certs.ca_pem,
    )
    .await
    .unwrap_or_else(|e| panic!("websocket to {url}: {e}"));
    let mut rfb = RfbOverWs::new(ws, Duration::from_secs(30));
    let init = rfb.handshake().await;
    assert!(init.width > 0 && init.height > 0, "{init:?}");
}

fn names_by_node(list: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["node"].as_str().unwrap().to_owned(),
                s["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_places_sessions_on_its_peers_and_lists_them_all() {
    let mesh = Mesh::new("nodes-place");
    let (a, b, c) = mesh.three(1, 2, "");
    let mut user = Browser::new(mesh.server(&a));
    user.login("alice").await;

    // 1: room on A itself.
    let r = create(&user).await;
    assert_eq!(r.status, 201, "{}", body_text(&r));
    let first = r.json();
    assert_eq!(first["node"], "a");
    assert!(first.get("handoff_url").is_none());

    // 2: A is full; B and C are empty: B, first in the list.
    let r = create(&user).await;
    assert_eq!(r.status, 201, "{}\nA's log:\n{}", body_text(&r), a.log());
    let second = r.json();
    assert_eq!(second["node"], "b", "{second}");
    assert_eq!(second["session"]["user"], "alice");
    assert!(second["url"].as_str().unwrap().starts_with(&url_of(&b)));
    reaches_guest(&mesh, &second).await;

    // The hand-off logs alice in on B and opens the session's connect page there, once.
    let handoff = second["handoff_url"].as_str().unwrap();
    let path = handoff
        .strip_prefix(&format!("https://127.0.0.1:{}", b.addr.port()))
        .unwrap();
    let on_b = mesh.server(&b);
    let r = web::request(&on_b, "GET", path, &[], None).await;
    assert_eq!(r.status, 303, "{}", body_text(&r));
    let name_b = second["session"]["name"].as_str().unwrap();
    assert_eq!(
        r.header("location").unwrap(),
        format!("../../connect/{name_b}")
    );
    let mut alice_on_b = Browser::new(on_b.clone());
    alice_on_b.keep_cookie(&r);
    let r = alice_on_b.get(&format!("/api/sessions/{name_b}")).await;
    assert_eq!(r.status, 200, "{}", body_text(&r));
    assert_eq!(r.json()["session"]["user"], "alice");
    let again = web::request(&on_b, "GET", path, &[], None).await;
    assert_eq!(again.status, 401, "a hand-off works once");

    // 3: A and B are full: C.
    let r = create(&user).await;
    assert_eq!(r.status, 201, "{}\nA's log:\n{}", body_text(&r), a.log());
    let third = r.json();
    assert_eq!(third["node"], "c", "{third}");
    reaches_guest(&mesh, &third).await;

    // The list on A shows all three, each with its node; every peer answered.
    let list = user.get("/api/sessions").await.json();
    let by_node = names_by_node(&list);
    let nodes: Vec<&str> = by_node.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(nodes, ["a", "b", "c"], "{list}");
    assert!(
        list["peers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["ok"] == true),
        "{list}"
    );

    // Fresh links for the session on B, asked on A: B's links and a hand-off.
    let r = user
        .send(
            "POST",
            &format!("/api/sessions/{name_b}/connect?node=b"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", body_text(&r));
    let fresh = r.json();
    assert!(fresh["handoff_url"].as_str().is_some());
    reaches_guest(&mesh, &fresh).await;

    // Stopping C's session from A ends it on C.
    let name_c = third["session"]["name"].as_str().unwrap();
    let r = user
        .send("DELETE", &format!("/api/sessions/{name_c}?node=c"), None)
        .await;
    assert_eq!(r.status, 200, "{}", body_text(&r));
    assert!(c.sessions().is_empty(), "C still has {:?}", c.sessions());

    // Another user sees none of alice's sessions on any node.
    let mut bob = Browser::new(mesh.server(&a));
    bob.login("bob").await;
    let list = bob.get("/api/sessions").await.json();
    assert!(list["sessions"].as_array().unwrap().is_empty(), "{list}");
    let r = bob
        .send("DELETE", &format!("/api/sessions/{name_b}?node=b"), None)
        .await;
    assert_eq!(r.status, 403, "{}", body_text(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_killed_during_a_creation_is_passed_over_for_the_next() {
    let mesh = Mesh::new("nodes-kill");
    let (a, mut b, _c) = mesh.three(2, 2, "");
    a.start_session(&[]);
    let mut user = Browser::new(mesh.server(&a));
    user.login("carol").await;

    // B is first in the list and empty: it gets the request. As soon as B has written
    // the new session's record (before its disk and QEMU exist), B is killed.
    let b_state = b.scratch.0.join("state");
    let b_pid = b.darts.as_ref().unwrap().child.id();
    let watcher = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            let records = std::fs::read_dir(&b_state)
                .map(|d| d.flatten().count())
                .unwrap_or(0);
            if records > 0 {
                let _ = std::process::Command::new("kill")
                    .args(["-9", &b_pid.to_string()])
                    .status();
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    });
    let r = create(&user).await;
    assert!(watcher.join().unwrap(), "B never started the creation");
    assert_eq!(r.status, 201, "{}\nA's log:\n{}", body_text(&r), a.log());
    let placed = r.json();
    assert_eq!(placed["node"], "c", "{placed}");
    reaches_guest(&mesh, &placed).await;

    // With B down, A's list still answers: C's session, and B named as not answering.
    let list = user.get("/api/sessions").await.json();
    let nodes: Vec<String> = names_by_node(&list).into_iter().map(|(n, _)| n).collect();
    assert_eq!(nodes, ["c"], "{list}");
    let down: Vec<&Value> = list["peers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["ok"] == false)
        .collect();
    assert_eq!(down.len(), 1, "{list}");
    assert_eq!(down[0]["url"], url_of(&b));

    // B restarts and cleans up what the kill cut short: no session, no VM of its own.
    let mut dead = b.darts.take().unwrap();
    dead.child.wait().unwrap();
    b.launch();
    b.wait_sessions(
        "B cleans the half-made session",
        Duration::from_secs(30),
        |s| s.is_empty(),
    );
    let qemus = service::pids_mentioning(&b.scratch.0.join("snapshots"));
    assert!(qemus.is_empty(), "B left QEMU processes {qemus:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_peer_is_skipped_within_the_timeout() {
    let mesh = Mesh::new("nodes-hung");
    let (a, b, _c) = mesh.three(2, 2, "fallback_timeout = 2\nfallback_status_cache = 0\n");
    a.start_session(&[]);
    let mut user = Browser::new(mesh.server(&a));
    user.login("dave").await;

    // B stops answering (its socket still accepts connections: the kernel completes them).
    b.darts.as_ref().unwrap().signal("STOP");
    let r = create(&user).await;
    b.darts.as_ref().unwrap().signal("CONT");
    assert_eq!(r.status, 201, "{}\nA's log:\n{}", body_text(&r), a.log());
    assert_eq!(r.json()["node"], "c");
    assert!(
        a.log().contains("no answer within 2 s"),
        "A's log does not name B's time-out:\n{}",
        a.log()
    );
}

/// Sends a node request to `node` signed with the mesh's key, as node `from` after `hops`,
/// meant for the node named `to`.
async fn signed(
    mesh: &Mesh,
    node: &Service,
    to: &str,
    path: &str,
    from: &str,
    hops: &[&str],
    body: &Value,
) -> Resp {
    let body = body.to_string();
    let hops: Vec<String> = hops.iter().map(|h| h.to_string()).collect();
    let nonce = format!("{:032x}", support::rand_u64());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let env = Envelope {
        method: "POST",
        path,
        date: now,
        nonce: &nonce,
        node: from,
        to,
        hops: &hops,
        body: body.as_bytes(),
    };
    let mut map = http::HeaderMap::new();
    apply(
        &mut map,
        env.headers(&NodeKey::from_bytes(KEY.as_bytes()).unwrap()),
    );
    let mut headers: Vec<(String, String)> = map
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    headers.push(("Content-Type".into(), "application/json".into()));
    web::request(
        &mesh.server(node),
        "POST",
        &format!("/darts{path}"),
        &headers,
        Some(body.as_bytes()),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_never_goes_back_to_a_node_it_went_through() {
    let mesh = Mesh::new("nodes-loop");
    // A has room; B is full and lists A as its fallback.
    let mut a = mesh.node("a", 2, "");
    a.launch();
    let mut b = mesh.node(
        "b",
        1,
        &format!("fallback_servers = [\"{}\"]\n", url_of(&a)),
    );
    b.launch();
    b.start_session(&[]);
    let form = json!({ "user": "erin", "remote": null, "form": { "machine": "demo.img" } });

    // A → B → A: B, full, would send it back to A; A is on the path, so B refuses.
    let r = signed(&mesh, &b, "b", "/api/nodes/create", "a", &["a"], &form).await;
    assert_eq!(r.status, 503, "{}", body_text(&r));
    let message = r.json()["message"].as_str().unwrap().to_owned();
    assert!(message.contains("loop"), "{message}");
    assert!(
        a.sessions().is_empty(),
        "A got a session: {:?}",
        a.sessions()
    );
    assert!(
        !a.log().contains("creation asked by a peer"),
        "B sent it back to A"
    );

    // A request that already went through A is refused by A itself.
    let r = signed(&mesh, &a, "a", "/api/nodes/create", "b", &["a", "b"], &form).await;
    assert_eq!(r.status, 508, "{}", body_text(&r));
    assert_eq!(r.json()["code"], "loop_detected");

    // Without B's hop list, the same request is served by A (so the refusals above are
    // the loop rule, not something else).
    let r = signed(&mesh, &a, "a", "/api/nodes/create", "b", &["b"], &form).await;
    assert_eq!(r.status, 201, "{}\nA's log:\n{}", body_text(&r), a.log());
    assert_eq!(r.json()["node"], "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_requests_need_the_key_a_fresh_signature_and_an_allowed_node() {
    let mesh = Mesh::new("nodes-auth");
    let mut a = mesh.node("a", 2, "fallback_accept_from = [\"b\", \"10.9.9.9\"]\n");
    a.launch();
    let want = json!({ "cpu": 1, "memory_mb": 256, "gpu": false });

    let ok = signed(&mesh, &a, "a", "/api/nodes/status", "b", &[], &want).await;
    assert_eq!(ok.status, 200, "{}", body_text(&ok));
    let status = ok.json();
    assert_eq!(
        (status["node"].clone(), status["fits"].clone()),
        (json!("a"), json!(true))
    );

    // Node "z" holds the key but is not allowed here.
    let r = signed(&mesh, &a, "a", "/api/nodes/status", "z", &[], &want).await;
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (403, json!("node_not_allowed"))
    );

    // No signature, a wrong key, or a body changed after signing.
    let plain = web::request(
        &mesh.server(&a),
        "POST",
        "/darts/api/nodes/status",
        &[("Content-Type".into(), "application/json".into())],
        Some(want.to_string().as_bytes()),
    )
    .await;
    assert_eq!(
        (plain.status, plain.json()["code"].clone()),
        (401, json!("node_refused"))
    );
    let list = signed(
        &mesh,
        &a,
        "a",
        "/api/nodes/list",
        "b",
        &[],
        &json!({ "user": "x" }),
    )
    .await;
    assert_eq!(list.status, 200, "{}", body_text(&list));
    assert!(list.json()["sessions"].as_array().unwrap().is_empty());

    // A node without the key has no node endpoints at all.
    let mut lone = Service::configure("nodes-lone", "");
    lone.launch();
    let r = web::request(
        &Server {
            addr: lone.addr,
            tls: None,
        },
        "POST",
        "/darts/api/nodes/status",
        &[("Content-Type".into(), "application/json".into())],
        Some(want.to_string().as_bytes()),
    )
    .await;
    assert_eq!(r.status, 404);
}

#[test]
fn config_check_refuses_unusable_peer_settings() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        "fallback_servers = [\"http://b.example/darts\"]\nnode_name = \"a b\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(support::darts_bin())
        .args(["config", "check", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    for needle in ["plain http", "node_name"] {
        assert!(text.contains(needle), "{needle} not in:\n{text}");
    }
    assert!(Path::new(&cfg).exists());
}

#[test]
fn in_chromium_a_full_node_hands_the_user_to_the_peer_and_manage_lists_it() {
    let (node, chromium) = qemu::browser_tools();
    let mesh = Mesh::new("nodes-browser");
    // The landing page offers exactly what the demo machine runs with.
    let layout = "layout_cpu = [1]\nlayout_memory = [0.25]\n";
    let mut b = mesh.node("b", 1, layout);
    b.launch();
    // B under another host name: cookies are per host, not per port, so two nodes on
    // 127.0.0.1 would share (and overwrite) one login cookie in the browser.
    let b_url = format!("https://localhost:{}/darts", b.addr.port());
    let mut a = mesh.node(
        "a",
        1,
        &format!("{layout}fallback_servers = [\"{b_url}\"]\n"),
    );
    a.launch();
    a.start_session(&[]);

    let out = std::process::Command::new(node)
        .arg(qemu::repo_path("tests/e2e/node/darts-nodes.js"))
        .args(["--base", &format!("{}/", url_of(&a))])
        .args(["--user", "frank", "--machine", "demo.img"])
        .arg("--out")
        .arg(qemu::artifacts_dir())
        .env("CHROMIUM", &chromium)
        .output()
        .unwrap();
    let j = qemu::script_json("darts-nodes.js", &out);
    assert!(out.status.success(), "{j}\nA's log:\n{}", a.log());
    // The user is on B's connect page, logged in there, with B's link in hand.
    let page = j["connect_page"].as_str().unwrap();
    assert!(page.starts_with(&format!("{b_url}/connect/darts-")), "{j}");
    assert!(
        !page.contains('#'),
        "the links stay out of the address bar: {page}"
    );
    assert_eq!(j["user_on_peer"], "frank");
    let href = j["connect_href"].as_str().unwrap();
    assert!(href.starts_with(&b_url) && href.contains("token="), "{j}");
    // A's Manage page lists it on server b.
    assert_eq!(j["manage_servers"], json!(["b"]), "{j}");
    assert!(
        j["console_errors"].as_array().unwrap().is_empty(),
        "errors in the pages: {j}"
    );
}

/// A peer holding the key can ask for a session for a user listed in `user_admin`, but the
/// hand-off login it gets is never an administrator's; and a request signed for node b is
/// refused by any other node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_off_logins_are_never_administrators_and_requests_are_bound_to_their_node() {
    let mesh = Mesh::new("nodes-handoff-admin");
    let mut b = mesh.node("b", 2, "user_admin = [\"root\"]\n");
    b.launch();
    let mut c = mesh.node("c", 2, "user_admin = [\"root\"]\n");
    c.launch();
    let form = json!({ "user": "root", "remote": null, "form": { "machine": "demo.img" } });

    // Meant for b, sent to c: refused before anything is created.
    let r = signed(&mesh, &c, "b", "/api/nodes/create", "a", &[], &form).await;
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (401, json!("node_refused")),
        "{}",
        body_text(&r)
    );
    assert!(c.sessions().is_empty());

    let r = signed(&mesh, &b, "b", "/api/nodes/create", "a", &[], &form).await;
    assert_eq!(r.status, 201, "{}\nB's log:\n{}", body_text(&r), b.log());
    let handoff = r.json()["handoff_url"].as_str().unwrap().to_owned();
    let path = handoff
        .strip_prefix(&format!("https://127.0.0.1:{}", b.addr.port()))
        .unwrap();
    let on_b = mesh.server(&b);
    let r = web::request(&on_b, "GET", path, &[], None).await;
    assert_eq!(r.status, 303, "{}", body_text(&r));
    let mut root_on_b = Browser::new(on_b.clone());
    root_on_b.keep_cookie(&r);
    let config = root_on_b.get("/api/config").await.json();
    assert_eq!(config["user"]["name"], "root", "{config}");
    assert_eq!(config["user"]["admin"], false, "{config}");
    let list = root_on_b.get("/api/sessions").await.json();
    assert_eq!(list["admin"], false, "{list}");
    let purge = root_on_b.send("POST", "/api/purge", None).await;
    assert_eq!(purge.status, 403, "{}", body_text(&purge));
    assert_eq!(b.sessions().len(), 1, "nothing was stopped");
}
