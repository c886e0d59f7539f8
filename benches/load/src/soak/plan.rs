//! What a soak run does and when, decided before it starts: which slots hold long-lived
//! sessions, how long each phase lasts, which short-lived sessions are one-shot, and when
//! each fault comes. Pure: no clock, no I/O, so the schedule is unit-tested.

use std::time::Duration;

use serde::Serialize;

/// Parses `90`, `90s`, `30m`, `2h` or `500ms` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 90s, 30m or 2h"))?;
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("unknown unit {other:?} in {s:?} (ms, s, m or h)")),
    };
    let secs = value * scale;
    if !(secs.is_finite() && (0.0..=7.0 * 86_400.0).contains(&secs)) {
        return Err(format!("{s:?} is out of range (up to 7 days)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A fault the run injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// SIGKILL the QEMU of a random short-lived session.
    KillQemu,
    /// SIGTERM `darts serve` and start it again.
    RestartGateway,
}

impl FaultKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::KillQemu => "kill-qemu",
            Self::RestartGateway => "restart-gateway",
        }
    }
}

/// What a slot does for the whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// One session, created at the start, that must survive the whole run.
    Long,
    /// Sessions created and stopped over and over.
    Short,
}

/// The run's settings, checked.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    pub sessions: usize,
    pub long_lived: usize,
    pub viewers: usize,
    #[serde(serialize_with = "secs")]
    pub stream: Duration,
    #[serde(serialize_with = "secs")]
    pub idle: Duration,
    /// Every Nth short-lived session is one-shot (0: none).
    pub oneshot_every: u32,
    #[serde(serialize_with = "secs")]
    pub fault_every: Duration,
    pub faults: Vec<FaultKind>,
    #[serde(serialize_with = "secs")]
    pub sample_every: Duration,
    pub seed: u64,
    /// A fault that cannot be injected (no victim, attached to a running darts) fails
    /// the run instead of being reported as skipped.
    pub require_faults: bool,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Long-lived sessions when the command line does not say: a quarter, at least one.
pub fn default_long_lived(sessions: usize) -> usize {
    (sessions / 4).max(1).min(sessions)
}

impl Plan {
    /// Checks the bounds; `long_lived` of `None` takes the default.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        duration: Duration,
        sessions: usize,
        long_lived: Option<usize>,
        viewers: usize,
        stream: Duration,
        idle: Duration,
        oneshot_every: u32,
        fault_every: Duration,
        faults: Vec<FaultKind>,
        sample_every: Duration,
        seed: u64,
    ) -> Result<Self, String> {
        if !(1..=64).contains(&sessions) {
            return Err("--sessions must be between 1 and 64".into());
        }
        if !(1..=8).contains(&viewers) {
            return Err("--viewers must be between 1 and 8".into());
        }
        let long_lived = long_lived.unwrap_or_else(|| default_long_lived(sessions));
        if long_lived > sessions {
            return Err("--long-lived cannot exceed --sessions".into());
        }
        if duration < Duration::from_secs(1) {
            return Err("--duration must be at least 1 s".into());
        }
        let mut kinds = Vec::new();
        for f in faults {
            if !kinds.contains(&f) {
                kinds.push(f);
            }
        }
        Ok(Self {
            duration,
            sessions,
            long_lived,
            viewers,
            stream: stream.max(Duration::from_secs(1)),
            idle,
            oneshot_every,
            fault_every,
            faults: kinds,
            sample_every: sample_every.max(Duration::from_millis(200)),
            seed,
            require_faults: false,
        })
    }

    /// Each slot's role: the first `long_lived` hold one session for the whole run.
    pub fn roles(&self) -> Vec<Role> {
        (0..self.sessions)
            .map(|i| {
                if i < self.long_lived {
                    Role::Long
                } else {
                    Role::Short
                }
            })
            .collect()
    }

    /// Whether a slot's `cycle`-th short-lived session (from 0) is one-shot.
    pub fn is_oneshot(&self, cycle: u64) -> bool {
        let every = u64::from(self.oneshot_every);
        every > 0 && cycle % every == every - 1
    }

    /// When each fault comes, from the start of the run: one every `fault_every`, the
    /// kinds in turn, none in the last quarter interval before the end (a fault and its
    /// checks should finish inside the run).
    pub fn fault_schedule(&self) -> Vec<(Duration, FaultKind)> {
        if self.fault_every.is_zero() || self.faults.is_empty() {
            return Vec::new();
        }
        let margin = self.fault_every / 4;
        let mut out = Vec::new();
        let mut at = self.fault_every;
        while at + margin <= self.duration && out.len() < 10_000 {
            out.push((at, self.faults[out.len() % self.faults.len()]));
            at += self.fault_every;
        }
        out
    }

    /// When slot `index` starts: staggered, so the first creations do not all boot at once.
    pub fn start_delay(&self, index: usize) -> Duration {
        let step = (self.stream / 4).min(Duration::from_secs(3));
        step * u32::try_from(index).unwrap_or(u32::MAX)
    }
}

/// `base` scaled by a random factor in [0.75, 1.25), so that slots drift apart.
pub fn jitter(base: Duration, rng: &mut fastrand::Rng) -> Duration {
    base.mul_f64(0.75 + rng.f64() * 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(duration: u64, sessions: usize, every: u64) -> Plan {
        Plan::new(
            Duration::from_secs(duration),
            sessions,
            None,
            2,
            Duration::from_secs(20),
            Duration::from_secs(20),
            3,
            Duration::from_secs(every),
            vec![FaultKind::KillQemu, FaultKind::RestartGateway],
            Duration::from_secs(5),
            7,
        )
        .unwrap()
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("1.5m").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("3 days").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("100h").unwrap() > Duration::from_secs(3600));
        assert!(parse_duration("1000h").is_err());
    }

    #[test]
    fn faults_alternate_and_stop_before_the_end() {
        let p = plan(75, 3, 25);
        assert_eq!(
            p.fault_schedule(),
            [
                (Duration::from_secs(25), FaultKind::KillQemu),
                (Duration::from_secs(50), FaultKind::RestartGateway),
            ]
        );
        let p = plan(1800, 4, 300);
        let s = p.fault_schedule();
        assert_eq!(s.len(), 5, "{s:?}");
        assert_eq!(s[4], (Duration::from_secs(1500), FaultKind::KillQemu));
        assert!(plan(60, 2, 0).fault_schedule().is_empty());
    }

    #[test]
    fn a_single_fault_kind_repeats() {
        let mut p = plan(100, 2, 20);
        p.faults = vec![FaultKind::RestartGateway];
        let s = p.fault_schedule();
        assert_eq!(s.len(), 4);
        assert!(s.iter().all(|(_, k)| *k == FaultKind::RestartGateway));
    }

    #[test]
    fn roles_oneshots_and_bounds() {
        assert_eq!(
            plan(60, 4, 0).roles(),
            [Role::Long, Role::Short, Role::Short, Role::Short]
        );
        assert_eq!(
            plan(60, 8, 0)
                .roles()
                .iter()
                .filter(|r| **r == Role::Long)
                .count(),
            2
        );
        assert_eq!(plan(60, 1, 0).roles(), [Role::Long]);
        let p = plan(60, 3, 0);
        let oneshots: Vec<u64> = (0..9).filter(|&c| p.is_oneshot(c)).collect();
        assert_eq!(oneshots, [2, 5, 8]);
        let mut none = p.clone();
        none.oneshot_every = 0;
        assert!(!(0..10).any(|c| none.is_oneshot(c)));
        let bad = Plan::new(
            Duration::from_secs(60),
            2,
            Some(3),
            1,
            Duration::ZERO,
            Duration::ZERO,
            0,
            Duration::ZERO,
            vec![],
            Duration::ZERO,
            0,
        );
        assert!(bad.is_err());
        assert!(p.start_delay(2) > p.start_delay(1));
    }

    #[test]
    fn jitter_stays_within_a_quarter() {
        let mut rng = fastrand::Rng::with_seed(1);
        for _ in 0..1000 {
            let d = jitter(Duration::from_secs(20), &mut rng);
            assert!(
                d >= Duration::from_secs(15) && d < Duration::from_secs(25),
                "{d:?}"
            );
        }
    }
}
