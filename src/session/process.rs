//! QEMU processes by pid. darts starts QEMU with `-daemonize`, so a VM is not darts'
//! child and outlives a restart of darts; liveness and signals therefore go by pid, and
//! a pid is trusted only while `/proc/PID/cmdline` still names the session (pids are
//! reused).

use std::path::Path;
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

/// The QEMU processes whose command line names the session directory `dir`: a VM whose
/// pidfile is not written yet (darts stopped while QEMU was still daemonizing) is found
/// this way. Only processes run as `qemu…` count. Blocking (reads `/proc`).
pub fn qemus_of(dir: &Path) -> Vec<u32> {
    let needle = dir.as_os_str().as_encoded_bytes();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let mut args = cmdline.split(|&b| b == 0);
            let program = args.next().unwrap_or_default();
            let name = program.rsplit(|&b| b == b'/').next().unwrap_or_default();
            name.starts_with(b"qemu") && args.any(|a| a.windows(needle.len()).any(|w| w == needle))
        })
        .collect()
}

/// Kills the QEMU processes that name the session directory `dir` and are in no pidfile
/// (darts stopped while QEMU was still daemonizing: the parent may still fork the
/// daemon), until none is left, at most 5 s.
pub async fn stop_unrecorded_qemus(dir: &Path, name: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let d = dir.to_owned();
        let found =
            crate::session::off_workers("looking for the session's QEMU", move || qemus_of(&d))
                .await
                .unwrap_or_default();
        if found.is_empty() {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(session = %name, pids = ?found, "QEMU of an unfinished session still runs");
            return;
        }
        tracing::info!(session = %name, pids = ?found, "stopping the QEMU of an unfinished session");
        for pid in found {
            kill(pid, name);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    use super::*;

    /// A shell waiting on its standard input, run under the name `argv0`, whose command
    /// line ends with `dir`.
    fn waiting(argv0: &str, dir: &Path) -> std::process::Child {
        Command::new("sh")
            .arg0(argv0)
            .args(["-c", "read line", "sh"])
            .arg(dir)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap()
    }

    #[test]
    fn qemus_are_found_by_the_session_directory_they_name() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("darts-abcdefghij12");
        let mut qemu = waiting("qemu-system-x86_64", &dir);
        let mut other = waiting("sh", &dir);
        let mut elsewhere = waiting("qemu-system-x86_64", &scratch.path().join("darts-other"));
        let found = qemus_of(&dir);
        for c in [&mut qemu, &mut other, &mut elsewhere] {
            let _ = c.kill();
            let _ = c.wait();
        }
        assert_eq!(found, vec![qemu.id()]);
        assert!(qemus_of(&dir).is_empty());
    }
}
