//! Target → browser while streaming: each read takes a whole chunk into one buffer that
//! is reused, so a stream costs one read and one frame per chunk, not a small probe read
//! and a small frame besides every chunk.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::*;

const CHUNK: usize = 64 * 1024;

/// A VNC server with `left` bytes ready at every read, counting its reads.
struct Source {
    left: usize,
    reads: usize,
}

impl AsyncRead for Source {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.left == 0 {
            return Poll::Pending;
        }
        let n = buf.remaining().min(self.left);
        buf.put_slice(&vec![0x5a; n]);
        self.left -= n;
        self.reads += 1;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Source {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, d: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(d.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A browser that sends nothing and takes every frame at once, counting the bytes.
#[derive(Default)]
struct Browser {
    received: usize,
}

impl AsyncRead for Browser {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Pending
    }
}

impl AsyncWrite for Browser {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        d: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.received += d.len();
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
fn a_stream_costs_one_read_and_one_frame_per_chunk() {
    let total = 64 * CHUNK;
    let limits = Limits {
        read_chunk: CHUNK,
        max_frame: 1 << 20,
        max_message: 1 << 22,
    };
    let metrics = Arc::new(Metrics::with_viewer_events(None));
    let target = Source {
        left: total,
        reads: 0,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut pump = Pump::new(Browser::default(), target, Bytes::new(), limits, metrics);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1000 {
        if pump.counts.to_client == total as u64 {
            break;
        }
        assert!(pump.poll(&mut cx).is_pending(), "the session ended");
    }
    assert_eq!(pump.counts.to_client, total as u64);
    let reads = pump.target.reads;
    // Headers are 4 bytes for frames of 126 to 65,535 bytes and 10 above.
    let framing = pump.client.received - total;
    assert!(
        reads <= total / CHUNK + 1,
        "{reads} reads from the target for {} chunks",
        total / CHUNK
    );
    assert!(
        framing <= (reads * 10),
        "{framing} bytes of framing for {reads} reads"
    );
}
