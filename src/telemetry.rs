//! Logging: `tracing` to stderr, text or JSON, level from `RUST_LOG` or `-v`.
//!
//! A lost or stuck log destination must never stop, wedge or slow the service (`darts
//! serve 2>&1 | tee log` whose `tee` died, a full pipe nobody reads). So the service
//! never writes stderr itself: each event is handed to one writer thread through a
//! bounded channel, dropped (and counted) when the channel is full, and the thread
//! ignores write errors. tracing-subscriber's own report of a failed write goes
//! through `eprintln!`, which panics on EPIPE: it is turned off.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Log lines waiting for the writer thread; more are dropped.
const QUEUE_LINES: usize = 8192;
/// Largest single log line kept; the rest of a longer one is cut.
const MAX_LINE: usize = 64 * 1024;
/// How long the last lines get to reach stderr when darts exits.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

enum Msg {
    Line(Vec<u8>),
    Flush(SyncSender<()>),
}

/// Keeps the log writer until dropped; dropping it waits (bounded) for queued lines.
#[derive(Debug)]
pub struct LogGuard {
    tx: SyncSender<Msg>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        let deadline = Instant::now() + FLUSH_TIMEOUT;
        let mut msg = Msg::Flush(done_tx);
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                    msg = m;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return,
            }
        }
        let _ = done_rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    }
}

/// Hands formatted events to the writer thread.
#[derive(Debug, Clone)]
struct QueueWriter {
    tx: SyncSender<Msg>,
    dropped: Arc<AtomicU64>,
}

/// One event being formatted; sent as one line when the formatter drops it.
struct PendingLine<'a> {
    buf: Vec<u8>,
    queue: &'a QueueWriter,
}

impl Write for PendingLine<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = MAX_LINE.saturating_sub(self.buf.len());
        self.buf.extend_from_slice(&data[..data.len().min(room)]);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for PendingLine<'_> {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let line = std::mem::take(&mut self.buf);
        if self.queue.tx.try_send(Msg::Line(line)).is_err() {
            self.queue.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl<'a> MakeWriter<'a> for QueueWriter {
    type Writer = PendingLine<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        PendingLine {
            buf: Vec::new(),
            queue: self,
        }
    }
}

/// Writes queued lines to `out`, ignoring every error; says how many were dropped.
fn write_lines(rx: Receiver<Msg>, dropped: Arc<AtomicU64>, mut out: impl Write) {
    for msg in rx {
        match msg {
            Msg::Line(line) => {
                let _ = out.write_all(&line);
                let lost = dropped.swap(0, Ordering::Relaxed);
                if lost > 0 {
                    let _ = writeln!(out, "darts: {lost} log line(s) dropped (stderr too slow)");
                }
            }
            Msg::Flush(done) => {
                let _ = out.flush();
                let _ = done.send(());
            }
        }
    }
}

/// Starts the writer thread for `out`.
fn queue(out: impl Write + Send + 'static) -> (QueueWriter, LogGuard) {
    let (tx, rx) = mpsc::sync_channel(QUEUE_LINES);
    let dropped = Arc::new(AtomicU64::new(0));
    let counter = dropped.clone();
    // Without the thread every line is dropped, which is still better than stopping.
    let _ = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || write_lines(rx, counter, out));
    (
        QueueWriter {
            tx: tx.clone(),
            dropped,
        },
        LogGuard { tx },
    )
}

/// Installs the subscriber; keep the guard until the command ends.
pub fn init(verbose: bool, format: LogFormat) -> LogGuard {
    let default = if verbose { "debug" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let (writer, guard) = queue(std::io::stderr());
    // Colours only on a terminal: log files and journald get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .log_internal_errors(false)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    guard
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A destination that fails every write, or records what it got.
    #[derive(Clone, Default)]
    struct Dest {
        fail: bool,
        got: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Dest {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            if self.fail {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            self.got.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_reach_the_destination_by_the_time_the_guard_is_dropped() {
        let dest = Dest::default();
        let (writer, guard) = queue(dest.clone());
        for i in 0..3 {
            writeln!(writer.make_writer(), "line {i}").unwrap();
        }
        drop(guard);
        assert_eq!(&*dest.got.lock().unwrap(), b"line 0\nline 1\nline 2\n");
    }

    #[test]
    fn a_failing_destination_neither_blocks_nor_panics() {
        let dest = Dest {
            fail: true,
            ..Dest::default()
        };
        let (writer, guard) = queue(dest);
        let started = Instant::now();
        for _ in 0..(QUEUE_LINES * 3) {
            writeln!(writer.make_writer(), "lost").unwrap();
        }
        drop(guard);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_stuck_destination_costs_dropped_lines_not_waits() {
        struct Stuck(mpsc::Receiver<()>);
        impl Write for Stuck {
            fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
                let _ = self.0.recv();
                Ok(data.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let (release, stuck) = mpsc::channel();
        let (writer, guard) = queue(Stuck(stuck));
        let started = Instant::now();
        for _ in 0..(QUEUE_LINES * 2) {
            writeln!(writer.make_writer(), "x").unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(writer.dropped.load(Ordering::Relaxed) >= QUEUE_LINES as u64 - 1);
        drop(release);
        drop(guard);
    }
}
