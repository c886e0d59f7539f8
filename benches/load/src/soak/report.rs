//! The soak's report as data (written as JSON): the tally, darts' memory and open files
//! summarised from the samples (growth per hour by least squares, first against last),
//! and warnings past the bounds. `markdown.rs` renders it.

use serde::Serialize;

use super::plan::Plan;
use super::tally::Tally;

pub(super) const MIB: f64 = 1024.0 * 1024.0;
/// Share of each process's life left out of its growth figure: a fresh process's memory
/// grows while its allocator and caches warm up.
const WARMUP_SHARE: f64 = 0.25;
/// A process must have lived this long (seconds) for its growth to be judged.
pub(super) const JUDGE_AFTER: f64 = 300.0;

/// One reading of darts' process.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds from the start of the run.
    pub t: f64,
    pub pid: u32,
    pub rss: u64,
    pub fds: u64,
    /// Sessions the soak held then.
    pub held: u64,
}

/// Memory of one darts process (a restart starts another).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessMemory {
    pub pid: u32,
    pub samples: usize,
    pub seconds: f64,
    pub first: u64,
    pub last: u64,
    pub peak: u64,
    /// Least-squares growth after the warm-up, bytes per hour (none with fewer than 3
    /// samples left).
    pub slope_per_hour: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Memory {
    pub samples: usize,
    pub first: u64,
    pub last: u64,
    pub peak: u64,
    /// Growth per hour of the longest-lived process, bytes (the headline figure: a
    /// restart resets memory, so one slope over several processes would mean nothing).
    pub growth_per_hour: Option<f64>,
    /// How long that process lived, seconds.
    pub growth_over: f64,
    pub processes: Vec<ProcessMemory>,
}

/// Open files of darts: the first sample, the most, the last (taken once every session
/// was stopped, so start and end are both quiet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Fds {
    pub start: u64,
    pub peak: u64,
    pub end: u64,
}

/// Warning bounds: past them the report says so, the run does not fail.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Bounds {
    pub rss_mib_per_hour: f64,
    pub fd_growth: u64,
}

/// WARN and ERROR lines in darts' log.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LogCounts {
    pub path: String,
    pub warnings: u64,
    pub errors: u64,
    /// The first distinct WARN and ERROR lines, without their timestamps.
    pub examples: Vec<String>,
}

/// Distinct WARN/ERROR lines kept as examples.
const LOG_EXAMPLES: usize = 8;

impl LogCounts {
    /// Counts the levels of darts' log lines (`TIMESTAMP  LEVEL target: message`).
    pub fn from_text(text: &str, path: String) -> Self {
        let mut c = Self {
            path,
            ..Self::default()
        };
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let (_, level) = (words.next(), words.next());
            match level {
                Some("WARN") => c.warnings += 1,
                Some("ERROR") => c.errors += 1,
                _ => continue,
            }
            let rest = line
                .trim_start()
                .split_once(char::is_whitespace)
                .map_or("", |(_, r)| r);
            let example = rest.trim().to_owned();
            if c.examples.len() < LOG_EXAMPLES && !c.examples.contains(&example) {
                c.examples.push(example);
            }
        }
        c
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub date: String,
    pub command: String,
    pub machine: String,
    pub darts: String,
    pub plan: Plan,
    /// Seconds the run took, clean-up included.
    pub elapsed: f64,
    pub interrupted: bool,
    pub tally: Tally,
    pub memory: Memory,
    pub fds: Fds,
    pub bounds: Bounds,
    pub darts_log: Option<LogCounts>,
    pub samples: Vec<Sample>,
    pub warnings: Vec<String>,
    pub passed: bool,
}

/// Least-squares slope of y over x; none for fewer than two distinct x.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// Splits the samples by process, in order.
fn by_process(samples: &[Sample]) -> Vec<&[Sample]> {
    samples.chunk_by(|a, b| a.pid == b.pid).collect()
}

pub fn memory(samples: &[Sample]) -> Memory {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return Memory::default();
    };
    let processes: Vec<ProcessMemory> = by_process(samples)
        .into_iter()
        .map(|run| {
            let (a, b) = (run[0], run[run.len() - 1]);
            let warm = a.t + (b.t - a.t) * WARMUP_SHARE;
            let points: Vec<(f64, f64)> = run
                .iter()
                .filter(|s| s.t >= warm)
                .map(|s| (s.t, s.rss as f64))
                .collect();
            ProcessMemory {
                pid: a.pid,
                samples: run.len(),
                seconds: b.t - a.t,
                first: a.rss,
                last: b.rss,
                peak: run.iter().map(|s| s.rss).max().unwrap_or(0),
                slope_per_hour: (points.len() >= 3)
                    .then(|| slope(&points))
                    .flatten()
                    .map(|s| s * 3600.0),
            }
        })
        .collect();
    let longest = processes
        .iter()
        .filter(|p| p.slope_per_hour.is_some())
        .max_by(|a, b| a.seconds.total_cmp(&b.seconds));
    Memory {
        samples: samples.len(),
        first: first.rss,
        last: last.rss,
        peak: samples.iter().map(|s| s.rss).max().unwrap_or(0),
        growth_per_hour: longest.and_then(|p| p.slope_per_hour),
        growth_over: longest.map_or(0.0, |p| p.seconds),
        processes,
    }
}

pub fn fds(samples: &[Sample]) -> Fds {
    Fds {
        start: samples.first().map_or(0, |s| s.fds),
        peak: samples.iter().map(|s| s.fds).max().unwrap_or(0),
        end: samples.last().map_or(0, |s| s.fds),
    }
}

pub fn warnings(memory: &Memory, fds: &Fds, bounds: Bounds) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(g) = memory.growth_per_hour {
        if g / MIB > bounds.rss_mib_per_hour && memory.growth_over >= JUDGE_AFTER {
            out.push(format!(
                "darts' RSS grows {:.1} MiB/h, above the bound of {:.0} MiB/h",
                g / MIB,
                bounds.rss_mib_per_hour
            ));
        }
    }
    if fds.end > fds.start + bounds.fd_growth {
        out.push(format!(
            "darts ends with {} open files against {} at the start (bound: +{})",
            fds.end, fds.start, bounds.fd_growth
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: f64, pid: u32, rss_mib: f64, fds: u64) -> Sample {
        Sample {
            t,
            pid,
            rss: (rss_mib * MIB) as u64,
            fds,
            held: 0,
        }
    }

    #[test]
    fn log_levels_are_counted_with_distinct_examples() {
        let text = "2026-01-01T00:00:00Z  WARN darts::serve: no auth\n\
                    2026-01-01T00:00:01Z  INFO darts: WARN in a message\n\
                    2026-01-01T00:00:02Z  WARN darts::serve: no auth\n\
                    2026-01-01T00:00:03Z ERROR darts::session: qmp closed\n";
        let c = LogCounts::from_text(text, "x".into());
        assert_eq!((c.warnings, c.errors), (2, 1));
        assert_eq!(
            c.examples,
            [
                "WARN darts::serve: no auth",
                "ERROR darts::session: qmp closed"
            ]
        );
    }

    #[test]
    fn slope_of_a_line_and_of_nothing() {
        let pts: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 3.0 * i as f64 + 7.0)).collect();
        assert!((slope(&pts).unwrap() - 3.0).abs() < 1e-9);
        let noisy = [(0.0, 1.0), (1.0, 3.0), (2.0, 2.0), (3.0, 4.0)];
        assert!((slope(&noisy).unwrap() - 0.8).abs() < 1e-9);
        assert_eq!(slope(&[(1.0, 1.0)]), None);
        assert_eq!(slope(&[(1.0, 1.0), (1.0, 5.0)]), None);
    }

    #[test]
    fn memory_is_summarised_per_process_with_the_longest_as_headline() {
        // pid 1: 10 minutes growing 1 MiB per minute; pid 2 (after a restart): flat, 4 min.
        let mut s: Vec<Sample> = (0..=10)
            .map(|m| sample(m as f64 * 60.0, 1, 20.0 + m as f64, 20 + m))
            .collect();
        s.extend((0..=4).map(|m| sample(700.0 + m as f64 * 60.0, 2, 18.0, 19)));
        let m = memory(&s);
        assert_eq!(m.processes.len(), 2);
        assert_eq!(m.samples, 16);
        let g = m.growth_per_hour.unwrap() / MIB;
        assert!((g - 60.0).abs() < 1e-6, "{g}");
        assert_eq!(m.processes[1].slope_per_hour, Some(0.0));
        assert_eq!(m.first, (20.0 * MIB) as u64);
        assert_eq!(m.last, (18.0 * MIB) as u64);
        assert_eq!(m.peak, (30.0 * MIB) as u64);
        let f = fds(&s);
        assert_eq!((f.start, f.peak, f.end), (20, 30, 19));
        let w = warnings(
            &m,
            &f,
            Bounds {
                rss_mib_per_hour: 64.0,
                fd_growth: 32,
            },
        );
        assert!(w.is_empty(), "{w:?}");
        let tight = Bounds {
            rss_mib_per_hour: 30.0,
            fd_growth: 32,
        };
        let w = warnings(
            &m,
            &Fds {
                start: 10,
                peak: 90,
                end: 80,
            },
            tight,
        );
        assert_eq!(w.len(), 2, "{w:?}");
        // A minute is too short to judge growth: reported, not warned about.
        let short: Vec<Sample> = (0..=12)
            .map(|i| sample(i as f64 * 5.0, 3, 20.0 + i as f64, 20))
            .collect();
        let m = memory(&short);
        assert!(m.growth_per_hour.unwrap() > 0.0);
        assert!(warnings(&m, &fds(&short), tight).is_empty());
    }

    #[test]
    fn too_few_samples_give_no_growth() {
        assert_eq!(memory(&[]), Memory::default());
        let m = memory(&[sample(0.0, 1, 10.0, 5), sample(5.0, 1, 11.0, 5)]);
        assert_eq!(m.growth_per_hour, None);
    }

    #[test]
    fn the_warm_up_is_left_out_of_growth() {
        // A jump in the first quarter, flat afterwards.
        let s: Vec<Sample> = (0..=20)
            .map(|i| {
                sample(
                    i as f64 * 30.0,
                    1,
                    if i < 3 { 10.0 + i as f64 * 5.0 } else { 30.0 },
                    10,
                )
            })
            .collect();
        assert_eq!(memory(&s).growth_per_hour, Some(0.0));
    }
}
