//! Bulk throughput, after the VNC greeting. Downstream: the backend streams, the client
//! reads (parsing frame headers, skipping payloads) and counts payload bytes. Upstream: the client writes
//! masked frames (masked once, sent again and again) to a backend that discards them.
//! Counting starts after the warm-up, when every socket buffer on the path is full, so
//! bytes counted at the client equal bytes moved end to end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use super::{measure_window, Settings, Throughput, Watch};
use crate::client::{self, Endpoint};
use crate::error::{LoadError, Result};
use crate::ws::{self, OP_BINARY};

/// Bytes per client read downstream, and about the size of one upstream write.
const CLIENT_CHUNK: usize = 256 * 1024;

pub async fn down(ep: Endpoint, watch: Watch<'_>, s: &Settings) -> Result<Throughput> {
    let counter = Arc::new(AtomicU64::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..s.streams.max(1) {
        let session = client::open(ep).await?;
        workers.spawn(read_stream(session, counter.clone()));
    }
    let (bytes, secs, cpu) = measure_window(&counter, watch, s, &mut workers).await?;
    nonzero(bytes, "downstream")?;
    Ok(Throughput { bytes, secs, cpu })
}

async fn read_stream(session: client::Session, counter: Arc<AtomicU64>) -> Result<()> {
    let client::Session {
        mut stream,
        mut payload,
        extra,
    } = session;
    counter.fetch_add(extra, Ordering::Relaxed);
    let mut buf = vec![0u8; CLIENT_CHUNK];
    loop {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(LoadError::io("reading the stream"))?;
        if n == 0 {
            return Err(LoadError::Closed);
        }
        let mut bytes = 0u64;
        payload.feed(&buf[..n], |p| bytes += p.len() as u64)?;
        counter.fetch_add(bytes, Ordering::Relaxed);
    }
}

pub async fn up(ep: Endpoint, watch: Watch<'_>, s: &Settings) -> Result<Throughput> {
    let counter = Arc::new(AtomicU64::new(0));
    let (wire, payload) = upstream_buffer(ep.ws, s.up_frame);
    let wire = Arc::new(wire);
    let mut workers = JoinSet::new();
    for _ in 0..s.streams.max(1) {
        let session = client::open(ep).await?;
        workers.spawn(write_stream(
            session,
            wire.clone(),
            payload,
            counter.clone(),
        ));
    }
    let (bytes, secs, cpu) = measure_window(&counter, watch, s, &mut workers).await?;
    nonzero(bytes, "upstream")?;
    Ok(Throughput { bytes, secs, cpu })
}

/// What one upstream write sends, and how many payload bytes that is: whole masked
/// frames of `frame` bytes adding up to about `CLIENT_CHUNK`, or raw bytes when direct.
pub(super) fn upstream_buffer(ws: bool, frame: usize) -> (Vec<u8>, u64) {
    let frame = frame.max(1);
    let data: Vec<u8> = (0..frame).map(|i| (i % 251) as u8).collect();
    if !ws {
        let raw: Vec<u8> = data.iter().copied().cycle().take(CLIENT_CHUNK).collect();
        let n = raw.len() as u64;
        return (raw, n);
    }
    let frames = (CLIENT_CHUNK / frame).max(1);
    let mut wire = Vec::with_capacity(frames * (frame + 14));
    for _ in 0..frames {
        ws::encode_masked(OP_BINARY, &data, &mut wire);
    }
    (wire, (frames * frame) as u64)
}

async fn write_stream(
    session: client::Session,
    wire: Arc<Vec<u8>>,
    payload: u64,
    counter: Arc<AtomicU64>,
) -> Result<()> {
    let mut stream = session.stream;
    loop {
        stream
            .write_all(&wire)
            .await
            .map_err(LoadError::io("writing the stream"))?;
        counter.fetch_add(payload, Ordering::Relaxed);
    }
}

fn nonzero(bytes: u64, what: &str) -> Result<()> {
    if bytes == 0 {
        return Err(LoadError::Scenario(format!(
            "no {what} bytes moved in the window"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_buffers_hold_whole_frames() {
        let (wire, payload) = upstream_buffer(true, 65_536);
        assert_eq!(payload, 4 * 65_536);
        assert_eq!(wire.len(), 4 * (65_536 + 14));
        let (raw, payload) = upstream_buffer(false, 65_536);
        assert_eq!(raw.len() as u64, payload);
    }
}
