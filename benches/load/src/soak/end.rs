//! The end of a run, once every slot stopped its session: nothing of the soak may be
//! left (no session listed or counted by darts, no record, no session directory, no
//! QEMU). Sessions of an attached darts that existed before the run are left alone.

use std::path::Path;
use std::time::Duration;

use super::service::Service;
use super::state::Shared;

/// How long darts gets, once every session was stopped, to remove the last VMs and files.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// At the end, after every slot stopped its session: nothing of the soak is left.
pub async fn nothing_left(shared: &Shared, service: Option<&tokio::sync::Mutex<Service>>) {
    match shared.api.list().await {
        Ok(mut left) => {
            left.retain(|n| !shared.preexisting.contains(n));
            let unanswered = shared.tally().counters.create_unanswered;
            if left.len() as u64 > unanswered {
                shared.tally().invariant(format!(
                    "{} session(s) still listed after the soak stopped them all: {}",
                    left.len(),
                    left.join(", ")
                ));
            }
            // Orphans of creations whose answer was lost, or leftovers: stop them.
            for name in left {
                if let Err(e) = shared.api.stop(&name).await {
                    shared.error(&e, "stop at the end");
                }
            }
        }
        Err(e) => shared
            .tally()
            .invariant(format!("the API did not list the sessions at the end: {e}")),
    }
    let Some(svc) = service else { return };
    match shared.api.session_count().await {
        Ok(0) => {}
        Ok(n) => shared
            .tally()
            .invariant(format!("darts still counts {n} session(s) at the end")),
        Err(e) => shared.error(&e, "status at the end"),
    }
    let (vms, state, snapshots) = {
        let svc = svc.lock().await;
        (svc.vms(), svc.state_dir(), svc.snapshot_dir())
    };
    let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
    let mut vms = vms;
    loop {
        let records = entries(&state);
        let dirs = entries(&snapshots);
        if vms.is_empty() && records.is_empty() && dirs.is_empty() {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            shared.tally().invariant(format!(
                "left at the end: {} VM process(es), records {records:?}, session directories {dirs:?}",
                vms.len()
            ));
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        vms = svc.lock().await.vms();
    }
}

/// Session records or directories (named `darts-…`) in `dir`.
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("darts-"))
                .collect()
        })
        .unwrap_or_default()
}
