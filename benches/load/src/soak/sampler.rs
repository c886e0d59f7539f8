//! Samples darts' resident memory and open files every few seconds, and notices darts
//! exiting when no restart was asked for (which ends the run).

use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::procs;
use super::report::Sample;
use super::state::{progress, Gateway, Shared};

/// Shared list of samples.
pub type Samples = Arc<Mutex<Vec<Sample>>>;

/// One sample of `pid`, if it runs.
pub fn take(shared: &Shared, pid: Option<u32>) -> Option<Sample> {
    let pid = pid?;
    Some(Sample {
        t: shared.elapsed(),
        pid,
        rss: procs::rss(pid)?,
        fds: procs::fds(pid)?,
        held: shared.tally().counters.held,
    })
}

pub fn push(samples: &Samples, s: Option<Sample>) {
    if let Some(s) = s {
        samples.lock().unwrap_or_else(|e| e.into_inner()).push(s);
    }
}

/// Samples until `stop` is set.
pub async fn run(
    shared: Arc<Shared>,
    pid: watch::Receiver<Option<u32>>,
    samples: Samples,
    mut stop: watch::Receiver<bool>,
) {
    let mut crash_seen = false;
    loop {
        let current = *pid.borrow();
        push(&samples, take(&shared, current));
        if let Some(p) = current {
            let up = matches!(*shared.gateway.borrow(), Gateway::Up(_));
            if up && !crash_seen && !procs::running(p) && *pid.borrow() == Some(p) {
                crash_seen = true;
                let what = format!(
                    "darts (pid {p}) exited on its own at {:.0} s",
                    shared.elapsed()
                );
                progress(&what);
                shared.tally().invariant(what);
                shared.ending.send_replace(true);
            }
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(shared.plan.sample_every) => {}
        }
    }
}
