//! What both tables share: a row's definition, how a cell is taken from the repeats, and
//! how darts' figure is compared and judged.

use crate::gateway::GatewayKind;
use crate::scenario::{Measurement, Outcome, Scenario};
use crate::security::Security;

/// How a darts figure compares with its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    Pass,
    Miss,
    /// Not measured, or the comparison it needs was not run.
    Unknown,
    /// The row has no target.
    None,
}

impl Verdict {
    pub(super) fn text(self) -> &'static str {
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
pub(super) enum Compare {
    /// darts ÷ other.
    Ratio,
    /// darts − other, in the row's unit.
    Difference(&'static str),
}

/// A target on darts' figure: a fixed bound, or a bound relative to a baseline (direct
/// TCP in the main table, darts with a plain target in the security table).
#[derive(Debug, Clone, Copy)]
pub(super) enum Target {
    Min(f64),
    Max(f64),
    MinTimes(f64),
    MaxTimes(f64),
    MaxPlus(f64),
}

impl Target {
    pub(super) fn text(self, unit: &str, base: &str) -> String {
        match self {
            Self::Min(v) => format!("≥ {}{unit}", num(v)),
            Self::Max(v) => format!("≤ {}{unit}", num(v)),
            Self::MinTimes(f) => format!("≥ {f}× {base}"),
            Self::MaxTimes(f) => format!("≤ {f}× {base}"),
            Self::MaxPlus(d) => format!("≤ {base} + {}{unit}", num(d)),
        }
    }

    pub(super) fn check(self, darts: Option<f64>, base: Option<f64>) -> Verdict {
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

/// Takes a row's figure from one run's outcome.
pub(super) type Getter = fn(&Outcome) -> Option<f64>;

/// One row of a table.
pub(super) struct Metric {
    pub(super) label: &'static str,
    pub(super) unit: &'static str,
    pub(super) scenario: Scenario,
    pub(super) get: Getter,
    pub(super) decimals: usize,
    pub(super) compare: Compare,
    pub(super) target: Option<Target>,
}

impl Metric {
    /// A row without unit or target, in whole numbers, compared by ratio; the methods
    /// below change what differs.
    pub(super) fn new(label: &'static str, scenario: Scenario, get: Getter) -> Self {
        Self {
            label,
            unit: "",
            scenario,
            get,
            decimals: 0,
            compare: Compare::Ratio,
            target: None,
        }
    }
    pub(super) fn unit(self, unit: &'static str) -> Self {
        Self { unit, ..self }
    }
    pub(super) fn decimals(self, decimals: usize) -> Self {
        Self { decimals, ..self }
    }
    pub(super) fn compare(self, compare: Compare) -> Self {
        Self { compare, ..self }
    }
    pub(super) fn target(self, target: Option<Target>) -> Self {
        Self { target, ..self }
    }
}

/// A value in a table: measured, failed, or not run.
pub(super) enum Cell {
    Value(f64),
    Failed,
    Absent,
}

impl Cell {
    /// The median of a metric over the repeats of one scenario on one gateway and target.
    pub(super) fn of(
        results: &[Measurement],
        gw: GatewayKind,
        security: Security,
        m: &Metric,
    ) -> Self {
        let runs: Vec<&Result<Outcome, String>> = results
            .iter()
            .filter(|r| r.scenario == m.scenario && r.gateway == gw && r.security == security)
            .map(|r| &r.outcome)
            .collect();
        let mut values: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .filter_map(m.get)
            .collect();
        if values.is_empty() {
            return if runs.iter().any(|r| r.is_err()) {
                Self::Failed
            } else {
                Self::Absent
            };
        }
        values.sort_by(f64::total_cmp);
        let mid = values.len() / 2;
        Self::Value(if values.len() % 2 == 1 {
            values[mid]
        } else {
            (values[mid - 1] + values[mid]) / 2.0
        })
    }
    pub(super) fn value(&self) -> Option<f64> {
        match self {
            Self::Value(v) => Some(*v),
            _ => None,
        }
    }
    pub(super) fn text(&self, decimals: usize) -> String {
        match self {
            Self::Value(v) => format!("{v:.decimals$}"),
            Self::Failed => "failed".into(),
            Self::Absent => "—".into(),
        }
    }
}

/// darts' figure against another's, as the row's `Compare` says.
pub(super) fn compare(c: Compare, darts: Option<f64>, other: Option<f64>) -> String {
    match (c, darts, other) {
        (Compare::Ratio, Some(d), Some(o)) if o > 0.0 => format!("{}×", ratio(d / o)),
        (Compare::Difference(unit), Some(d), Some(o)) => format!("{:+.1}{unit}", d - o),
        _ => "—".into(),
    }
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
