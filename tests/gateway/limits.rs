//! Admission limits and bounded hand-offs: slow handshakes, the connection cap and
//! its refusals, the viewer-event queue.

use super::*;

#[tokio::test]
async fn slow_handshakes_time_out() {
    let a = echo_backend(b"").await;
    let mut config = TestGateway::config();
    config.handshake_timeout = Duration::from_millis(300);
    let gw = TestGateway::start(config, routes(&[("t", a)])).await;
    let mut silent = TcpStream::connect(gw.addr).await.unwrap();
    let mut partial = TcpStream::connect(gw.addr).await.unwrap();
    partial
        .write_all(b"GET /?token=t HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    for s in [&mut silent, &mut partial] {
        let mut buf = [0u8; 512];
        let r = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
            .await
            .expect("closed in time");
        // Either a plain close or hyper's 408 before closing.
        if let Ok(n) = r {
            if n > 0 {
                assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"));
            }
        }
    }
    // The gateway still serves.
    assert!(ws_connect(&gw.ws_url("/?token=t"), &[]).await.is_ok());
}

#[tokio::test]
async fn too_many_connections_get_503() {
    let a = echo_backend(b"A").await;
    let mut config = TestGateway::config();
    config.max_connections = 2;
    let gw = TestGateway::start(config, routes(&[("t", a)])).await;
    let mut one = ws_connect(&gw.ws_url("/?token=t"), &[]).await.unwrap();
    let _two = ws_connect(&gw.ws_url("/?token=t"), &[]).await.unwrap();
    assert_eq!(
        ws_connect(&gw.ws_url("/?token=t"), &[]).await.err(),
        Some(503)
    );
    assert_eq!(read_bytes(&mut one, 1, T).await, b"A");
    one.close(None).await.unwrap();
    drop(one);
    // Capacity comes back when a session ends.
    let mut ok = false;
    for _ in 0..50 {
        if ws_connect(&gw.ws_url("/?token=t"), &[]).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "a slot was freed");
}

/// Connections refused over `max_connections` are answered from the accept loop: no task
/// stays behind for any of them, however long their clients keep them open.
#[tokio::test]
async fn refusals_over_max_connections_cost_no_task() {
    let a = echo_backend(b"A").await;
    let mut config = TestGateway::config();
    config.max_connections = 1;
    let gw = TestGateway::start(config, routes(&[("t", a)])).await;
    let mut held = ws_connect(&gw.ws_url("/?token=t"), &[]).await.unwrap();
    assert_eq!(read_bytes(&mut held, 1, T).await, b"A");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let alive = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let before = alive();
    const REFUSED: usize = 200;
    let mut clients = Vec::new();
    for _ in 0..REFUSED {
        clients.push(TcpStream::connect(gw.addr).await.unwrap());
    }
    let refused = || {
        let text = gw.handle.metrics().render();
        text.contains(&format!(
            "darts_handshakes_total{{result=\"overloaded\"}} {REFUSED}\n"
        ))
    };
    let deadline = tokio::time::Instant::now() + T;
    while !refused() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "refusals not counted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The clients still hold their sockets open: a task per refusal would still be alive.
    assert!(
        alive() <= before,
        "{} tasks for {REFUSED} refusals",
        alive() - before
    );
    for mut c in clients {
        let mut answer = Vec::new();
        tokio::time::timeout(T, c.read_to_end(&mut answer))
            .await
            .unwrap()
            .unwrap();
        assert!(answer.starts_with(b"HTTP/1.1 503 "), "{answer:?}");
    }
    // The admitted session was never disturbed.
    send_binary(&mut held, b"still").await;
    assert_eq!(read_bytes(&mut held, 5, T).await, b"still");
}

/// Viewer events past a full queue are dropped, never waited for, and counted in
/// `/metrics`; the ledger still knows the open viewers.
#[tokio::test]
async fn viewer_events_past_a_full_queue_are_dropped_and_counted() {
    const QUEUE: usize = 4;
    const CYCLES: usize = 10;
    const KEPT: usize = 3;
    let a = echo_backend(b"A").await;
    let tokens = TokenMap::new();
    tokens.insert("t", Route::new(tcp(a)).label("s1"));
    let (events, mut rx) = darts_proxy::ViewerEvents::channel(QUEUE);
    let mut config = TestGateway::config();
    config.viewer_events = Some(events.clone());
    let gw = TestGateway::start(config, tokens).await;
    // Nobody reads the queue: viewers open and close, then three stay.
    for _ in 0..CYCLES {
        let mut ws = ws_connect(&gw.ws_url("/?token=t"), &[]).await.unwrap();
        assert_eq!(read_bytes(&mut ws, 1, T).await, b"A");
        ws.close(None).await.unwrap();
        while ws.next().await.is_some() {}
    }
    let mut kept = Vec::new();
    for _ in 0..KEPT {
        let mut ws = ws_connect(&gw.ws_url("/?token=t"), &[]).await.unwrap();
        assert_eq!(read_bytes(&mut ws, 1, T).await, b"A");
        kept.push(ws);
    }
    let dropped = 2 * CYCLES + KEPT - QUEUE;
    let line = format!("\ndarts_viewer_events_dropped_total {dropped}\n");
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let (status, _, body) = http_get(gw.addr, "/metrics", "").await;
        assert_eq!(status, 200);
        let text = String::from_utf8(body).unwrap();
        assert!(text.contains("# TYPE darts_viewer_events_dropped_total counter\n"));
        if text.contains(&line) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "want {line:?} in:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(events.dropped() as usize, dropped);
    // Exactly the queue's worth was kept, and the ledger counts the viewers still open.
    let mut received = 0;
    let open = rx.resync(|_| received += 1).unwrap();
    assert_eq!(received, QUEUE);
    let key = darts_proxy::token::TokenKey::of("t");
    assert_eq!(open.viewers(&key), KEPT);
    assert!(open.close_dropped(&key));
    // Room again: the next viewer's events are delivered, not dropped.
    drop(kept.pop());
    let ev = tokio::time::timeout(T, rx.recv()).await.unwrap().unwrap();
    assert_eq!(ev.change, darts_proxy::ViewerChange::Closed);
    assert_eq!(events.dropped() as usize, dropped);
}
