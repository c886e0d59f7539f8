//! Admission rules for a new session: the original's resource limits (same options, same
//! messages), without its off-by-one. A limit of N allows N sessions, and the per-user
//! fractions count the session being requested, not only the ones already running —
//! except for a user's first session, which the shares never refuse: on a small host one
//! core is already more than the default 0.3 share, and the host-wide rules (free CPU,
//! free memory, no more than the host has) still apply to it.
//!
//! Every rule is evaluated, so the user sees every reason at once, as in the original.

use std::fmt;

use crate::config::Config;
use crate::host::HostResources;

/// What a user asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub user: String,
    pub cpu: u32,
    pub memory_mb: u64,
    pub gpu: bool,
}

/// A session that is running now. Only live sessions are passed in: a VM that has
/// died no longer counts against anybody (the original counted them until expiry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSession {
    pub user: String,
    pub cpu: u32,
    pub memory_mb: u64,
    /// PCI address of the GPU given to the session.
    pub gpu: Option<String>,
}

/// Why a session cannot start here. `Display` gives the text shown to the user.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// Fewer than one core asked for.
    InvalidCpu { requested: u32 },
    /// No memory asked for.
    InvalidMemory,
    /// More cores than the host has.
    CpuAboveHost { requested: u32, ncpu: u32 },
    /// More memory than the host has.
    MemoryAboveHost { requested_mb: u64, total_mb: u64 },
    /// `service_max_session_nb` reached.
    TooManySessions { active: u32, max: u32 },
    /// `service_max_load` (a): fewer idle cores than requested.
    NotEnoughFreeCpu {
        requested: u32,
        ncpu: u32,
        load1: f64,
    },
    /// `service_max_load` (b): load per core above the limit.
    ServerLoad { load1: f64, ncpu: u32, max: f64 },
    /// Less available memory than requested.
    NotEnoughFreeMemory {
        available_mb: u64,
        requested_mb: u64,
    },
    /// The machine asked for does not exist.
    UnknownMachine { machine: String },
    /// `service_max_session_nb_per_user` reached.
    TooManyUserSessions { sessions: u32, max: u32 },
    /// `service_max_cpu_fraction_nb_per_user`: `cpus` includes the request.
    TooManyUserCpus {
        cpus: u32,
        ncpu: u32,
        max_fraction: f64,
    },
    /// `service_max_mem_fraction_nb_per_user`: `memory_mb` includes the request.
    TooMuchUserMemory {
        memory_mb: u64,
        available_mb: u64,
        max_fraction: f64,
    },
    /// `service_max_gpu_nb_per_user`: `gpus` includes the request.
    TooManyUserGpus { gpus: u32, max: u32 },
    /// A GPU was asked for and none is free.
    NoFreeGpu,
}

const MANAGE_HINT: &str =
    "Please use [Manage sessions] to clear or reconnect to some already active sessions.";

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidCpu { requested } => {
                write!(f, "Invalid number of CPUs ({requested}): at least 1 is needed.")
            }
            Self::InvalidMemory => write!(f, "Invalid memory size: more than 0 is needed."),
            Self::CpuAboveHost { requested, ncpu } => write!(
                f,
                "Too many CPUs requested ({requested}): this server has {ncpu}."
            ),
            Self::MemoryAboveHost {
                requested_mb,
                total_mb,
            } => write!(
                f,
                "Too much memory requested ({requested_mb} MB): this server has {total_mb} MB."
            ),
            Self::TooManySessions { active, max } => write!(
                f,
                "Too many active sessions {active}. Max {max}. Try again later."
            ),
            Self::NotEnoughFreeCpu { ncpu, .. } => {
                write!(f, "Not enough free CPU's (out of {ncpu}). Try again later.")
            }
            Self::ServerLoad { .. } => write!(f, "Server load exceeded. Try again later."),
            // The original printed this figure with a "kB" label; it is MB here.
            Self::NotEnoughFreeMemory {
                available_mb,
                requested_mb,
            } => write!(
                f,
                "Not enough free memory ({available_mb} MB), request {requested_mb} MB. Try again later."
            ),
            Self::UnknownMachine { machine } => {
                write!(f, "Can not find virtual machine {machine}.")
            }
            Self::TooManyUserSessions { sessions, max } => write!(
                f,
                "Too many opened sessions ({sessions}) for user, max {max}. {MANAGE_HINT}"
            ),
            Self::TooManyUserCpus {
                cpus, max_fraction, ..
            } => write!(
                f,
                "Too many used CPUs ({cpus}) for user, max {max_fraction} fraction. {MANAGE_HINT}"
            ),
            Self::TooMuchUserMemory {
                memory_mb,
                available_mb,
                max_fraction,
            } => write!(
                f,
                "Too much memory ({memory_mb} / {available_mb}) for user, max {max_fraction} fraction. {MANAGE_HINT}"
            ),
            Self::TooManyUserGpus { gpus, max } => {
                write!(f, "Too many GPU ({gpus}) for user, max ({max}).")
            }
            Self::NoFreeGpu => write!(f, "Can not find a free GPU as requested. Try again without."),
        }
    }
}

impl Refusal {
    /// Whether another server (`fallback_servers`) might accept the request: true when
    /// this host lacks room, false when the request or the user's quota is the problem
    /// (every server would say the same) or the machine does not exist.
    pub fn needs_fallback(&self) -> bool {
        match self {
            Self::CpuAboveHost { .. }
            | Self::MemoryAboveHost { .. }
            | Self::TooManySessions { .. }
            | Self::NotEnoughFreeCpu { .. }
            | Self::ServerLoad { .. }
            | Self::NotEnoughFreeMemory { .. }
            | Self::NoFreeGpu => true,
            Self::InvalidCpu { .. }
            | Self::InvalidMemory
            | Self::UnknownMachine { .. }
            | Self::TooManyUserSessions { .. }
            | Self::TooManyUserCpus { .. }
            | Self::TooMuchUserMemory { .. }
            | Self::TooManyUserGpus { .. } => false,
        }
    }

    /// A stable identifier for the JSON API.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidCpu { .. } => "invalid_cpu",
            Self::InvalidMemory => "invalid_memory",
            Self::CpuAboveHost { .. } => "cpu_above_host",
            Self::MemoryAboveHost { .. } => "memory_above_host",
            Self::TooManySessions { .. } => "too_many_sessions",
            Self::NotEnoughFreeCpu { .. } => "not_enough_free_cpu",
            Self::ServerLoad { .. } => "server_load",
            Self::NotEnoughFreeMemory { .. } => "not_enough_free_memory",
            Self::UnknownMachine { .. } => "unknown_machine",
            Self::TooManyUserSessions { .. } => "too_many_user_sessions",
            Self::TooManyUserCpus { .. } => "too_many_user_cpus",
            Self::TooMuchUserMemory { .. } => "too_much_user_memory",
            Self::TooManyUserGpus { .. } => "too_many_user_gpus",
            Self::NoFreeGpu => "no_free_gpu",
        }
    }
}

/// A fraction option is active only strictly between 0 and 1, as in the original.
fn active_fraction(value: f64) -> Option<f64> {
    (value > 0.0 && value < 1.0).then_some(value)
}

fn saturating_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Evaluates every rule for `req` against the host and the live sessions. A limit set
/// to 0 (a fraction outside (0, 1)) is off.
pub fn check(
    config: &Config,
    host: &HostResources,
    live: &[LiveSession],
    req: &Request,
) -> Result<(), Vec<Refusal>> {
    let mut refusals = Vec::new();
    let ncpu = host.ncpu.max(1);

    // The request itself.
    if req.cpu < 1 {
        refusals.push(Refusal::InvalidCpu { requested: req.cpu });
    } else if req.cpu > ncpu {
        refusals.push(Refusal::CpuAboveHost {
            requested: req.cpu,
            ncpu,
        });
    }
    if req.memory_mb == 0 {
        refusals.push(Refusal::InvalidMemory);
    } else if req.memory_mb > host.mem_total_mb {
        refusals.push(Refusal::MemoryAboveHost {
            requested_mb: req.memory_mb,
            total_mb: host.mem_total_mb,
        });
    }

    // Whole server. The new session would be number `active + 1`.
    let active = saturating_u32(live.len());
    let max = config.service_max_session_nb;
    if max > 0 && active >= max {
        refusals.push(Refusal::TooManySessions { active, max });
    }
    if let Some(max_load) = active_fraction(config.service_max_load) {
        if f64::from(ncpu) - host.load1 < f64::from(req.cpu) {
            refusals.push(Refusal::NotEnoughFreeCpu {
                requested: req.cpu,
                ncpu,
                load1: host.load1,
            });
        }
        if host.load1 / f64::from(ncpu) > max_load {
            refusals.push(Refusal::ServerLoad {
                load1: host.load1,
                ncpu,
                max: max_load,
            });
        }
    }
    // The original ties the free-memory test to the per-user memory fraction being on,
    // which lets an operator who relies on overcommit turn both off at once.
    let mem_fraction = active_fraction(config.service_max_mem_fraction_nb_per_user);
    if mem_fraction.is_some() && host.mem_available_mb < req.memory_mb {
        refusals.push(Refusal::NotEnoughFreeMemory {
            available_mb: host.mem_available_mb,
            requested_mb: req.memory_mb,
        });
    }

    // The user's share. Each total below includes the request, so a limit of N sessions,
    // cores or GPUs is a limit on what the user holds once this session runs.
    let mine: Vec<&LiveSession> = live.iter().filter(|s| s.user == req.user).collect();
    let sessions = saturating_u32(mine.len());
    let max = config.service_max_session_nb_per_user;
    if max > 0 && sessions >= max {
        refusals.push(Refusal::TooManyUserSessions { sessions, max });
    }
    let first = mine.is_empty();
    if let Some(max_fraction) =
        active_fraction(config.service_max_cpu_fraction_nb_per_user).filter(|_| !first)
    {
        let cpus = mine
            .iter()
            .fold(req.cpu, |sum, s| sum.saturating_add(s.cpu));
        if f64::from(cpus) / f64::from(ncpu) > max_fraction {
            refusals.push(Refusal::TooManyUserCpus {
                cpus,
                ncpu,
                max_fraction,
            });
        }
    }
    if let Some(max_fraction) = mem_fraction.filter(|_| !first) {
        let memory_mb = mine
            .iter()
            .fold(req.memory_mb, |sum, s| sum.saturating_add(s.memory_mb));
        // Against available memory, as the original: the share of what is left.
        if memory_mb as f64 / host.mem_available_mb as f64 > max_fraction {
            refusals.push(Refusal::TooMuchUserMemory {
                memory_mb,
                available_mb: host.mem_available_mb,
                max_fraction,
            });
        }
    }
    let max = config.service_max_gpu_nb_per_user;
    if req.gpu && max > 0 {
        let gpus = saturating_u32(mine.iter().filter(|s| s.gpu.is_some()).count()) + 1;
        if gpus > max {
            refusals.push(Refusal::TooManyUserGpus { gpus, max });
        }
    }

    if refusals.is_empty() {
        Ok(())
    } else {
        tracing::info!(
            user = %req.user,
            cpu = req.cpu,
            memory_mb = req.memory_mb,
            gpu = req.gpu,
            refusals = ?refusals.iter().map(Refusal::code).collect::<Vec<_>>(),
            "session refused by resource limits"
        );
        Err(refusals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every rule off: each test turns on the one it checks.
    fn all_off() -> Config {
        Config {
            service_max_session_nb: 0,
            service_max_session_nb_per_user: 0,
            service_max_load: 0.0,
            service_max_cpu_fraction_nb_per_user: 0.0,
            service_max_mem_fraction_nb_per_user: 0.0,
            service_max_gpu_nb_per_user: 0,
            ..Config::default()
        }
    }

    fn host() -> HostResources {
        HostResources {
            ncpu: 16,
            load1: 0.0,
            mem_total_mb: 64_000,
            mem_available_mb: 60_000,
        }
    }

    fn req(user: &str, cpu: u32, memory_mb: u64) -> Request {
        Request {
            user: user.into(),
            cpu,
            memory_mb,
            gpu: false,
        }
    }

    fn session(user: &str, cpu: u32, memory_mb: u64) -> LiveSession {
        LiveSession {
            user: user.into(),
            cpu,
            memory_mb,
            gpu: None,
        }
    }

    fn codes(r: Result<(), Vec<Refusal>>) -> Vec<&'static str> {
        r.err()
            .unwrap_or_default()
            .iter()
            .map(Refusal::code)
            .collect()
    }

    #[test]
    fn defaults_admit_a_first_default_session() {
        let c = Config::default();
        assert_eq!(check(&c, &host(), &[], &req("ann", 1, 4096)), Ok(()));
    }

    #[test]
    fn session_total_at_its_boundary() {
        let c = Config {
            service_max_session_nb: 3,
            ..all_off()
        };
        let others = |n| vec![session("bob", 1, 1000); n];
        assert_eq!(check(&c, &host(), &others(2), &req("ann", 1, 1000)), Ok(()));
        let refused = check(&c, &host(), &others(3), &req("ann", 1, 1000)).unwrap_err();
        assert_eq!(
            refused,
            vec![Refusal::TooManySessions { active: 3, max: 3 }]
        );
        assert_eq!(
            refused[0].to_string(),
            "Too many active sessions 3. Max 3. Try again later."
        );
        assert_eq!(
            codes(check(&c, &host(), &others(4), &req("ann", 1, 1000))),
            ["too_many_sessions"]
        );
        let off = all_off();
        assert_eq!(
            check(&off, &host(), &others(50), &req("ann", 1, 1000)),
            Ok(())
        );
    }

    #[test]
    fn free_cpus_at_their_boundary() {
        let c = Config {
            service_max_load: 0.99,
            ..all_off()
        };
        let loaded = |load1| HostResources { load1, ..host() };
        // 16 cores, load 12: 4 idle.
        assert_eq!(check(&c, &loaded(12.0), &[], &req("ann", 3, 1000)), Ok(()));
        assert_eq!(check(&c, &loaded(12.0), &[], &req("ann", 4, 1000)), Ok(()));
        let refused = check(&c, &loaded(12.0), &[], &req("ann", 5, 1000)).unwrap_err();
        assert_eq!(
            refused,
            vec![Refusal::NotEnoughFreeCpu {
                requested: 5,
                ncpu: 16,
                load1: 12.0
            }]
        );
        assert_eq!(
            refused[0].to_string(),
            "Not enough free CPU's (out of 16). Try again later."
        );
    }

    #[test]
    fn load_per_core_at_its_boundary() {
        let c = Config {
            service_max_load: 0.5,
            ..all_off()
        };
        let loaded = |load1| HostResources { load1, ..host() };
        assert_eq!(check(&c, &loaded(7.9), &[], &req("ann", 1, 1000)), Ok(()));
        assert_eq!(check(&c, &loaded(8.0), &[], &req("ann", 1, 1000)), Ok(()));
        let refused = check(&c, &loaded(8.1), &[], &req("ann", 1, 1000)).unwrap_err();
        assert_eq!(refused[0].code(), "server_load");
        assert_eq!(
            refused[0].to_string(),
            "Server load exceeded. Try again later."
        );
    }

    #[test]
    fn load_rules_are_off_outside_zero_one() {
        let busy = HostResources {
            load1: 15.5,
            ..host()
        };
        for max in [0.0, 1.0, 1.5, -0.2] {
            let c = Config {
                service_max_load: max,
                ..all_off()
            };
            assert_eq!(check(&c, &busy, &[], &req("ann", 8, 1000)), Ok(()), "{max}");
        }
    }

    #[test]
    fn free_memory_at_its_boundary_and_tied_to_the_memory_fraction() {
        // The per-user share is on as well (the two are tied), so look for this rule's code.
        let c = Config {
            service_max_mem_fraction_nb_per_user: 0.9,
            ..all_off()
        };
        let h = HostResources {
            mem_available_mb: 8000,
            ..host()
        };
        let free_memory_refused =
            |mb| codes(check(&c, &h, &[], &req("ann", 1, mb))).contains(&"not_enough_free_memory");
        assert!(!free_memory_refused(7999));
        assert!(!free_memory_refused(8000));
        assert!(free_memory_refused(8001));
        let refused = check(&c, &h, &[], &req("ann", 1, 8001)).unwrap_err();
        assert_eq!(
            refused[0],
            Refusal::NotEnoughFreeMemory {
                available_mb: 8000,
                requested_mb: 8001
            }
        );
        assert_eq!(
            refused[0].to_string(),
            "Not enough free memory (8000 MB), request 8001 MB. Try again later."
        );
        // With the fraction off, overcommit is the operator's choice.
        assert_eq!(check(&all_off(), &h, &[], &req("ann", 1, 8001)), Ok(()));
    }

    #[test]
    fn per_user_sessions_at_their_boundary() {
        let c = Config {
            service_max_session_nb_per_user: 2,
            ..all_off()
        };
        let mut live = vec![session("bob", 1, 1000); 5];
        live.push(session("ann", 1, 1000));
        assert_eq!(check(&c, &host(), &live, &req("ann", 1, 1000)), Ok(()));
        live.push(session("ann", 1, 1000));
        let refused = check(&c, &host(), &live, &req("ann", 1, 1000)).unwrap_err();
        assert_eq!(
            refused,
            vec![Refusal::TooManyUserSessions {
                sessions: 2,
                max: 2
            }]
        );
        assert!(refused[0].to_string().starts_with(
            "Too many opened sessions (2) for user, max 2. Please use [Manage sessions]"
        ));
        live.push(session("ann", 1, 1000));
        assert_eq!(
            codes(check(&c, &host(), &live, &req("ann", 1, 1000))),
            ["too_many_user_sessions"]
        );
        // Others' sessions do not count.
        assert_eq!(check(&c, &host(), &live, &req("carl", 1, 1000)), Ok(()));
    }

    #[test]
    fn per_user_cpus_count_the_request() {
        let c = Config {
            service_max_cpu_fraction_nb_per_user: 0.25,
            ..all_off()
        };
        // 25 % of 16 cores = 4, the request included.
        let live = [session("ann", 2, 1000), session("bob", 8, 1000)];
        assert_eq!(check(&c, &host(), &live, &req("ann", 1, 1000)), Ok(()));
        assert_eq!(check(&c, &host(), &live, &req("ann", 2, 1000)), Ok(()));
        let refused = check(&c, &host(), &live, &req("ann", 3, 1000)).unwrap_err();
        assert_eq!(
            refused,
            vec![Refusal::TooManyUserCpus {
                cpus: 5,
                ncpu: 16,
                max_fraction: 0.25
            }]
        );
        assert!(refused[0]
            .to_string()
            .starts_with("Too many used CPUs (5) for user, max 0.25 fraction."));
        // A user's first session is not refused by the share (host rules guard it).
        assert_eq!(check(&c, &host(), &[], &req("ann", 5, 1000)), Ok(()));
    }

    #[test]
    fn per_user_memory_counts_the_request() {
        let c = Config {
            service_max_mem_fraction_nb_per_user: 0.5,
            ..all_off()
        };
        let h = HostResources {
            mem_available_mb: 20_000,
            ..host()
        };
        // Half of 20000 MB = 10000, the request included.
        let live = [session("ann", 1, 6000), session("bob", 1, 9000)];
        assert_eq!(check(&c, &h, &live, &req("ann", 1, 3999)), Ok(()));
        assert_eq!(check(&c, &h, &live, &req("ann", 1, 4000)), Ok(()));
        let refused = check(&c, &h, &live, &req("ann", 1, 4001)).unwrap_err();
        assert_eq!(
            refused,
            vec![Refusal::TooMuchUserMemory {
                memory_mb: 10_001,
                available_mb: 20_000,
                max_fraction: 0.5
            }]
        );
        assert!(refused[0]
            .to_string()
            .starts_with("Too much memory (10001 / 20000) for user, max 0.5 fraction."));
    }

    #[test]
    fn per_user_gpus_at_their_boundary() {
        let c = Config {
            service_max_gpu_nb_per_user: 2,
            ..all_off()
        };
        let with_gpu = |pci: &str| LiveSession {
            gpu: Some(pci.into()),
            ..session("ann", 1, 1000)
        };
        let gpu_req = Request {
            gpu: true,
            ..req("ann", 1, 1000)
        };
        let mut live = vec![session("ann", 1, 1000), with_gpu("01:00.0")];
        assert_eq!(check(&c, &host(), &live, &gpu_req), Ok(()));
        live.push(with_gpu("02:00.0"));
        let refused = check(&c, &host(), &live, &gpu_req).unwrap_err();
        assert_eq!(refused, vec![Refusal::TooManyUserGpus { gpus: 3, max: 2 }]);
        assert_eq!(
            refused[0].to_string(),
            "Too many GPU (3) for user, max (2)."
        );
        // A session without a GPU is not held back by the GPU quota.
        assert_eq!(check(&c, &host(), &live, &req("ann", 1, 1000)), Ok(()));
        live.push(with_gpu("03:00.0"));
        assert_eq!(
            codes(check(&c, &host(), &live, &gpu_req)),
            ["too_many_user_gpus"]
        );
        assert_eq!(check(&all_off(), &host(), &live, &gpu_req), Ok(()));
    }

    #[test]
    fn fractions_of_one_or_more_are_off() {
        let c = Config {
            service_max_cpu_fraction_nb_per_user: 1.0,
            service_max_mem_fraction_nb_per_user: 2.0,
            ..all_off()
        };
        let live = [session("ann", 16, 60_000)];
        assert_eq!(check(&c, &host(), &live, &req("ann", 16, 60_000)), Ok(()));
    }

    #[test]
    fn the_request_itself_is_validated() {
        let off = all_off();
        let refused = check(&off, &host(), &[], &req("ann", 0, 0)).unwrap_err();
        assert_eq!(
            refused,
            vec![Refusal::InvalidCpu { requested: 0 }, Refusal::InvalidMemory]
        );
        assert!(refused.iter().all(|r| !r.needs_fallback()));
        assert_eq!(check(&off, &host(), &[], &req("ann", 16, 64_000)), Ok(()));
        let refused = check(&off, &host(), &[], &req("ann", 17, 64_001)).unwrap_err();
        assert_eq!(
            refused,
            vec![
                Refusal::CpuAboveHost {
                    requested: 17,
                    ncpu: 16
                },
                Refusal::MemoryAboveHost {
                    requested_mb: 64_001,
                    total_mb: 64_000
                }
            ]
        );
        assert!(refused.iter().all(Refusal::needs_fallback));
    }

    #[test]
    fn every_reason_is_reported_at_once() {
        let c = Config {
            service_max_session_nb: 2,
            service_max_session_nb_per_user: 1,
            service_max_load: 0.5,
            service_max_cpu_fraction_nb_per_user: 0.5,
            service_max_mem_fraction_nb_per_user: 0.5,
            service_max_gpu_nb_per_user: 1,
            ..Config::default()
        };
        let h = HostResources {
            ncpu: 4,
            load1: 3.0,
            mem_total_mb: 8000,
            mem_available_mb: 4000,
        };
        let live = [
            LiveSession {
                gpu: Some("0000:01:00.0".into()),
                ..session("ann", 2, 2000)
            },
            session("bob", 1, 1000),
        ];
        let r = Request {
            gpu: true,
            ..req("ann", 2, 6000)
        };
        assert_eq!(
            codes(check(&c, &h, &live, &r)),
            [
                "too_many_sessions",
                "not_enough_free_cpu",
                "server_load",
                "not_enough_free_memory",
                "too_many_user_sessions",
                "too_many_user_cpus",
                "too_much_user_memory",
                "too_many_user_gpus",
            ]
        );
    }

    #[test]
    fn fallback_only_for_lack_of_room() {
        let room = [
            Refusal::TooManySessions { active: 1, max: 1 },
            Refusal::ServerLoad {
                load1: 1.0,
                ncpu: 1,
                max: 0.5,
            },
            Refusal::NoFreeGpu,
        ];
        assert!(room.iter().all(Refusal::needs_fallback));
        let quota = [
            Refusal::TooManyUserSessions {
                sessions: 1,
                max: 1,
            },
            Refusal::TooManyUserGpus { gpus: 2, max: 1 },
            Refusal::UnknownMachine {
                machine: "x.iso".into(),
            },
        ];
        assert!(quota.iter().all(|r| !r.needs_fallback()));
        assert_eq!(quota[2].to_string(), "Can not find virtual machine x.iso.");
        assert_eq!(
            Refusal::NoFreeGpu.to_string(),
            "Can not find a free GPU as requested. Try again without."
        );
    }
}
