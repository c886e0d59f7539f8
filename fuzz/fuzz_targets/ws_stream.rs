//! The real `Pump` between an in-memory browser and an in-memory VNC server.
//!
//! Input layout (missing bytes read as 0):
//! `flags, capacity, read_chunk, write_chunk, max_frame, max_message, early_len, down_len,
//! down bytes…, browser bytes…`
//! * flags bit 0: the browser half-closes after its bytes (else it stays silent);
//!   bit 1: small size limits taken from the two limit bytes (else the defaults);
//!   bit 2: an RFB `ClientFilter` (bit 3 view-only; bits 4-5 clipboard: unlimited,
//!   disabled, capped at the max_frame byte); bit 6: `ping()` before the first poll;
//!   bit 7: `close(1001, …, Shutdown)` before the first poll, as a gateway shutdown does.
//! * The first `early_len` browser bytes are handed to `Pump::new` as already read.
//! * `down` is what the VNC server sends (while reading) before it closes its side, which
//!   it does once the gateway has closed its own.
//!
//! The run uses a current-thread runtime with paused time, so "blocked forever" shows up
//! as the virtual horizon passing. Checked against `darts_fuzz::model`: the target gets
//! exactly the unmasked data payloads (through a fresh filter, if one is set); the browser
//! gets well-formed server frames whose binary payloads are the VNC bytes (all of them
//! unless the session ended early), pongs that echo pings, and one final close frame with
//! the right code; the pump ends exactly when it must, with the right reason, and never
//! panics or spins; the byte counters of the metrics match what was relayed.

#![no_main]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use darts_fuzz::input::Input;
use darts_fuzz::model::{self, Ending, Expected, StreamLimits};
use darts_fuzz::server::{self, ServerFrame};
use darts_proxy::config::{DEFAULT_MAX_FRAME, DEFAULT_MAX_MESSAGE};
use darts_proxy::metrics::Metrics;
use darts_proxy::pump::{Limits, Pump};
use darts_proxy::rfb::{ClientFilter, Policy};
use darts_proxy::ws::close;
use darts_proxy::SessionEnd;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Virtual time after which a pump that has not finished counts as blocked.
const HORIZON: Duration = Duration::from_secs(24 * 3600);
/// Far more polls than any input of libFuzzer's size needs; more means a busy loop.
const MAX_POLLS: u64 = 1_000_000;

struct Case<'a> {
    client_eof: bool,
    /// View-only and clipboard cap of the filter, if there is one.
    filter: Option<(bool, Option<u32>)>,
    ping: bool,
    shutdown: bool,
    capacity: usize,
    write_chunk: usize,
    limits: Limits,
    early: &'a [u8],
    late: &'a [u8],
    down: &'a [u8],
}

fn case(data: &[u8]) -> Case<'_> {
    let mut input = Input::new(data);
    let flags = input.byte();
    let capacity = 1 + usize::from(input.byte()) * 32;
    let read_chunk = 1 + usize::from(input.byte()) * 64;
    let write_chunk = 1 + usize::from(input.byte());
    let (frame_sel, message_sel) = (input.byte(), input.byte());
    let (max_frame, max_message) = if flags & 2 != 0 {
        (u64::from(frame_sel) * 4, u64::from(message_sel) * 16)
    } else {
        (DEFAULT_MAX_FRAME, DEFAULT_MAX_MESSAGE)
    };
    let early_len = usize::from(input.byte());
    let down_len = usize::from(input.byte());
    let down = input.take(down_len);
    let browser = input.rest();
    let (early, late) = browser.split_at(early_len.min(browser.len()));
    let clipboard = match (flags >> 4) & 3 {
        0 => None,
        1 => Some(0),
        _ => Some(u32::from(frame_sel)),
    };
    Case {
        client_eof: flags & 1 != 0,
        filter: (flags & 4 != 0).then_some((flags & 8 != 0, clipboard)),
        ping: flags & 0x40 != 0,
        shutdown: flags & 0x80 != 0,
        capacity,
        write_chunk,
        limits: Limits {
            read_chunk,
            max_frame,
            max_message,
        },
        early,
        late,
        down,
    }
}

/// What happened: the pump's result (`None` = still blocked at the horizon), the bytes
/// the browser received, the bytes the VNC server received, and the metrics.
fn run(c: &Case<'_>) -> (Option<SessionEnd>, Vec<u8>, Vec<u8>, Arc<Metrics>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    let metrics = Arc::new(Metrics::default());
    let (end, to_browser, to_target) = rt.block_on(async {
        let (client_gw, client_peer) = tokio::io::duplex(c.capacity);
        let (target_gw, target_peer) = tokio::io::duplex(c.capacity);
        // The peers stay alive until the end, so a silent browser stays silent.
        let (mut browser_rx, mut browser_tx) = tokio::io::split(client_peer);
        let (mut vnc_rx, mut vnc_tx) = tokio::io::split(target_peer);
        let mut pump = Pump::new(
            client_gw,
            target_gw,
            Bytes::copy_from_slice(c.early),
            c.limits,
            metrics.clone(),
        )
        .with_filter(
            c.filter
                .map(|(view_only, clip)| Box::new(ClientFilter::new(policy(view_only, clip)))),
        );
        if c.ping {
            pump.ping();
        }
        if c.shutdown {
            pump.close(
                close::GOING_AWAY,
                "server shutting down",
                SessionEnd::Shutdown,
            );
        }
        let pump_side = async move {
            let mut pump = pump;
            let mut polls = 0u64;
            let session = std::future::poll_fn(|cx| {
                polls += 1;
                assert!(polls < MAX_POLLS, "pump polled {polls} times: busy loop");
                pump.poll(cx)
            });
            tokio::time::timeout(HORIZON, session).await.ok()
            // Dropping the pump here closes its ends, which lets the peers finish.
        };
        let browser_writes = async {
            for chunk in c.late.chunks(c.write_chunk) {
                if browser_tx.write_all(chunk).await.is_err() {
                    return;
                }
            }
            if c.client_eof {
                let _ = browser_tx.shutdown().await;
            }
        };
        let browser_reads = async {
            let mut got = Vec::new();
            let _ = browser_rx.read_to_end(&mut got).await;
            got
        };
        // Full duplex, like a real VNC server: it reads while its writes wait, and ends
        // its side only after both its data and the gateway's end of stream.
        let vnc_server = async {
            let write = async {
                let _ = vnc_tx.write_all(c.down).await;
            };
            let read = async {
                let mut got = Vec::new();
                let _ = vnc_rx.read_to_end(&mut got).await;
                got
            };
            let ((), got) = tokio::join!(write, read);
            let _ = vnc_tx.shutdown().await;
            got
        };
        let (end, (), to_browser, to_target) =
            tokio::join!(pump_side, browser_writes, browser_reads, vnc_server);
        (end, to_browser, to_target)
    });
    (end, to_browser, to_target, metrics)
}

/// A `darts_bytes_total` counter from the Prometheus text.
fn policy(view_only: bool, max_clipboard: Option<u32>) -> Policy {
    Policy {
        view_only,
        max_clipboard,
        view_only_clipboard: false,
    }
}

fn bytes_counter(metrics: &Metrics, direction: &str) -> u64 {
    let prefix = format!("darts_bytes_total{{direction=\"{direction}\"}} ");
    let text = metrics.render();
    let line = text.lines().find_map(|l| l.strip_prefix(prefix.as_str()));
    line.and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in the metrics"))
}

fn check(c: &Case<'_>, run: (Option<SessionEnd>, Vec<u8>, Vec<u8>, Arc<Metrics>)) {
    let (end, to_browser, to_target, metrics) = run;
    let to_target = to_target.as_slice();
    let browser = [c.early, c.late].concat();
    let limits = StreamLimits {
        max_frame: c.limits.max_frame,
        max_message: c.limits.max_message,
    };
    let Expected {
        forwarded,
        pings,
        mut ending,
    } = model::expect(&browser, limits);
    let mut complete = true;
    let forwarded = match c.filter {
        None => forwarded,
        Some((view_only, clip)) => {
            // The filter sees the same bytes, whatever the cuts; an error is a violation.
            let mut kept = Vec::new();
            if ClientFilter::new(policy(view_only, clip))
                .filter(&forwarded, &mut kept)
                .is_err()
            {
                ending = Ending::Violation(close::POLICY_VIOLATION);
                complete = false;
            }
            kept
        }
    };
    let forwarded_ok = if complete {
        to_target == forwarded.as_slice()
    } else {
        forwarded.starts_with(to_target)
    };
    assert!(
        forwarded_ok,
        "target got {} bytes, model forwards {} ({ending:?})",
        to_target.len(),
        forwarded.len()
    );

    let (mut want_end, mut want_code) = match (ending, c.client_eof) {
        (Ending::NeedMore, false) => (None, None),
        (Ending::NeedMore, true) => (Some(SessionEnd::Closed), Some(close::NORMAL)),
        (Ending::PeerClose(code), _) => (Some(SessionEnd::Closed), Some(code)),
        (Ending::Violation(code), _) => (Some(SessionEnd::ClientProtocol), Some(code)),
    };
    if c.shutdown {
        // Our close goes first and wins; the browser's side still ends the session.
        want_end = want_end.map(|_| SessionEnd::Shutdown);
        want_code = Some(close::GOING_AWAY);
    }
    assert_eq!(end, want_end, "session end for {ending:?}");

    let frames = server::decode_all(&to_browser)
        .unwrap_or_else(|e| panic!("gateway wrote an invalid frame: {e}"));
    let mut relayed = Vec::new();
    let mut close = None;
    for (i, f) in frames.iter().enumerate() {
        assert!(close.is_none(), "frame {i} after the close frame");
        assert!(f.fin, "gateway fragments nothing");
        match f.opcode {
            server::BINARY => relayed.extend_from_slice(&f.payload),
            server::PONG => assert!(pings.contains(&f.payload), "pong echoes no ping"),
            server::PING => assert!(c.ping && f.payload.is_empty(), "unasked ping"),
            server::CLOSE => close = Some(close_payload(f)),
            other => panic!("unexpected opcode {other:#x} to the browser"),
        }
    }
    let count = |op| frames.iter().filter(|f| f.opcode == op).count();
    let payload: usize = frames
        .iter()
        .filter(|f| f.opcode != server::CLOSE)
        .map(|f| f.payload.len())
        .sum();
    assert_eq!(bytes_counter(&metrics, "to_target"), to_target.len() as u64);
    assert_eq!(bytes_counter(&metrics, "to_client"), payload as u64);
    let pongs = count(server::PONG);
    assert!(
        pongs <= pings.len(),
        "{pongs} pongs for {} pings",
        pings.len()
    );
    assert!(count(server::PING) <= 1, "one ping asked, more sent");
    assert_eq!(close, want_code, "close code for {ending:?}");
    if c.shutdown {
        assert!(
            relayed.is_empty() && pongs == 0,
            "data or pong after our close"
        );
    } else if matches!(ending, Ending::NeedMore) {
        // Every VNC byte reaches the browser unless the session was cut short.
        assert!(
            relayed == c.down,
            "relayed {} of {}",
            relayed.len(),
            c.down.len()
        );
    } else {
        assert!(
            c.down.starts_with(&relayed),
            "relayed bytes are not the VNC bytes"
        );
    }
}

fn close_payload(f: &ServerFrame) -> u16 {
    let (code, reason) = f
        .payload
        .split_at_checked(2)
        .expect("the gateway's close frames carry a code");
    assert!(
        std::str::from_utf8(reason).is_ok(),
        "close reason not UTF-8"
    );
    u16::from_be_bytes([code[0], code[1]])
}

fuzz_target!(|data: &[u8]| {
    let c = case(data);
    check(&c, run(&c));
});
