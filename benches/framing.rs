//! Micro-benchmarks of the websocket data path, each next to tungstenite as the baseline:
//!
//! * `unmask`: `ws::mask::apply` over 16 B and 64 KiB, at an aligned and an unaligned
//!   start. tungstenite has no public unmask-only call; its public masking path is
//!   `Frame::format` with a mask set (copies the payload, masks it, writes header and
//!   payload), measured as `tungstenite-format`. `bytewise` is the RFC's definition.
//! * `read_frame_64k`: one masked 64 KiB binary frame from an in-memory stream, header
//!   parsed and payload unmasked — darts as the pump does it (read into a buffer, parse,
//!   unmask in place), tungstenite as a server `WebSocket::read` does it.
//! * `header_parse`, `header_encode`: a client header (6 and 14 bytes) parsed, a server
//!   header (16 B and 64 KiB payloads) encoded.
//!
//! `cargo bench --bench framing` measures (about a second per case); `-- --test` runs
//! every case once (CI smoke); `-- --quick` gives rough numbers quickly.

use std::hint::black_box;
use std::io::{self, Cursor, Read, Write};
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use darts_proxy::ws::frame::{encode_server_header, parse_client_header, Opcode};
use darts_proxy::ws::{frame::MAX_SERVER_HEADER, mask};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocket, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;

const KEY: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];
const SIZES: [usize; 2] = [16, 64 * 1024];

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + 7) as u8).collect()
}

/// A masked binary client frame, as a browser sends it.
fn client_frame(len: usize) -> Vec<u8> {
    let header = FrameHeader {
        opcode: OpCode::Data(Data::Binary),
        mask: Some(KEY),
        ..FrameHeader::default()
    };
    let mut out = Vec::with_capacity(len + 14);
    Frame::from_payload(header, payload(len).into())
        .format(&mut out)
        .expect("format into a Vec");
    out
}

fn unmask(c: &mut Criterion) {
    let mut group = c.benchmark_group("unmask");
    for size in SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        // One spare byte in front, so the same buffer gives both alignments.
        let mut buf = vec![0u8; size + 1];
        buf[1..].copy_from_slice(&payload(size));
        for (name, start, offset) in [("aligned", 0usize, 0u64), ("unaligned", 1, 1)] {
            let id = |who: &str| BenchmarkId::new(format!("{who}/{name}"), size);
            group.bench_function(id("darts"), |b| {
                b.iter(|| mask::apply(black_box(&mut buf[start..start + size]), KEY, offset))
            });
            group.bench_function(id("bytewise"), |b| {
                b.iter(|| {
                    let chunk = black_box(&mut buf[start..start + size]);
                    for (i, byte) in chunk.iter_mut().enumerate() {
                        *byte ^= KEY[(offset as usize + i) % 4];
                    }
                })
            });
        }
        let data = Bytes::from(payload(size));
        let header = FrameHeader {
            opcode: OpCode::Data(Data::Binary),
            mask: Some(KEY),
            ..FrameHeader::default()
        };
        let mut out = Vec::with_capacity(size + 14);
        group.bench_function(BenchmarkId::new("tungstenite-format", size), |b| {
            b.iter(|| {
                out.clear();
                Frame::from_payload(header.clone(), data.clone())
                    .format(&mut out)
                    .expect("format into a Vec");
                black_box(&out);
            })
        });
    }
    group.finish();
}

/// An endless stream repeating one frame; writes are discarded.
struct Repeat {
    frame: Vec<u8>,
    pos: usize,
}

impl Read for Repeat {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.frame.len() - self.pos);
        buf[..n].copy_from_slice(&self.frame[self.pos..self.pos + n]);
        self.pos = (self.pos + n) % self.frame.len();
        Ok(n)
    }
}

impl Write for Repeat {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn read_frame(c: &mut Criterion) {
    const LEN: usize = 64 * 1024;
    let frame = client_frame(LEN);
    let mut group = c.benchmark_group("read_frame_64k");
    group.throughput(Throughput::Bytes(LEN as u64));

    let mut buf = vec![0u8; frame.len()];
    group.bench_function("darts", |b| {
        b.iter(|| {
            buf.copy_from_slice(black_box(&frame));
            let (h, n) = parse_client_header(&buf)
                .expect("valid header")
                .expect("complete header");
            let end = n + h.payload_len as usize;
            mask::apply(&mut buf[n..end], h.mask.unwrap_or_default(), 0);
            black_box(&buf[n..end]);
        })
    });

    let stream = Repeat {
        frame: frame.clone(),
        pos: 0,
    };
    let mut ws = WebSocket::from_raw_socket(stream, Role::Server, Some(WebSocketConfig::default()));
    group.bench_function("tungstenite", |b| {
        b.iter(|| match ws.read().expect("read a message") {
            Message::Binary(data) => assert_eq!(black_box(data).len(), LEN),
            other => panic!("unexpected message {other:?}"),
        })
    });
    group.finish();
}

fn header_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("header_parse");
    for size in SIZES {
        let frame = client_frame(size);
        let (_, header_len) = parse_client_header(&frame)
            .expect("valid")
            .expect("complete");
        let header = &frame[..header_len];
        group.bench_function(BenchmarkId::new("darts", header_len), |b| {
            b.iter(|| parse_client_header(black_box(header)))
        });
        group.bench_function(BenchmarkId::new("tungstenite", header_len), |b| {
            b.iter(|| FrameHeader::parse(&mut Cursor::new(black_box(header))).ok())
        });
    }
    group.finish();
}

fn header_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("header_encode");
    let header = FrameHeader {
        opcode: OpCode::Data(Data::Binary),
        ..FrameHeader::default()
    };
    for size in SIZES {
        let mut out = [0u8; MAX_SERVER_HEADER];
        group.bench_function(BenchmarkId::new("darts", size), |b| {
            b.iter(|| encode_server_header(Opcode::Binary, black_box(size), &mut out))
        });
        group.bench_function(BenchmarkId::new("tungstenite", size), |b| {
            b.iter(|| {
                let mut w = &mut out[..];
                header
                    .format(black_box(size as u64), &mut w)
                    .expect("10 bytes suffice");
            })
        });
    }
    group.finish();
}

fn quick() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = quick();
    targets = unmask, read_frame, header_parse, header_encode
}
criterion_main!(benches);
