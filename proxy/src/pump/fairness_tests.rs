//! One busy direction never starves the other, and one poll does bounded work: a browser
//! that floods the target (a large paste) still gets the screen updates of its session,
//! and a session that always has data still lets the other sessions of its worker run.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::*;

/// A browser that always has another masked binary frame to send, and records what the
/// gateway writes to it.
struct Flood {
    frame: Vec<u8>,
    at: usize,
    received: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Flood {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while buf.remaining() > 0 {
            let at = self.at;
            let n = buf.remaining().min(self.frame.len() - at);
            buf.put_slice(&self.frame[at..at + n]);
            self.at = (at + n) % self.frame.len();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Flood {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, d: &[u8]) -> Poll<io::Result<usize>> {
        self.received.lock().unwrap().extend_from_slice(d);
        Poll::Ready(Ok(d.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A VNC server that takes everything at once and has one small update to send.
struct Server {
    update: Option<Vec<u8>>,
    taken: u64,
}

impl AsyncRead for Server {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.update.take() {
            Some(u) => {
                buf.put_slice(&u);
                Poll::Ready(Ok(()))
            }
            None => Poll::Pending,
        }
    }
}

impl AsyncWrite for Server {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        d: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.taken += d.len() as u64;
        Poll::Ready(Ok(d.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

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
    let received = Arc::new(Mutex::new(Vec::new()));
    let update = b"RFB update 16 B!".to_vec();
    let client = Flood {
        frame,
        at: 0,
        received: Arc::clone(&received),
    };
    let target = Server {
        update: Some(update.clone()),
        taken: 0,
    };
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
        while received.lock().unwrap().len() < 2 + 16 && polls < 100 {
            assert!(pump.poll(&mut cx).is_pending(), "the session ended");
            polls += 1;
        }
        let taken = pump.target.taken;
        let got = received.lock().unwrap().clone();
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
