//! The byte pump: websocket frames from the browser ⇄ raw bytes to the VNC target.
//!
//! One task drives both directions of a session, each as its own small state machine, so
//! neither waits on the other: a browser that stops reading stalls only the
//! target→browser direction, and its keyboard input keeps reaching the VM.
//!
//! * browser→target: frames are parsed as they arrive and their payload is unmasked in
//!   place; every frame found in one read is gathered into one buffer and written to the
//!   target with one write. No message is ever assembled, so memory does not grow with
//!   frame size. Nothing more is read from the browser while that write waits for the
//!   target (backpressure).
//! * target→browser: each read from the target becomes one binary frame, written with a
//!   vectored write (header + payload, no copy). Nothing more is read from the target
//!   while a frame waits for the browser. Between plain sockets with no filter, a burst
//!   that fills the first (probe) read is a stream, and the rest of it is not read at
//!   all: it is spliced target → pipe → browser (`splice`), and what reached the pipe is
//!   the length the frame's header announces. Small bursts stay on the copy path.
//!
//! Buffers are allocated when data arrives and released when a read finds nothing to do,
//! so an idle session holds no buffer at all: reads start in a small inline probe.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::config::CLOSE_LINGER;
use crate::error::SessionEnd;
use crate::metrics::Metrics;
use crate::rfb::ClientFilter;
use crate::ws::close::{self, PeerClose};
use crate::ws::frame::{self, FrameHeader, Opcode};
use crate::ws::mask;
use crate::ws::write::OutFrame;

mod downstream;
pub mod splice;
mod upstream;

use splice::{FillError, RawSocket, Splicer};

#[cfg(test)]
mod downstream_tests;
#[cfg(test)]
mod fairness_tests;
#[cfg(test)]
mod test_io;
#[cfg(test)]
mod upstream_tests;

/// How often a streaming session adds its byte counts to the gateway's totals: the
/// shared counters are touched a few times a second per session, never per write.
const REPORT_EVERY: Duration = Duration::from_millis(250);

/// Rounds of work (at most one read each way) one `Pump::poll` does before it yields.
const ROUNDS_PER_POLL: usize = 16;

/// Inline bytes a read from an idle peer goes into before any buffer is allocated.
const PROBE: usize = 256;

/// Size limits of one session.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest read from either side, and so the largest frame sent to the browser.
    pub read_chunk: usize,
    /// Largest websocket frame accepted from the browser; a larger one closes with 1009.
    pub max_frame: u64,
    /// Largest (fragmented) message accepted from the browser; a larger one closes with 1009.
    pub max_message: u64,
}

/// Timers of one session; `None` turns one off.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timers {
    /// Longest wait for the target to accept the connection and its RFB handshake.
    pub connect: Duration,
    /// No payload either way for this long ends the session.
    pub idle: Option<Duration>,
    /// A ping this often; a browser silent for two of them is gone.
    pub heartbeat: Option<Duration>,
    /// Longest time a browser may take to finish a frame it started.
    pub frame: Option<Duration>,
}

/// A data frame from the browser whose payload is still arriving.
#[derive(Debug)]
struct InFrame {
    remaining: u64,
    key: [u8; 4],
    offset: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UpState {
    /// Forwarding browser data to the target.
    Open,
    /// The browser ended (close frame or end of stream): flush, then shut the target's write side.
    Draining,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DownState {
    /// Forwarding target data to the browser.
    Open,
    /// Our close frame is written: flush and shut the browser's write side.
    ShuttingDown,
    Done,
}

/// Control frames waiting for the browser direction.
#[derive(Debug, Default)]
struct Control {
    pong: Option<Bytes>,
    ping: bool,
    close: Option<(u16, &'static str)>,
    close_sent: bool,
}

/// Both directions of one session. Drive it with `poll`.
#[derive(Debug)]
pub struct Pump<C, B> {
    client: C,
    target: B,
    limits: Limits,
    metrics: Arc<Metrics>,
    probe: [u8; PROBE],
    // browser → target
    up_state: UpState,
    up_buf: BytesMut,
    up_out: Bytes,
    up_frame: Option<InFrame>,
    in_message: bool,
    message_len: u64,
    target_needs_flush: bool,
    // target → browser
    down_state: DownState,
    down_buf: BytesMut,
    down_frame: Option<OutFrame>,
    client_needs_flush: bool,
    /// Zero-copy target → browser, when both are plain sockets and nothing filters.
    splice: Option<Splicer<C, B>>,
    /// A burst from the target is a stream: splice it. Each burst starts on the copy
    /// path (into the probe); one that fills the probe streams on through the pipe, and
    /// the burst ends when the target has nothing more. So small talk (key echoes,
    /// cursor moves) costs no pipe to make and drop.
    streaming: bool,
    ctrl: Control,
    /// RFB message filter on browser input (view-only, clipboard cap); `None` relays raw.
    filter: Option<Box<ClientFilter>>,
    end: Option<SessionEnd>,
    counts: Counts,
    timers: Timers,
    /// When the next heartbeat ping is due.
    next_ping: Option<Instant>,
    /// Last payload byte relayed in either direction (idle timeout).
    last_activity: Instant,
    /// Last frame of any kind from the browser (heartbeat).
    last_client_frame: Instant,
    /// Since when the browser has left a frame unfinished (frame timeout). Set when a
    /// read from the browser would block inside a frame, cleared when a frame is
    /// complete: whole frames never touch the clock for it.
    partial_frame_since: Option<Instant>,
    close_sent_at: Option<Instant>,
}

/// What a session carried, owned by its pump: plain integers, no shared state per write.
#[derive(Debug)]
struct Counts {
    /// Bytes read from and written to the browser, websocket framing included.
    client_read: u64,
    client_written: u64,
    /// Payload bytes relayed each way, and how much of them the gateway's totals have.
    to_target: u64,
    to_client: u64,
    reported: (u64, u64),
    reported_at: Instant,
}

enum Step {
    Progress,
    Blocked,
}

impl<C, B> Pump<C, B>
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    /// `early` holds browser bytes already read past the HTTP request.
    pub fn new(client: C, target: B, early: Bytes, limits: Limits, metrics: Arc<Metrics>) -> Self {
        let now = Instant::now();
        Self {
            client,
            target,
            limits,
            metrics,
            probe: [0; PROBE],
            up_state: UpState::Open,
            up_buf: BytesMut::from(&early[..]),
            up_out: Bytes::new(),
            up_frame: None,
            in_message: false,
            message_len: 0,
            target_needs_flush: false,
            down_state: DownState::Open,
            down_buf: BytesMut::new(),
            down_frame: None,
            client_needs_flush: false,
            splice: None,
            streaming: false,
            ctrl: Control::default(),
            filter: None,
            end: None,
            counts: Counts {
                client_read: 0,
                client_written: 0,
                to_target: 0,
                to_client: 0,
                reported: (0, 0),
                reported_at: now,
            },
            timers: Timers::default(),
            next_ping: None,
            last_activity: now,
            last_client_frame: now,
            partial_frame_since: None,
            close_sent_at: None,
        }
    }

    /// Filters browser input through `filter` (view-only, clipboard limits). A filtered
    /// session copies both ways (no splice).
    pub fn with_filter(mut self, filter: Option<Box<ClientFilter>>) -> Self {
        if filter.is_some() {
            self.splice = None;
        }
        self.filter = filter;
        self
    }

    /// With `on`, target → browser payload is spliced (zero-copy) when both sides are
    /// plain TCP or unix sockets and no filter is set; otherwise it is copied.
    pub fn with_splice(mut self, on: bool) -> Self
    where
        C: RawSocket,
        B: RawSocket,
    {
        self.splice = if on && self.filter.is_none() {
            Splicer::new(&self.client, &self.target)
        } else {
            None
        };
        self
    }

    /// Whether target → browser payload takes the splice path.
    #[cfg(test)]
    pub(crate) fn splicing(&self) -> bool {
        self.splice.is_some()
    }

    /// Whether the pump holds a pipe now (only while bytes stream).
    #[cfg(test)]
    pub(crate) fn holds_pipe(&self) -> bool {
        self.splice.as_ref().is_some_and(Splicer::holds_pipe)
    }

    /// Bytes read from and written to the browser so far, websocket framing included.
    pub fn client_traffic(&self) -> (u64, u64) {
        (self.counts.client_read, self.counts.client_written)
    }

    /// Payload was relayed: the idle clock restarts, and every `REPORT_EVERY` the
    /// gateway's byte totals are brought up to date.
    fn note_activity(&mut self) {
        let now = Instant::now();
        self.last_activity = now;
        if now >= self.counts.reported_at + REPORT_EVERY {
            self.report(now);
        }
    }

    fn report(&mut self, now: Instant) {
        let c = &mut self.counts;
        self.metrics
            .to_target((c.to_target - c.reported.0) as usize);
        self.metrics
            .to_client((c.to_client - c.reported.1) as usize);
        c.reported = (c.to_target, c.to_client);
        c.reported_at = now;
    }

    /// Applies the session's timers, from now.
    pub fn with_timers(mut self, timers: Timers) -> Self {
        self.timers = timers;
        self.next_ping = timers.heartbeat.map(|h| Instant::now() + h);
        self
    }

    /// The soonest instant at which `on_deadline` has something to do, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        let t = &self.timers;
        let idle = t.idle.map(|d| self.last_activity + d);
        let linger = self.close_sent_at.map(|at| at + CLOSE_LINGER);
        let frame = t.frame.zip(self.partial_frame_since).map(|(d, at)| at + d);
        [idle, self.next_ping, linger, frame]
            .into_iter()
            .flatten()
            .min()
    }

    /// Acts on every timer due at `now`: the close linger over ends the session (its
    /// reason returned), an unfinished frame, idleness or an unanswered heartbeat start
    /// a close, and a due heartbeat sends a ping.
    pub fn on_deadline(&mut self, now: Instant) -> Option<SessionEnd> {
        if let Some(sent) = self.close_sent_at {
            if now >= sent + CLOSE_LINGER {
                return Some(self.end.unwrap_or(SessionEnd::Closed));
            }
        }
        let t = self.timers;
        if let (Some(limit), Some(since)) = (t.frame, self.partial_frame_since) {
            if now >= since + limit {
                tracing::info!(after = ?limit, "browser left a frame unfinished; closing");
                self.frame_timed_out();
            }
        }
        if let Some(idle) = t.idle {
            if now >= self.last_activity + idle {
                self.close(close::NORMAL, "idle timeout", SessionEnd::IdleTimeout);
            }
        }
        if let (Some(h), Some(at)) = (t.heartbeat, self.next_ping) {
            if now >= at {
                // Two beats and a little slack without a frame: the browser is gone.
                if now >= self.last_client_frame + 2 * h + Duration::from_millis(100) {
                    self.close(
                        close::GOING_AWAY,
                        "heartbeat not answered",
                        SessionEnd::HeartbeatTimeout,
                    );
                } else {
                    self.ping();
                }
                self.next_ping = Some(now + h);
            }
        }
        None
    }

    /// Starts the closing handshake with `code`; `end` is what the session will report.
    pub fn close(&mut self, code: u16, reason: &'static str, end: SessionEnd) {
        self.end.get_or_insert(end);
        if !self.ctrl.close_sent && self.ctrl.close.is_none() {
            self.ctrl.close = Some((code, reason));
        }
    }

    /// Asks for a ping to be sent to the browser.
    pub fn ping(&mut self) {
        self.ctrl.ping = true;
    }

    /// The browser left a frame unfinished for too long: close with 1008 and read no
    /// more of it.
    pub fn frame_timed_out(&mut self) {
        const REASON: &str = "frame not completed in time";
        self.close(close::POLICY_VIOLATION, REASON, SessionEnd::FrameTimeout);
        self.fail(close::POLICY_VIOLATION, REASON);
    }

    /// Why the session is ending, if it already knows.
    pub fn end_reason(&self) -> Option<SessionEnd> {
        self.end
    }

    /// Drives both directions as far as they go. Ready when the session is over.
    ///
    /// Each round lets each direction read at most once, so a direction that always has
    /// data (a browser pasting megabytes) cannot starve the other (the screen updates of
    /// the same session); and one call does at most `ROUNDS_PER_POLL` rounds before it
    /// yields, so a session that always has data cannot hold its worker from the others.
    pub fn poll(&mut self, cx: &mut Context<'_>) -> Poll<SessionEnd> {
        for _ in 0..ROUNDS_PER_POLL {
            let up = match self.poll_up(cx) {
                Ok(step) => step,
                Err(end) => return Poll::Ready(*self.end.get_or_insert(end)),
            };
            let down = match self.poll_down(cx) {
                Ok(step) => step,
                Err(end) => return Poll::Ready(*self.end.get_or_insert(end)),
            };
            if self.down_state == DownState::Done && self.up_state == UpState::Done {
                return Poll::Ready(self.end.unwrap_or(SessionEnd::Closed));
            }
            if matches!((up, down), (Step::Blocked, Step::Blocked)) {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<C, B> Drop for Pump<C, B> {
    /// The rest of the byte counts reach the gateway's totals however the session ended.
    fn drop(&mut self) {
        let c = &self.counts;
        self.metrics
            .to_target((c.to_target - c.reported.0) as usize);
        self.metrics
            .to_client((c.to_client - c.reported.1) as usize);
    }
}

/// Reads into `buf`, allocating it only when data is there.
///
/// With an empty (or small) buffer that cannot be taken back whole, the read goes into
/// the inline `probe`; a buffer of `chunk` bytes is allocated only when the probe fills
/// up, otherwise just what arrived.
/// When a read finds nothing and the buffer is empty, the buffer is released, so idle
/// sessions hold no heap buffer. Returns how many bytes were appended (0 = end of stream).
fn read_lazy<R: AsyncRead + Unpin>(
    reader: &mut R,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
    probe: &mut [u8; PROBE],
    chunk: usize,
) -> Poll<std::io::Result<usize>> {
    // A streaming session's buffer comes back whole once the frame cut from it is
    // written: reuse it rather than start again from the probe (which would cost a
    // small read, a small frame and a new allocation besides every chunk).
    if buf.is_empty() && buf.capacity() < chunk / 4 && !buf.try_reclaim(chunk) {
        // Idle, or small talk (key presses, echoes): read into the inline probe and
        // allocate only what arrived; a full probe means a stream, so take a whole chunk.
        let mut rb = ReadBuf::new(probe);
        match Pin::new(reader).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => {
                let filled = rb.filled();
                let n = filled.len();
                *buf = if n == PROBE {
                    let mut b = BytesMut::with_capacity(chunk.max(n));
                    b.extend_from_slice(filled);
                    b
                } else {
                    BytesMut::from(filled)
                };
                Poll::Ready(Ok(n))
            }
            Poll::Pending => {
                *buf = BytesMut::new();
                Poll::Pending
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    } else {
        if buf.capacity() - buf.len() < chunk / 4 {
            buf.reserve(chunk);
        }
        match tokio_util::io::poll_read_buf(Pin::new(reader), cx, buf) {
            Poll::Pending => {
                if buf.is_empty() {
                    *buf = BytesMut::new();
                }
                Poll::Pending
            }
            ready => ready,
        }
    }
}

#[cfg(test)]
mod splice_tests;
