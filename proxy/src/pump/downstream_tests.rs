//! Target → browser while streaming: each read takes a whole chunk into one buffer that
//! is reused, so a stream costs one read and one frame per chunk, not a small probe read
//! and a small frame besides every chunk.

use std::task::{Context, Waker};

use super::test_io::Fake;
use super::*;

const CHUNK: usize = 64 * 1024;

#[test]
fn a_stream_costs_one_read_and_one_frame_per_chunk() {
    let total = 64 * CHUNK;
    let limits = Limits {
        read_chunk: CHUNK,
        max_frame: 1 << 20,
        max_message: 1 << 22,
    };
    let metrics = Arc::new(Metrics::with_viewer_events(None));
    let target = Fake::reading(vec![0x5a], total);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut pump = Pump::new(Fake::silent(), target, Bytes::new(), limits, metrics);
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
    let framing = pump.client.written.len() - total;
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
