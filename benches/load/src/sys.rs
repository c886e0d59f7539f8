//! What the tool reads from the kernel: CPU time and memory of a gateway's process tree
//! (`/proc/PID/stat`, `/proc/PID/smaps_rollup`), free memory, the machine's description,
//! and the open-files limit of this process.
//!
//! A gateway may fork (websockify runs one process per connection), so every figure is
//! summed over the process and all its descendants. CPU time includes `cutime`/`cstime`,
//! so children that exited and were reaped inside the tree still count.

use std::collections::HashMap;
use std::fs;
use std::time::Duration;

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// One process as `/proc/PID/stat` shows it.
#[derive(Debug, Clone, Copy)]
struct Stat {
    ppid: i32,
    /// utime + stime, in clock ticks.
    own: u64,
    /// cutime + cstime: reaped children, in clock ticks.
    children: u64,
    /// Clock ticks after boot at which the process started (tells a reused pid apart).
    start: u64,
}

fn read_stat(pid: i32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state); utime is field 14.
    let num = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok());
    Some(Stat {
        ppid: f.get(1)?.parse().ok()?,
        own: num(11)? + num(12)?,
        children: num(13)? + num(14)?,
        start: num(19)?,
    })
}

/// `pid` and all its live descendants.
pub fn process_tree(pid: u32) -> Vec<i32> {
    let root = pid as i32;
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            if let Some(s) = read_stat(p) {
                children.entry(s.ppid).or_default().push(p);
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        if let Some(c) = children.get(&tree[i]) {
            tree.extend_from_slice(c);
        }
        i += 1;
    }
    tree
}

/// A process's identity: its pid and start time.
pub type ProcId = (i32, u64);

/// `pid` and its live descendants with their start times.
pub fn process_tree_ids(pid: u32) -> Vec<ProcId> {
    process_tree(pid)
        .into_iter()
        .filter_map(|p| read_stat(p).map(|s| (p, s.start)))
        .collect()
}

/// True if `id` still names the same live process.
pub fn is_alive(id: ProcId) -> bool {
    read_stat(id.0).is_some_and(|s| s.start == id.1)
}

fn ticks_to_duration(ticks: u64) -> Duration {
    let hz = rustix::param::clock_ticks_per_second().max(1);
    Duration::from_secs_f64(ticks as f64 / hz as f64)
}

/// CPU time (user + system, reaped children included) of `pid`'s process tree.
pub fn tree_cpu(pid: u32) -> Duration {
    let ticks: u64 = process_tree(pid)
        .into_iter()
        .filter_map(read_stat)
        .map(|s| s.own + s.children)
        .sum();
    ticks_to_duration(ticks)
}

/// CPU time (user + system) of one process, without its children.
pub fn process_cpu(pid: u32) -> Duration {
    ticks_to_duration(read_stat(pid as i32).map_or(0, |s| s.own))
}

/// Machine-wide CPU time from `/proc/stat`, in clock ticks summed over all CPUs.
#[derive(Debug, Clone, Copy, Default)]
pub struct MachineTicks {
    /// Everything but idle and iowait.
    pub busy: u64,
    /// Interrupt and softirq time (on loopback, much of the TCP receive path).
    pub irq: u64,
    pub total: u64,
}

pub fn machine_ticks() -> Option<MachineTicks> {
    let text = fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some(MachineTicks {
        busy: total - idle,
        irq: v.get(5).copied().unwrap_or(0) + v.get(6).copied().unwrap_or(0),
        total,
    })
}

/// CPU ticks (utime + stime) of every process, keyed by identity, and whether it is a
/// kernel thread (a child of `kthreadd`, pid 2).
pub fn all_process_ticks() -> HashMap<ProcId, (u64, bool)> {
    let mut out = HashMap::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            if let Some(s) = read_stat(p) {
                out.insert((p, s.start), (s.own, p == 2 || s.ppid == 2));
            }
        }
    }
    out
}

/// CPU time spent between two `all_process_ticks` readings by processes not in `ours`:
/// (user-space processes, kernel threads).
pub fn others_cpu(
    before: &HashMap<ProcId, (u64, bool)>,
    after: &HashMap<ProcId, (u64, bool)>,
    ours: &[i32],
) -> (Duration, Duration) {
    let (mut user, mut kernel) = (0u64, 0u64);
    for (id, &(t, kthread)) in after {
        if ours.contains(&id.0) {
            continue;
        }
        let spent = t.saturating_sub(before.get(id).map_or(0, |b| b.0));
        if kthread {
            kernel += spent;
        } else {
            user += spent;
        }
    }
    (ticks_to_duration(user), ticks_to_duration(kernel))
}

/// Resident and proportional set size of a process tree, in bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    pub rss: u64,
    pub pss: u64,
    pub processes: usize,
}

impl Memory {
    pub fn of_tree(pid: u32) -> Self {
        let mut m = Self::default();
        for p in process_tree(pid) {
            let Ok(text) = fs::read_to_string(format!("/proc/{p}/smaps_rollup")) else {
                continue;
            };
            m.rss += kib_field(&text, "Rss:").unwrap_or(0) * 1024;
            m.pss += kib_field(&text, "Pss:").unwrap_or(0) * 1024;
            m.processes += 1;
        }
        m
    }
}

fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The kernel's estimate of memory available for new allocations, in bytes.
pub fn mem_available() -> Option<u64> {
    let text = fs::read_to_string("/proc/meminfo").ok()?;
    kib_field(&text, "MemAvailable:").map(|k| k * 1024)
}

/// One line describing the machine: CPU model and count, memory, kernel.
pub fn machine() -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| kib_field(&t, "MemTotal:"))
        .map_or(0.0, |k| k as f64 / (1024.0 * 1024.0));
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let os = fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_owned())
        })
        .unwrap_or_default();
    format!(
        "{cpus} × {model}, {mem:.0} GiB, {os}, Linux {}",
        kernel.trim()
    )
}

/// Raises the soft open-files limit to the hard one; returns the limit now in force.
/// Child processes (the backend, websockify) inherit it.
pub fn raise_nofile() -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => limit.maximum,
        Err(_) => limit.current,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_process() {
        let me = std::process::id();
        assert!(process_tree(me).contains(&(me as i32)));
        let m = Memory::of_tree(me);
        assert!(m.rss > 0 && m.pss > 0 && m.processes >= 1);
        assert!(mem_available().unwrap_or(0) > 0);
        // Own time first: this process keeps running between the two readings.
        let own = process_cpu(me);
        assert!(tree_cpu(me) >= own);
        let m = machine_ticks().unwrap();
        assert!(m.busy <= m.total && m.irq <= m.busy && m.total > 0);
        let all = all_process_ticks();
        assert!(all.keys().any(|(p, _)| *p == me as i32));
        assert_eq!(
            others_cpu(&all, &all, &[]),
            (Duration::ZERO, Duration::ZERO)
        );
        assert!(all.iter().any(|(id, &(_, k))| id.0 == 2 && k), "kthreadd");
    }

    #[test]
    fn kib_fields_parse() {
        let t = "Rss:                4096 kB\nPss:                1024 kB\n";
        assert_eq!(kib_field(t, "Rss:"), Some(4096));
        assert_eq!(kib_field(t, "Pss:"), Some(1024));
        assert_eq!(kib_field(t, "Nope:"), None);
    }
}
