//! The main table: direct TCP, websockify and darts side by side, darts' ratios to the
//! other two, and darts' verdict against its target.

use std::fmt::Write as _;

use super::metric::{compare, Cell, Compare, Metric, Target, Verdict};
use crate::gateway::GatewayKind;
use crate::scenario::{
    Echo, Handshakes, Idle, Measurement, Outcome, Paste, Scenario, Settings, Throughput,
};
use crate::security::Security;

/// The gateways in table order.
const COLUMNS: [GatewayKind; 3] = [
    GatewayKind::Direct,
    GatewayKind::Websockify,
    GatewayKind::Darts,
];

fn down(o: &Outcome) -> Option<&Throughput> {
    match o {
        Outcome::Down(t) => Some(t),
        _ => None,
    }
}

fn up(o: &Outcome) -> Option<&Throughput> {
    match o {
        Outcome::Up(t) => Some(t),
        _ => None,
    }
}

fn echo(o: &Outcome) -> Option<&Echo> {
    match o {
        Outcome::Echo(e) => Some(e),
        _ => None,
    }
}

fn idle(o: &Outcome) -> Option<&Idle> {
    match o {
        Outcome::Idle(i) => Some(i),
        _ => None,
    }
}

fn handshakes(o: &Outcome) -> Option<&Handshakes> {
    match o {
        Outcome::Handshakes(h) => Some(h),
        _ => None,
    }
}

fn paste(o: &Outcome) -> Option<&Paste> {
    match o {
        Outcome::Paste(p) => Some(p),
        _ => None,
    }
}

/// The rows of the main table, in order.
pub(super) fn metrics() -> Vec<Metric> {
    use Compare::Difference;
    use Target::*;
    vec![
        Metric::new("Downstream, MB/s", Scenario::Down, |o| {
            down(o).map(Throughput::mb_per_s)
        })
        .target(Some(MinTimes(0.8))),
        Metric::new("Downstream, gateway CPU-s per GB", Scenario::Down, |o| {
            down(o).and_then(Throughput::cpu_s_per_gb)
        })
        .decimals(3)
        .target(Some(Max(0.35))),
        Metric::new("Upstream (masked 64 KiB frames), MB/s", Scenario::Up, |o| {
            up(o).map(Throughput::mb_per_s)
        })
        .target(Some(MinTimes(0.7))),
        Metric::new("Upstream, gateway CPU-s per GB", Scenario::Up, |o| {
            up(o).and_then(Throughput::cpu_s_per_gb)
        })
        .decimals(3)
        .target(Some(Max(0.6))),
        Metric::new("Echo round trip p50, µs", Scenario::Echo, |o| {
            echo(o).map(|e| e.p50_us)
        })
        .unit(" µs")
        .decimals(1)
        .compare(Difference(" µs"))
        .target(Some(MaxPlus(40.0))),
        Metric::new("Echo round trip p99, µs", Scenario::Echo, |o| {
            echo(o).map(|e| e.p99_us)
        })
        .unit(" µs")
        .decimals(1)
        .compare(Difference(" µs")),
        Metric::new(
            "Echo, gateway CPU-µs per round trip",
            Scenario::Echo,
            |o| echo(o).and_then(Echo::cpu_us_per_rt),
        )
        .unit(" µs")
        .decimals(1)
        .target(Some(Max(25.0))),
        Metric::new("Idle sessions held", Scenario::Idle, |o| {
            idle(o).map(|i| i.held as f64)
        })
        .target(Some(Min(9000.0))),
        Metric::new("Memory per idle session (PSS), KiB", Scenario::Idle, |o| {
            idle(o).and_then(Idle::pss_per_session).map(|b| b / 1024.0)
        })
        .unit(" KiB")
        .decimals(1)
        .target(Some(Max(24.0))),
        Metric::new("Memory per idle session (RSS), KiB", Scenario::Idle, |o| {
            idle(o).and_then(Idle::rss_per_session).map(|b| b / 1024.0)
        })
        .unit(" KiB")
        .decimals(1),
        Metric::new("Plain session set-ups per second", Scenario::HsPlain, |o| {
            handshakes(o).map(Handshakes::per_s)
        })
        .unit("/s")
        .target(Some(Min(3000.0))),
        Metric::new(
            "Plain set-up, gateway CPU-µs each",
            Scenario::HsPlain,
            |o| handshakes(o).and_then(Handshakes::cpu_us_each),
        )
        .unit(" µs"),
        Metric::new(
            "Plain set-up alone (nothing else in flight), p50 µs",
            Scenario::HsPlain,
            |o| handshakes(o).and_then(Handshakes::alone_p50_us),
        )
        .unit(" µs")
        .compare(Difference(" µs")),
        Metric::new(
            "Full-TLS session set-ups per second",
            Scenario::HsTls,
            |o| handshakes(o).map(Handshakes::per_s),
        )
        .unit("/s")
        .target(Some(Min(800.0))),
        Metric::new("TLS set-up, gateway CPU-µs each", Scenario::HsTls, |o| {
            handshakes(o).and_then(Handshakes::cpu_us_each)
        })
        .unit(" µs"),
        Metric::new("TLS set-up alone, p50 µs", Scenario::HsTls, |o| {
            handshakes(o).and_then(Handshakes::alone_p50_us)
        })
        .unit(" µs")
        .compare(Difference(" µs")),
        Metric::new(
            "Screen-update age, upstream idle, p99 ms",
            Scenario::Paste,
            |o| paste(o).map(|p| p.idle.percentile_ms(99)),
        )
        .unit(" ms")
        .decimals(2)
        .compare(Difference(" ms")),
        Metric::new(
            "Screen-update age, own upstream saturated, p50 ms",
            Scenario::Paste,
            |o| paste(o).map(|p| p.flooded.percentile_ms(50)),
        )
        .unit(" ms")
        .decimals(2)
        .compare(Difference(" ms")),
        Metric::new(
            "Screen-update age, own upstream saturated, p99 ms",
            Scenario::Paste,
            |o| paste(o).map(|p| p.flooded.percentile_ms(99)),
        )
        .unit(" ms")
        .decimals(2)
        .compare(Difference(" ms")),
        Metric::new(
            "Screen-update p99 age added by the upstream flood, ms",
            Scenario::Paste,
            |o| paste(o).map(Paste::added_p99_ms),
        )
        .unit(" ms")
        .decimals(2)
        .compare(Difference(" ms"))
        .target(Some(Max(5.0))),
        Metric::new(
            "Upstream flood during the paste, MB/s",
            Scenario::Paste,
            |o| paste(o).map(Paste::flood_mb_per_s),
        ),
    ]
}

/// The main table, heading included.
pub(super) fn render(settings: &Settings, results: &[Measurement]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| Metric | direct | websockify | darts | darts ÷ direct | darts ÷ websockify | target (darts) | darts |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---|---|");
    for m in metrics() {
        let cells: Vec<Cell> = COLUMNS
            .iter()
            .map(|&gw| Cell::of(results, gw, Security::None, &m))
            .collect();
        let (direct, websockify, darts) = (cells[0].value(), cells[1].value(), cells[2].value());
        let mut target_text = m.target.map_or(String::new(), |t| t.text(m.unit, "direct"));
        let mut verdict = m.target.map_or(Verdict::None, |t| t.check(darts, direct));
        // A ramp asked for fewer sessions than the target cannot meet it: no verdict.
        if m.scenario == Scenario::Idle
            && matches!(m.target, Some(Target::Min(_)))
            && settings.idle_sessions < 9000
        {
            target_text = format!(
                "{target_text} (asked {}: not judged)",
                settings.idle_sessions
            );
            verdict = Verdict::Unknown;
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            m.label,
            cells[0].text(m.decimals),
            cells[1].text(m.decimals),
            cells[2].text(m.decimals),
            compare(m.compare, darts, direct),
            compare(m.compare, darts, websockify),
            target_text,
            verdict.text(),
        );
    }
    out
}
