//! The shared token registry on a real redis-server: two gateways share sessions, Redis
//! restarts without losing routes for long, one-shot tokens are used once across
//! gateways, a Redis down or hung gives a clear refusal instead of a hang, and entries
//! written the websockify way route through `darts proxy --token-plugin TokenRedis`.
//!
//! Needs redis-server (`bash tests/setup.sh redis`); the two-gateway test also needs
//! QEMU and the demo machine (`bash tests/setup.sh`).

#[path = "support/qemu.rs"]
mod qemu;
#[path = "support/redis.rs"]
mod redis;
#[path = "support/service.rs"]
mod service;
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use darts_proxy::token::redis::{RedisSource, RegistryConfig, SealKey};
use darts_proxy::token::TokenKey;
use darts_proxy::{Lookup, Route, Target, TokenMap};
use qemu::RfbOverWs;
use redis::Redis;
use service::Service;
use support::*;

const NS: &str = "darts-test";
const RFB_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on a route reaching (or leaving) Redis; it normally takes milliseconds, and
/// after a Redis restart about a second (the connection check) plus the reconnection.
const PUBLISH_WAIT: Duration = Duration::from_secs(20);

fn darts_key(token: &str) -> String {
    format!("{NS}:sha256:{}", TokenKey::of(token).to_hex())
}

fn write_secret(dir: &Path) -> String {
    let path = dir.join("registry.key");
    std::fs::write(&path, format!("{}\n", "s".repeat(48))).unwrap();
    path.to_str().unwrap().to_owned()
}

/// `darts proxy --token-plugin TokenRedis` on a free loopback port, with the registry
/// secret (an authenticated registry) or without (websockify's trust in Redis).
fn gateway(redis: &Redis, secret: Option<&str>) -> DartsProcess {
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let src = redis.source(NS);
    let listen = addr.to_string();
    let mut args = vec![
        "proxy",
        "--token-plugin",
        "TokenRedis",
        "--token-source",
        &src,
    ];
    if let Some(secret) = secret {
        args.extend(["--token-redis-key", secret]);
    }
    args.push(&listen);
    DartsProcess::start(&args, addr)
}

fn gateway_b(redis: &Redis, secret: &str) -> DartsProcess {
    gateway(redis, Some(secret))
}

fn url_b(b: &DartsProcess, token: &str) -> String {
    format!("ws://{}/websockify?token={token}", b.addr)
}

/// Opens `url` and completes the RFB handshake (darts answers QEMU's challenge).
async fn view(url: &str, log: impl Fn() -> String) -> (RfbOverWs, String) {
    let ws = ws_connect(url, &[])
        .await
        .unwrap_or_else(|s| panic!("websocket refused with {s}; log:\n{}", log()));
    let mut rfb = RfbOverWs::new(ws, RFB_TIMEOUT);
    let init = rfb.handshake().await;
    rfb.set_raw_rgb32().await;
    (rfb, init.name)
}

/// `view` once the gateway's registry answers again: 503 means "try again later", which
/// is what a browser's noVNC does on reconnect.
async fn view_when_ready(url: &str, log: impl Fn() -> String) -> (RfbOverWs, String) {
    let deadline = Instant::now() + PUBLISH_WAIT;
    loop {
        match ws_connect(url, &[]).await {
            Ok(ws) => {
                let mut rfb = RfbOverWs::new(ws, RFB_TIMEOUT);
                let init = rfb.handshake().await;
                rfb.set_raw_rgb32().await;
                return (rfb, init.name);
            }
            Err(503) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(s) => panic!("websocket refused with {s}; log:\n{}", log()),
        }
    }
}

/// The HTTP status refusing a websocket to `url`, bounded so a hang fails the test.
async fn refusal(url: &str) -> u16 {
    match tokio::time::timeout(Duration::from_secs(10), ws_connect(url, &[])).await {
        Ok(Ok(_)) => panic!("websocket to {url} accepted"),
        Ok(Err(status)) => status,
        Err(_) => panic!("no answer to {url} within 10 s"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_gateways_share_sessions_through_redis() {
    let mut redis = Redis::tcp("registry-pair");
    let secret = write_secret(&redis.scratch.0);
    let a = Service::start(
        "registry-a",
        &format!(
            "token_redis = \"{}\"\ntoken_redis_key = \"{secret}\"\n",
            redis.url(NS)
        ),
    );
    let b = gateway_b(&redis, &secret);
    let logs = || format!("A:\n{}\nB:\n{}", a.log(), b.log_text());

    // (a) A session created on A is published under its digest and reachable through B.
    let s = a.start_session(&[]);
    let key = darts_key(&s.token);
    redis.wait_until("the session's route in Redis", PUBLISH_WAIT, |r| {
        r.exists(&key)
    });
    let (mut via_b, desktop) = view(&url_b(&b, &s.token), logs).await;
    assert!(desktop.contains(&s.name), "desktop name {desktop:?}");
    assert!(via_b.full_frame(20).await.bytes > 0);

    // Redis holds neither tokens nor the VNC password in clear.
    let record = a.scratch.0.join(format!("state/{}.json", s.name));
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(record).unwrap()).unwrap();
    let vnc_password = record["vnc_password"].as_str().unwrap().to_owned();
    assert!(!vnc_password.is_empty());
    let view_token = s.view_token.clone().unwrap();
    for (k, v) in redis.dump() {
        for secret in [&s.token, &view_token, &vnc_password] {
            assert!(
                !k.contains(secret.as_str()) && !v.contains(secret.as_str()),
                "{k} = {v}"
            );
        }
    }
    assert!(redis.exists(&darts_key(&view_token)));

    // (e) Redis down: B refuses tokens it does not know with 503 at once, A keeps
    // routing its own sessions, and the session already open through B streams on.
    let first_run = redis.run_id();
    redis.kill();
    assert_eq!(refusal(&url_b(&b, "no-such-token")).await, 503);
    assert_eq!(refusal(&url_b(&b, &s.token)).await, 503);
    let (mut via_a, desktop) = view(&a.ws_url(&s.token), logs).await;
    assert!(desktop.contains(&s.name));
    assert!(via_a.full_frame(20).await.bytes > 0);
    assert!(via_b.full_frame(20).await.bytes > 0);

    // (b) Redis restarted empty: A publishes again by itself, B routes new connections,
    // the established one never noticed.
    redis.start();
    // A new server without persistence: whatever it holds was published again.
    assert_ne!(redis.run_id(), first_run);
    redis.wait_until("the route published again", PUBLISH_WAIT, |r| {
        r.exists(&key)
    });
    let (mut again, _) = view_when_ready(&url_b(&b, &s.token), logs).await;
    assert!(again.full_frame(20).await.bytes > 0);
    assert!(via_b.full_frame(20).await.bytes > 0);
    drop((again, via_a));

    // (d) A one-shot link used through B cannot be used again, through B or A.
    let once = a.start_session(&["--oneshot"]);
    let once_key = darts_key(&once.token);
    redis.wait_until("the one-shot route in Redis", PUBLISH_WAIT, |r| {
        r.exists(&once_key)
    });
    let (mut only, desktop) = view(&url_b(&b, &once.token), logs).await;
    assert!(desktop.contains(&once.name));
    assert!(only.full_frame(20).await.bytes > 0);
    assert!(!redis.exists(&once_key), "consumed in Redis");
    assert_eq!(refusal(&url_b(&b, &once.token)).await, 404);
    assert_eq!(refusal(&a.ws_url(&once.token)).await, 404);
    // A, which owns the session, learns of the viewer through the registry...
    let named =
        |name: &str, list: &[serde_json::Value]| list.iter().find(|v| v["name"] == name).cloned();
    a.wait_sessions("A counts the viewer on B", PUBLISH_WAIT, |list| {
        named(&once.name, list).is_some_and(|v| v["viewers"] == 1)
    });
    // ...and ends the session when that one connection closes: gone, QEMU stopped.
    drop(only);
    a.wait_sessions(
        "the one-shot session ended on A",
        Duration::from_secs(60),
        |list| named(&once.name, list).is_none(),
    );
    let vm = a.scratch.0.join("snapshots").join(&once.name);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !service::pids_mentioning(&vm).is_empty() {
        assert!(
            Instant::now() < deadline,
            "QEMU of the one-shot session still runs"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // (c) Stopping the session on A removes its routes from Redis: B no longer knows it.
    let out = a.cli(&["stop", &s.name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    redis.wait_until("the stopped session's routes removed", PUBLISH_WAIT, |r| {
        !r.exists(&key) && !r.exists(&darts_key(&view_token))
    });
    assert_eq!(refusal(&url_b(&b, &s.token)).await, 404);
    assert_eq!(refusal(&url_b(&b, &view_token)).await, 404);
    drop(via_b);
    // No log line of either gateway holds a token.
    let all = logs();
    for t in [&s.token, &view_token, &once.token] {
        assert!(!all.contains(t.as_str()), "a token reached a log");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn websockify_entries_route_through_darts_proxy() {
    let redis = Redis::tcp("registry-websockify");
    let secret = write_secret(&redis.scratch.0);
    // Without a secret the registry is websockify's: Redis is trusted.
    let b = gateway(&redis, None);
    let backend = echo_backend(b"RFB 003.008\n").await;

    // What websockify-era tooling writes: JSON with a host, or plain host:port.
    let host = format!("127.0.0.1:{}", backend.port());
    redis.cli(&[
        "SET",
        &format!("{NS}:json-token"),
        &format!("{{\"host\":\"{host}\"}}"),
    ]);
    redis.cli(&["SET", &format!("{NS}:plain-token"), &host]);
    // Outside the namespace: not this registry's.
    redis.cli(&["SET", "other-token", &host]);
    for token in ["json-token", "plain-token"] {
        let mut ws = ws_connect(&url_b(&b, token), &[])
            .await
            .unwrap_or_else(|s| panic!("{token}: refused with {s}\n{}", b.log_text()));
        assert_eq!(
            read_bytes(&mut ws, 12, Duration::from_secs(10)).await,
            b"RFB 003.008\n"
        );
    }
    assert_eq!(refusal(&url_b(&b, "other-token")).await, 404);
    assert_eq!(refusal(&url_b(&b, "missing-token")).await, 404);

    // A darts entry read from Redis does not make its digest a token: neither asked
    // for as `sha256:HEX` nor copied under a plain key.
    let digest_key = darts_key("real-token");
    let entry = format!("{{\"host\":\"{host}\",\"darts\":2,\"security\":\"none\"}}");
    redis.cli(&["SET", &digest_key, &entry]);
    let digest_token = digest_key.trim_start_matches(&format!("{NS}:"));
    assert_eq!(refusal(&url_b(&b, digest_token)).await, 404);
    redis.cli(&["SET", &format!("{NS}:copied"), &entry]);
    assert_eq!(refusal(&url_b(&b, "copied")).await, 404);
    // The token itself routes.
    let mut ws = ws_connect(&url_b(&b, "real-token"), &[]).await.unwrap();
    assert_eq!(
        read_bytes(&mut ws, 12, Duration::from_secs(10)).await,
        b"RFB 003.008\n"
    );
    assert!(!b.log_text().contains("real-token"));

    // With the secret, the registry is darts' authenticated one: nothing written without
    // the secret is believed, neither websockify's keys nor an unauthenticated entry in
    // darts' key space, nor a sealed password made with another secret.
    let keyed = gateway_b(&redis, &secret);
    for token in ["json-token", "plain-token", "real-token"] {
        assert_eq!(refusal(&url_b(&keyed, token)).await, 404, "{token}");
    }
    let entry = format!(
        "{{\"host\":\"{host}\",\"darts\":2,\"security\":\"vnc-password\",\"password\":\"v1.{}\"}}",
        "ab".repeat(40)
    );
    redis.cli(&["SET", &darts_key("sealed-token"), &entry]);
    assert_eq!(refusal(&url_b(&keyed, "sealed-token")).await, 404);
    let log = keyed.log_text();
    assert!(log.contains(REFUSED_LINE), "no refusal logged:\n{log}");
    assert!(!log.contains("real-token") && !log.contains("sealed-token"));
}

fn registry(source: &str, secret: &[u8]) -> RegistryConfig {
    let mut c = RegistryConfig::new(RedisSource::parse(source).unwrap());
    c.seal = Some(SealKey::from_secret(secret));
    c
}

async fn wait_connected(map: &TokenMap) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while map.registry_connected() != Some(true) {
        assert!(Instant::now() < deadline, "registry never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn tcp(port: u16) -> Target {
    Target::Tcp {
        host: "127.0.0.1".into(),
        port,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_shot_tokens_are_used_once_across_gateways() {
    // Over a unix socket, spelt as a URL.
    let redis = Redis::unix("registry-oneshot");
    let secret = [9u8; 32];
    let mut fast = registry(&redis.source(NS), &secret);
    fast.resync_every = Duration::from_secs(1);
    let a = TokenMap::new().with_registry(fast).unwrap();
    let b = TokenMap::new()
        .with_registry(registry(&redis.source(NS), &secret))
        .unwrap();
    wait_connected(&a).await;
    wait_connected(&b).await;

    let route = Route::new(tcp(5901))
        .security(darts_proxy::rfb::BackendSecurity::VncPassword(
            darts_vnc::vnc_auth::Password::new(*b"pw"),
        ))
        .one_shot(true)
        .label("darts-once");
    a.insert("once", route.clone());
    a.insert("kept", Route::new(tcp(5902)).label("darts-kept"));
    redis.wait_until("both routes published", PUBLISH_WAIT, |r| {
        r.exists(&darts_key("once")) && r.exists(&darts_key("kept"))
    });

    // B takes it (password opened with the shared secret); then nobody can.
    assert_eq!(b.lookup_shared("once").await, Lookup::Found(route));
    assert_eq!(b.lookup_shared("once").await, Lookup::Unknown);
    assert_eq!(a.lookup_shared("once").await, Lookup::Unknown);
    // A learns it at its next publication even without a lookup.
    a.insert("once-2", Route::new(tcp(5903)).one_shot(true));
    redis.wait_until("second one-shot published", PUBLISH_WAIT, |r| {
        r.exists(&darts_key("once-2"))
    });
    assert!(matches!(b.lookup_shared("once-2").await, Lookup::Found(_)));
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.len() != 1 {
        assert!(Instant::now() < deadline, "A kept the used one-shot route");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A's own one-shot route, used on A: gone for B too.
    a.insert("once-3", Route::new(tcp(5904)).one_shot(true));
    assert!(matches!(a.lookup_shared("once-3").await, Lookup::Found(_)));
    assert_eq!(b.lookup_shared("once-3").await, Lookup::Unknown);

    // Ordinary routes are shared and stay; removal reaches B with the next lookup.
    assert!(
        matches!(b.lookup_shared("kept").await, Lookup::Found(r) if r.label.as_deref() == Some("darts-kept"))
    );
    assert!(matches!(b.lookup_shared("kept").await, Lookup::Found(_)));
    assert_eq!(a.remove_label("darts-kept"), 1);
    redis.wait_until("removed route deleted", PUBLISH_WAIT, |r| {
        !r.exists(&darts_key("kept"))
    });
    assert_eq!(b.lookup_shared("kept").await, Lookup::Unknown);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_redis_bounds_lookups_and_never_blocks_writes() {
    let redis = Redis::tcp("registry-hung");
    let mut config = registry(&redis.source(NS), &[3u8; 32]);
    config.lookup_timeout = Duration::from_millis(300);
    config.max_lookups = 1;
    let map = Arc::new(TokenMap::new().with_registry(config).unwrap());
    map.insert("local", Route::new(tcp(5901)));
    wait_connected(&map).await;
    redis.wait_until("local route published", PUBLISH_WAIT, |r| {
        r.exists(&darts_key("local"))
    });

    redis.pause(true);
    // One lookup waits for its bound and gives up; the one beyond the limit is told
    // "busy" at once. Known tokens never wait on Redis.
    let (first, second) = tokio::join!(
        map.lookup_shared("unknown-1"),
        map.lookup_shared("unknown-2")
    );
    assert_eq!(first, Lookup::Unavailable);
    assert_eq!(second, Lookup::Busy);
    assert!(matches!(map.lookup_shared("local").await, Lookup::Found(_)));
    // Writes return while Redis hangs; they reach it once it answers again.
    map.insert("added-while-hung", Route::new(tcp(5902)));
    assert_eq!(map.len(), 2);
    redis.pause(false);
    redis.wait_until(
        "route added while Redis hung published",
        PUBLISH_WAIT,
        |r| r.exists(&darts_key("added-while-hung")),
    );
    assert!(matches!(map.lookup_shared("local").await, Lookup::Found(_)));
    assert_eq!(map.lookup_shared("unknown-1").await, Lookup::Unknown);
}

/// The log line a gateway writes for an entry whose authentication fails.
const REFUSED_LINE: &str = "token registry entry refused";

/// Waits (bounded) until `b`'s log holds more than `before` refusal lines.
fn wait_refusal_logged(b: &DartsProcess, before: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if b.log_text().matches(REFUSED_LINE).count() > before {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_entries_are_refused_with_a_log_line() {
    let redis = Redis::tcp("registry-tamper");
    let secret = write_secret(&redis.scratch.0);
    let b = gateway_b(&redis, &secret);
    let a = TokenMap::new()
        .with_registry(registry(&redis.source(NS), "s".repeat(48).as_bytes()))
        .unwrap();
    wait_connected(&a).await;
    let genuine = echo_backend(b"RFB 003.008\n").await;
    let attacker = echo_backend(b"RFB 003.008\n").await;
    let expires = std::time::SystemTime::now() + Duration::from_secs(3600);
    let route = Route::new(tcp(genuine.port()))
        .view_only(true)
        .max_clipboard(Some(0))
        .label("darts-victim")
        .expires_at(expires);

    // Publishes `route` under `token` and returns its entry as Redis holds it.
    let publish = |token: &str, route: Route| {
        a.insert(token, route);
        let key = darts_key(token);
        redis.wait_until("the route published", PUBLISH_WAIT, |r| r.exists(&key));
        serde_json::from_str::<serde_json::Value>(&redis.cli(&["GET", &key])).unwrap()
    };

    // The untouched entry routes.
    publish("genuine", route.clone());
    let ws = ws_connect(&url_b(&b, "genuine"), &[]).await;
    assert!(
        ws.is_ok(),
        "the genuine entry: {:?}\n{}",
        ws.err(),
        b.log_text()
    );
    drop(ws);

    let attacker_host = format!("127.0.0.1:{}", attacker.port());
    type Tamper = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Route, Tamper)> = vec![
        (
            "host pointed at another VNC server",
            route.clone(),
            Box::new(move |e| e["host"] = attacker_host.clone().into()),
        ),
        (
            "view_only lifted",
            route.clone(),
            Box::new(|e| e["view_only"] = false.into()),
        ),
        (
            "one_shot cleared",
            route.clone().one_shot(true),
            Box::new(|e| e["one_shot"] = false.into()),
        ),
        (
            "expires_ms extended",
            route.clone(),
            Box::new(|e| {
                let ms = e["expires_ms"].as_u64().unwrap();
                e["expires_ms"] = (ms + 86_400_000).into();
            }),
        ),
        (
            "label forged",
            route.clone(),
            Box::new(|e| e["label"] = "darts-someone-else".into()),
        ),
        (
            "clipboard cap lifted",
            route.clone(),
            Box::new(|e| {
                e.as_object_mut().unwrap().remove("max_clipboard");
            }),
        ),
        (
            "guest clipboard granted to view-only viewers",
            route.clone(),
            Box::new(|e| e["view_only_clipboard"] = true.into()),
        ),
        (
            "authentication removed",
            route.clone(),
            Box::new(|e| {
                e.as_object_mut().unwrap().remove("mac");
                e["darts"] = 1.into();
            }),
        ),
    ];
    let mut accepted = Vec::new();
    let mut unlogged = Vec::new();
    for (i, (what, base, tamper)) in cases.iter().enumerate() {
        let token = format!("tampered-{i}");
        let mut entry = publish(&token, base.clone());
        tamper(&mut entry);
        redis.cli(&[
            "SET",
            &darts_key(&token),
            &entry.to_string(),
            "PX",
            "600000",
        ]);
        let before = b.log_text().matches(REFUSED_LINE).count();
        match tokio::time::timeout(Duration::from_secs(10), ws_connect(&url_b(&b, &token), &[]))
            .await
            .expect("an answer within 10 s")
        {
            Err(404) => {}
            Err(other) => accepted.push(format!("{what}: answered {other}")),
            Ok(_) => accepted.push(format!("{what}: accepted")),
        }
        if !wait_refusal_logged(&b, before) {
            unlogged.push(*what);
        }
    }
    // A genuine entry copied under another token's key does not open either.
    let copied = redis.cli(&["GET", &darts_key("genuine")]);
    redis.cli(&["SET", &darts_key("copied"), &copied, "PX", "600000"]);
    let before = b.log_text().matches(REFUSED_LINE).count();
    if refusal_or_accepted(&url_b(&b, "copied")).await != Some(404) {
        accepted.push("copied under another digest".into());
    }
    if !wait_refusal_logged(&b, before) {
        unlogged.push("copied under another digest");
    }
    assert!(
        accepted.is_empty(),
        "tampered entries not refused: {accepted:?}"
    );
    assert!(
        unlogged.is_empty(),
        "refusals without a log line: {unlogged:?}"
    );
    // The log names entries by a digest prefix, never by token.
    let log = b.log_text();
    assert!(
        !log.contains("tampered-") && !log.contains("genuine"),
        "a token reached a log"
    );
}

/// The status refusing `url`, or `None` when it was accepted; bounded.
async fn refusal_or_accepted(url: &str) -> Option<u16> {
    match tokio::time::timeout(Duration::from_secs(10), ws_connect(url, &[])).await {
        Ok(Ok(_)) => None,
        Ok(Err(status)) => Some(status),
        Err(_) => panic!("no answer to {url} within 10 s"),
    }
}
