//! The soak's report as markdown: a table ready for `benches/RESULTS.md` (what ran,
//! sessions, viewers, bytes, faults, errors, darts' memory and open files, lost sessions,
//! invariants, the verdict), then the details (each fault, each darts process, what
//! failed, examples of each error kind).

use std::fmt::Write as _;

use super::plan::FaultKind;
use super::report::{Report, JUDGE_AFTER, MIB};
use super::tally::{FaultRecord, Tally};

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB)
}

fn minutes(secs: f64) -> String {
    let s = secs.round() as u64;
    match (s / 60, s % 60) {
        (0, s) => format!("{s} s"),
        (m, 0) => format!("{m} min"),
        (m, s) => format!("{m} min {s} s"),
    }
}

/// `a–b` of some figures (or the one figure), with a unit.
fn range(values: &[f64], unit: &str) -> String {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if values.is_empty() {
        String::new()
    } else if (hi - lo).abs() < 0.05 {
        format!("{lo:.1} {unit}")
    } else {
        format!("{lo:.1}–{hi:.1} {unit}")
    }
}

fn faults_cell(r: &Report) -> String {
    let mut parts = Vec::new();
    for kind in &r.plan.faults {
        let of_kind: Vec<_> = r.tally.faults.iter().filter(|f| f.kind == *kind).collect();
        if of_kind.is_empty() {
            continue;
        }
        let ok = of_kind.iter().filter(|f| f.outcome == "ok").count();
        let times: Vec<f64> = of_kind.iter().filter_map(|f| f.recovery).collect();
        let what = match kind {
            FaultKind::KillQemu => "gone from the API in",
            FaultKind::RestartGateway => "answering again in",
        };
        let mut cell = format!("{} ×{}: {ok} ok", kind.name(), of_kind.len());
        if !times.is_empty() {
            let _ = write!(cell, ", {what} {}", range(&times, "s"));
        }
        parts.push(cell);
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join("; ")
    }
}

fn errors_cell(t: &Tally) -> String {
    if t.errors.is_empty() {
        return "none".into();
    }
    let kinds: Vec<String> = t.errors.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
    format!("{}: {}", t.errors_total(), kinds.join("; "))
}

/// The markdown report.
pub fn render(r: &Report) -> String {
    let c = &r.tally.counters;
    let p = &r.plan;
    let mut out = String::new();
    let _ = writeln!(out, "Date: {}  ", r.date);
    let _ = writeln!(out, "Machine: {}  ", r.machine);
    let _ = writeln!(out, "darts: {}  ", r.darts);
    let _ = writeln!(out, "Command: `{}`\n", r.command);
    out.push_str("| soak | |\n|---|---|\n");
    let mut row = |k: &str, v: String| {
        let _ = writeln!(out, "| {k} | {v} |");
    };
    row(
        "run",
        format!(
            "{} planned, {} taken{}; {} sessions at once ({} long-lived), {} viewer(s) each; \
             stream {}, idle {}; seed {}",
            minutes(p.duration.as_secs_f64()),
            minutes(r.elapsed),
            if r.interrupted { " (interrupted)" } else { "" },
            p.sessions,
            p.long_lived,
            p.viewers,
            minutes(p.stream.as_secs_f64()),
            minutes(p.idle.as_secs_f64()),
            p.seed
        ),
    );
    row(
        "sessions",
        format!(
            "{} created of {} asked ({} one-shot), peak {} held; {} stopped, {} one-shot ended on close{}, {} QEMU killed",
            c.created,
            c.create_attempts,
            c.created_oneshot,
            c.peak_held,
            c.stopped,
            c.oneshot_ended,
            match (c.oneshot_cut_ended, c.oneshot_cut_survived) {
                (0, 0) => String::new(),
                (e, k) => format!(" ({e} more ended and {k} kept when a restart cut their viewer)"),
            },
            c.killed
        ),
    );
    row(
        "viewers",
        format!(
            "{} opened, {} reconnections ({} after a restart), {} probes; {} cut by restarts",
            c.viewers_opened, c.reconnections, c.restart_reconnections, c.probes, c.cut_by_restart
        ),
    );
    row(
        "streamed",
        format!(
            "{:.1} MB down, {:.2} MB up, {} framebuffer updates",
            c.bytes_down as f64 / 1e6,
            c.bytes_up as f64 / 1e6,
            c.updates
        ),
    );
    row("faults", faults_cell(r));
    row("errors", errors_cell(&r.tally));
    let m = &r.memory;
    row(
        "darts RSS",
        format!(
            "{} first, {} last, {} peak; {} ({} samples)",
            mib(m.first),
            mib(m.last),
            mib(m.peak),
            m.growth_per_hour.map_or("growth unknown".into(), |g| format!(
                "{:+.1} MiB/h by least squares after warm-up, darts process that lived longest ({}{})",
                g / MIB,
                minutes(m.growth_over),
                if m.growth_over < JUDGE_AFTER { ", too short to judge" } else { "" }
            )),
            m.samples
        ),
    );
    row(
        "darts open files",
        format!(
            "{} at the start, {} peak, {} at the end",
            r.fds.start, r.fds.peak, r.fds.end
        ),
    );
    row("sessions lost", r.tally.lost.len().to_string());
    row(
        "invariants",
        if r.tally.invariants_failed.is_empty() {
            "all held".into()
        } else {
            format!("{} failed", r.tally.invariants_failed.len())
        },
    );
    row(
        "result",
        if r.passed {
            "PASS".into()
        } else {
            "FAIL".into()
        },
    );
    details(r, &mut out);
    out
}

fn recovery_cell(f: &FaultRecord) -> String {
    let Some(total) = f.recovery else {
        return "-".into();
    };
    match (f.stop, f.start) {
        (Some(stop), Some(start)) => {
            format!("{total:.1} s (exit {stop:.1} s, start {start:.1} s)")
        }
        _ => format!("{total:.1} s"),
    }
}

fn details(r: &Report, out: &mut String) {
    if !r.tally.faults.is_empty() {
        out.push_str("\n| at | fault | session | outcome | recovery | checked after |\n|---|---|---|---|---|---|\n");
        for f in &r.tally.faults {
            let _ = writeln!(
                out,
                "| {:.0} s | {} | {} | {} | {} | {} |",
                f.at,
                f.kind.name(),
                f.session.as_deref().unwrap_or("-"),
                f.outcome,
                recovery_cell(f),
                f.survivors_checked
            );
        }
    }
    if r.memory.processes.len() > 1 {
        out.push_str("\n| darts pid | samples | lived | RSS first | last | peak | growth |\n|---|---|---|---|---|---|---|\n");
        for p in &r.memory.processes {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                p.pid,
                p.samples,
                minutes(p.seconds),
                mib(p.first),
                mib(p.last),
                mib(p.peak),
                p.slope_per_hour
                    .map_or("-".into(), |g| format!("{:+.1} MiB/h", g / MIB))
            );
        }
    }
    let mut list = |title: &str, items: Vec<String>| {
        if !items.is_empty() {
            let _ = writeln!(out, "\n{title}:");
            for i in items {
                let _ = writeln!(out, "- {i}");
            }
        }
    };
    list(
        "Sessions lost",
        r.tally
            .lost
            .iter()
            .map(|l| format!("{} ({:?}) {}: {}", l.session, l.role, l.when, l.why))
            .collect(),
    );
    list("Invariants failed", r.tally.invariants_failed.clone());
    list("Warnings", r.warnings.clone());
    list(
        "Error examples",
        r.tally
            .error_examples
            .iter()
            .flat_map(|(k, v)| v.iter().map(move |e| format!("{k}: {e}")))
            .collect(),
    );
    if let Some(log) = &r.darts_log {
        let _ = writeln!(
            out,
            "\ndarts' log ({}): {} WARN, {} ERROR lines{}",
            log.path,
            log.warnings,
            log.errors,
            if log.examples.is_empty() {
                "."
            } else {
                ", distinct ones:"
            }
        );
        for e in &log.examples {
            let _ = writeln!(out, "- `{e}`");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soak::plan::Plan;
    use crate::soak::report::{fds, memory, Bounds, Sample};

    fn sample(t: f64, pid: u32, rss_mib: f64, fds: u64) -> Sample {
        Sample {
            t,
            pid,
            rss: (rss_mib * MIB) as u64,
            fds,
            held: 0,
        }
    }

    fn report(tally: Tally) -> Report {
        let plan = Plan::new(
            std::time::Duration::from_secs(60),
            3,
            None,
            2,
            std::time::Duration::from_secs(5),
            std::time::Duration::from_secs(5),
            3,
            std::time::Duration::from_secs(20),
            vec![FaultKind::KillQemu],
            std::time::Duration::from_secs(5),
            1,
        )
        .unwrap();
        let samples = vec![sample(0.0, 9, 20.0, 14), sample(60.0, 9, 21.0, 15)];
        Report {
            date: "2026-01-01".into(),
            command: "darts-load soak".into(),
            machine: "test".into(),
            darts: "darts 0.1.0".into(),
            plan,
            elapsed: 75.0,
            interrupted: false,
            passed: tally.passed(),
            tally,
            memory: memory(&samples),
            fds: fds(&samples),
            bounds: Bounds {
                rss_mib_per_hour: 64.0,
                fd_growth: 32,
            },
            darts_log: None,
            samples,
            warnings: vec![],
        }
    }

    #[test]
    fn the_table_says_pass_or_fail_and_why() {
        let mut t = Tally::default();
        t.counters.created = 7;
        t.faults.push(FaultRecord {
            at: 20.0,
            kind: FaultKind::KillQemu,
            session: Some("darts-aaaaaaaaaaaa".into()),
            outcome: "ok".into(),
            recovery: Some(0.5),
            stop: None,
            start: None,
            survivors_checked: 2,
        });
        let text = render(&report(t.clone()));
        assert!(text.contains("| result | PASS |"), "{text}");
        assert!(text.contains("| errors | none |"), "{text}");
        assert!(
            text.contains("kill-qemu ×1: 1 ok, gone from the API in 0.5 s"),
            "{text}"
        );
        assert!(text.contains("| 20 s | kill-qemu | darts-aaaaaaaaaaaa | ok | 0.5 s | 2 |"));
        t.error("websocket refused: 404".into(), "viewer of x".into());
        t.error("websocket refused: 404".into(), "viewer of y".into());
        t.invariant("something broke".into());
        let text = render(&report(t));
        assert!(text.contains("| result | FAIL |"), "{text}");
        assert!(
            text.contains("| errors | 2: websocket refused: 404 ×2 |"),
            "{text}"
        );
        assert!(
            text.contains("Invariants failed:\n- something broke"),
            "{text}"
        );
    }

    #[test]
    fn ranges_and_durations_read_well() {
        assert_eq!(minutes(30.0), "30 s");
        assert_eq!(minutes(1800.0), "30 min");
        assert_eq!(minutes(1841.0), "30 min 41 s");
        assert_eq!(range(&[1.0, 2.5], "s"), "1.0–2.5 s");
        assert_eq!(range(&[1.0], "s"), "1.0 s");
    }
}
