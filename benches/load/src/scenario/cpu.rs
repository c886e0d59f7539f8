//! What a measurement window cost in CPU, and who paid: the gateway, the client (this
//! process), the backend, interrupts and softirqs, kernel threads, and any other process
//! on the machine (which means the figures are disturbed and the run should be repeated
//! on a quiet machine).

use std::collections::HashMap;
use std::time::Duration;

use crate::gateway::Running;
use crate::sys::{self, MachineTicks, ProcId};

/// CPU spent over a measurement window, by whom.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    /// Seconds of the gateway's process tree; `None` when direct.
    pub gateway: Option<f64>,
    /// Seconds of this process (the client).
    pub client: f64,
    /// Seconds of the backend process.
    pub backend: f64,
    /// Cores busy on average, machine-wide.
    pub machine_cores: f64,
    /// Of those, cores in interrupts and softirqs (on loopback: much of TCP receive).
    pub irq_cores: f64,
    /// Cores used on average by user-space processes other than these three.
    pub other_cores: f64,
    /// Cores used on average by kernel threads (ksoftirqd, kworkers, RCU).
    pub kthread_cores: f64,
}

/// The processes whose CPU a scenario watches.
#[derive(Debug, Clone, Copy)]
pub struct Watch<'a> {
    pub gw: Option<&'a Running>,
    pub backend_pid: u32,
}

impl Watch<'_> {
    pub(super) fn probe(&self) -> Probe {
        let me = std::process::id();
        let mut ours: Vec<i32> = self.gw.map_or_else(Vec::new, |g| sys::process_tree(g.pid));
        ours.extend([me as i32, self.backend_pid as i32]);
        Probe {
            at: std::time::Instant::now(),
            gateway: self.gw.map(Running::cpu),
            client: sys::process_cpu(me),
            backend: sys::process_cpu(self.backend_pid),
            machine: sys::machine_ticks(),
            all: sys::all_process_ticks(),
            ours,
        }
    }
}

/// CPU readings at one instant.
#[derive(Debug)]
pub(super) struct Probe {
    at: std::time::Instant,
    gateway: Option<Duration>,
    client: Duration,
    backend: Duration,
    machine: Option<MachineTicks>,
    all: HashMap<ProcId, (u64, bool)>,
    ours: Vec<i32>,
}

impl Probe {
    /// What was spent between `self` and the later `end`.
    pub(super) fn until(&self, end: &Probe) -> CpuUse {
        let secs = |a: Duration, b: Duration| b.saturating_sub(a).as_secs_f64();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let (machine_cores, irq_cores) = match (self.machine, end.machine) {
            (Some(a), Some(b)) if b.total > a.total => {
                let span = (b.total - a.total) as f64;
                (
                    (b.busy - a.busy) as f64 / span * cores,
                    (b.irq - a.irq) as f64 / span * cores,
                )
            }
            _ => (0.0, 0.0),
        };
        let wall = end.at.duration_since(self.at).as_secs_f64().max(1e-9);
        let mut ours = self.ours.clone();
        ours.extend_from_slice(&end.ours);
        let (others, kthreads) = sys::others_cpu(&self.all, &end.all, &ours);
        CpuUse {
            gateway: self.gateway.zip(end.gateway).map(|(a, b)| secs(a, b)),
            client: secs(self.client, end.client),
            backend: secs(self.backend, end.backend),
            machine_cores,
            irq_cores,
            other_cores: others.as_secs_f64() / wall,
            kthread_cores: kthreads.as_secs_f64() / wall,
        }
    }
}
