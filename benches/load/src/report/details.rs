//! The raw figures behind the tables, one line per measurement.

use std::fmt::Write as _;

use crate::scenario::{CpuUse, Measurement, Outcome, Settings};
use crate::security::Security;

/// The details section: the settings, then every measurement in run order.
pub(super) fn render(s: &Settings, results: &[Measurement]) -> String {
    let mut out = String::from("Details:\n\n");
    let _ = writeln!(
        out,
        "- settings: warm-up {:.1} s, window {:.1} s, {} stream(s), upstream frames {} B, echo {} B, \
         {} idle sessions asked, {} set-up workers; MB = 10^6 B, GB = 10^9 B",
        s.warmup.as_secs_f64(),
        s.duration.as_secs_f64(),
        s.streams,
        s.up_frame,
        s.echo_size,
        s.idle_sessions,
        s.hs_concurrency
    );
    let mut seen = std::collections::HashMap::new();
    for r in results {
        let n = seen.entry((r.scenario, r.gateway, r.security)).or_insert(0);
        *n += 1;
        let target = match r.security {
            Security::None => String::new(),
            s => format!(" → {} target", s.name()),
        };
        let what = format!("{} / {}{target} #{n}", r.scenario.name(), r.gateway.name());
        let line = match &r.outcome {
            Err(e) => format!("FAILED: {e}"),
            Ok(Outcome::Down(t)) | Ok(Outcome::Up(t)) => {
                format!("{} bytes in {:.2} s{}", t.bytes, t.secs, cpu_text(t.cpu))
            }
            Ok(Outcome::Echo(e)) => format!(
                "{} round trips, mean {:.1} µs{}",
                e.count,
                e.mean_us,
                cpu_text(e.cpu)
            ),
            Ok(Outcome::Idle(i)) => format!(
                "{} asked, {} opened, {} still open after {:.1} s, {} failed{}; gateway \
                 {} process(es), PSS {:.1} → {:.1} MiB, RSS {:.1} → {:.1} MiB",
                i.requested,
                i.opened,
                i.held,
                i.hold_secs,
                i.failures,
                i.stopped
                    .as_ref()
                    .map_or(String::new(), |s| format!("; opening stopped: {s}")),
                i.loaded.processes,
                mib(i.baseline.pss),
                mib(i.loaded.pss),
                mib(i.baseline.rss),
                mib(i.loaded.rss),
            ),
            Ok(Outcome::Paste(p)) => format!(
                "ticks idle: {} of {} (p50 {:.2} ms, max {:.2} ms); flooded: {} of {} (p50 \
                 {:.2} ms, max {:.2} ms), flood {:.0} MB/s{}",
                p.idle.count(),
                p.idle.expected,
                p.idle.percentile_ms(50),
                p.idle.max_ms(),
                p.flooded.count(),
                p.flooded.expected,
                p.flooded.percentile_ms(50),
                p.flooded.max_ms(),
                p.flood_mb_per_s(),
                cpu_text(p.cpu)
            ),
            Ok(Outcome::Handshakes(h)) => format!(
                "{} set-ups in {:.2} s, {} errors{}; alone: {} set-ups, p50 {}{}",
                h.count,
                h.secs,
                h.errors,
                h.first_error
                    .as_ref()
                    .map_or(String::new(), |e| format!(" (first: {e})")),
                h.alone.len(),
                h.alone_p50_us()
                    .map_or("—".into(), |us| format!("{us:.0} µs")),
                cpu_text(h.cpu)
            ),
        };
        let _ = writeln!(out, "- {what}: {line}");
    }
    out
}

fn cpu_text(cpu: CpuUse) -> String {
    let gateway = cpu
        .gateway
        .map_or(String::new(), |c| format!("gateway {c:.2} s, "));
    format!(
        "; CPU: {gateway}client {:.2} s, backend {:.2} s; machine {:.2} cores busy \
         ({:.2} in irq/softirq, {:.2} in kernel threads, {:.2} other processes)",
        cpu.client,
        cpu.backend,
        cpu.machine_cores,
        cpu.irq_cores,
        cpu.kthread_cores,
        cpu.other_cores
    )
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}
