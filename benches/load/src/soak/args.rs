//! `darts-load soak`'s command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::api::Machine;
use super::plan::{parse_duration, FaultKind, Plan};

#[derive(Debug, Args)]
pub struct SoakArgs {
    /// How long sessions are cycled: `90s`, `30m`, `2h` (a bare number is seconds).
    /// Winding down (stopping every session, the last checks) comes after.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub duration: Duration,

    /// Sessions held at once (each is a QEMU under TCG: mind the cores).
    #[arg(long, default_value_t = 4)]
    pub sessions: usize,

    /// Of those, sessions created once that must survive the whole run
    /// [default: a quarter, at least one].
    #[arg(long)]
    pub long_lived: Option<usize>,

    /// Viewers per session at once (the second and later use the view-only link).
    #[arg(long, default_value_t = 2)]
    pub viewers: usize,

    /// How long viewers stream (update requests, pointer and key events) per round.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub stream: Duration,

    /// How long viewers then stay connected without sending anything.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub idle: Duration,

    /// Every Nth short-lived session is one-shot (0: none).
    #[arg(long, default_value_t = 3)]
    pub oneshot_every: u32,

    /// Time between two faults (0: none).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub fault_every: Duration,

    /// Faults, taken in turn.
    #[arg(long, value_delimiter = ',', default_values = ["kill-qemu", "restart-gateway"])]
    pub faults: Vec<FaultKind>,

    /// A fault that cannot be injected (no short-lived session live in time) fails the
    /// run instead of being reported as skipped.
    #[arg(long)]
    pub require_faults: bool,

    /// Time between two samples of darts' memory and open files.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub sample_every: Duration,

    /// Seed of the random choices (victims, phase lengths) [default: from the clock].
    #[arg(long)]
    pub seed: Option<u64>,

    /// The darts binary [default: `darts` next to this program].
    #[arg(long, value_name = "PATH")]
    pub darts: Option<PathBuf>,

    /// Scratch directory for darts' configuration, state, VM disks and log; emptied
    /// first if an earlier soak made it, kept when the run fails.
    #[arg(long, value_name = "DIR", default_value = "target/soak/scratch")]
    pub scratch: PathBuf,

    /// Disk image of the machine the sessions boot.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "target/demo-guest/disk.img"
    )]
    pub guest: PathBuf,

    /// The source tree's `web/` directory (noVNC and the pages) for darts to serve.
    #[arg(long, value_name = "DIR", default_value = "web")]
    pub web: PathBuf,

    /// Use the darts already serving at this base URL (`http://127.0.0.1:6080/darts`)
    /// instead of starting one. No restart-gateway faults then.
    #[arg(long, value_name = "URL")]
    pub attach: Option<String>,

    /// With --attach: darts' pid, to sample its memory and open files.
    #[arg(long, requires = "attach")]
    pub pid: Option<u32>,

    /// With --attach: darts' `dir_cfg`, where session records give QEMU's pid.
    #[arg(long, value_name = "DIR", requires = "attach")]
    pub state_dir: Option<PathBuf>,

    /// Machine of the catalogue to create sessions of.
    #[arg(long, default_value = "demo.img")]
    pub machine: String,

    /// Cores per session (one of darts' `layout_cpu`) [default: 1 on the soak's own darts].
    #[arg(long)]
    pub cpu: Option<u32>,

    /// Memory per session, GB (one of `layout_memory`) [default: 0.25 on the soak's own darts].
    #[arg(long)]
    pub memory: Option<f64>,

    /// User name to log in with (any name is accepted without authentication).
    #[arg(long, default_value = "soak")]
    pub user: String,

    /// Password, when the attached darts checks them.
    #[arg(long, env = "DARTS_SOAK_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,

    /// Write the report as JSON to FILE, and as markdown beside it (FILE with `.md`).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// darts' memory growth (MiB per hour) above which the report warns.
    #[arg(long, default_value_t = 64.0)]
    pub rss_warn_mib_per_hour: f64,

    /// Growth of darts' open files from start to end above which the report warns.
    #[arg(long, default_value_t = 32)]
    pub fd_warn: u64,
}

impl SoakArgs {
    pub fn plan(&self) -> Result<Plan, String> {
        let mut faults = self.faults.clone();
        if self.attach.is_some() {
            faults.retain(|f| *f != FaultKind::RestartGateway);
        }
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_secs())
        });
        let mut plan = Plan::new(
            self.duration,
            self.sessions,
            self.long_lived,
            self.viewers,
            self.stream,
            self.idle,
            self.oneshot_every,
            self.fault_every,
            faults,
            self.sample_every,
            seed,
        )?;
        plan.require_faults = self.require_faults;
        Ok(plan)
    }

    pub fn machine(&self) -> Machine {
        let own = self.attach.is_none();
        Machine {
            name: self.machine.clone(),
            cpu: self.cpu.or(own.then_some(1)),
            memory: self.memory.or(own.then_some(0.25)),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Wrap {
        #[command(flatten)]
        soak: SoakArgs,
    }

    #[test]
    fn defaults_and_attach() {
        let w = Wrap::try_parse_from(["x"]).unwrap();
        let plan = w.soak.plan().unwrap();
        assert_eq!(plan.duration, Duration::from_secs(600));
        assert_eq!((plan.sessions, plan.long_lived), (4, 1));
        assert_eq!(plan.faults.len(), 2);
        assert_eq!(w.soak.machine().cpu, Some(1));
        let w = Wrap::try_parse_from([
            "x",
            "--attach",
            "http://127.0.0.1:6080/darts",
            "--duration",
            "90s",
            "--seed",
            "5",
        ])
        .unwrap();
        let plan = w.soak.plan().unwrap();
        assert_eq!(
            plan.faults,
            [FaultKind::KillQemu],
            "no restarts when attached"
        );
        assert_eq!(plan.seed, 5);
        assert_eq!(w.soak.machine().memory, None);
        assert!(
            Wrap::try_parse_from(["x", "--pid", "1"]).is_err(),
            "--pid needs --attach"
        );
        assert!(Wrap::try_parse_from(["x", "--duration", "soon"]).is_err());
    }
}
