//! Idle sessions: open up to the requested number of sessions (each proven end to end by
//! the VNC greeting), hold them for the window, count how many are still open, and
//! divide the gateway's memory growth by that number.
//!
//! Opening stops early, and says why, after a run of failures (websockify falls over
//! long before 9,000), when the ramp takes too long, or when the machine's free memory
//! drops below a floor (websockify costs megabytes per session).

use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::{Idle, Settings};
use crate::client::{self, Endpoint};
use crate::error::{LoadError, Result};
use crate::gateway::Running;
use crate::sys;

/// Sessions being opened at once.
const RAMP_CONCURRENCY: usize = 64;
/// Time one session gets to open.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Failures in a row that end the ramp.
const MAX_CONSECUTIVE_FAILURES: usize = 20;
/// Sessions between two looks at free memory.
const MEMORY_CHECK_EVERY: usize = 64;

pub async fn run(ep: Endpoint, gw: &Running, s: &Settings) -> Result<Idle> {
    let baseline = gw.memory();
    let requested = s.idle_sessions;
    let mut held: Vec<TcpStream> = Vec::with_capacity(requested);
    let mut pending = JoinSet::new();
    let deadline = tokio::time::Instant::now() + s.idle_ramp_timeout;
    let mut failures = 0usize;
    let mut in_a_row = 0usize;
    let mut stopped: Option<String> = None;
    while stopped.is_none() {
        while pending.len() < RAMP_CONCURRENCY && held.len() + pending.len() < requested {
            pending.spawn(open_idle(ep));
        }
        let Ok(next) = tokio::time::timeout_at(deadline, pending.join_next()).await else {
            stopped = Some(format!(
                "opening took longer than {} s",
                s.idle_ramp_timeout.as_secs()
            ));
            break;
        };
        match next {
            None => break,
            Some(Ok(Ok(stream))) => {
                held.push(stream);
                in_a_row = 0;
                if held.len() % MEMORY_CHECK_EVERY == 0
                    && sys::mem_available().is_some_and(|m| m < s.idle_min_free)
                {
                    stopped = Some(format!(
                        "free memory fell below {} MiB",
                        s.idle_min_free >> 20
                    ));
                }
            }
            Some(Ok(Err(e))) => {
                failures += 1;
                in_a_row += 1;
                if in_a_row >= MAX_CONSECUTIVE_FAILURES {
                    stopped = Some(format!("{in_a_row} failures in a row, the last: {e}"));
                }
            }
            Some(Err(e)) => return Err(LoadError::Scenario(format!("opener failed: {e}"))),
        }
    }
    pending.abort_all();
    while pending.join_next().await.is_some() {}
    let opened = held.len();
    if opened == 0 {
        return Err(LoadError::Scenario(format!(
            "no idle session opened ({})",
            stopped.unwrap_or_default()
        )));
    }
    let hold_start = Instant::now();
    tokio::time::sleep(s.duration).await;
    let loaded = gw.memory();
    let held_now = held.iter().filter(|s| still_open(s)).count();
    let hold_secs = hold_start.elapsed().as_secs_f64();
    drop(held);
    Ok(Idle {
        requested,
        opened,
        held: held_now,
        failures,
        stopped,
        baseline,
        loaded,
        hold_secs,
    })
}

async fn open_idle(ep: Endpoint) -> Result<TcpStream> {
    tokio::time::timeout(OPEN_TIMEOUT, client::open(ep))
        .await
        .map_err(|_| LoadError::Timeout("opening an idle session"))?
        .map(|session| session.stream)
}

/// An idle session is open if reading it would block: no end of stream, no close frame.
fn still_open(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(stream.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}
