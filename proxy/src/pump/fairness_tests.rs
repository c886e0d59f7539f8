//! One busy direction never starves the other, and one poll does bounded work: a browser
//! that floods the target (a large paste) still gets the screen updates of its session,
//! and a session that always has data still lets the other sessions of its worker run.

use std::task::{Context, Waker};

use super::test_io::Fake;
use super::*;

#[test]
fn a_flooding_browser_still_gets_its_screen_updates_and_polls_yield() {
    let payload = vec![0x41u8; 4096];
    let key = [9, 8, 7, 6];
    let mut frame = vec![0x82, 0x80 | 126];
    frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    frame.extend_from_slice(&key);
    let start = frame.len();
    frame.extend_from_slice(&payload);
    mask::apply(&mut frame[start..], key, 0);
    let update = b"RFB update 16 B!".to_vec();
    // A browser that always has another frame to send, and one small update from the
    // VNC server.
    let client = Fake::reading(frame, usize::MAX);
    let target = Fake::reading(update.clone(), update.len());
    let limits = Limits {
        read_chunk: 64 * 1024,
        max_frame: 1 << 20,
        max_message: 1 << 22,
    };
    // Polled on a thread of its own: a pump that never yields would never come back.
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let metrics = Arc::new(Metrics::with_viewer_events(None));
        let mut pump = Pump::new(client, target, Bytes::new(), limits, metrics);
        let mut cx = Context::from_waker(Waker::noop());
        let mut polls = 0;
        while pump.client.written.len() < 2 + 16 && polls < 100 {
            assert!(pump.poll(&mut cx).is_pending(), "the session ended");
            polls += 1;
        }
        let taken = pump.target.written.len();
        let got = pump.client.written.clone();
        done.send((polls, taken, got)).unwrap();
    });
    let (polls, taken, got) = result
        .recv_timeout(Duration::from_secs(20))
        .expect("one poll of a flooded pump never returned");
    assert!(taken > 0, "the flood did not reach the target");
    assert!(polls < 100, "the update never reached the browser");
    let mut expected = vec![0x82, 16];
    expected.extend_from_slice(&update);
    assert_eq!(got, expected);
}
