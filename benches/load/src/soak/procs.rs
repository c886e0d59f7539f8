//! What the soak reads from and does to processes: darts' resident memory and open
//! files, whether a pid is still the process it was (its command line names what it
//! should), and signals. Everything goes through `/proc` and `kill(2)`.

use std::fs;
use std::path::Path;

use rustix::process::{kill_process, Pid, Signal};

/// Resident set size of `pid`, in bytes (`VmRSS` of `/proc/PID/status`).
pub fn rss(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Open file descriptors of `pid` (entries of `/proc/PID/fd`).
pub fn fds(pid: u32) -> Option<u64> {
    Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// True while `pid` runs (exists and is not a zombie).
pub fn running(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    !matches!(state, None | Some("Z" | "X"))
}

/// True if `pid`'s command line contains `needle` (a zombie's is empty).
pub fn mentions(pid: u32, needle: &[u8]) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmd| !needle.is_empty() && cmd.windows(needle.len()).any(|w| w == needle))
}

/// Processes other than this one whose command line contains `needle`.
pub fn mentioning(needle: &Path) -> Vec<u32> {
    let needle = needle.as_os_str().as_encoded_bytes();
    let me = std::process::id();
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me && mentions(pid, needle))
        .collect()
}

/// True if `pid`'s program (first word of its command line) is a QEMU.
pub fn is_qemu(pid: u32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmd| {
        let argv0 = cmd.split(|&b| b == 0).next().unwrap_or_default();
        argv0.windows(4).any(|w| w == b"qemu")
    })
}

/// QEMU processes whose command line contains `needle` (a session's name or directory).
pub fn qemus_mentioning(needle: &Path) -> Vec<u32> {
    mentioning(needle)
        .into_iter()
        .filter(|&p| is_qemu(p))
        .collect()
}

/// The QEMU of session `name`: the pid in its record (`dir_cfg/NAME.json`) when the
/// directory is known, else a process whose command line names the session; either way
/// only a process whose command line names the session.
pub fn qemu_of(name: &str, state_dir: Option<&Path>) -> Option<u32> {
    let from_record = state_dir.and_then(|dir| {
        let text = fs::read(dir.join(format!("{name}.json"))).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&text).ok()?;
        u32::try_from(v["pid"].as_u64()?).ok()
    });
    let needle = name.as_bytes();
    match from_record {
        Some(pid) => mentions(pid, needle).then_some(pid),
        None => qemus_mentioning(Path::new(name)).into_iter().next(),
    }
}

/// Sends `sig` to `pid`; false if it could not be sent.
pub fn signal(pid: u32, sig: Signal) -> bool {
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return false;
    };
    kill_process(pid, sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(rss(me).unwrap() > 0);
        assert!(fds(me).unwrap() >= 3);
        assert!(running(me));
        let exe = std::env::current_exe().unwrap();
        let name = exe.file_name().unwrap().to_str().unwrap();
        assert!(mentions(me, name.as_bytes()));
        assert!(!mentions(me, b""));
        assert!(!mentioning(Path::new("no-such-program-xyz-123")).contains(&me));
        assert!(!is_qemu(me));
        assert!(!running(u32::MAX));
        assert_eq!(qemu_of("darts-zzzzzzzzzzzz", None), None);
    }
}
