//! Faults at the gateway: one client address opening thousands of connections, one token
//! opening too many sessions, oversized request heads, request headers dribbled byte by byte, websocket frames started and never finished, and
//! large half-sent frames; each next to a real QEMU session that must keep streaming.
//!
//! The QEMU tests need qemu-system-x86_64 and the demo machine (`bash tests/setup.sh`).

#[path = "support/qemu.rs"]
mod qemu;
#[path = "support/raw.rs"]
mod raw;
#[path = "support/service.rs"]
mod service;
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use darts_proxy::forwarded::TrustedProxies;
use darts_proxy::{GatewayConfig, Route, Target, TokenMap};
use futures_util::StreamExt;
use qemu::{Qemu, RfbOverWs, VncListen};
use service::Service;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

const T: Duration = Duration::from_secs(10);
const RFB_TIMEOUT: Duration = Duration::from_secs(20);
const LOCAL: [u8; 4] = [127, 0, 0, 1];
/// Another loopback address: a second client the flood must not touch.
const OTHER: [u8; 4] = [127, 0, 0, 2];

/// A TCP connection to `addr` from the loopback address `src`.
async fn connect_from(src: [u8; 4], addr: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::from((src, 0))).unwrap();
    sock.connect(addr).await.unwrap()
}

/// A websocket over `tcp` (which may already carry a PROXY header); `None` when the
/// server closed instead of answering.
async fn ws_over(tcp: TcpStream, url: &str) -> Option<Ws> {
    tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(tcp))
        .await
        .ok()
        .map(|(ws, _)| ws)
}

/// A viewer of `url` from `src` past the RFB handshake, asking for raw pixels.
async fn viewer_from(src: [u8; 4], addr: SocketAddr, url: &str) -> RfbOverWs {
    let ws = ws_over(connect_from(src, addr).await, url)
        .await
        .expect("websocket accepted");
    let mut rfb = RfbOverWs::new(ws, RFB_TIMEOUT);
    rfb.handshake().await;
    rfb.set_raw_rgb32().await;
    rfb
}

/// True when the server closed (or reset) the connection without a byte.
async fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(
        tokio::time::timeout(T, s.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// `GET path` from `src`; returns the status and the body.
async fn get_from(src: [u8; 4], addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = connect_from(src, addr).await;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

/// One sample of a Prometheus text page (`name{labels}` exactly as rendered).
fn sample(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in metrics:\n{metrics}"))
}

/// An RFB ClientCutText message of `len` bytes of text: QEMU takes up to 1 MiB.
fn cut_text(len: usize) -> Vec<u8> {
    let mut m = vec![6u8, 0, 0, 0];
    m.extend_from_slice(&(len as u32).to_be_bytes());
    m.resize(8 + len, b'x');
    m
}

/// Writes bytes under the websocket client, as a broken or hostile client would.
async fn write_raw(ws: &mut Ws, bytes: &[u8]) -> std::io::Result<()> {
    match ws.get_mut() {
        MaybeTlsStream::Plain(s) => s.write_all(bytes).await,
        _ => unreachable!("plain connections only"),
    }
}

/// Writes `bytes` one at a time every `every` until the server closes; returns the close
/// code, its reason and how many bytes were written.
async fn dribble_until_closed(ws: &mut Ws, bytes: &[u8], every: Duration) -> (u16, String, usize) {
    let mut sent = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        if sent < bytes.len() {
            if write_raw(ws, &bytes[sent..sent + 1]).await.is_ok() {
                sent += 1;
            } else {
                sent = bytes.len();
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never closed; {sent} bytes sent"
        );
        match tokio::time::timeout(every, ws.next()).await {
            Err(_) => continue,
            Ok(Some(Ok(Message::Close(Some(f))))) => {
                return (u16::from(f.code), f.reason.to_string(), sent)
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Still open: nothing to read and no end of stream within a moment.
async fn still_open(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    tokio::time::timeout(Duration::from_millis(300), s.read(&mut b))
        .await
        .is_err()
}

/// Polls the in-process gateway's metrics until `name` reaches `want` (bounded).
async fn wait_sample(gw: &TestGateway, name: &str, want: u64) {
    let deadline = Instant::now() + T;
    loop {
        let got = sample(&gw.handle.metrics().render(), name);
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{name} is {got}, want {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes `head` on a new connection and returns the status of the answer (0: closed).
async fn status_of_head(addr: SocketAddr, head: &[u8]) -> u16 {
    let mut s = connect_from(LOCAL, addr).await;
    // The server may answer and close before it read everything: a failed write is fine.
    let _ = s.write_all(head).await;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(T, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&buf);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A websocket upgrade for `token` whose head is `head_len` bytes in all, padded with
/// one `X-Pad` header line.
fn upgrade_head(addr: SocketAddr, token: &str, head_len: usize) -> Vec<u8> {
    let start = format!(
        "GET /?token={token} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Pad: "
    );
    let end = "\r\n\r\n";
    let pad = head_len - start.len() - end.len();
    let mut head = start.into_bytes();
    head.resize(head.len() + pad, b'p');
    head.extend_from_slice(end.as_bytes());
    assert_eq!(head.len(), head_len);
    head
}

/// An in-process gateway routing each of `tokens` to an echo backend that greets with "A".
async fn echo_gateway(tokens: &[&str], config: GatewayConfig) -> TestGateway {
    let backend = echo_backend(b"A").await;
    let map = TokenMap::new();
    for t in tokens {
        map.insert(
            t,
            Route::new(Target::Tcp {
                host: "127.0.0.1".into(),
                port: backend.port(),
            }),
        );
    }
    TestGateway::start(config, map).await
}

const DROPPED: &str = "darts_connections_dropped_total{reason=\"pending_per_address\"}";

#[tokio::test]
async fn the_pending_cap_drops_an_address_oldest_connection_and_never_counts_sessions() {
    let mut config = TestGateway::config();
    config.max_connections_per_ip = 3;
    let gw = echo_gateway(&["t"], config).await;
    let url = gw.ws_url("/?token=t");
    // Five sessions from 127.0.0.1 with a valid token: past the pending cap, all held.
    let mut sessions = Vec::new();
    for i in 0..5 {
        let mut ws = ws_over(connect_from(LOCAL, gw.addr).await, &url)
            .await
            .unwrap_or_else(|| panic!("session {i} refused"));
        assert_eq!(read_bytes(&mut ws, 1, T).await, b"A");
        sessions.push(ws);
    }
    // Three connections that never send a request fill 127.0.0.1's pending share.
    let mut pending = Vec::new();
    for _ in 0..3 {
        pending.push(connect_from(LOCAL, gw.addr).await);
        // Each is accepted (and so counted) before the next: their age is their order.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A fourth pushes out the oldest, not itself.
    let mut fourth = connect_from(LOCAL, gw.addr).await;
    assert!(
        closed_by_server(&mut pending[0]).await,
        "the oldest is dropped"
    );
    assert!(still_open(&mut pending[1]).await, "the second oldest stays");
    assert!(still_open(&mut fourth).await, "the newcomer stays");
    wait_sample(&gw, DROPPED, 1).await;
    // A newcomer from the same address is served (pushing out the next oldest).
    let (status, _) = get_from(LOCAL, gw.addr, "/healthz").await;
    assert_eq!(status, 200);
    assert!(closed_by_server(&mut pending[1]).await);
    // Another address has its own share.
    let (status, _) = get_from(OTHER, gw.addr, "/healthz").await;
    assert_eq!(status, 200);
    // The sessions were never part of any of this.
    for ws in &mut sessions {
        send_binary(ws, b"ping").await;
        assert_eq!(read_bytes(ws, 4, T).await, b"ping");
    }
    wait_sample(&gw, DROPPED, 2).await;
}

#[tokio::test]
async fn behind_a_proxy_the_clients_it_names_are_counted_not_the_proxy() {
    let mut config = TestGateway::config();
    config.max_connections_per_ip = 2;
    config.proxy_protocol = true;
    config.trusted_proxies = TrustedProxies::parse(&["127.0.0.1"]).unwrap();
    let gw = echo_gateway(&["t"], config).await;
    let url = gw.ws_url("/?token=t");
    let via_proxy = |client: &'static str| {
        let addr = gw.addr;
        async move {
            let mut s = connect_from(LOCAL, addr).await;
            let header = format!("PROXY TCP4 {client} 127.0.0.1 40000 {}\r\n", addr.port());
            s.write_all(header.as_bytes()).await.unwrap();
            s
        }
    };
    // Sessions of the named client are not pending: three, over its share of two.
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let ws = ws_over(via_proxy("203.0.113.9").await, &url).await;
        let mut ws = ws.expect("a session is not counted against the share");
        assert_eq!(read_bytes(&mut ws, 1, T).await, b"A");
        sessions.push(ws);
    }
    // Its third pending connection pushes out its first.
    let mut first = via_proxy("203.0.113.9").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut second = via_proxy("203.0.113.9").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut third = via_proxy("203.0.113.9").await;
    assert!(
        closed_by_server(&mut first).await,
        "the named client's oldest pending connection is dropped"
    );
    assert!(still_open(&mut second).await && still_open(&mut third).await);
    let mut neighbour = ws_over(via_proxy("203.0.113.10").await, &url)
        .await
        .expect("another client behind the same proxy");
    assert_eq!(read_bytes(&mut neighbour, 1, T).await, b"A");
    // The proxy's own connections (no PROXY header) are not limited: five at once.
    let mut own = Vec::new();
    for _ in 0..5 {
        own.push(connect_from(LOCAL, gw.addr).await);
    }
    for s in &mut own {
        let req = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", gw.addr);
        s.write_all(req.as_bytes()).await.unwrap();
    }
    for s in &mut own {
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(T, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    }
    wait_sample(&gw, DROPPED, 1).await;
    for ws in &mut sessions {
        send_binary(ws, b"ping").await;
        assert_eq!(read_bytes(ws, 4, T).await, b"ping");
    }
}

#[tokio::test]
async fn sessions_per_token_are_capped_and_other_tokens_are_served() {
    let mut config = TestGateway::config();
    config.max_viewers_per_token = 2;
    let gw = echo_gateway(&["t", "u"], config).await;
    let url = gw.ws_url("/?token=t");
    let mut viewers = Vec::new();
    for _ in 0..2 {
        let mut ws = ws_connect(&url, &[])
            .await
            .expect("within the token's limit");
        assert_eq!(read_bytes(&mut ws, 1, T).await, b"A");
        viewers.push(ws);
    }
    assert_eq!(
        ws_connect(&url, &[]).await.err(),
        Some(429),
        "a third viewer of one token"
    );
    // Another token is not affected.
    let mut other = ws_connect(&gw.ws_url("/?token=u"), &[])
        .await
        .expect("another token");
    assert_eq!(read_bytes(&mut other, 1, T).await, b"A");
    // A place comes back when a viewer leaves.
    let mut gone = viewers.pop().unwrap();
    gone.close(None).await.unwrap();
    assert_eq!(expect_close(&mut gone, T).await, 1000);
    drop(gone);
    let deadline = Instant::now() + T;
    loop {
        if let Ok(mut ws) = ws_connect(&url, &[]).await {
            assert_eq!(read_bytes(&mut ws, 1, T).await, b"A");
            break;
        }
        assert!(Instant::now() < deadline, "the place never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = gw.handle.metrics().render();
    assert_eq!(
        sample(
            &metrics,
            "darts_handshakes_total{result=\"too_many_viewers\"}"
        ),
        1
    );
}

#[tokio::test]
async fn a_request_head_over_16_kib_gets_431_and_one_just_under_is_served() {
    let gw = echo_gateway(&["t"], TestGateway::config()).await;
    // A single 64 KiB header line on a valid upgrade: refused, never switched.
    let huge = upgrade_head(gw.addr, "t", 64 * 1024 + 200);
    assert_eq!(status_of_head(gw.addr, &huge).await, 431);
    // Just past the documented 16 KiB.
    let over = upgrade_head(gw.addr, "t", 16 * 1024 + 1);
    assert_eq!(status_of_head(gw.addr, &over).await, 431);
    // Just under it: upgraded and relayed.
    let under = upgrade_head(gw.addr, "t", 16 * 1024 - 64);
    let mut s = connect_from(LOCAL, gw.addr).await;
    s.write_all(&under).await.unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 512];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(T, s.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&chunk[..n]);
    }
    assert!(
        answer.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    // The backend's greeting arrives as a binary frame: 0x82, length 1, "A".
    let (_, rest) = answer.split_at(answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4);
    let mut frame = rest.to_vec();
    while frame.len() < 3 {
        let n = tokio::time::timeout(T, s.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        frame.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(&frame[..3], &[0x82, 1, b'A']);
    // A plain request just under the limit is served too.
    let head = format!(
        "GET /healthz HTTP/1.1\r\nHost: {}\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
        gw.addr,
        "p".repeat(15 * 1024)
    );
    assert_eq!(status_of_head(gw.addr, head.as_bytes()).await, 200);
}

#[tokio::test]
async fn request_headers_dribbled_byte_by_byte_are_cut_by_the_handshake_timeout() {
    let mut config = TestGateway::config();
    config.handshake_timeout = Duration::from_millis(800);
    let gw = TestGateway::start(config, TokenMap::new()).await;
    // A valid request that would take some 50 s at this pace: bytes keep coming, but
    // the deadline is for the whole head, not for each byte.
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: {}\r\nX-Pad: {}\r\n\r\n",
        gw.addr,
        "p".repeat(400)
    );
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let mut sent = 0;
    let mut answer = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(tokio::time::Instant::now() < deadline, "never cut");
        if sent < request.len() && s.write_all(&request.as_bytes()[sent..=sent]).await.is_ok() {
            sent += 1;
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            Err(_) => continue,
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
        }
    }
    assert!(
        sent < request.len(),
        "the whole request went through ({sent} bytes)"
    );
    // hyper answers 408 before closing, or just closes; never the page.
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    // The request never reached the service: the only one counted is this one.
    let (_, metrics) = get_from(LOCAL, gw.addr, "/metrics").await;
    assert_eq!(sample(&metrics, "darts_http_requests_total"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn frames_left_unfinished_are_closed_with_1008_and_other_viewers_stream_on() {
    let scratch = Scratch::new("resilience-frames");
    let vm = Qemu::bios_unix(&scratch.0, "darts-resilience-frames");
    let VncListen::Unix(sock) = vm.vnc.clone() else {
        unreachable!()
    };
    let tokens = TokenMap::new();
    tokens.insert("vm", Route::new(Target::Unix(sock)));
    let mut config = TestGateway::rfb_config();
    config.frame_timeout = Some(Duration::from_secs(2));
    let gw = TestGateway::start(config, tokens).await;
    let url = gw.ws_url("/?token=vm");

    let mut watcher = viewer_from(LOCAL, gw.addr, &url).await;
    watcher.full_frame(20).await;
    // One client stalls inside a frame's header, one inside its payload; both keep
    // sending a byte every half second, so neither is ever idle.
    let mut in_header = viewer_from(LOCAL, gw.addr, &url).await.into_ws();
    let mut in_payload = viewer_from(LOCAL, gw.addr, &url).await.into_ws();
    let frame = raw::binary(&cut_text(200));
    let header_len = 2 + 2 + 4; // 16-bit length form, mask key
    write_raw(&mut in_payload, &frame[..header_len + 8])
        .await
        .unwrap();
    let every = Duration::from_millis(500);
    let ((code_h, reason_h, sent_h), (code_p, reason_p, sent_p)) = tokio::join!(
        dribble_until_closed(&mut in_header, &frame, every),
        dribble_until_closed(&mut in_payload, &frame[header_len + 8..], every),
    );
    assert_eq!(
        (code_h, reason_h.as_str()),
        (1008, "frame not completed in time")
    );
    assert_eq!(
        (code_p, reason_p.as_str()),
        (1008, "frame not completed in time")
    );
    assert!(sent_h < frame.len() && sent_p < frame.len() - header_len - 8);
    // The watcher, silent all this time (silence is not an unfinished frame), streams on.
    let u = watcher.full_frame(20).await;
    assert_eq!(u.area, u64::from(watcher.width) * u64::from(watcher.height));
    let metrics = gw.handle.metrics().render();
    assert_eq!(
        sample(
            &metrics,
            "darts_session_ends_total{reason=\"frame_timeout\"}"
        ),
        2
    );
    // Whole frames, however slow the conversation, are never cut.
    let mut slow = viewer_from(LOCAL, gw.addr, &url).await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(900)).await;
        slow.full_frame(20).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn large_frames_left_half_sent_hold_no_memory_in_darts() {
    let svc = Service::start("resilience-half-frames", "");
    let s = svc.start_session(&[]);
    let url = svc.ws_url(&s.token);
    let mut watcher = viewer_from(LOCAL, svc.addr, &url).await;
    watcher.full_frame(20).await;
    // QEMU serves 32 VNC clients at most.
    const CLIENTS: usize = 28;
    const TEXT: usize = 960 * 1024;
    let mut stalled = Vec::new();
    for _ in 0..CLIENTS {
        stalled.push(viewer_from(LOCAL, svc.addr, &url).await.into_ws());
    }
    let pid = svc.darts.as_ref().unwrap().child.id();
    let before = rss_kib(pid);
    let (_, metrics) = get_from(LOCAL, svc.addr, "/darts/metrics").await;
    let to_target = "darts_bytes_total{direction=\"to_target\"}";
    let relayed_before = sample(&metrics, to_target);
    // Each sends all of a ~1 MiB clipboard message but its last byte, then stops.
    let frame = raw::binary(&cut_text(TEXT));
    for ws in &mut stalled {
        write_raw(ws, &frame[..frame.len() - 1]).await.unwrap();
    }
    // Everything sent went through to QEMU: nothing waits in darts.
    let expected = relayed_before + (CLIENTS * (TEXT + 7)) as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, metrics) = get_from(LOCAL, svc.addr, "/darts/metrics").await;
        if sample(&metrics, to_target) >= expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "relayed {} of {expected}",
            sample(&metrics, to_target)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let grown_mib = rss_kib(pid).saturating_sub(before) / 1024;
    let held_mib = (CLIENTS * TEXT / (1024 * 1024)) as u64;
    assert!(
        grown_mib < 8,
        "darts grew by {grown_mib} MiB while {held_mib} MiB sit in unfinished frames"
    );
    watcher.full_frame(20).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_idle_connections_from_one_address_leaves_its_viewers_and_others_streaming() {
    // Defaults: the pending share is darts_proxy's default (256).
    const CAP: usize = darts_proxy::config::DEFAULT_MAX_CONNECTIONS_PER_IP;
    const FLOOD: usize = 3000;
    // The flood's client ends live in this process: a 1024 soft limit is too few
    // (`None`: no limit at all).
    let nofile = darts::rlimit::raise_nofile();
    assert!(
        nofile.is_none_or(|n| n > FLOOD as u64 + 512),
        "open-files limit {nofile:?}: the flood needs more than {FLOOD} + 512"
    );
    let svc = Service::start("resilience-flood", "");
    let s = svc.start_session(&[]);
    let url = svc.ws_url(&s.token);
    // A viewer from another address, streaming throughout.
    let mut viewer = viewer_from(OTHER, svc.addr, &url).await;
    viewer.full_frame(20).await;
    // A viewer from the flooding address itself, established before the flood.
    let mut neighbour = viewer_from(LOCAL, svc.addr, &url).await;
    neighbour.full_frame(20).await;
    let pid = svc.darts.as_ref().unwrap().child.id();
    let (fds_before, rss_before) = (open_fds(pid), rss_kib(pid));

    let started = Instant::now();
    let mut flood = Vec::with_capacity(FLOOD);
    for i in 0..FLOOD {
        flood.push(connect_from(LOCAL, svc.addr).await);
        if i % 500 == 499 {
            let u = viewer.full_frame(20).await;
            assert!(u.bytes > 0, "updates stopped during the flood");
        }
    }
    // A viewer arriving at the same address right after the flood completes its
    // handshake and streams: it is the newest pending connection, not refused.
    let mut late = viewer_from(LOCAL, svc.addr, &url).await;
    assert!(late.full_frame(20).await.bytes > 0);
    // Every flood connection is either dropped or held (until the handshake timeout).
    let counted = || async {
        let (_, m) = get_from(OTHER, svc.addr, "/darts/metrics").await;
        let timeouts = sample(&m, "darts_errors_total{kind=\"handshake_timeout\"}");
        (sample(&m, DROPPED), timeouts)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let (dropped, timeouts) = loop {
        let (dropped, timeouts) = counted().await;
        if (dropped + timeouts) as usize >= FLOOD - CAP {
            break (dropped, timeouts);
        }
        assert!(
            Instant::now() < deadline,
            "dropped {dropped}, timed out {timeouts}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let elapsed = started.elapsed();
    assert!(dropped > 0);
    let mut open = 0;
    for s in &flood {
        let mut b = [0u8; 1];
        if matches!(s.try_read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock) {
            open += 1;
        }
    }
    assert!(open <= CAP, "{open} flood connections still open");
    let (fds, rss) = (open_fds(pid), rss_kib(pid));
    assert!(
        fds <= fds_before + CAP + 16,
        "darts holds {fds} descriptors (had {fds_before}); dropped {dropped}, timed out {timeouts}"
    );
    assert!(
        rss.saturating_sub(rss_before) < 64 * 1024,
        "darts grew from {rss_before} to {rss} KiB"
    );
    // One warning per interval, not one per dropped connection.
    let log = svc.log();
    let warnings = log.matches("too many from one address").count();
    assert!(
        warnings >= 1 && warnings as u64 <= 2 + elapsed.as_secs() / 10,
        "{warnings} warnings in {elapsed:?}"
    );
    // Sessions of the flooding address were never cut; the other address streams on.
    assert!(neighbour.full_frame(20).await.bytes > 0);
    assert!(late.full_frame(20).await.bytes > 0);
    assert!(viewer.full_frame(20).await.bytes > 0);

    // Once the flood is gone, darts gives its descriptors back.
    drop(flood);
    let deadline = Instant::now() + Duration::from_secs(20);
    while open_fds(pid) > fds_before + 16 {
        assert!(
            Instant::now() < deadline,
            "darts still holds {} descriptors (had {fds_before})",
            open_fds(pid)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
