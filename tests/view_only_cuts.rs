//! View-only viewers through the real gateway, with the browser's bytes cut every way a
//! network can cut them: part in the HTTP request's packet, the handshake and the first
//! messages in one websocket frame, messages split across frames and frames across
//! writes. The bytes that reach the VNC server must be exactly those one filter given the
//! whole stream forwards, and QEMU's reading of them (the reference model in
//! `darts_vnc::qemu_reader`) must hold no input at all.

#[path = "support/raw.rs"]
mod raw;
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use darts_proxy::{Route, Target, TokenMap};
use darts_vnc::client_filter::{ClientFilter, Policy, EXTENDED_CLIPBOARD};
use darts_vnc::qemu_reader::QemuReader;
use proptest::prelude::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const T: Duration = Duration::from_secs(10);

/// The browser's side of the RFB handshake with security None: version, security type
/// None, ClientInit (shared).
const HANDSHAKE: &[u8] = b"RFB 003.008\n\x01\x01";

/// A VNC server (security None) that records every byte a client sends after ClientInit.
async fn recording_vnc() -> (SocketAddr, tokio::sync::mpsc::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 12];
                s.write_all(b"RFB 003.008\n").await.unwrap();
                s.read_exact(&mut buf).await.unwrap();
                s.write_all(&[1, 1]).await.unwrap();
                s.read_exact(&mut buf[..1]).await.unwrap();
                s.write_all(&[0, 0, 0, 0]).await.unwrap();
                s.read_exact(&mut buf[..1]).await.unwrap();
                let mut init = vec![
                    2, 128, 1, 224, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0,
                ];
                init.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 4]);
                init.extend_from_slice(b"test");
                s.write_all(&init).await.unwrap();
                let mut all = Vec::new();
                let _ = s.read_to_end(&mut all).await;
                let _ = tx.send(all).await;
            });
        }
    });
    (addr, rx)
}

/// Masked binary frames carrying `payload` cut at `cuts`.
fn frames(payload: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&payload.len())) {
        if end > start {
            out.extend(raw::frame(
                true,
                2,
                &payload[start..end],
                Some([7, 1, 9, 3]),
            ));
            start = end;
        }
    }
    out
}

/// Sends `wire` (websocket bytes) with the first `early` of them in the request's write
/// and the rest in writes cut at `writes`; returns what the VNC server received.
async fn through_gateway(policy: Policy, wire: &[u8], early: usize, writes: &[usize]) -> Vec<u8> {
    let (vnc, mut recorded) = recording_vnc().await;
    let tokens = TokenMap::new();
    let route = Route::new(Target::Tcp {
        host: "127.0.0.1".into(),
        port: vnc.port(),
    })
    .view_only(policy.view_only)
    .max_clipboard(policy.max_clipboard)
    .view_only_clipboard(policy.view_only_clipboard);
    tokens.insert("tok", route);
    let gw = TestGateway::start(TestGateway::rfb_config(), tokens).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let mut first = format!(
        "GET /websockify?token=tok HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        gw.addr
    )
    .into_bytes();
    let early = early.min(wire.len());
    first.extend_from_slice(&wire[..early]);
    s.write_all(&first).await.unwrap();
    let mut start = early;
    for &end in writes.iter().chain(std::iter::once(&wire.len())) {
        if end > start {
            s.write_all(&wire[start..end]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
            start = end;
        }
    }
    s.write_all(&raw::frame(true, 8, &[3, 232], Some([1, 2, 3, 4])))
        .await
        .unwrap();
    // Drain what the gateway sends until it closes.
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(T, s.read_to_end(&mut sink)).await;
    let got = tokio::time::timeout(T, recorded.recv())
        .await
        .unwrap()
        .unwrap();
    gw.stop.cancel();
    got
}

fn update_request() -> Vec<u8> {
    vec![3, 1, 0, 0, 0, 0, 2, 128, 1, 224]
}

fn whole_filter(policy: Policy, msgs: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    ClientFilter::new(policy).filter(msgs, &mut out).unwrap();
    out
}

fn view_only() -> Policy {
    Policy {
        view_only: true,
        ..Policy::default()
    }
}

/// The confirmed exploit: ClientInit followed, in the same frame, by the first 4 bytes
/// of a FramebufferUpdateRequest; then "SetPixelFormat" messages that QEMU reads as the
/// request's end followed by key events typing `x`.
#[tokio::test]
async fn a_request_cut_after_client_init_smuggles_no_keys() {
    let mut msgs = update_request()[..4].to_vec();
    for _ in 0..4 {
        let mut fake = vec![0u8; 20];
        fake[6..14].copy_from_slice(&[4, 1, 0, 0, 0, 0, 0, b'x']);
        msgs.extend_from_slice(&fake);
    }
    let payload = [HANDSHAKE, &msgs].concat();
    let first = HANDSHAKE.len() + 4;
    let wire = frames(&payload, &[first, first + 20, first + 40]);
    let got = through_gateway(view_only(), &wire, 0, &[]).await;
    let actions = QemuReader::new().feed(&got);
    assert!(
        actions.iter().all(|a| !a.is_input()),
        "QEMU would act on {actions:?}"
    );
    assert_eq!(got, whole_filter(view_only(), &msgs));
}

/// The guest's clipboard: a view-only viewer never becomes QEMU's clipboard peer unless
/// its route allows it.
#[tokio::test]
async fn view_only_viewers_get_no_guest_clipboard_unless_allowed() {
    let mut set = vec![2, 0, 0, 3];
    for e in [7, EXTENDED_CLIPBOARD, 0] {
        set.extend_from_slice(&e.to_be_bytes());
    }
    let msgs = [set.clone(), update_request()].concat();
    let wire = frames(&[HANDSHAKE, &msgs].concat(), &[5, 17, 20]);
    let got = through_gateway(view_only(), &wire, 3, &[9, 30]).await;
    let mut qemu = QemuReader::new();
    qemu.feed(&got);
    assert!(!qemu.clipboard_peer(), "encodings reaching QEMU: {got:?}");
    let allowed = Policy {
        view_only_clipboard: true,
        ..view_only()
    };
    let got = through_gateway(allowed, &wire, 3, &[9, 30]).await;
    let mut qemu = QemuReader::new();
    qemu.feed(&got);
    assert!(qemu.clipboard_peer());
    assert_eq!(got, msgs);
}

fn message() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<[u8; 19]>().prop_map(|b| [&[0u8][..], &b].concat()),
        any::<[u8; 9]>().prop_map(|b| [&[3u8][..], &b].concat()),
        any::<[u8; 7]>().prop_map(|b| [&[4u8][..], &b].concat()),
        any::<[u8; 5]>().prop_map(|b| [&[5u8][..], &b].concat()),
        prop::collection::vec(any::<u8>(), 0..30).prop_map(|t| {
            let mut v = vec![6, 0, 0, 0];
            v.extend_from_slice(&(t.len() as u32).to_be_bytes());
            v.extend(t);
            v
        }),
        any::<[u8; 10]>().prop_map(|b| [&[255u8, 0][..], &b].concat()),
        (0u8..3).prop_map(|n| {
            let mut v = vec![251, 0, 0, 0, 0, 0, n, 0];
            v.extend(std::iter::repeat_n(1u8, usize::from(n) * 16));
            v
        }),
        Just(vec![250, 0, 1, 2]),
        Just(vec![2, 0, 0, 2, 0, 0, 0, 7, 0xC0, 0xA1, 0xE5, 0xCE]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Any cut of the handshake, frames and writes forwards exactly what one whole-stream
    /// filter forwards, and QEMU reads no input from it.
    #[test]
    fn every_cut_reaches_the_server_as_one_whole_stream_filter(
        msgs in prop::collection::vec(message(), 1..12),
        frame_cuts in prop::collection::vec(0usize..400, 0..8),
        write_cuts in prop::collection::vec(0usize..600, 0..8),
        early in 0usize..80,
    ) {
        let msgs = msgs.concat();
        let payload = [HANDSHAKE, &msgs].concat();
        let mut fc: Vec<usize> = frame_cuts.into_iter().map(|c| c % (payload.len() + 1)).collect();
        fc.sort_unstable();
        let wire = frames(&payload, &fc);
        let mut wc: Vec<usize> = write_cuts.into_iter().map(|c| c % (wire.len() + 1)).collect();
        wc.sort_unstable();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let got = rt.block_on(through_gateway(view_only(), &wire, early, &wc));
        let actions = QemuReader::new().feed(&got);
        prop_assert!(actions.iter().all(|a| !a.is_input()), "QEMU would act on {:?}", actions);
        prop_assert_eq!(got, whole_filter(view_only(), &msgs));
    }
}
