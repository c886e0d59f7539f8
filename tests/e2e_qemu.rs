//! End to end with a real VNC server: QEMU (TCG, no disk) behind the `darts` binary, routed
//! by a websockify token file, spoken to in RFB 3.8 through the websocket.
//!
//! Needs qemu-system-x86_64 (`bash tests/setup.sh`); fails with a clear message without it.

#[path = "support/qemu.rs"]
mod qemu;
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use qemu::{Qemu, RfbOverWs, ServerInit};
use support::*;

const RFB_TIMEOUT: Duration = Duration::from_secs(15);

/// `darts proxy --token-plugin TokenFile --token-source FILE 127.0.0.1:PORT`.
/// Its stderr is drained in the background; the returned log feeds failure messages.
fn start_darts(token_file: &Path) -> (DartsProcess, Log) {
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let tokens = token_file.to_str().expect("utf-8 path");
    let listen = addr.to_string();
    let mut darts = DartsProcess::start(
        &[
            "proxy",
            "--token-plugin",
            "TokenFile",
            "--token-source",
            tokens,
            &listen,
        ],
        addr,
    );
    let log = qemu::drain_stderr(&mut darts);
    (darts, log)
}

type Log = std::sync::Arc<std::sync::Mutex<String>>;

async fn open_rfb((darts, log): &(DartsProcess, Log), token: &str) -> RfbOverWs {
    let url = format!("ws://{}/websockify?token={token}", darts.addr);
    let ws = ws_connect(&url, &[]).await.unwrap_or_else(|status| {
        panic!(
            "gateway refused the websocket for {token}: {status}; darts log:\n{}",
            qemu::tail(log, 30)
        )
    });
    RfbOverWs::new(ws, RFB_TIMEOUT)
}

/// Handshake, check the desktop is the QEMU named `vm_name`, then a full-screen raw update.
async fn handshake_and_full_frame(rfb: &mut RfbOverWs, vm_name: &str) -> ServerInit {
    let init = rfb.handshake().await;
    assert!(
        init.width >= 320 && init.height >= 200,
        "implausible desktop size {}x{}",
        init.width,
        init.height
    );
    assert!(
        init.name.contains(vm_name),
        "desktop name {:?} is not that of QEMU -name {vm_name}",
        init.name
    );
    rfb.set_raw_rgb32().await;
    let update = rfb.full_frame(20).await;
    assert_eq!(
        update.bytes,
        4 + 12 * update.rects.len() + 4 * update.area as usize,
        "FramebufferUpdate size"
    );
    init
}

/// Asks for full frames until the firmware's text shows up (non-black pixels).
async fn wait_for_content(rfb: &mut RfbOverWs) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let u = rfb.full_frame(20).await;
        if u.nonblack > 0 {
            eprintln!(
                "screen {}x{}: {} rectangles, {} bytes, {} lit pixels",
                rfb.width,
                rfb.height,
                u.rects.len(),
                u.bytes,
                u.nonblack
            );
            return u.nonblack;
        }
        assert!(
            Instant::now() < deadline,
            "the QEMU screen stayed black for 20 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn rfb_through_gateway_to_qemu_on_a_unix_socket() {
    let scratch = Scratch::new("e2e-qemu-unix");
    let mut vm = Qemu::bios_unix(&scratch.0, "darts-e2e-unix");
    let tokens = qemu::write_token_file(&scratch.0, &[("vm1", vm.vnc.token_target())]);
    let darts = start_darts(&tokens);

    let mut rfb = open_rfb(&darts, "vm1").await;
    let init = handshake_and_full_frame(&mut rfb, "darts-e2e-unix").await;
    assert_eq!(init.bits_per_pixel, 32, "QEMU's default pixel format");
    let nonblack = wait_for_content(&mut rfb).await;
    assert!(nonblack > 50, "only {nonblack} lit pixels of SeaBIOS text");

    // The VNC server goes away: the gateway ends the session with a normal close.
    vm.kill();
    assert_eq!(
        rfb.expect_close(Duration::from_secs(10)).await,
        1000,
        "close code when the target closes the connection"
    );

    // The gateway itself is still up; a new session to the dead target is refused in RFB
    // terms (so noVNC can show why), then closed with 1011.
    let mut again = open_rfb(&darts, "vm1").await;
    let reason = again.handshake_refused().await;
    assert!(
        reason.contains("not answering"),
        "refusal reason {reason:?}"
    );
    assert_eq!(
        again.expect_close(Duration::from_secs(10)).await,
        1011,
        "close code when the target cannot be reached"
    );
}

#[tokio::test]
async fn rfb_through_gateway_to_qemu_on_tcp_with_two_viewers() {
    let scratch = Scratch::new("e2e-qemu-tcp");
    let vm = Qemu::bios_tcp(&scratch.0, "darts-e2e-tcp");
    let target = vm.vnc.token_target();
    assert!(target.starts_with("127.0.0.1:"), "{target}");
    let tokens = qemu::write_token_file(
        &scratch.0,
        &[("other", "127.0.0.1:1".to_string()), ("vm2", target)],
    );
    let darts = start_darts(&tokens);

    // Two shared viewers of one VM at once, each through its own websocket session.
    let mut a = open_rfb(&darts, "vm2").await;
    let mut b = open_rfb(&darts, "vm2").await;
    let (ia, ib) = tokio::join!(
        handshake_and_full_frame(&mut a, "darts-e2e-tcp"),
        handshake_and_full_frame(&mut b, "darts-e2e-tcp"),
    );
    assert_eq!((ia.width, ia.height), (ib.width, ib.height));
    let (na, nb) = tokio::join!(wait_for_content(&mut a), wait_for_content(&mut b));
    assert!(na > 50 && nb > 50, "lit pixels: {na} and {nb}");
}
