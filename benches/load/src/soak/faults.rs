//! The faults, on their schedule, each followed by its checks:
//!
//! * **kill-qemu**: SIGKILL the QEMU of a random live short-lived session (never a
//!   one-shot: its end is already the test of its viewer closing). The session must end
//!   cleanly (gone from the API, link refused, record and directory removed), darts must
//!   free its slot, and every other session must be unaffected.
//! * **restart-gateway**: SIGTERM `darts serve` while no API call is in flight, check the
//!   VMs outlived it, start it again: every session must be re-adopted with its link
//!   still reaching its guest. Viewers cut by the restart reconnect with the same token.

use std::sync::Arc;
use std::time::Duration;

use rustix::process::Signal;
use tokio::sync::Mutex;
use tokio::time::{sleep_until, Instant};

use super::check;
use super::plan::{FaultKind, Role};
use super::procs;
use super::service::Service;
use super::state::{progress, Gateway, Shared, Status};
use super::tally::{FaultRecord, Lost};

/// Runs the schedule until it is done or the run ends.
pub async fn run(shared: Arc<Shared>, service: Option<Arc<Mutex<Service>>>) {
    let mut rng = fastrand::Rng::with_seed(shared.plan.seed.rotate_left(17));
    let mut ending = shared.ending.subscribe();
    let mut off = shared.faults_off.subscribe();
    for (at, kind) in shared.plan.fault_schedule() {
        tokio::select! {
            () = sleep_until(shared.started + at) => {}
            _ = ending.wait_for(|e| *e) => return,
            _ = off.wait_for(|o| *o) => return,
        }
        progress(&format!("{:.0} s: fault {}", shared.elapsed(), kind.name()));
        let record = match (kind, &service) {
            (FaultKind::KillQemu, _) => kill_qemu(&shared, &mut rng).await,
            (FaultKind::RestartGateway, Some(svc)) => restart_gateway(&shared, svc).await,
            (FaultKind::RestartGateway, None) => {
                skipped(&shared, kind, "attached to a running darts: not restarted")
            }
        };
        let victim = record
            .session
            .as_deref()
            .map_or(String::new(), |s| format!(" of {s}"));
        progress(&format!(
            "{:.0} s: {}{victim}: {}",
            shared.elapsed(),
            kind.name(),
            record.outcome
        ));
        shared.tally().faults.push(record);
    }
}

fn record(shared: &Shared, kind: FaultKind, outcome: &str) -> FaultRecord {
    FaultRecord {
        at: shared.elapsed(),
        kind,
        session: None,
        outcome: outcome.into(),
        recovery: None,
        stop: None,
        start: None,
        survivors_checked: 0,
    }
}

fn skipped(shared: &Shared, kind: FaultKind, why: &str) -> FaultRecord {
    if shared.plan.require_faults {
        shared
            .tally()
            .invariant(format!("{} could not be injected: {why}", kind.name()));
    }
    record(shared, kind, &format!("skipped: {why}"))
}

/// Picks a live short-lived session that is not one-shot and marks it killed.
fn pick_victim(shared: &Shared, rng: &mut fastrand::Rng) -> Option<(String, String)> {
    let table = shared.sessions();
    let candidates: Vec<_> = table
        .iter()
        .filter(|(_, t)| t.role == Role::Short && !t.oneshot && *t.status.borrow() == Status::Live)
        .collect();
    if candidates.is_empty() {
        return None;
    }
    let (name, t) = candidates[rng.usize(..candidates.len())];
    t.status.send_replace(Status::Killed);
    Some((name.clone(), t.token.clone()))
}

async fn kill_qemu(shared: &Shared, rng: &mut fastrand::Rng) -> FaultRecord {
    let mut rec = record(shared, FaultKind::KillQemu, "ok");
    // A victim may not be live right now (all being created or stopped): wait a while.
    let deadline = Instant::now() + shared.plan.fault_every.max(Duration::from_secs(30));
    let (name, token) = loop {
        if let Some(v) = pick_victim(shared, rng) {
            break v;
        }
        let off = *shared.faults_off.borrow();
        if off || Instant::now() > deadline || shared.sleep_or_end(Duration::from_secs(1)).await {
            return skipped(
                shared,
                FaultKind::KillQemu,
                "no short-lived session was live",
            );
        }
    };
    rec.at = shared.elapsed();
    rec.session = Some(name.clone());
    let when = format!("after kill-qemu at {:.0} s", rec.at);
    let Some(pid) = procs::qemu_of(&name, shared.state_dir.as_deref()) else {
        shared.set_status(&name, Status::Live);
        rec.outcome = "failed: QEMU's pid not found".into();
        return rec;
    };
    procs::signal(pid, Signal::KILL);
    shared.tally().counters.killed += 1;
    match check::gone(shared, &name, Some(&token), check::GONE_TIMEOUT).await {
        Ok(took) => rec.recovery = Some(took.as_secs_f64()),
        Err(why) => {
            rec.outcome = format!("failed: {why}");
            shared.tally().invariant(format!(
                "{name}, whose QEMU was killed, did not end cleanly: {why}"
            ));
        }
    }
    shared.set_status(&name, Status::Gone);
    if shared.owned {
        check::no_ghost_sessions(shared, &when).await;
    }
    let lost_before = shared.tally().lost.len();
    rec.survivors_checked = check::survivors(shared, &when).await;
    if shared.tally().lost.len() > lost_before {
        rec.outcome = "failed: other sessions lost".into();
    }
    rec
}

async fn restart_gateway(shared: &Shared, service: &Mutex<Service>) -> FaultRecord {
    let mut rec = record(shared, FaultKind::RestartGateway, "ok");
    let lost_before = shared.tally().lost.len();
    // No creation or stop may be cut in the middle: wait for those in flight.
    let gate = shared.gate.write().await;
    rec.at = shared.elapsed();
    let when = format!("after restart-gateway at {:.0} s", rec.at);
    // A one-shot session ends when its connection closes, and a restart closes it.
    let expected: Vec<(String, Role)> = {
        let table = shared.sessions();
        for t in table.values().filter(|t| t.oneshot) {
            t.status.send_if_modified(|s| {
                let live = *s == Status::Live;
                if live {
                    *s = Status::Exempt;
                }
                live
            });
        }
        table
            .iter()
            .filter(|(_, t)| *t.status.borrow() == Status::Live)
            .map(|(n, t)| (n.clone(), t.role))
            .collect()
    };
    let before = shared.gateway.send_replace(Gateway::Restarting);
    let generation = match before {
        Gateway::Up(n) => n + 1,
        Gateway::Restarting => 1,
    };
    let t0 = Instant::now();
    let mut svc = service.lock().await;
    let (stopped_in, graceful) = svc.stop().await;
    rec.stop = Some(stopped_in.as_secs_f64());
    if !graceful {
        shared.tally().invariant(format!(
            "darts serve did not exit within {:.0} s of SIGTERM {when}",
            stopped_in.as_secs_f64()
        ));
    }
    // QEMU outlives darts.
    for (name, role) in &expected {
        if procs::qemu_of(name, shared.state_dir.as_deref()).is_none() {
            shared.tally().lost(Lost {
                session: name.clone(),
                role: *role,
                when: when.clone(),
                why: "its QEMU did not outlive darts".into(),
            });
        }
    }
    match svc.launch().await {
        Ok(took) => rec.start = Some(took.as_secs_f64()),
        Err(e) => {
            drop(svc);
            rec.outcome = format!("failed: {e}");
            shared
                .tally()
                .invariant(format!("darts did not start again {when}: {e}"));
            shared.ending.send_replace(true);
            return rec;
        }
    }
    drop(svc);
    if let Err(e) = shared.api.login().await {
        shared.error(&e, "login after the restart");
    }
    rec.recovery = Some(t0.elapsed().as_secs_f64());
    shared.gateway.send_replace(Gateway::Up(generation));
    drop(gate);
    rec.survivors_checked = check::survivors(shared, &when).await;
    check::no_ghost_sessions(shared, &when).await;
    if shared.tally().lost.len() > lost_before {
        rec.outcome = "failed: sessions lost".into();
    }
    rec
}
