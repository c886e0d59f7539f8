//! Would this node take a session now? The same admission rules as a creation, without
//! creating anything: what a peer answers to another node's status request.

use super::manager::Manager;
use crate::limits::{self, Refusal};

/// The host-wide answer for a session of this size.
#[derive(Debug, Clone, PartialEq)]
pub struct Room {
    /// Refusals due to this host's limits (another node might not have them).
    pub refusals: Vec<Refusal>,
    pub sessions: u32,
    pub max_sessions: u32,
    pub load: Option<f64>,
    pub memory_available_mb: Option<u64>,
    pub gpus_free: usize,
}

impl Manager {
    /// Checks the host-wide limits for a session of `cpu` cores and `memory_mb`, with a
    /// GPU if `gpu`. Per-user quotas are not looked at: they are the same on every node.
    pub fn room_for(&self, cpu: u32, memory_mb: u64, gpu: bool) -> Room {
        let config = self.config();
        let usage = self.usage();
        let gpus = crate::gpu::configured(&config, &self.sys_root);
        let in_use: Vec<String> = usage.iter().filter_map(|s| s.gpu.clone()).collect();
        let gpus_free = gpus.iter().filter(|g| !in_use.contains(&g.pci)).count();
        let host = (self.host)();
        let mut refusals = match &host {
            Some(host) => {
                let request = limits::Request {
                    user: String::new(),
                    cpu,
                    memory_mb,
                    gpu,
                };
                limits::check(&config, host, &usage, &request)
                    .err()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(Refusal::needs_fallback)
                    .collect()
            }
            None => vec![],
        };
        if gpu && gpus_free == 0 && !refusals.contains(&Refusal::NoFreeGpu) {
            refusals.push(Refusal::NoFreeGpu);
        }
        Room {
            refusals,
            sessions: u32::try_from(usage.len()).unwrap_or(u32::MAX),
            max_sessions: config.service_max_session_nb,
            load: host.as_ref().map(|h| h.load1 / f64::from(h.ncpu.max(1))),
            memory_available_mb: host.as_ref().map(|h| h.mem_available_mb),
            gpus_free,
        }
    }
}
