//! The security-proxy table: darts to vnc-password and x509 targets against darts to a
//! plain target, measured in the same run.

use std::fmt::Write as _;

use super::main_table;
use super::metric::{compare, Cell, Compare, Metric, Target, Verdict};
use crate::gateway::GatewayKind;
use crate::scenario::Measurement;
use crate::security::Security;

/// How far a secured target's per-byte figures may stray from the plain target's and
/// still count as the same (the issue asks for equal cost "within noise").
const NOISE: f64 = 0.10;

/// Rows of the security-proxy table: darts to a secured target against darts to a plain
/// one. Per-byte figures must stay those of the plain relay; set-up costs are reported.
fn metrics() -> Vec<Metric> {
    use Compare::{Difference, Ratio};
    use Target::*;
    let main = main_table::metrics();
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
            rows.push(
                Metric::new(new_label, scenario, get)
                    .decimals(decimals)
                    .compare(compare)
                    .target(target),
            );
        }
    }
    rows
}

/// The security-proxy table, its explanation and heading included.
pub(super) fn render(results: &[Measurement]) -> String {
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
    let darts = |sec, m: &Metric| Cell::of(results, GatewayKind::Darts, sec, m);
    for m in metrics() {
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
