//! The markdown report: one table with each gateway's absolute figures, darts' ratios to
//! direct TCP and to websockify, and PASS/MISS against the targets; then the details of
//! every measurement (windows, counts, errors, why a ramp stopped).

mod details;
mod main_table;
mod metric;
mod secured_table;
#[cfg(test)]
mod tests;

use std::fmt::Write as _;

use crate::gateway::GatewayKind;
use crate::scenario::{Measurement, Settings};
use crate::security::Security;

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
    out.push_str(&main_table::render(settings, results));
    out.push('\n');
    if results.iter().any(|r| r.security != Security::None) {
        out.push_str(&secured_table::render(results));
        out.push('\n');
    }
    out.push_str(&details::render(settings, results));
    out
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
