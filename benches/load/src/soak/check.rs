//! The run's invariants, checked after each fault and at the end:
//!
//! * every session the soak did not end is listed by the API and its link still reaches
//!   its own guest (a viewer gets the session's desktop and a framebuffer update);
//! * a session that ended (stopped, one-shot closed, QEMU killed) leaves the list, its
//!   link is refused with 404, its record and directory are removed;
//! * darts never counts more sessions than the soak holds or is creating (a freed slot
//!   stays free).

use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

use super::error::{Result, SoakError};
use super::plan::Role;
use super::state::{Shared, Status};
use super::tally::Lost;
use super::viewer;

/// Attempts of a probe before its session counts as lost (the machine may be slow).
const PROBE_TRIES: usize = 3;
const PROBE_PAUSE: Duration = Duration::from_secs(2);
/// How long a killed or closed one-shot session gets to leave the list.
pub const GONE_TIMEOUT: Duration = Duration::from_secs(180);
/// How long darts gets to remove a record and directory once the session left the list.
const FILES_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(500);

struct Expected {
    name: String,
    role: Role,
    oneshot: bool,
    token: String,
}

fn still_live(shared: &Shared, name: &str) -> bool {
    shared
        .sessions()
        .get(name)
        .is_some_and(|t| *t.status.borrow() == Status::Live)
}

/// Checks every live session; returns how many were checked. `when` goes into the
/// report (`after restart-gateway at 120 s`).
pub async fn survivors(shared: &Shared, when: &str) -> usize {
    let expected: Vec<Expected> = shared
        .sessions()
        .iter()
        .filter(|(_, t)| *t.status.borrow() == Status::Live)
        .map(|(name, t)| Expected {
            name: name.clone(),
            role: t.role,
            oneshot: t.oneshot,
            token: t.token.clone(),
        })
        .collect();
    let listed = match list(shared).await {
        Ok(l) => l,
        Err(e) => {
            shared
                .tally()
                .invariant(format!("the API did not list the sessions {when}: {e}"));
            return 0;
        }
    };
    let mut checked = 0;
    for s in expected {
        if !still_live(shared, &s.name) {
            continue; // ended meanwhile, deliberately
        }
        checked += 1;
        let why = if !listed.contains(&s.name) {
            Some("not listed by the API".to_owned())
        } else if s.oneshot {
            None // a probe would use up its single connection
        } else {
            probe(shared, &s.name, &s.token)
                .await
                .err()
                .map(|e| format!("its link no longer reaches its guest: {e}"))
        };
        if let Some(why) = why {
            if still_live(shared, &s.name) {
                super::state::progress(&format!("LOST {} {when}: {why}", s.name));
                shared.tally().lost(Lost {
                    session: s.name,
                    role: s.role,
                    when: when.to_owned(),
                    why,
                });
            }
        }
    }
    checked
}

/// The API's list, retried a few times (a slow machine may miss one timeout).
async fn list(shared: &Shared) -> Result<Vec<String>> {
    let mut last = None;
    for _ in 0..3 {
        match shared.api.list().await {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(PROBE_PAUSE).await;
    }
    Err(last.unwrap_or(SoakError::Timeout("list")))
}

/// Opens a viewer on the session's link: the desktop must be the session's and an
/// update must come.
pub async fn probe(shared: &Shared, name: &str, token: &str) -> Result<()> {
    let mut last = None;
    for attempt in 0..PROBE_TRIES {
        if attempt > 0 {
            tokio::time::sleep(PROBE_PAUSE).await;
        }
        shared.tally().counters.probes += 1;
        match probe_once(shared, name, token).await {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(SoakError::Timeout("probe")))
}

async fn probe_once(shared: &Shared, name: &str, token: &str) -> Result<()> {
    let mut v = viewer::open(shared.api.addr, token).await?;
    let mine = v.desktop.contains(name);
    let desktop = v.desktop.clone();
    let flowed = if mine { v.one_update().await } else { Ok(()) };
    let t = v.close().await;
    {
        let mut tally = shared.tally();
        tally.counters.bytes_down += t.down;
        tally.counters.bytes_up += t.up;
    }
    if !mine {
        return Err(SoakError::Rfb(format!(
            "desktop {desktop:?} is not the session's"
        )));
    }
    flowed
}

/// After a session ended: waits until the API no longer lists it, then checks its link
/// is refused and its files are gone. Returns how long it took to leave the list.
pub async fn gone(
    shared: &Shared,
    name: &str,
    token: Option<&str>,
    timeout: Duration,
) -> std::result::Result<Duration, String> {
    let t0 = Instant::now();
    loop {
        shared.gateway_up().await;
        if let Ok(l) = shared.api.list().await {
            if !l.iter().any(|n| n == name) {
                break;
            }
        }
        if t0.elapsed() > timeout {
            return Err(format!(
                "still listed {:.0} s after it ended",
                timeout.as_secs_f64()
            ));
        }
        tokio::time::sleep(POLL).await;
    }
    let took = t0.elapsed();
    if let Some(token) = token {
        link_refused(shared, token).await?;
    }
    let files = [
        shared
            .state_dir
            .as_ref()
            .map(|d| d.join(format!("{name}.json"))),
        shared.snapshot_dir.as_ref().map(|d| d.join(name)),
    ];
    for path in files.into_iter().flatten() {
        wait_absent(&path).await?;
    }
    Ok(took)
}

/// The link of an ended session must be refused with 404.
async fn link_refused(shared: &Shared, token: &str) -> std::result::Result<(), String> {
    let mut last = String::new();
    for _ in 0..3 {
        shared.gateway_up().await;
        match viewer::open(shared.api.addr, token).await {
            Err(e) if e.is_status(404) => return Ok(()),
            Ok(v) => {
                v.close().await;
                return Err("its link still opens a viewer".into());
            }
            // Connection-level trouble (a restart, a slow machine): try again.
            Err(e @ (SoakError::Io { .. } | SoakError::Timeout(_))) => last = e.to_string(),
            Err(e) => return Err(format!("its link gives {e} instead of 404")),
        }
        tokio::time::sleep(PROBE_PAUSE).await;
    }
    Err(format!("its link could not be tried: {last}"))
}

async fn wait_absent(path: &Path) -> std::result::Result<(), String> {
    let t0 = Instant::now();
    while path.exists() {
        if t0.elapsed() > FILES_TIMEOUT {
            return Err(format!("{} is still there", path.display()));
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// Sessions the soak accounts for: held (whatever their status), being created, and
/// creations whose answer was lost.
fn accounted(shared: &Shared) -> u64 {
    let held = shared.sessions().len() as u64;
    let c = &shared.tally().counters;
    held + c.create_in_flight + c.create_unanswered
}

/// darts must not count more sessions than the soak accounts for (only meaningful when
/// the soak is darts' only user). Counts read before and after the server's figure, so
/// creations and stops in between cannot make a false alarm.
pub async fn no_ghost_sessions(shared: &Shared, when: &str) {
    let before = accounted(shared);
    let server = match shared.api.session_count().await {
        Ok(n) => n,
        Err(e) => {
            shared.error(&e, "status");
            return;
        }
    };
    let ours = before.max(accounted(shared));
    if server > ours {
        shared.tally().invariant(format!(
            "darts counts {server} sessions {when} but the soak holds or creates only {ours}: a slot was not freed"
        ));
    }
}
