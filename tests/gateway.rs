//! Integration tests of the gateway core on loopback: routing, TLS, websocket protocol
//! handling, the pump's flow control, timeouts and shutdown.

#[path = "support/raw.rs"]
mod raw;
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use darts_proxy::tls::CertPaths;
use darts_proxy::{Route, Target, TokenFileSource, TokenMap};
use futures_util::{SinkExt, StreamExt};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(5);

fn tcp(addr: SocketAddr) -> Target {
    Target::Tcp {
        host: addr.ip().to_string(),
        port: addr.port(),
    }
}

fn routes(pairs: &[(&str, SocketAddr)]) -> TokenMap {
    let map = TokenMap::new();
    for (tok, addr) in pairs {
        map.insert(tok, Route::new(tcp(*addr)));
    }
    map
}

#[tokio::test]
async fn relays_both_ways_through_an_in_process_route() {
    let backend = echo_backend(b"RFB 003.008\n").await;
    let gw = TestGateway::start(TestGateway::config(), routes(&[("tok", backend)])).await;
    let mut ws = ws_connect(&gw.ws_url("/websockify?token=tok"), &[])
        .await
        .unwrap();
    assert_eq!(read_bytes(&mut ws, 12, T).await, b"RFB 003.008\n");
    send_binary(&mut ws, b"hello").await;
    assert_eq!(read_bytes(&mut ws, 5, T).await, b"hello");
}

/// Connects to `path` until the gateway routes it (token files are followed in the
/// background, so a change takes effect a moment after the write), at most `T`.
async fn once_routed(gw: &TestGateway, path: &str) -> Ws {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        match ws_connect(&gw.ws_url(path), &[]).await {
            Ok(ws) => return ws,
            Err(status) => assert!(
                tokio::time::Instant::now() < deadline,
                "{path}: still HTTP {status}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Until `path` is refused with 404, at most `T`.
async fn once_refused(gw: &TestGateway, path: &str) {
    let deadline = tokio::time::Instant::now() + T;
    while ws_connect(&gw.ws_url(path), &[]).await.err() != Some(404) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path}: still routed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn routes_tokens_from_a_file_and_sees_changes_without_restart() {
    let a = echo_backend(b"A").await;
    let b = echo_backend(b"B").await;
    let dir = Scratch::new("tokfile");
    let file = dir.path("tokens.cfg");
    std::fs::write(&file, format!("# websockify format\nalpha: {a}\n")).unwrap();
    let tokens = TokenMap::new().with_file_source(TokenFileSource::open(&file).unwrap());
    assert!(
        matches!(tokens.lookup("alpha"), darts_proxy::Lookup::Found(_)),
        "{tokens:?}"
    );
    let gw = TestGateway::start(TestGateway::config(), tokens).await;

    let mut ws = ws_connect(&gw.ws_url("/websockify?token=alpha"), &[])
        .await
        .unwrap();
    assert_eq!(read_bytes(&mut ws, 1, T).await, b"A");
    assert_eq!(
        ws_connect(&gw.ws_url("/?token=beta"), &[]).await.err(),
        Some(404)
    );

    // A token added to the file works a moment later (the watcher re-reads it).
    std::fs::write(&file, format!("alpha: {a}\nbeta: {b}\n")).unwrap();
    let mut ws = once_routed(&gw, "/?token=beta").await;
    assert_eq!(read_bytes(&mut ws, 1, T).await, b"B");

    // A removed token stops working shortly after.
    std::fs::write(&file, format!("beta: {b}\n")).unwrap();
    once_refused(&gw, "/?token=alpha").await;
}

/// Unknown tokens are answered from memory: 10,000 of them make no file read and no
/// directory scan (websockify re-reads every file for each). Only the watcher's own
/// once-a-second check touches the files meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tokens_cost_no_file_system_call() {
    let a = echo_backend(b"A").await;
    let dir = Scratch::new("tokfile-flood");
    let tokdir = dir.path("tokens");
    std::fs::create_dir(&tokdir).unwrap();
    for i in 0..3 {
        std::fs::write(tokdir.join(format!("{i}.cfg")), format!("t{i}: {a}\n")).unwrap();
    }
    let source = TokenFileSource::open(&tokdir).unwrap();
    let tokens = TokenMap::new().with_file_source(source.clone());
    let gw = TestGateway::start(TestGateway::config(), tokens).await;
    let before = source.fs_calls();
    let started = std::time::Instant::now();
    let addr = gw.addr;
    let workers: Vec<_> = (0..16)
        .map(|w| {
            tokio::spawn(async move {
                for i in 0..625 {
                    let path = format!("/websockify?token=nope-{w}-{i}");
                    let (_, status, _) = raw::upgrade(addr, &path, "").await;
                    assert_eq!(status, 404);
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let calls = source.fs_calls() - before;
    // One check is a directory listing and a stat per file (4 calls here), plus a read
    // per file when something changed: nothing changed, so at most a check a second.
    let checks = started.elapsed().as_secs() + 2;
    assert!(
        calls <= checks * 4,
        "10,000 unknown tokens made {calls} file system calls in {:?}",
        started.elapsed()
    );
    // The known tokens still route.
    let mut ws = ws_connect(&gw.ws_url("/websockify?token=t1"), &[])
        .await
        .unwrap();
    assert_eq!(read_bytes(&mut ws, 1, T).await, b"A");
}

#[tokio::test]
async fn routes_tokens_from_a_directory_including_unix_sockets() {
    let a = echo_backend(b"A").await;
    let dir = Scratch::new("tokdir");
    let sock = dir.path("vnc.sock");
    let unix = tokio::net::UnixListener::bind(&sock).unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = unix.accept().await {
            let _ = s.write_all(b"U").await;
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink).await;
        }
    });
    let tokdir = dir.path("tokens");
    std::fs::create_dir(&tokdir).unwrap();
    std::fs::write(tokdir.join("one.cfg"), format!("t1: {a}\n")).unwrap();
    std::fs::write(
        tokdir.join("two.cfg"),
        format!("t2: unix_socket:{}\n", sock.display()),
    )
    .unwrap();
    let tokens = TokenMap::new().with_file_source(TokenFileSource::open(&tokdir).unwrap());
    let gw = TestGateway::start(TestGateway::config(), tokens).await;
    let mut ws = ws_connect(&gw.ws_url("/websockify?token=t1"), &[])
        .await
        .unwrap();
    assert_eq!(read_bytes(&mut ws, 1, T).await, b"A");
    let mut ws = ws_connect(&gw.ws_url("/websockify?token=t2"), &[])
        .await
        .unwrap();
    assert_eq!(read_bytes(&mut ws, 1, T).await, b"U");
    // A new file in the directory is picked up too.
    std::fs::write(tokdir.join("three.cfg"), format!("t3: {a}\n")).unwrap();
    let mut ws = once_routed(&gw, "/websockify?token=t3").await;
    assert_eq!(read_bytes(&mut ws, 1, T).await, b"A");
}

#[tokio::test]
async fn original_link_shapes_route_on_any_path() {
    let a = echo_backend(b"A").await;
    let mut config = TestGateway::config();
    config.web_prefix = "/darts".into();
    let gw = TestGateway::start(config, routes(&[("T9", a)])).await;
    for path in [
        "/darts/vnc.html?token=T9",
        "/darts/websockify?token=T9",
        "/?token=T9",
        "//darts/vnc.html?resize=remote&autoconnect=true&path=?token=T9",
    ] {
        let mut ws = ws_connect(&gw.ws_url(path), &[])
            .await
            .unwrap_or_else(|s| panic!("{path}: HTTP {s}"));
        assert_eq!(read_bytes(&mut ws, 1, T).await, b"A", "{path}");
    }
}

#[tokio::test]
async fn unknown_missing_expired_and_used_one_shot_tokens_get_404_before_upgrade() {
    let a = echo_backend(b"A").await;
    let tokens = routes(&[("good", a)]);
    tokens.insert("once", Route::new(tcp(a)).one_shot(true));
    tokens.insert(
        "old",
        Route::new(tcp(a)).expires_at(std::time::SystemTime::now() - Duration::from_secs(1)),
    );
    let gw = TestGateway::start(TestGateway::config(), tokens).await;
    let (_, status, _) = raw::upgrade(gw.addr, "/websockify?token=nope", "").await;
    assert_eq!(status, 404);
    assert_eq!(
        ws_connect(&gw.ws_url("/websockify"), &[]).await.err(),
        Some(404)
    );
    assert_eq!(
        ws_connect(&gw.ws_url("/websockify?token=old"), &[])
            .await
            .err(),
        Some(404)
    );
    let mut ws = ws_connect(&gw.ws_url("/websockify?token=once"), &[])
        .await
        .unwrap();
    assert_eq!(read_bytes(&mut ws, 1, T).await, b"A");
    assert_eq!(
        ws_connect(&gw.ws_url("/websockify?token=once"), &[])
            .await
            .err(),
        Some(404)
    );
    let (_, _, body) = http_get(gw.addr, "/metrics", "").await;
    let metrics = String::from_utf8(body).unwrap();
    assert!(
        metrics.contains("darts_handshakes_total{result=\"unknown_token\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("darts_handshakes_total{result=\"expired_token\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("darts_handshakes_total{result=\"missing_token\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn origin_check_refuses_other_sites() {
    let a = echo_backend(b"A").await;
    let mut config = TestGateway::config();
    config.allowed_origins = vec!["https://portal.example".into()];
    let gw = TestGateway::start(config, routes(&[("t", a)])).await;
    let url = gw.ws_url("/websockify?token=t");
    assert_eq!(
        ws_connect(&url, &[("origin", "http://evil.example")])
            .await
            .err(),
        Some(403)
    );
    assert_eq!(
        ws_connect(&url, &[("origin", "null")]).await.err(),
        Some(403)
    );
    let same = format!("http://{}", gw.addr);
    assert!(ws_connect(&url, &[("origin", &same)]).await.is_ok());
    assert!(ws_connect(&url, &[("origin", "https://portal.example")])
        .await
        .is_ok());
}

#[tokio::test]
async fn binary_subprotocol_is_answered_when_offered() {
    let a = echo_backend(b"A").await;
    let gw = TestGateway::start(TestGateway::config(), routes(&[("t", a)])).await;
    let (_, status, head) = raw::upgrade(
        gw.addr,
        "/?token=t",
        "Sec-WebSocket-Protocol: binary, base64\r\n",
    )
    .await;
    assert_eq!(status, 101);
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-protocol: binary"),
        "{head}"
    );
    let (_, status, head) = raw::upgrade(gw.addr, "/?token=t", "").await;
    assert_eq!(status, 101);
    assert!(
        !head.to_ascii_lowercase().contains("sec-websocket-protocol"),
        "{head}"
    );
    let (_, status, _) =
        raw::upgrade(gw.addr, "/?token=t", "Sec-WebSocket-Protocol: base64\r\n").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn unreachable_target_closes_with_1011() {
    let closed = {
        TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let gw = TestGateway::start(TestGateway::config(), routes(&[("t", closed)])).await;
    let mut ws = ws_connect(&gw.ws_url("/?token=t"), &[]).await.unwrap();
    assert_eq!(expect_close(&mut ws, T).await, 1011);
}

#[tokio::test]
async fn text_frames_are_refused_with_1003() {
    let a = echo_backend(b"").await;
    let gw = TestGateway::start(TestGateway::config(), routes(&[("t", a)])).await;
    let mut ws = ws_connect(&gw.ws_url("/?token=t"), &[]).await.unwrap();
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(expect_close(&mut ws, T).await, 1003);
}

#[tokio::test]
async fn oversized_frames_and_messages_are_refused_with_1009() {
    let a = echo_backend(b"").await;
    let mut config = TestGateway::config();
    config.max_frame = 1024;
    config.max_message = 4096;
    let gw = TestGateway::start(config, routes(&[("t", a)])).await;
    let (mut s, status, _) = raw::upgrade(gw.addr, "/?token=t", "").await;
    assert_eq!(status, 101);
    // Only the header of a 1 GiB frame is sent: it must be refused without waiting for it.
    let mut header = raw::frame(true, 2, &[], Some([1, 2, 3, 4]));
    header[1] = 0x80 | 127;
    header.splice(2..2, (1u64 << 30).to_be_bytes());
    s.write_all(&header).await.unwrap();
    assert_eq!(raw::read_close(&mut s, T).await, 1009);

    // A fragmented message whose frames are each small but add up past the limit.
    let (mut s, _, _) = raw::upgrade(gw.addr, "/?token=t", "").await;
    let part = vec![7u8; 1000];
    s.write_all(&raw::frame(false, 2, &part, Some([1, 2, 3, 4])))
        .await
        .unwrap();
    for _ in 0..4 {
        s.write_all(&raw::frame(false, 0, &part, Some([1, 2, 3, 4])))
            .await
            .unwrap();
    }
    assert_eq!(raw::read_close(&mut s, T).await, 1009);
}

#[tokio::test]
async fn malformed_frames_close_only_their_own_session() {
    let a = echo_backend(b"").await;
    let gw = TestGateway::start(TestGateway::config(), routes(&[("t", a)])).await;
    let mut good = ws_connect(&gw.ws_url("/?token=t"), &[]).await.unwrap();
    for bad in [
        raw::frame(true, 2, b"unmasked", None),
        raw::frame(true, 3, b"reserved opcode", Some([9, 9, 9, 9])),
        raw::frame(false, 9, b"fragmented ping", Some([9, 9, 9, 9])),
        raw::frame(true, 0, b"continuation first", Some([9, 9, 9, 9])),
        raw::frame(true, 8, &[0x03], Some([9, 9, 9, 9])),
    ] {
        let (mut s, _, _) = raw::upgrade(gw.addr, "/?token=t", "").await;
        s.write_all(&bad).await.unwrap();
        assert_eq!(raw::read_close(&mut s, T).await, 1002);
    }
    send_binary(&mut good, b"still here").await;
    assert_eq!(read_bytes(&mut good, 10, T).await, b"still here");
}

#[tokio::test]
async fn fragmented_messages_and_pings_are_handled() {
    let a = echo_backend(b"").await;
    let gw = TestGateway::start(TestGateway::config(), routes(&[("t", a)])).await;
    let (mut s, _, _) = raw::upgrade(gw.addr, "/?token=t", "").await;
    let mut bytes = raw::frame(false, 2, b"frag", Some([5, 6, 7, 8]));
    bytes.extend(raw::frame(true, 9, b"are you there", Some([1, 1, 1, 1])));
    bytes.extend(raw::frame(true, 0, b"mented", Some([8, 7, 6, 5])));
    s.write_all(&bytes).await.unwrap();
    let mut echoed = Vec::new();
    let mut pong = None;
    while echoed.len() < 10 || pong.is_none() {
        match tokio::time::timeout(T, raw::read_frame(&mut s))
            .await
            .unwrap()
        {
            Some((2, p)) => echoed.extend(p),
            Some((10, p)) => pong = Some(p),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(echoed, b"fragmented");
    assert_eq!(pong.unwrap(), b"are you there");
}

#[tokio::test]
async fn target_end_of_stream_delivers_everything_then_closes_1000() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let sent = payload.clone();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        s.write_all(&sent).await.unwrap();
        s.shutdown().await.unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
    });
    let gw = TestGateway::start(TestGateway::config(), routes(&[("t", addr)])).await;
    let mut ws = ws_connect(&gw.ws_url("/?token=t"), &[]).await.unwrap();
    let mut got = Vec::new();
    let code = loop {
        match tokio::time::timeout(T, ws.next()).await.unwrap() {
            Some(Ok(Message::Binary(b))) => got.extend_from_slice(&b),
            Some(Ok(Message::Close(f))) => break f.map(|f| u16::from(f.code)),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(got.len(), payload.len());
    assert!(got == payload, "data arrived intact");
    assert_eq!(code, Some(1000));
}

#[tokio::test]
async fn browser_close_delivers_pending_input_then_ends_the_target_stream() {
    let (addr, mut recorded) = recording_backend().await;
    let gw = TestGateway::start(TestGateway::config(), routes(&[("t", addr)])).await;
    let mut ws = ws_connect(&gw.ws_url("/?token=t"), &[]).await.unwrap();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
    for chunk in data.chunks(30_000) {
        ws.send(Message::binary(chunk.to_vec())).await.unwrap();
    }
    ws.close(None).await.unwrap();
    let got = tokio::time::timeout(T, recorded.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        got == data,
        "the target got {} of {} bytes, then end of stream",
        got.len(),
        data.len()
    );
    // The gateway answered the close.
    match tokio::time::timeout(T, ws.next()).await.unwrap() {
        Some(Ok(Message::Close(_))) | None => {}
        other => panic!("expected the close answer, got {other:?}"),
    }
}

#[tokio::test]
async fn a_browser_that_stops_reading_does_not_stop_its_input() {
    // The target floods the browser and records what the browser sends.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let (mut r, mut w) = s.into_split();
        tokio::spawn(async move {
            let block = vec![0xABu8; 64 * 1024];
            while w.write_all(&block).await.is_ok() {}
        });
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = r.read(&mut buf).await {
            if n == 0 || tx.send(buf[..n].to_vec()).await.is_err() {
                break;
            }
        }
    });
    let gw = TestGateway::start(TestGateway::config(), routes(&[("t", addr)])).await;
    let (mut s, status, _) = raw::upgrade(gw.addr, "/?token=t", "").await;
    assert_eq!(status, 101);
    // Never read from `s`: let every buffer between target and browser fill up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut received = Vec::new();
    for i in 0..20u8 {
        s.write_all(&raw::binary(&[b'k', i])).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    while received.len() < 40 {
        let chunk = tokio::time::timeout(T, rx.recv())
            .await
            .expect("keyboard input reaches the target while the screen is stalled")
            .unwrap();
        received.extend(chunk);
    }
    let expected: Vec<u8> = (0..20u8).flat_map(|i| [b'k', i]).collect();
    assert_eq!(received, expected);
    let (_, _, body) = http_get(gw.addr, "/metrics", "").await;
    let metrics = String::from_utf8(body).unwrap();
    assert!(metrics.contains("darts_sessions_open 1"), "{metrics}");
}

#[tokio::test]
async fn idle_sessions_are_closed_and_busy_ones_kept() {
    let a = echo_backend(b"").await;
    let mut config = TestGateway::config();
    config.idle_timeout = Some(Duration::from_millis(600));
    let gw = TestGateway::start(config, routes(&[("t", a)])).await;
    let mut busy = ws_connect(&gw.ws_url("/?token=t"), &[]).await.unwrap();
    let mut idle = ws_connect(&gw.ws_url("/?token=t"), &[]).await.unwrap();
    let started = tokio::time::Instant::now();
    for _ in 0..10 {
        send_binary(&mut busy, b"x").await;
        assert_eq!(read_bytes(&mut busy, 1, T).await, b"x");
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    assert_eq!(expect_close(&mut idle, T).await, 1000);
    assert!(started.elapsed() >= Duration::from_millis(550));
    // The busy one outlived the idle one and still relays.
    send_binary(&mut busy, b"y").await;
    assert_eq!(read_bytes(&mut busy, 1, T).await, b"y");
    assert_eq!(expect_close(&mut busy, T).await, 1000);
}

#[tokio::test]
async fn heartbeat_pings_and_drops_browsers_that_never_answer() {
    let a = echo_backend(b"").await;
    let mut config = TestGateway::config();
    config.heartbeat = Some(Duration::from_millis(200));
    let gw = TestGateway::start(config, routes(&[("t", a)])).await;
    // A raw client that reads but never answers pings.
    let (mut s, _, _) = raw::upgrade(gw.addr, "/?token=t", "").await;
    let mut pings = 0;
    let code = tokio::time::timeout(T, async {
        loop {
            match raw::read_frame(&mut s).await {
                Some((9, _)) => pings += 1,
                Some((8, p)) => return u16::from_be_bytes([p[0], p[1]]),
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await
    .unwrap();
    assert!(pings >= 2, "pinged {pings} times");
    assert_eq!(code, 1001);
    // tungstenite answers pings, so its session lives on well past the limit.
    let mut ws = ws_connect(&gw.ws_url("/?token=t"), &[]).await.unwrap();
    let pongs = tokio::time::timeout(Duration::from_millis(1200), async {
        while let Some(Ok(m)) = ws.next().await {
            assert!(!m.is_close(), "answering client was closed");
        }
    })
    .await;
    assert!(pongs.is_err(), "session still open after 1.2 s");
}

#[tokio::test]
async fn graceful_shutdown_closes_sessions_with_1001() {
    let a = echo_backend(b"A").await;
    let gw = TestGateway::start(TestGateway::config(), routes(&[("t", a)])).await;
    let mut ws1 = ws_connect(&gw.ws_url("/?token=t"), &[]).await.unwrap();
    let mut ws2 = ws_connect(&gw.ws_url("/?token=t"), &[]).await.unwrap();
    assert_eq!(read_bytes(&mut ws1, 1, T).await, b"A");
    assert_eq!(read_bytes(&mut ws2, 1, T).await, b"A");
    gw.stop.cancel();
    assert_eq!(expect_close(&mut ws1, T).await, 1001);
    assert_eq!(expect_close(&mut ws2, T).await, 1001);
    drop((ws1, ws2));
    let drained = tokio::time::timeout(Duration::from_secs(15), gw.done)
        .await
        .unwrap()
        .unwrap();
    assert!(drained, "sessions ended within the grace period");
    assert!(
        TcpStream::connect(gw.addr).await.is_err(),
        "listener closed"
    );
}

#[tokio::test]
async fn static_files_health_and_metrics() {
    let dir = Scratch::new("web");
    std::fs::create_dir(dir.path("app")).unwrap();
    std::fs::write(dir.path("vnc.html"), "<html>novnc</html>").unwrap();
    std::fs::write(dir.path("app/ui.js"), "export {};").unwrap();
    std::fs::write(dir.path("app/styles.css"), "body{}").unwrap();
    let mut config = TestGateway::config();
    config.web_dir = Some(dir.0.clone());
    config.web_prefix = "/darts".into();
    let gw = TestGateway::start(config, TokenMap::new()).await;
    let (status, head, body) = http_get(gw.addr, "/darts/vnc.html", "").await;
    assert_eq!((status, body.as_slice()), (200, &b"<html>novnc</html>"[..]));
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/html"),
        "{head}"
    );
    let (status, head, _) = http_get(gw.addr, "/darts//app/ui.js", "").await;
    assert_eq!(status, 200);
    assert!(head.to_ascii_lowercase().contains("javascript"), "{head}");
    let (_, head, _) = http_get(gw.addr, "/darts/app/styles.css", "").await;
    assert!(
        head.to_ascii_lowercase().contains("content-type: text/css"),
        "{head}"
    );
    let (status, head, _) = http_get(gw.addr, "/darts/", "").await;
    assert_eq!(status, 302);
    assert!(head.contains("location: vnc.html"), "{head}");
    for bad in [
        "/darts/../Cargo.toml",
        "/darts/%2e%2e/%2e%2e/etc/passwd",
        "/darts/nope.js",
        "/vnc.html",
    ] {
        assert_eq!(http_get(gw.addr, bad, "").await.0, 404, "{bad}");
    }
    assert_eq!(http_get(gw.addr, "/darts/healthz", "").await.0, 200);
    let (status, head, body) = http_get(gw.addr, "/darts/metrics", "").await;
    assert_eq!(status, 200);
    assert!(head.contains("text/plain; version=0.0.4"));
    assert!(String::from_utf8(body)
        .unwrap()
        .contains("darts_sessions_open 0"));
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"POST /darts/vnc.html HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 405"), "{resp}");
}

#[tokio::test]
async fn logs_never_contain_tokens() {
    // Token redaction helper used by every log line that shows a request path.
    assert_eq!(
        darts_proxy::token::redact_query("/websockify?token=SECRET"),
        "/websockify?token=***"
    );
}

#[tokio::test]
async fn target_reset_closes_the_browser_with_1011() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        s.set_zero_linger().unwrap();
        drop(s); // RST
    });
    let gw = TestGateway::start(TestGateway::config(), routes(&[("t", addr)])).await;
    let mut ws = ws_connect(&gw.ws_url("/?token=t"), &[]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = ws.send(Message::binary(vec![1u8; 1000])).await;
    assert_eq!(expect_close(&mut ws, T).await, 1011);
}

/// An application claiming `/api/…` on the gateway's port.
#[derive(Debug)]
struct EchoApp;

impl darts_proxy::app::App for EchoApp {
    fn claims(&self, _method: &http::Method, path: &str) -> bool {
        path.starts_with("/api/")
    }

    fn handle(
        &self,
        req: http::Request<hyper::body::Incoming>,
        ctx: darts_proxy::app::AppContext,
    ) -> darts_proxy::app::AppFuture {
        Box::pin(async move {
            let body = format!(
                "{} {} tls={} client={}",
                req.method(),
                ctx.path,
                ctx.tls,
                ctx.client.addr
            );
            http::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)))
        })
    }
}

#[tokio::test]
async fn an_application_shares_the_port_and_upgrades_still_route() {
    let (backend, _) = recording_backend().await;
    let mut config = TestGateway::config();
    config.web_prefix = "/darts".into();
    config.app = Some(std::sync::Arc::new(EchoApp));
    config.trusted_proxies =
        darts_proxy::forwarded::TrustedProxies::parse(&["127.0.0.1".to_owned()]).unwrap();
    let tokens = TokenMap::new();
    tokens.insert(
        "t1",
        darts_proxy::Route::new(darts_proxy::Target::Tcp {
            host: "127.0.0.1".into(),
            port: backend.port(),
        }),
    );
    let gw = TestGateway::start(config, tokens).await;
    // Claimed paths reach the application, with the prefix removed and slashes folded.
    let (status, _, body) = http_get(gw.addr, "/darts//api/x", "").await;
    assert_eq!(status, 200);
    assert_eq!(
        String::from_utf8_lossy(&body),
        "GET /api/x tls=false client=127.0.0.1"
    );
    // The client the gateway resolved (after its trusted proxies) is the one it hands over.
    let (_, _, body) = http_get(gw.addr, "/darts/api/x", "X-Forwarded-For: 192.0.2.9\r\n").await;
    assert_eq!(
        String::from_utf8_lossy(&body),
        "GET /api/x tls=false client=192.0.2.9"
    );
    // Others are the gateway's own.
    let (status, _, body) = http_get(gw.addr, "/darts/healthz", "").await;
    assert_eq!(
        (status, String::from_utf8_lossy(&body).as_ref()),
        (200, "ok\n")
    );
    let (status, _, _) = http_get(gw.addr, "/api/x", "").await;
    assert_eq!(status, 404, "outside the prefix");
    // A websocket upgrade under a claimed path is still the gateway's.
    assert!(ws_connect(&gw.ws_url("/darts/api/x?token=t1"), &[])
        .await
        .is_ok());
}

#[path = "gateway/limits.rs"]
mod limits;
#[path = "gateway/tls.rs"]
mod tls;
