//! One slot of the run, holding at most one session at a time.
//!
//! * long-lived: create one session, then until the end: open the viewers, stream,
//!   idle, close them (every round after the first is a reconnection on the same links);
//! * short-lived: over and over: create, view (stream, idle), reconnect and stream again,
//!   stop; every Nth session is one-shot: one viewer, and closing it must end the
//!   session.
//!
//! A viewer cut by a gateway restart waits for the gateway and reconnects with the same
//! token; one cut because its session's QEMU was killed stops quietly; any other failure
//! is counted by kind.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::check;
use super::plan::{jitter, Role};
use super::state::{progress, Gateway, Halt, Shared, Status, Tracked};
use super::tally::Lost;
use super::viewer::{self, Traffic, Viewer};

/// Pause after a failed creation before the next try.
const RETRY_PAUSE: Duration = Duration::from_secs(5);

/// A session this slot holds.
#[derive(Clone)]
struct Held {
    name: String,
    token: String,
    view_token: Option<String>,
    role: Role,
    oneshot: bool,
    status: Arc<watch::Sender<Status>>,
}

impl Held {
    fn status(&self) -> Status {
        *self.status.borrow()
    }
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Stream(Duration),
    Idle(Duration),
}

impl Step {
    fn duration(self) -> Duration {
        match self {
            Self::Stream(d) | Self::Idle(d) => d,
        }
    }
}

pub async fn run(shared: Arc<Shared>, index: usize, role: Role) {
    let seed = shared.plan.seed ^ (index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut rng = fastrand::Rng::with_seed(seed);
    if shared.sleep_or_end(shared.plan.start_delay(index)).await {
        return;
    }
    match role {
        Role::Long => long_lived(&shared, &mut rng).await,
        Role::Short => short_lived(&shared, &mut rng).await,
    }
}

async fn long_lived(shared: &Arc<Shared>, rng: &mut fastrand::Rng) {
    let s = loop {
        if let Some(s) = create(shared, Role::Long, false).await {
            break s;
        }
        if shared.sleep_or_end(RETRY_PAUSE).await {
            return;
        }
    };
    let mut reconnect = false;
    while !shared.is_ending() && s.status() == Status::Live {
        let steps = [
            Step::Stream(jitter(shared.plan.stream, rng)),
            Step::Idle(jitter(shared.plan.idle, rng)),
        ];
        if view(shared, &s, &steps, reconnect).await == 0 && shared.sleep_or_end(RETRY_PAUSE).await
        {
            break;
        }
        reconnect = true;
    }
    finish(shared, &s).await;
}

async fn short_lived(shared: &Arc<Shared>, rng: &mut fastrand::Rng) {
    let mut cycle = 0;
    while !shared.is_ending() {
        let oneshot = shared.plan.is_oneshot(cycle);
        cycle += 1;
        let Some(s) = create(shared, Role::Short, oneshot).await else {
            if shared.sleep_or_end(RETRY_PAUSE).await {
                return;
            }
            continue;
        };
        let stream = jitter(shared.plan.stream, rng);
        let steps = [
            Step::Stream(stream),
            Step::Idle(jitter(shared.plan.idle, rng)),
        ];
        let opened = view(shared, &s, &steps, false).await;
        if s.oneshot {
            end_oneshot(shared, &s, opened > 0).await;
            continue;
        }
        if s.status() == Status::Live && !shared.is_ending() {
            view(shared, &s, &[Step::Stream(stream / 2)], true).await;
        }
        finish(shared, &s).await;
    }
}

/// Creates a session and starts tracking it.
async fn create(shared: &Shared, role: Role, oneshot: bool) -> Option<Held> {
    let _gate = shared.gate.read().await;
    if shared.is_ending() {
        return None;
    }
    {
        let mut t = shared.tally();
        t.counters.create_attempts += 1;
        t.counters.create_in_flight += 1;
    }
    let result = shared.api.create(oneshot).await;
    let held = match result {
        Ok(c) => {
            let status = Arc::new(watch::Sender::new(Status::Live));
            shared.sessions().insert(
                c.name.clone(),
                Tracked {
                    role,
                    oneshot,
                    token: c.token.clone(),
                    status: status.clone(),
                },
            );
            {
                let mut t = shared.tally();
                t.counters.created += 1;
                t.counters.created_oneshot += u64::from(oneshot);
                t.session_held();
            }
            progress(&format!(
                "{:.0} s: created {} ({role:?}{})",
                shared.elapsed(),
                c.name,
                if oneshot { ", one-shot" } else { "" }
            ));
            Some(Held {
                name: c.name,
                token: c.token,
                view_token: c.view_token,
                role,
                oneshot,
                status,
            })
        }
        Err(e) => {
            if matches!(
                e,
                super::error::SoakError::Timeout(_) | super::error::SoakError::Http { .. }
            ) {
                // darts may still make it: the soak cannot know its name.
                shared.tally().counters.create_unanswered += 1;
            }
            shared.error(&e, "create");
            None
        }
    };
    shared.tally().counters.create_in_flight -= 1;
    held
}

/// Stops tracking a session.
fn release(shared: &Shared, name: &str) {
    if shared.sessions().remove(name).is_some() {
        shared.tally().session_released();
    }
}

/// Runs `steps` on every viewer of the session at once; returns how many viewers opened.
async fn view(shared: &Arc<Shared>, s: &Held, steps: &[Step], reconnect: bool) -> u64 {
    let n = if s.oneshot { 1 } else { shared.plan.viewers };
    let mut set = JoinSet::new();
    for i in 0..n {
        let token = match (&s.view_token, i) {
            (Some(view), i) if i > 0 => view.clone(),
            _ => s.token.clone(),
        };
        set.spawn(drive_viewer(
            shared.clone(),
            s.clone(),
            token,
            steps.to_vec(),
            reconnect,
        ));
    }
    let mut opened = 0;
    while let Some(r) = set.join_next().await {
        opened += r.unwrap_or(0);
    }
    opened
}

fn account(shared: &Shared, t: Traffic) {
    let mut tally = shared.tally();
    tally.counters.bytes_down += t.down;
    tally.counters.bytes_up += t.up;
    tally.counters.updates += t.updates;
}

/// One viewer through its steps, reconnecting after a restart. Returns the number of
/// times it opened.
async fn drive_viewer(
    shared: Arc<Shared>,
    s: Held,
    token: String,
    steps: Vec<Step>,
    mut reconnect: bool,
) -> u64 {
    let mut halt = Halt::new(&shared, &s.status);
    let context = format!("viewer of {}", s.name);
    let mut opened = 0;
    let mut after_restart = false;
    let mut step = 0;
    let mut step_end: Option<Instant> = None;
    loop {
        let generation = shared.gateway_up().await;
        if halt.is_set() {
            return opened;
        }
        let attempt = tokio::select! {
            r = viewer::open(shared.api.addr, &token) => r,
            () = halt.wait() => return opened,
        };
        let mut v = match attempt {
            Ok(v) => v,
            Err(_) if restarted_since(&shared, generation) => continue,
            Err(_) if halt.is_set() => return opened,
            Err(e) => {
                shared.error(&e, &context);
                return opened;
            }
        };
        opened += 1;
        {
            let mut t = shared.tally();
            t.counters.viewers_opened += 1;
            t.counters.reconnections += u64::from(reconnect);
            t.counters.restart_reconnections += u64::from(after_restart);
        }
        reconnect = true;
        let result = run_steps(&mut v, &steps, &mut step, &mut step_end, &mut halt).await;
        match result {
            Ok(()) => {
                account(&shared, v.close().await);
                return opened;
            }
            Err(e) => {
                account(&shared, v.traffic());
                drop(v);
                if restarted_since(&shared, generation) {
                    shared.tally().counters.cut_by_restart += 1;
                    after_restart = true;
                    continue;
                }
                if !halt.is_set() {
                    shared.error(&e, &context);
                }
                return opened;
            }
        }
    }
}

/// Runs the steps from `step` on; a halt ends them early without error.
async fn run_steps(
    v: &mut Viewer,
    steps: &[Step],
    step: &mut usize,
    step_end: &mut Option<Instant>,
    halt: &mut Halt,
) -> super::error::Result<()> {
    while let Some(&current) = steps.get(*step) {
        let end = *step_end.get_or_insert_with(|| Instant::now() + current.duration());
        let r = tokio::select! {
            r = async {
                match current {
                    Step::Stream(_) => v.stream(end).await,
                    Step::Idle(_) => v.idle(end).await,
                }
            } => r,
            () = halt.wait() => return Ok(()),
        };
        r?;
        *step += 1;
        *step_end = None;
    }
    Ok(())
}

fn restarted_since(shared: &Shared, generation: u64) -> bool {
    *shared.gateway.borrow() != Gateway::Up(generation)
}

/// Stops a session the slot is done with (or, if its QEMU was killed, waits for the
/// fault's checks), then stops tracking it.
async fn finish(shared: &Shared, s: &Held) {
    if s.status() == Status::Killed {
        let mut rx = s.status.subscribe();
        let wait = rx.wait_for(|st| *st == Status::Gone);
        let _ = tokio::time::timeout(check::GONE_TIMEOUT * 2, wait).await;
        release(shared, &s.name);
        return;
    }
    shared.set_status(&s.name, Status::Ending);
    let mut result = Err(super::error::SoakError::Timeout("stop"));
    for _ in 0..3 {
        shared.gateway_up().await;
        let _gate = shared.gate.read().await;
        result = shared.api.stop(&s.name).await;
        match &result {
            Ok(_) | Err(super::error::SoakError::Refused { .. }) => break,
            Err(e) => shared.error(e, "stop"),
        }
    }
    match result {
        Ok(true) => {
            if let Err(why) =
                check::gone(shared, &s.name, Some(&s.token), Duration::from_secs(60)).await
            {
                shared
                    .tally()
                    .invariant(format!("{} was stopped but {why}", s.name));
            }
            shared.tally().counters.stopped += 1;
        }
        // A one-shot session may end by itself at any time.
        Ok(false) if s.oneshot => {}
        Ok(false) => shared.tally().lost(Lost {
            session: s.name.clone(),
            role: s.role,
            when: format!("when stopped at {:.0} s", shared.elapsed()),
            why: "darts no longer knew it".into(),
        }),
        Err(e) => shared.error(&e, "stop"),
    }
    release(shared, &s.name);
}

/// A one-shot session after its viewer closed: it must end by itself. One whose viewer
/// a restart cut may have ended or not; one whose viewer never opened is stopped.
async fn end_oneshot(shared: &Shared, s: &Held, viewer_opened: bool) {
    if s.status() == Status::Exempt {
        shared.gateway_up().await;
        let listed = shared.api.list().await.is_ok_and(|l| l.contains(&s.name));
        {
            let c = &mut shared.tally().counters;
            if listed {
                c.oneshot_cut_survived += 1;
            } else {
                c.oneshot_cut_ended += 1;
            }
        }
        if listed {
            finish(shared, s).await;
        } else {
            release(shared, &s.name);
        }
        return;
    }
    if !viewer_opened {
        finish(shared, s).await;
        return;
    }
    shared.set_status(&s.name, Status::Ending);
    match check::gone(shared, &s.name, Some(&s.token), check::GONE_TIMEOUT).await {
        Ok(_) => {
            shared.tally().counters.oneshot_ended += 1;
            release(shared, &s.name);
        }
        Err(why) => {
            shared.tally().invariant(format!(
                "one-shot {} did not end cleanly after its viewer closed: {why}",
                s.name
            ));
            finish(shared, s).await;
        }
    }
}
