//! One task per running session, owner of its QMP connection (QEMU serves one QMP client
//! per socket). Every way a session ends passes through here, so clean-up runs once:
//! the VM exits (guest power-off, crash, kill), or a stop is asked (user, timer, end of
//! a one-shot connection).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::manager::{lock, Control, Live, Manager, FINISH_WAIT};
use crate::qmp::{Qmp, QmpError};

/// Longest wait for one QMP read while nothing happens; the loop simply waits again.
const IDLE_WAIT: Duration = Duration::from_secs(3600);

pub(super) async fn run(
    mgr: Arc<Manager>,
    live: Arc<Live>,
    mut qmp: Qmp,
    mut control: mpsc::Receiver<Control>,
) {
    let name = lock(&live.record).name.clone();
    let reason = loop {
        tokio::select! {
            _ = mgr.shutdown.cancelled() => {
                // darts is stopping: the VM keeps running and is re-adopted on restart.
                return;
            }
            ev = qmp.next_event(IDLE_WAIT) => match ev {
                Ok(Some(e)) => {
                    tracing::info!(session = %name, event = %e.name, "VM event");
                }
                Ok(None) => {}
                Err(QmpError::Closed) | Err(QmpError::Io(_)) => break "the VM exited",
                Err(e) => {
                    tracing::warn!(session = %name, error = %e, "QMP error; stopping the VM");
                    break stop_vm(&mgr, &live, &mut qmp).await;
                }
            },
            c = control.recv() => match c {
                Some(Control::Stop { reason }) => {
                    tracing::info!(session = %name, reason, "stopping session");
                    stop_vm(&mgr, &live, &mut qmp).await;
                    break reason;
                }
                None => return,
            },
        }
    };
    finish(&mgr, &live, reason).await;
}

/// Power-off within `session_stop_grace`, then quit within half of it, then kill. Each
/// phase's deadline covers its QMP command too: a QEMU that does not answer (stopped,
/// wedged) must not hold the stop for QMP's own command timeout.
async fn stop_vm(mgr: &Manager, live: &Live, qmp: &mut Qmp) -> &'static str {
    let grace = Duration::from_secs(mgr.config().session_stop_grace);
    let (name, pid) = {
        let r = lock(&live.record);
        (r.name.clone(), r.pid)
    };
    let powered_off = async {
        let asked = tokio::time::Instant::now();
        qmp.system_powerdown().await.is_ok()
            && wait_closed(qmp, grace.saturating_sub(asked.elapsed())).await
    };
    if tokio::time::timeout(grace, powered_off).await == Ok(true) {
        return "stopped";
    }
    tracing::info!(session = %name, "guest did not power off; asking QEMU to quit");
    let quit_wait = (grace / 2).max(Duration::from_secs(1));
    let quit = async {
        let asked = tokio::time::Instant::now();
        qmp.quit().await.is_ok()
            && wait_closed(qmp, quit_wait.saturating_sub(asked.elapsed())).await
    };
    if tokio::time::timeout(quit_wait, quit).await == Ok(true) {
        return "stopped";
    }
    if let Some(pid) = pid {
        tracing::warn!(session = %name, pid, "QEMU did not quit; killing it");
        super::process::kill(pid, &name);
    }
    "stopped"
}

/// True when QEMU closed the QMP connection within `wait`.
async fn wait_closed(qmp: &mut Qmp, wait: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        match qmp.next_event(left).await {
            Ok(Some(_)) => continue,
            Ok(None) => return false,
            Err(_) => return true,
        }
    }
}

/// The session is over: make sure QEMU is gone, then remove tokens, files and record.
pub(super) async fn finish(mgr: &Manager, live: &Live, reason: &str) {
    let record = live.record();
    if let Some(pid) = record.pid {
        if !super::process::wait_gone(pid, &record.name, FINISH_WAIT / 2).await {
            super::process::kill(pid, &record.name);
            super::process::wait_gone(pid, &record.name, FINISH_WAIT / 2).await;
        }
    }
    mgr.undo(&record).await;
    lock(&mgr.sessions).remove(&record.name);
    live.ended.cancel();
    tracing::info!(session = %record.name, user = %record.user, reason, "session ended");
    crate::audit::session_ended(&record, reason);
}
