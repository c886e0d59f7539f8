//! Browser → target: every frame of one read goes to the target in one write, and the
//! bytes that reach it do not depend on how the browser's stream was cut.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use proptest::prelude::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};

use super::*;
use crate::rfb::Policy;

/// A stream that counts the reads and writes that moved bytes.
struct Counted {
    inner: DuplexStream,
    reads: Arc<AtomicUsize>,
    writes: Arc<AtomicUsize>,
}

impl Counted {
    fn new(inner: DuplexStream) -> (Self, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let (reads, writes) = (Arc::default(), Arc::default());
        let c = Self {
            inner,
            reads: Arc::clone(&reads),
            writes: Arc::clone(&writes),
        };
        (c, reads, writes)
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.reads.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.writes.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// One masked browser frame.
fn client_frame(fin: bool, opcode: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut f = vec![if fin { 0x80 | opcode } else { opcode }];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&key);
    let start = f.len();
    f.extend_from_slice(payload);
    mask::apply(&mut f[start..], key, 0);
    f
}

const LIMITS: Limits = Limits {
    read_chunk: 64 * 1024,
    max_frame: 1 << 20,
    max_message: 1 << 22,
};

struct Run {
    /// What reached the target.
    target: Vec<u8>,
    client_reads: usize,
    target_writes: usize,
}

/// Runs a pump whose browser sends `chunks` one after another (each read on its own by
/// the pump, as far as the scheduler allows), until `expect` bytes reached the target.
async fn run(chunks: Vec<Vec<u8>>, filter: Option<Policy>, expect: usize) -> Run {
    let (client_end, browser) = tokio::io::duplex(4 << 20);
    let (target_end, mut vnc) = tokio::io::duplex(4 << 20);
    let (client, client_reads, _) = Counted::new(client_end);
    let (target, _, target_writes) = Counted::new(target_end);
    let metrics = Arc::new(Metrics::with_viewer_events(None));
    let mut pump = Pump::new(client, target, Bytes::new(), LIMITS, metrics)
        .with_filter(filter.map(|p| Box::new(ClientFilter::new(p))));
    let session = tokio::spawn(async move { std::future::poll_fn(|cx| pump.poll(cx)).await });
    let (mut from_pump, mut to_pump) = tokio::io::split(browser);
    // Whatever the pump sends the browser (pongs) is read and dropped.
    let drain = tokio::spawn(async move {
        let mut sink = [0u8; 4096];
        while from_pump.read(&mut sink).await.is_ok_and(|n| n > 0) {}
    });
    for chunk in chunks {
        to_pump.write_all(&chunk).await.unwrap();
        // Let the pump read this chunk before the next one arrives.
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
    }
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while got.len() < expect {
        let n = tokio::time::timeout(Duration::from_secs(5), vnc.read(&mut buf))
            .await
            .expect("the target got less than expected")
            .unwrap();
        assert!(n > 0, "the target's stream ended early");
        got.extend_from_slice(&buf[..n]);
    }
    // Nothing more than expected arrives.
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
    let extra = tokio::time::timeout(Duration::from_millis(20), vnc.read(&mut buf)).await;
    if let Ok(Ok(n)) = extra {
        got.extend_from_slice(&buf[..n]);
    }
    session.abort();
    drain.abort();
    Run {
        target: got,
        client_reads: client_reads.load(Ordering::Relaxed),
        target_writes: target_writes.load(Ordering::Relaxed),
    }
}

/// 100 key presses (down and up) sent in one go, as a paste typed by noVNC does.
fn key_presses() -> (Vec<u8>, Vec<u8>) {
    let (mut wire, mut rfb) = (Vec::new(), Vec::new());
    for i in 0..100u32 {
        let mut key = [4u8, (i % 2) as u8, 0, 0, 0, 0, 0, 0];
        key[4..].copy_from_slice(&(0x61 + i % 26).to_be_bytes());
        rfb.extend_from_slice(&key);
        wire.extend(client_frame(true, 2, &key, [i as u8, 7, 9, 11]));
    }
    (wire, rfb)
}

fn assert_one_write_per_read(r: &Run) {
    assert!(
        r.target_writes <= r.client_reads,
        "{} writes to the target for {} reads from the browser",
        r.target_writes,
        r.client_reads
    );
}

#[tokio::test]
async fn the_frames_of_one_read_reach_the_target_in_one_write() {
    let (wire, rfb) = key_presses();
    let r = run(vec![wire], None, rfb.len()).await;
    assert_eq!(r.target, rfb);
    assert_one_write_per_read(&r);
}

#[tokio::test]
async fn filtered_frames_of_one_read_reach_the_target_in_one_write() {
    let (wire, rfb) = key_presses();
    let policy = Policy {
        max_clipboard: Some(1024),
        ..Policy::default()
    };
    let r = run(vec![wire], Some(policy), rfb.len()).await;
    assert_eq!(r.target, rfb);
    assert_one_write_per_read(&r);
}

/// An RFB client message of each fixed-length kind the filter knows, picked by `kind`.
fn rfb_message(kind: u8, seed: u8) -> Vec<u8> {
    let mut m = match kind % 4 {
        0 => vec![0u8; 20], // SetPixelFormat
        1 => vec![3u8; 10], // FramebufferUpdateRequest
        2 => vec![4u8; 8],  // KeyEvent
        _ => vec![5u8; 6],  // PointerEvent
    };
    m[0] = [0, 3, 4, 5][usize::from(kind % 4)];
    for b in m.iter_mut().skip(1) {
        *b = seed;
    }
    if kind % 4 == 0 {
        // A valid pixel format: 32 bpp, depth 24, true colour.
        m[4..8].copy_from_slice(&[32, 24, 0, 1]);
    }
    m
}

/// Cuts `data` at the given relative points (each taken modulo what is left).
fn cut(data: &[u8], points: &[usize]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = data;
    for &p in points {
        if rest.is_empty() {
            break;
        }
        let n = 1 + p % rest.len();
        out.push(rest[..n].to_vec());
        rest = &rest[n..];
    }
    if !rest.is_empty() {
        out.push(rest.to_vec());
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// However the RFB stream is cut into frames (some fragmented, with pings between),
    /// and the frames into reads, the target gets exactly what one filter over the whole
    /// stream lets through (everything, with no filter), and never more writes than
    /// there were reads from the browser, plus one per ping that split a read's frames.
    #[test]
    fn what_reaches_the_target_does_not_depend_on_the_cuts(
        messages in prop::collection::vec((any::<u8>(), any::<u8>()), 1..60),
        frame_cuts in prop::collection::vec(0usize..200, 0..30),
        read_cuts in prop::collection::vec(0usize..400, 0..30),
        pings in prop::collection::vec(any::<bool>(), 30),
        fragment in prop::collection::vec(any::<bool>(), 30),
        view_only in any::<bool>(),
        filtered in any::<bool>(),
    ) {
        let rfb: Vec<u8> = messages.iter().flat_map(|&(k, s)| rfb_message(k, s)).collect();
        let mut wire = Vec::new();
        let mut ping_count = 0;
        for (i, payload) in cut(&rfb, &frame_cuts).iter().enumerate() {
            let key = [i as u8, 0x5a, 0xa5, 3];
            if fragment.get(i).copied().unwrap_or(false) && payload.len() > 1 {
                let (a, b) = payload.split_at(payload.len() / 2);
                wire.extend(client_frame(false, 2, a, key));
                wire.extend(client_frame(true, 0, b, key));
            } else {
                wire.extend(client_frame(true, 2, payload, key));
            }
            if pings.get(i).copied().unwrap_or(false) {
                wire.extend(client_frame(true, 9, b"p", key));
                ping_count += 1;
            }
        }
        let policy = filtered.then_some(Policy { view_only, ..Policy::default() });
        let expected = match policy {
            None => rfb.clone(),
            Some(p) => {
                let mut out = Vec::new();
                ClientFilter::new(p).filter(&rfb, &mut out).unwrap();
                out
            }
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let r = rt.block_on(run(cut(&wire, &read_cuts), policy, expected.len()));
        prop_assert_eq!(&r.target, &expected);
        prop_assert!(
            r.target_writes <= r.client_reads + ping_count,
            "{} writes for {} reads and {} pings", r.target_writes, r.client_reads, ping_count
        );
    }
}

/// A refused frame behind good ones in the same read: the good ones still reach the
/// target, in one write, and then the target's stream ends.
#[tokio::test]
async fn frames_before_a_refused_one_still_reach_the_target() {
    let (mut wire, rfb) = key_presses();
    wire.extend(client_frame(true, 1, b"text is refused", [1, 2, 3, 4]));
    let (client_end, browser) = tokio::io::duplex(1 << 20);
    let (target_end, mut vnc) = tokio::io::duplex(1 << 20);
    let (client, _, _) = Counted::new(client_end);
    let (target, _, writes) = Counted::new(target_end);
    let metrics = Arc::new(Metrics::with_viewer_events(None));
    let mut pump = Pump::new(client, target, Bytes::new(), LIMITS, metrics);
    let (_from_pump, mut to_pump) = tokio::io::split(browser);
    to_pump.write_all(&wire).await.unwrap();
    let session = tokio::spawn(async move { std::future::poll_fn(|cx| pump.poll(cx)).await });
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), vnc.read_to_end(&mut got))
        .await
        .expect("the target's stream did not end")
        .unwrap();
    assert_eq!(got, rfb);
    assert!(writes.load(Ordering::Relaxed) <= 3);
    session.abort();
}
