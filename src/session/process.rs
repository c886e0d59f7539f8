//! QEMU processes by pid. darts starts QEMU with `-daemonize`, so a VM is not darts'
//! child and outlives a restart of darts; liveness and signals therefore go by pid, and
//! a pid is trusted only while `/proc/PID/cmdline` still names the session (pids are
//! reused).

use std::time::Duration;

use rustix::process::{kill_process, Pid, Signal};

/// True when `pid` is a live process whose command line contains `session`.
pub fn is_session_process(pid: u32, session: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    // A zombie has an empty cmdline: it is no longer running.
    let needle = session.as_bytes();
    !cmdline.is_empty() && cmdline.windows(needle.len()).any(|w| w == needle)
}

/// Sends SIGKILL to the session's process if it is still the session's.
pub fn kill(pid: u32, session: &str) {
    if !is_session_process(pid, session) {
        return;
    }
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return;
    };
    if let Err(e) = kill_process(pid, Signal::KILL) {
        tracing::warn!(session, error = %e, "cannot kill QEMU");
    }
}

/// Waits until the session's process is gone, at most `wait`. True when it is gone.
pub async fn wait_gone(pid: u32, session: &str, wait: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if !is_session_process(pid, session) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
