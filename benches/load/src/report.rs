//! The markdown report: one table with each gateway's absolute figures, darts' ratios to
//! direct TCP and to websockify, and PASS/MISS against the targets; then the details of
//! every measurement (windows, counts, errors, why a ramp stopped).

use std::fmt::Write as _;

use crate::gateway::GatewayKind;
use crate::scenario::{CpuUse, Measurement, Outcome, Scenario, Settings};
use crate::security::Security;

/// The gateways in table order.
const COLUMNS: [GatewayKind; 3] = [
    GatewayKind::Direct,
    GatewayKind::Websockify,
    GatewayKind::Darts,
];

/// What the report says at the top.
#[derive(Debug, Clone)]
pub struct Header {
    pub date: String,
    pub machine: String,
    /// Cores busy machine-wide just before the run.
    pub background: f64,
    pub repeat: usize,
    pub gateways: Vec<(GatewayKind, String)>,
    pub command: String,
}

/// How a darts figure compares with its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Pass,
    Miss,
    /// Not measured, or the comparison it needs was not run.
    Unknown,
    /// The row has no target.
    None,
}

impl Verdict {
    fn text(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Miss => "**MISS**",
            Self::Unknown => "?",
            Self::None => "",
        }
    }
    fn from(ok: Option<bool>) -> Self {
        match ok {
            Some(true) => Self::Pass,
            Some(false) => Self::Miss,
            None => Self::Unknown,
        }
    }
}

/// How the ratio columns compare darts with another gateway on a row.
#[derive(Debug, Clone, Copy)]
enum Compare {
    /// darts ÷ other.
    Ratio,
    /// darts − other, in the row's unit.
    Difference(&'static str),
}

/// A target on darts' figure: a fixed bound, or a bound relative to a baseline (direct
/// TCP in the main table, darts with a plain target in the security table).
#[derive(Debug, Clone, Copy)]
enum Target {
    Min(f64),
    Max(f64),
    MinTimes(f64),
    MaxTimes(f64),
    MaxPlus(f64),
}

impl Target {
    fn text(self, unit: &str, base: &str) -> String {
        match self {
            Self::Min(v) => format!("≥ {}{unit}", num(v)),
            Self::Max(v) => format!("≤ {}{unit}", num(v)),
            Self::MinTimes(f) => format!("≥ {f}× {base}"),
            Self::MaxTimes(f) => format!("≤ {f}× {base}"),
            Self::MaxPlus(d) => format!("≤ {base} + {}{unit}", num(d)),
        }
    }

    fn check(self, darts: Option<f64>, base: Option<f64>) -> Verdict {
        let d = darts;
        Verdict::from(match self {
            Self::Min(v) => d.map(|d| d >= v),
            Self::Max(v) => d.map(|d| d <= v),
            Self::MinTimes(f) => d.zip(base).map(|(d, x)| d >= f * x),
            Self::MaxTimes(f) => d.zip(base).map(|(d, x)| d <= f * x),
            Self::MaxPlus(v) => d.zip(base).map(|(d, x)| d <= x + v),
        })
    }
}

/// How far a secured target's per-byte figures may stray from the plain target's and
/// still count as the same (the issue asks for equal cost "within noise").
const NOISE: f64 = 0.10;

/// One row of the table.
struct Metric {
    label: &'static str,
    unit: &'static str,
    scenario: Scenario,
    get: fn(&Outcome) -> Option<f64>,
    decimals: usize,
    compare: Compare,
    target: Option<Target>,
}

fn metrics() -> Vec<Metric> {
    use Compare::{Difference, Ratio};
    use Scenario::*;
    use Target::*;
    vec![
        Metric {
            label: "Downstream, MB/s",
            unit: "",
            scenario: Down,
            get: |o| match o {
                Outcome::Down(t) => Some(t.mb_per_s()),
                _ => None,
            },
            decimals: 0,
            compare: Ratio,
            target: Some(MinTimes(0.8)),
        },
        Metric {
            label: "Downstream, gateway CPU-s per GB",
            unit: "",
            scenario: Down,
            get: |o| match o {
                Outcome::Down(t) => t.cpu_s_per_gb(),
                _ => None,
            },
            decimals: 3,
            compare: Ratio,
            target: Some(Max(0.35)),
        },
        Metric {
            label: "Upstream (masked 64 KiB frames), MB/s",
            unit: "",
            scenario: Up,
            get: |o| match o {
                Outcome::Up(t) => Some(t.mb_per_s()),
                _ => None,
            },
            decimals: 0,
            compare: Ratio,
            target: Some(MinTimes(0.7)),
        },
        Metric {
            label: "Upstream, gateway CPU-s per GB",
            unit: "",
            scenario: Up,
            get: |o| match o {
                Outcome::Up(t) => t.cpu_s_per_gb(),
                _ => None,
            },
            decimals: 3,
            compare: Ratio,
            target: Some(Max(0.6)),
        },
        Metric {
            label: "Echo round trip p50, µs",
            unit: " µs",
            scenario: Echo,
            get: |o| match o {
                Outcome::Echo(e) => Some(e.p50_us),
                _ => None,
            },
            decimals: 1,
            compare: Difference(" µs"),
            target: Some(MaxPlus(40.0)),
        },
        Metric {
            label: "Echo round trip p99, µs",
            unit: " µs",
            scenario: Echo,
            get: |o| match o {
                Outcome::Echo(e) => Some(e.p99_us),
                _ => None,
            },
            decimals: 1,
            compare: Difference(" µs"),
            target: None,
        },
        Metric {
            label: "Echo, gateway CPU-µs per round trip",
            unit: " µs",
            scenario: Echo,
            get: |o| match o {
                Outcome::Echo(e) => e.cpu_us_per_rt(),
                _ => None,
            },
            decimals: 1,
            compare: Ratio,
            target: Some(Max(25.0)),
        },
        Metric {
            label: "Idle sessions held",
            unit: "",
            scenario: Idle,
            get: |o| match o {
                Outcome::Idle(i) => Some(i.held as f64),
                _ => None,
            },
            decimals: 0,
            compare: Ratio,
            target: Some(Min(9000.0)),
        },
        Metric {
            label: "Memory per idle session (PSS), KiB",
            unit: " KiB",
            scenario: Idle,
            get: |o| match o {
                Outcome::Idle(i) => i.pss_per_session().map(|b| b / 1024.0),
                _ => None,
            },
            decimals: 1,
            compare: Ratio,
            target: Some(Max(24.0)),
        },
        Metric {
            label: "Memory per idle session (RSS), KiB",
            unit: " KiB",
            scenario: Idle,
            get: |o| match o {
                Outcome::Idle(i) => i.rss_per_session().map(|b| b / 1024.0),
                _ => None,
            },
            decimals: 1,
            compare: Ratio,
            target: None,
        },
        Metric {
            label: "Plain session set-ups per second",
            unit: "/s",
            scenario: HsPlain,
            get: |o| match o {
                Outcome::Handshakes(h) => Some(h.per_s()),
                _ => None,
            },
            decimals: 0,
            compare: Ratio,
            target: Some(Min(3000.0)),
        },
        Metric {
            label: "Plain set-up, gateway CPU-µs each",
            unit: " µs",
            scenario: HsPlain,
            get: |o| match o {
                Outcome::Handshakes(h) => h.cpu_us_each(),
                _ => None,
            },
            decimals: 0,
            compare: Ratio,
            target: None,
        },
        Metric {
            label: "Plain set-up alone (nothing else in flight), p50 µs",
            unit: " µs",
            scenario: HsPlain,
            get: |o| match o {
                Outcome::Handshakes(h) => h.alone_p50_us(),
                _ => None,
            },
            decimals: 0,
            compare: Difference(" µs"),
            target: None,
        },
        Metric {
            label: "Full-TLS session set-ups per second",
            unit: "/s",
            scenario: HsTls,
            get: |o| match o {
                Outcome::Handshakes(h) => Some(h.per_s()),
                _ => None,
            },
            decimals: 0,
            compare: Ratio,
            target: Some(Min(800.0)),
        },
        Metric {
            label: "TLS set-up, gateway CPU-µs each",
            unit: " µs",
            scenario: HsTls,
            get: |o| match o {
                Outcome::Handshakes(h) => h.cpu_us_each(),
                _ => None,
            },
            decimals: 0,
            compare: Ratio,
            target: None,
        },
        Metric {
            label: "TLS set-up alone, p50 µs",
            unit: " µs",
            scenario: HsTls,
            get: |o| match o {
                Outcome::Handshakes(h) => h.alone_p50_us(),
                _ => None,
            },
            decimals: 0,
            compare: Difference(" µs"),
            target: None,
        },
    ]
}

/// Rows of the security-proxy table: darts to a secured target against darts to a plain
/// one. Per-byte figures must stay those of the plain relay; set-up costs are reported.
fn secured_metrics() -> Vec<Metric> {
    use Compare::{Difference, Ratio};
    use Target::*;
    let main = metrics();
    let pick = |label: &str| {
        main.iter()
            .find(|m| m.label == label)
            .map(|m| (m.get, m.scenario))
    };
    let mut rows = Vec::new();
    for (label, new_label, decimals, compare, target) in [
        (
            "Downstream, MB/s",
            "Downstream, MB/s",
            0,
            Ratio,
            Some(MinTimes(1.0 - NOISE)),
        ),
        (
            "Downstream, gateway CPU-s per GB",
            "Downstream, gateway CPU-s per GB",
            3,
            Ratio,
            Some(MaxTimes(1.0 + NOISE)),
        ),
        (
            "Upstream (masked 64 KiB frames), MB/s",
            "Upstream (masked 64 KiB frames), MB/s",
            0,
            Ratio,
            Some(MinTimes(1.0 - NOISE)),
        ),
        (
            "Upstream, gateway CPU-s per GB",
            "Upstream, gateway CPU-s per GB",
            3,
            Ratio,
            Some(MaxTimes(1.0 + NOISE)),
        ),
        (
            "Plain session set-ups per second",
            "Session set-ups per second (16 in flight)",
            0,
            Ratio,
            None,
        ),
        (
            "Plain set-up, gateway CPU-µs each",
            "Set-up, gateway CPU-µs each",
            0,
            Difference(" µs"),
            None,
        ),
        (
            "Plain set-up alone (nothing else in flight), p50 µs",
            "Set-up alone, p50 µs",
            0,
            Difference(" µs"),
            None,
        ),
    ] {
        if let Some((get, scenario)) = pick(label) {
            rows.push(Metric {
                label: new_label,
                unit: "",
                scenario,
                get,
                decimals,
                compare,
                target,
            });
        }
    }
    rows
}

/// A value in the table: measured, failed, or not run.
enum Cell {
    Value(f64),
    Failed,
    Absent,
}

impl Cell {
    fn value(&self) -> Option<f64> {
        match self {
            Self::Value(v) => Some(*v),
            _ => None,
        }
    }
    fn text(&self, decimals: usize) -> String {
        match self {
            Self::Value(v) => fixed(*v, decimals),
            Self::Failed => "failed".into(),
            Self::Absent => "—".into(),
        }
    }
}

/// The median of a metric over the repeats of one scenario on one gateway and target.
fn cell(
    results: &[Measurement],
    scenario: Scenario,
    gw: GatewayKind,
    security: Security,
    m: &Metric,
) -> Cell {
    let runs: Vec<&Result<Outcome, String>> = results
        .iter()
        .filter(|r| r.scenario == scenario && r.gateway == gw && r.security == security)
        .map(|r| &r.outcome)
        .collect();
    let mut values: Vec<f64> = runs
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .filter_map(m.get)
        .collect();
    if values.is_empty() {
        return if runs.iter().any(|r| r.is_err()) {
            Cell::Failed
        } else {
            Cell::Absent
        };
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Cell::Value(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

fn compare(c: Compare, darts: Option<f64>, other: Option<f64>) -> String {
    match (c, darts, other) {
        (Compare::Ratio, Some(d), Some(o)) if o > 0.0 => format!("{}×", ratio(d / o)),
        (Compare::Difference(unit), Some(d), Some(o)) => format!("{:+.1}{unit}", d - o),
        _ => "—".into(),
    }
}

/// The whole report as markdown.
pub fn render(header: &Header, settings: &Settings, results: &[Measurement]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Date: {}  ", header.date);
    let _ = writeln!(out, "Machine: {}  ", header.machine);
    let _ = writeln!(
        out,
        "Background load before the run: {:.2} cores busy  ",
        header.background
    );
    for (kind, desc) in &header.gateways {
        let _ = writeln!(out, "{}: {desc}  ", kind.name());
    }
    let _ = writeln!(out, "Command: `{}`  ", header.command);
    let _ = writeln!(
        out,
        "Each figure is the median of {} run(s); the details below list every run.\n",
        header.repeat
    );
    let _ = writeln!(
        out,
        "| Metric | direct | websockify | darts | darts ÷ direct | darts ÷ websockify | target (darts) | darts |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---|---|");
    for m in metrics() {
        let cells: Vec<Cell> = COLUMNS
            .iter()
            .map(|&gw| cell(results, m.scenario, gw, Security::None, &m))
            .collect();
        let (direct, websockify, darts) = (cells[0].value(), cells[1].value(), cells[2].value());
        let target_text = m.target.map_or(String::new(), |t| t.text(m.unit, "direct"));
        let mut verdict = m.target.map_or(Verdict::None, |t| t.check(darts, direct));
        let mut target_text = target_text;
        if m.scenario == Scenario::Idle
            && m.target.is_some()
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
    out.push('\n');
    if results.iter().any(|r| r.security != Security::None) {
        out.push_str(&secured_table(results));
        out.push('\n');
    }
    out.push_str(&details(settings, results));
    out
}

/// The security-proxy table: darts to vnc-password and x509 targets against darts to a
/// plain target, measured in the same run.
fn secured_table(results: &[Measurement]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Security proxy: darts answers the target's VNC password or VeNCrypt X509None \
         (client certificate) itself and offers the client None; each ratio is to darts \
         with a plain target in the same run. websockify cannot do either (n/a).\n"
    );
    let _ = writeln!(
        out,
        "| Metric | darts, plain target | darts, vnc-password | darts, x509 | websockify | \
         vnc-password ÷ plain | x509 ÷ plain | target | vnc-password | x509 |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---|---:|---:|---|---|---|");
    let darts = |sec, m: &Metric| cell(results, m.scenario, GatewayKind::Darts, sec, m);
    for m in secured_metrics() {
        let plain = darts(Security::None, &m);
        let vnc = darts(Security::VncPassword, &m);
        let x509 = darts(Security::X509, &m);
        let verdict = |c: &Cell| {
            m.target
                .map_or(Verdict::None, |t| t.check(c.value(), plain.value()))
                .text()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | n/a | {} | {} | {} | {} | {} |",
            m.label,
            plain.text(m.decimals),
            vnc.text(m.decimals),
            x509.text(m.decimals),
            compare(m.compare, vnc.value(), plain.value()),
            compare(m.compare, x509.value(), plain.value()),
            m.target.map_or(String::new(), |t| t.text(m.unit, "plain")),
            verdict(&vnc),
            verdict(&x509),
        );
    }
    out
}

/// The raw figures behind the table, one line per measurement.
fn details(s: &Settings, results: &[Measurement]) -> String {
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

fn fixed(v: f64, decimals: usize) -> String {
    format!("{v:.decimals$}")
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

fn ratio(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.0}")
    } else if r >= 1.0 {
        format!("{r:.2}")
    } else {
        format!("{r:.3}")
    }
}

/// Today's date (UTC) as YYYY-MM-DD.
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Echo, Throughput};
    use std::time::Duration;

    fn settings() -> Settings {
        Settings {
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(2),
            streams: 1,
            up_frame: 65_536,
            echo_size: 64,
            idle_sessions: 200,
            idle_ramp_timeout: Duration::from_secs(60),
            idle_min_free: 1 << 30,
            hs_concurrency: 8,
        }
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn table_has_ratios_and_verdicts() {
        let t = |mb: f64, gateway: Option<f64>| Throughput {
            bytes: (mb * 1e6) as u64,
            secs: 1.0,
            cpu: CpuUse {
                gateway,
                ..CpuUse::default()
            },
        };
        let results = vec![
            Measurement {
                scenario: Scenario::Down,
                gateway: GatewayKind::Direct,
                security: Security::None,
                outcome: Ok(Outcome::Down(t(1000.0, None))),
            },
            Measurement {
                scenario: Scenario::Down,
                gateway: GatewayKind::Darts,
                security: Security::None,
                outcome: Ok(Outcome::Down(t(900.0, Some(0.45)))),
            },
            Measurement {
                scenario: Scenario::Down,
                gateway: GatewayKind::Darts,
                security: Security::VncPassword,
                outcome: Ok(Outcome::Down(t(880.0, Some(0.44)))),
            },
            Measurement {
                scenario: Scenario::Down,
                gateway: GatewayKind::Darts,
                security: Security::X509,
                outcome: Ok(Outcome::Down(t(600.0, Some(0.6)))),
            },
            Measurement {
                scenario: Scenario::Echo,
                gateway: GatewayKind::Darts,
                security: Security::None,
                outcome: Ok(Outcome::Echo(Echo {
                    count: 1000,
                    p50_us: 50.0,
                    p99_us: 80.0,
                    mean_us: 55.0,
                    cpu: CpuUse {
                        gateway: Some(0.01),
                        ..CpuUse::default()
                    },
                })),
            },
            Measurement {
                scenario: Scenario::Up,
                gateway: GatewayKind::Darts,
                security: Security::None,
                outcome: Err("boom".into()),
            },
        ];
        let header = Header {
            date: "2024-01-01".into(),
            machine: "test".into(),
            background: 0.0,
            repeat: 1,
            gateways: vec![],
            command: "darts-load".into(),
        };
        let text = render(&header, &settings(), &results);
        let row = |label: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("| {label}")))
                .unwrap_or_default()
                .to_owned()
        };
        let down = row("Downstream, MB/s");
        assert!(down.contains("| 1000 |") && down.contains("0.900×") && down.contains("PASS"));
        assert!(row("Downstream, gateway CPU-s").contains("**MISS**"));
        assert!(
            row("Echo round trip p50").ends_with("| ? |"),
            "no direct to compare"
        );
        assert!(row("Echo, gateway CPU-µs").contains("| 10.0 |"));
        assert!(row("Upstream (masked").contains("failed"));
        assert!(row("Idle sessions held").contains("not judged"));
        assert!(text.contains("FAILED: boom"));
        // The security table: vnc-password equals plain, x509 does not; its rows come
        // after the main table's.
        let secured = text.split("Security proxy").nth(1).unwrap();
        let down_cpu = secured
            .lines()
            .find(|l| l.starts_with("| Downstream, gateway CPU-s per GB"))
            .unwrap();
        assert!(
            down_cpu.contains("| 0.500 | 0.500 | 1.000 | n/a | 1.00× | 2.00× |"),
            "{down_cpu}"
        );
        assert!(
            down_cpu.ends_with("| ≤ 1.1× plain | PASS | **MISS** |"),
            "{down_cpu}"
        );
        assert!(text.contains("down / darts → x509 target #1: 600000000 bytes"));
    }
}
