//! A session's screen while its user pastes: downstream latency with the session's own
//! upstream idle, then while it is saturated. The backend (ticker mode) sends a 16-byte
//! tick every 5 ms stamped with `CLOCK_MONOTONIC`; the client reads each tick's age on
//! arrival. After a warm-up and an idle window, a flood of masked 64 KiB frames (as in
//! `up`) starts on the same connection, and after another warm-up the ticks' ages are
//! taken again. A gateway that lets one direction starve the other shows it here: the
//! ticks come late, or not at all, while the flood runs.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::throughput::upstream_buffer;
use super::{Latency, Paste, Settings, Watch};
use crate::backend::{monotonic_ns, TICK, TICK_LEN};
use crate::client::{self, Endpoint};
use crate::error::{LoadError, Result};
use crate::ws::{self, OP_BINARY};

/// Phases of the run; ticks are recorded in `IDLE` and `FLOODED` only.
const WARMUP: u8 = 0;
const IDLE: u8 = 1;
const FLOOD_WARMUP: u8 = 2;
const FLOODED: u8 = 3;

/// Ticks' ages in µs, per recorded phase, and the flood's payload bytes.
#[derive(Default)]
struct Shared {
    phase: AtomicU8,
    ages: Mutex<[Vec<u32>; 2]>,
    flood_bytes: AtomicU64,
}

pub async fn run(ep: Endpoint, watch: Watch<'_>, s: &Settings) -> Result<Paste> {
    let limit = 2 * (s.warmup + s.duration) + std::time::Duration::from_secs(10);
    tokio::time::timeout(limit, paste(ep, watch, s))
        .await
        .map_err(|_| LoadError::Timeout("paste"))?
}

async fn paste(ep: Endpoint, watch: Watch<'_>, s: &Settings) -> Result<Paste> {
    let session = client::open(ep).await?;
    if session.extra > 0 {
        return Err(LoadError::Scenario(
            "the ticker sent something before it was asked".into(),
        ));
    }
    let client::Session {
        stream,
        mut payload,
        ..
    } = session;
    let (mut rx, mut tx) = stream.into_split();
    let mut start = Vec::new();
    if ep.ws {
        ws::encode_masked(OP_BINARY, b"go", &mut start);
    } else {
        start.extend_from_slice(b"go");
    }
    tx.write_all(&start)
        .await
        .map_err(LoadError::io("starting the ticker"))?;

    let shared = Arc::new(Shared::default());
    let reader = {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 256 * 1024];
            let mut tick = [0u8; TICK_LEN];
            let mut have = 0usize;
            loop {
                let n = rx
                    .read(&mut buf)
                    .await
                    .map_err(LoadError::io("reading ticks"))?;
                if n == 0 {
                    return Err::<(), _>(LoadError::Closed);
                }
                let mut ages = Vec::new();
                payload.feed(&buf[..n], |mut p| {
                    while !p.is_empty() {
                        let take = (TICK_LEN - have).min(p.len());
                        tick[have..have + take].copy_from_slice(&p[..take]);
                        have += take;
                        p = &p[take..];
                        if have == TICK_LEN {
                            have = 0;
                            let mut sent = [0u8; 8];
                            sent.copy_from_slice(&tick[8..]);
                            let age = monotonic_ns().saturating_sub(u64::from_be_bytes(sent));
                            ages.push(u32::try_from(age / 1000).unwrap_or(u32::MAX));
                        }
                    }
                })?;
                let slot = match shared.phase.load(Ordering::Relaxed) {
                    IDLE => 0,
                    FLOODED => 1,
                    _ => continue,
                };
                if let Some(v) = shared.ages.lock().expect("ages").get_mut(slot) {
                    v.extend(ages);
                }
            }
        })
    };

    tokio::time::sleep(s.warmup).await;
    shared.phase.store(IDLE, Ordering::Relaxed);
    tokio::time::sleep(s.duration).await;
    shared.phase.store(FLOOD_WARMUP, Ordering::Relaxed);
    let (wire, per_write) = upstream_buffer(ep.ws, s.up_frame);
    let flood = {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            loop {
                if let Err(e) = tx.write_all(&wire).await {
                    return LoadError::io("flooding upstream")(e);
                }
                if shared.phase.load(Ordering::Relaxed) == FLOODED {
                    shared.flood_bytes.fetch_add(per_write, Ordering::Relaxed);
                }
            }
        })
    };
    tokio::time::sleep(s.warmup).await;
    let mark = watch.probe();
    shared.phase.store(FLOODED, Ordering::Relaxed);
    let began = std::time::Instant::now();
    tokio::time::sleep(s.duration).await;
    shared.phase.store(WARMUP, Ordering::Relaxed);
    let secs = began.elapsed().as_secs_f64();
    let cpu = mark.until(&watch.probe());
    // A task that ended early ended with an error: report it.
    let failed = [reader.is_finished(), flood.is_finished()];
    reader.abort();
    flood.abort();
    if failed[0] {
        if let Ok(Err(e)) = reader.await {
            return Err(e);
        }
    }
    if failed[1] {
        if let Ok(e) = flood.await {
            return Err(e);
        }
    }
    let ages = std::mem::take(&mut *shared.ages.lock().expect("ages"));
    let [idle, flooded] = ages;
    let expected = (s.duration.as_secs_f64() / TICK.as_secs_f64()) as u64;
    Ok(Paste {
        idle: Latency::of(idle, expected)?,
        flooded: Latency::of(flooded, expected)?,
        flood_bytes: shared.flood_bytes.load(Ordering::Relaxed),
        flood_secs: secs,
        cpu,
    })
}
