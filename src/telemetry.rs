//! Logging: `tracing` to stderr, text or JSON, level from `RUST_LOG` or `-v`.
//!
//! A lost or stuck log destination must never stop, wedge or slow the service (`darts
//! serve 2>&1 | tee log` whose `tee` died, a full pipe nobody reads). So the service
//! never writes stderr itself: each event is handed to one writer thread through a
//! bounded queue, dropped (and counted) when the queue is full, and the thread ignores
//! write errors. The thread is woken once per burst of lines, not once per line (a
//! wake-up per connection's log line cost 15% of the plain set-up rate).
//! tracing-subscriber's own report of a failed write goes through `eprintln!`, which
//! panics on EPIPE: it is turned off.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Bytes of log lines waiting for the writer thread; lines past that are dropped.
const QUEUE_BYTES: usize = 1024 * 1024;
/// Largest single log line kept; the rest of a longer one is cut.
const MAX_LINE: usize = 64 * 1024;
/// The writer gathers lines for this long after a wake-up: one wake-up and one write
/// per burst, not per line (each wake-up of another thread costs the service CPU).
const GATHER: Duration = Duration::from_millis(2);
/// How long the last lines get to reach stderr when darts exits.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct Queue {
    bytes: Vec<u8>,
    dropped: u64,
    /// The writer waits for lines: the next one must wake it.
    parked: bool,
    /// The writer holds lines it took and has not written yet.
    writing: bool,
}

#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<Queue>,
    /// Lines arrived (the writer waits on it).
    arrived: Condvar,
    /// A batch was written (the flush at exit waits on it).
    written: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues one line, or counts it dropped when the queue is full.
    fn push(&self, line: &[u8]) {
        let mut q = self.lock();
        if q.bytes.len() + line.len() > QUEUE_BYTES {
            q.dropped += 1;
            return;
        }
        q.bytes.extend_from_slice(line);
        let wake = std::mem::take(&mut q.parked);
        drop(q);
        if wake {
            self.arrived.notify_one();
        }
    }
}

/// Keeps the log writer until dropped; dropping it waits (bounded) for queued lines.
#[derive(Debug)]
pub struct LogGuard {
    shared: Arc<Shared>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        let deadline = Instant::now() + FLUSH_TIMEOUT;
        let mut q = self.shared.lock();
        if std::mem::take(&mut q.parked) && !q.bytes.is_empty() {
            self.shared.arrived.notify_one();
        }
        while !q.bytes.is_empty() || q.writing {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            q = match self.shared.written.wait_timeout(q, left) {
                Ok((q, _)) => q,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

/// Hands formatted events to the writer thread.
#[derive(Debug, Clone)]
struct QueueWriter {
    shared: Arc<Shared>,
}

/// One event being formatted; queued as one line when the formatter drops it.
struct PendingLine<'a> {
    buf: Vec<u8>,
    shared: &'a Shared,
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
        if !self.buf.is_empty() {
            self.shared.push(&self.buf);
        }
    }
}

impl<'a> MakeWriter<'a> for QueueWriter {
    type Writer = PendingLine<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        PendingLine {
            buf: Vec::new(),
            shared: &self.shared,
        }
    }
}

/// Writes queued lines to `out` in batches, ignoring every error; says how many were
/// dropped.
fn write_lines(shared: &Shared, mut out: impl Write) {
    let mut batch = Vec::new();
    loop {
        let mut q = shared.lock();
        while q.bytes.is_empty() {
            q.parked = true;
            q = shared.arrived.wait(q).unwrap_or_else(|p| p.into_inner());
        }
        drop(q);
        std::thread::sleep(GATHER);
        let mut q = shared.lock();
        std::mem::swap(&mut q.bytes, &mut batch);
        let lost = std::mem::take(&mut q.dropped);
        q.writing = true;
        drop(q);
        let _ = out.write_all(&batch);
        if lost > 0 {
            let _ = writeln!(out, "darts: {lost} log line(s) dropped (stderr too slow)");
        }
        let _ = out.flush();
        batch.clear();
        shared.lock().writing = false;
        shared.written.notify_all();
    }
}

/// Starts the writer thread for `out`.
fn queue(out: impl Write + Send + 'static) -> (QueueWriter, LogGuard) {
    let shared = Arc::new(Shared::default());
    let for_thread = shared.clone();
    // Without the thread every line waits in the queue until it is full and then is
    // dropped, which is still better than stopping.
    let _ = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || write_lines(&for_thread, out));
    (
        QueueWriter {
            shared: shared.clone(),
        },
        LogGuard { shared },
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
        for _ in 0..(QUEUE_BYTES / 2) {
            writeln!(writer.make_writer(), "lost").unwrap();
        }
        drop(guard);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_stuck_destination_costs_dropped_lines_not_waits() {
        struct Stuck(std::sync::mpsc::Receiver<()>);
        impl Write for Stuck {
            fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
                let _ = self.0.recv();
                Ok(data.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let (release, stuck) = std::sync::mpsc::channel();
        let (writer, guard) = queue(Stuck(stuck));
        let started = Instant::now();
        for _ in 0..QUEUE_BYTES {
            writeln!(writer.make_writer(), "x").unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        // Half the lines fit the queue (and the batch the writer took before it stuck).
        assert!(writer.shared.lock().dropped >= (QUEUE_BYTES / 4) as u64);
        drop(release);
        drop(guard);
    }
}
