//! Throughput of the `Pump` over in-memory pipes, next to `tokio::io::copy_bidirectional`
//! moving the same payload bytes without websocket framing (the floor any relay pays):
//!
//! * `upstream_64k`: the browser sends masked 64 KiB binary frames, the VNC side reads
//!   the payload (unmasking and forwarding);
//! * `upstream_16b`: the same with 16-byte frames, as noVNC sends pointer and key events;
//! * `downstream`: the VNC side writes, the browser reads binary frames.
//!
//! One current-thread runtime, `tokio::io::duplex` pipes of 256 KiB, default limits.
//! `cargo bench --bench pump -- --test` runs every case once.

use std::future::poll_fn;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use darts_proxy::config::{DEFAULT_MAX_FRAME, DEFAULT_MAX_MESSAGE, DEFAULT_READ_CHUNK};
use darts_proxy::metrics::Metrics;
use darts_proxy::pump::{Limits, Pump};
use tokio::io::{duplex, AsyncRead, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::runtime::Runtime;

const PIPE: usize = 256 * 1024;
const KEY: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Masked binary frames carrying `volume` payload bytes in `frame`-byte pieces.
fn masked_frames(volume: usize, frame: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(volume + volume / frame * 14);
    for start in (0..volume).step_by(frame) {
        let len = frame.min(volume - start);
        out.push(0x82);
        match len {
            0..=125 => out.push(0x80 | len as u8),
            126..=0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&KEY);
        out.extend((0..len).map(|i| ((start + i) as u8) ^ KEY[i % 4]));
    }
    out
}

/// Relays `browser_gw` ⇄ `target_gw` in a task: the pump, or the raw-copy baseline.
fn spawn_relay(pump: bool, browser_gw: DuplexStream, target_gw: DuplexStream) {
    if pump {
        let limits = Limits {
            read_chunk: DEFAULT_READ_CHUNK,
            max_frame: DEFAULT_MAX_FRAME,
            max_message: DEFAULT_MAX_MESSAGE,
        };
        let metrics = Arc::new(Metrics::default());
        let mut pump = Pump::new(browser_gw, target_gw, Bytes::new(), limits, metrics);
        tokio::spawn(async move { poll_fn(|cx| pump.poll(cx)).await });
    } else {
        let (mut a, mut b) = (browser_gw, target_gw);
        tokio::spawn(async move { tokio::io::copy_bidirectional(&mut a, &mut b).await });
    }
}

/// Reads until `volume` bytes arrived.
async fn read_raw(r: &mut (impl AsyncRead + Unpin), volume: usize) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < volume {
        let n = r.read(&mut buf).await.expect("read");
        assert!(n > 0, "stream ended after {got} of {volume} bytes");
        got += n;
    }
}

/// Reads server frames until `volume` payload bytes arrived.
async fn read_frames(r: &mut (impl AsyncRead + Unpin), volume: usize) {
    let mut buf = vec![0u8; 64 * 1024];
    let (mut header, mut remaining, mut got) = (Vec::with_capacity(10), 0u64, 0usize);
    while got < volume {
        let n = r.read(&mut buf).await.expect("read");
        assert!(n > 0, "stream ended after {got} of {volume} bytes");
        let mut data = &buf[..n];
        while !data.is_empty() {
            if remaining > 0 {
                let take = data.len().min(remaining as usize);
                (got, remaining, data) = (got + take, remaining - take as u64, &data[take..]);
                continue;
            }
            header.push(data[0]);
            data = &data[1..];
            let need = header.get(1).map_or(2, |b| match b & 0x7F {
                126 => 4,
                127 => 10,
                _ => 2,
            });
            if header.len() == need {
                remaining = match need {
                    2 => u64::from(header[1] & 0x7F),
                    4 => u64::from(u16::from_be_bytes([header[2], header[3]])),
                    _ => u64::from_be_bytes(header[2..10].try_into().expect("8 bytes")),
                };
                header.clear();
            }
        }
    }
}

/// Time for `iters` transfers of `volume` payload bytes browser→target.
fn upstream(rt: &Runtime, pump: bool, wire: &[u8], volume: usize, iters: u64) -> Duration {
    rt.block_on(async {
        let (browser_gw, mut browser) = duplex(PIPE);
        let (target_gw, mut vnc) = duplex(PIPE);
        spawn_relay(pump, browser_gw, target_gw);
        let start = Instant::now();
        for _ in 0..iters {
            let write = async { browser.write_all(wire).await.expect("write") };
            tokio::join!(write, read_raw(&mut vnc, volume));
        }
        start.elapsed()
    })
}

/// Time for `iters` transfers of `volume` bytes target→browser.
fn downstream(rt: &Runtime, pump: bool, data: &[u8], iters: u64) -> Duration {
    rt.block_on(async {
        let (browser_gw, mut browser) = duplex(PIPE);
        let (target_gw, mut vnc) = duplex(PIPE);
        spawn_relay(pump, browser_gw, target_gw);
        let start = Instant::now();
        for _ in 0..iters {
            let write = async { vnc.write_all(data).await.expect("write") };
            if pump {
                tokio::join!(write, read_frames(&mut browser, data.len()));
            } else {
                tokio::join!(write, read_raw(&mut browser, data.len()));
            }
        }
        start.elapsed()
    })
}

fn benches(c: &mut Criterion) {
    let rt = runtime();
    for (name, volume, frame) in [
        ("upstream_64k", 4 << 20, 64 << 10),
        ("upstream_16b", 256 << 10, 16),
    ] {
        let wire = masked_frames(volume, frame);
        let raw: Vec<u8> = (0..volume).map(|i| i as u8).collect();
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Bytes(volume as u64));
        group.bench_function("pump", |b| {
            b.iter_custom(|iters| upstream(&rt, true, &wire, volume, iters))
        });
        group.bench_function("copy_bidirectional", |b| {
            b.iter_custom(|iters| upstream(&rt, false, &raw, volume, iters))
        });
        group.finish();
    }
    let data: Vec<u8> = (0..4usize << 20).map(|i| i as u8).collect();
    let mut group = c.benchmark_group("downstream");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("pump", |b| {
        b.iter_custom(|iters| downstream(&rt, true, &data, iters))
    });
    group.bench_function("copy_bidirectional", |b| {
        b.iter_custom(|iters| downstream(&rt, false, &data, iters))
    });
    group.finish();
}

criterion_group! {
    name = pump;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = benches
}
criterion_main!(pump);
