//! Round-trip latency: one session sends a small message, waits for the backend's echo,
//! and sends the next, for the whole window. Every round trip in the window is recorded;
//! the gateway's CPU over the window divided by their number is its cost per round trip.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Echo, Settings, Watch};
use crate::client::{self, Endpoint};
use crate::error::{LoadError, Result};
use crate::ws::{self, OP_BINARY};

/// Slack on top of warm-up and window before the scenario counts as hung.
const HANG_SLACK: Duration = Duration::from_secs(10);

pub async fn run(ep: Endpoint, watch: Watch<'_>, s: &Settings) -> Result<Echo> {
    let limit = s.warmup + s.duration + HANG_SLACK;
    tokio::time::timeout(limit, bounce(ep, watch, s))
        .await
        .map_err(|_| LoadError::Timeout("echo"))?
}

async fn bounce(ep: Endpoint, watch: Watch<'_>, s: &Settings) -> Result<Echo> {
    let size = s.echo_size.max(1);
    let body: Vec<u8> = (0..size).map(|i| (i * 13 % 251) as u8).collect();
    let mut message = Vec::new();
    if ep.ws {
        ws::encode_masked(OP_BINARY, &body, &mut message);
    } else {
        message = body;
    }
    let client::Session {
        mut stream,
        mut payload,
        extra,
    } = client::open(ep).await?;
    if extra > 0 {
        return Err(LoadError::Scenario(
            "the echo backend sent more than the greeting".into(),
        ));
    }
    let mut received = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    let started = Instant::now();
    let window_start = started + s.warmup;
    let window_end = window_start + s.duration;
    let mut rtts: Vec<u32> = Vec::with_capacity(1 << 16);
    // CPU at the start of the window, once it has started.
    let mut mark = None;
    loop {
        let now = Instant::now();
        if now >= window_end {
            break;
        }
        if mark.is_none() && now >= window_start {
            mark = Some(watch.probe());
        }
        let t0 = Instant::now();
        stream
            .write_all(&message)
            .await
            .map_err(LoadError::io("sending an echo"))?;
        while received < size {
            let n = stream
                .read(&mut buf)
                .await
                .map_err(LoadError::io("reading an echo"))?;
            if n == 0 {
                return Err(LoadError::Closed);
            }
            payload.feed(&buf[..n], |p| received += p.len())?;
        }
        received -= size;
        if mark.is_some() {
            let ns = t0.elapsed().as_nanos();
            rtts.push(u32::try_from(ns).unwrap_or(u32::MAX));
        }
    }
    let start = mark.ok_or_else(|| LoadError::Scenario("echo window never started".into()))?;
    let cpu = start.until(&watch.probe());
    if rtts.is_empty() {
        return Err(LoadError::Scenario("no round trip completed".into()));
    }
    rtts.sort_unstable();
    let pct = |p: usize| f64::from(rtts[(rtts.len() * p / 100).min(rtts.len() - 1)]) / 1e3;
    let mean = rtts.iter().map(|&r| f64::from(r)).sum::<f64>() / rtts.len() as f64 / 1e3;
    Ok(Echo {
        count: rtts.len() as u64,
        p50_us: pct(50),
        p99_us: pct(99),
        mean_us: mean,
        cpu,
    })
}
