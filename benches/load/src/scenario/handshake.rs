//! Session set-ups per second: a fixed number of workers each open a session (TCP, TLS
//! when asked, websocket upgrade, VNC greeting from the backend) and close it, over and
//! over. A set-up counts when the greeting has arrived, so the gateway's connect to the
//! backend is part of it. For a secured target the set-up ends at the backend's
//! ServerInit, which darts relays after its own handshake with the backend.
//!
//! After the window, set-ups are timed one at a time (nothing else in flight), for the
//! latency a user sees on a quiet gateway.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;

use super::{measure_window, Handshakes, Settings, Watch};
use crate::client::{self, Endpoint};
use crate::error::{LoadError, Result};

/// Time one set-up gets.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed set-up, so a refusing gateway is not hammered in a tight loop.
const FAILURE_PAUSE: Duration = Duration::from_millis(10);
/// Most set-ups timed one at a time, and the most time spent on them.
const ALONE_COUNT: usize = 200;
const ALONE_TIME: Duration = Duration::from_secs(2);

pub async fn run(
    ep: Endpoint,
    tls: Option<&TlsConnector>,
    watch: Watch<'_>,
    s: &Settings,
) -> Result<Handshakes> {
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(Mutex::new(None::<String>));
    let mut workers = JoinSet::new();
    for _ in 0..s.hs_concurrency.max(1) {
        let (done, errors, first_error) = (done.clone(), errors.clone(), first_error.clone());
        let tls = tls.cloned();
        workers.spawn(async move {
            loop {
                match client::establish(ep, tls.as_ref(), SETUP_TIMEOUT).await {
                    Ok(()) => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert_with(|| e.to_string());
                        tokio::time::sleep(FAILURE_PAUSE).await;
                    }
                }
            }
        });
    }
    let (count, secs, cpu) = measure_window(&done, watch, s, &mut workers).await?;
    let alone = one_at_a_time(ep, tls).await;
    let first_error = first_error.lock().unwrap_or_else(|p| p.into_inner()).take();
    if count == 0 {
        return Err(LoadError::Scenario(format!(
            "no session set up in the window; first error: {}",
            first_error.unwrap_or_else(|| "none".into())
        )));
    }
    Ok(Handshakes {
        count,
        errors: errors.load(Ordering::Relaxed),
        first_error,
        secs,
        cpu,
        alone,
    })
}

/// Durations (ns) of set-ups made one after the other; failed ones are left out.
async fn one_at_a_time(ep: Endpoint, tls: Option<&TlsConnector>) -> Vec<u32> {
    let start = Instant::now();
    let mut times = Vec::with_capacity(ALONE_COUNT);
    for _ in 0..ALONE_COUNT {
        if start.elapsed() >= ALONE_TIME {
            break;
        }
        let t0 = Instant::now();
        if client::establish(ep, tls, SETUP_TIMEOUT).await.is_ok() {
            times.push(u32::try_from(t0.elapsed().as_nanos()).unwrap_or(u32::MAX));
        }
    }
    times
}
