//! What happened during a run, counted as it happens: sessions, viewers, bytes, errors by
//! kind, faults, and the failures that make the run fail (a lost session, a broken
//! invariant). Plain data, so the aggregation is unit-tested.

use std::collections::BTreeMap;

use serde::Serialize;

use super::plan::{FaultKind, Role};

/// Running counts.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Counters {
    pub create_attempts: u64,
    /// Creations asked for and not answered yet.
    #[serde(skip)]
    pub create_in_flight: u64,
    /// Creations whose answer never came (timeout, connection cut): darts may have made
    /// a session the soak cannot know.
    pub create_unanswered: u64,
    pub created: u64,
    pub created_oneshot: u64,
    /// Stopped by the soak (`DELETE`), and gone afterwards.
    pub stopped: u64,
    /// One-shot sessions that ended when their viewer closed.
    pub oneshot_ended: u64,
    /// Sessions whose QEMU was killed.
    pub killed: u64,
    /// Sessions darts holds for the soak right now, and the most at once.
    pub held: u64,
    pub peak_held: u64,
    pub viewers_opened: u64,
    /// Viewers opened again on a token already used.
    pub reconnections: u64,
    /// Of those, after a gateway restart cut the viewer.
    pub restart_reconnections: u64,
    /// Extra viewers that check a session's token still reaches its guest.
    pub probes: u64,
    pub bytes_down: u64,
    pub bytes_up: u64,
    pub updates: u64,
    /// Viewer connections cut by a gateway restart (expected).
    pub cut_by_restart: u64,
    /// One-shot sessions whose viewer a restart cut: still there after it, or ended.
    pub oneshot_cut_survived: u64,
    pub oneshot_cut_ended: u64,
}

/// One injected fault and what was seen.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    /// Seconds from the start of the run.
    pub at: f64,
    pub kind: FaultKind,
    /// The session whose QEMU was killed.
    pub session: Option<String>,
    /// `ok`, `skipped: …` or `failed: …`.
    pub outcome: String,
    /// kill-qemu: seconds until the session was gone from the API; restart-gateway:
    /// seconds from SIGTERM until darts answered again.
    pub recovery: Option<f64>,
    /// restart-gateway: seconds darts took to exit, and to start (re-adoption included).
    pub stop: Option<f64>,
    pub start: Option<f64>,
    /// Sessions checked afterwards (listed, and their token reaching the guest).
    pub survivors_checked: usize,
}

/// A session that should have survived and did not.
#[derive(Debug, Clone, Serialize)]
pub struct Lost {
    pub session: String,
    pub role: Role,
    /// When it was found missing: `after kill-qemu at 300 s`, `at the end`, …
    pub when: String,
    pub why: String,
}

/// Everything counted during a run.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Tally {
    pub counters: Counters,
    pub errors: BTreeMap<String, u64>,
    /// The first few messages of each error kind, for the report's details.
    pub error_examples: BTreeMap<String, Vec<String>>,
    pub faults: Vec<FaultRecord>,
    pub lost: Vec<Lost>,
    pub invariants_failed: Vec<String>,
}

/// Examples kept per error kind.
const EXAMPLES: usize = 3;

impl Tally {
    pub fn error(&mut self, kind: String, message: String) {
        let examples = self.error_examples.entry(kind.clone()).or_default();
        if examples.len() < EXAMPLES {
            examples.push(message);
        }
        *self.errors.entry(kind).or_default() += 1;
    }

    pub fn session_held(&mut self) {
        self.counters.held += 1;
        self.counters.peak_held = self.counters.peak_held.max(self.counters.held);
    }

    pub fn session_released(&mut self) {
        self.counters.held = self.counters.held.saturating_sub(1);
    }

    pub fn invariant(&mut self, what: String) {
        self.invariants_failed.push(what);
    }

    /// Records a lost session once, however many checks find it missing.
    pub fn lost(&mut self, lost: Lost) {
        if !self.lost.iter().any(|l| l.session == lost.session) {
            self.lost.push(lost);
        }
    }

    pub fn errors_total(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The run fails on a lost session or a broken invariant, never on errors alone.
    pub fn passed(&self) -> bool {
        self.lost.is_empty() && self.invariants_failed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_group_by_kind_with_a_few_examples() {
        let mut t = Tally::default();
        for i in 0..5 {
            t.error("websocket refused: 404".into(), format!("try {i}"));
        }
        t.error("timeout: create".into(), "slow".into());
        assert_eq!(t.errors["websocket refused: 404"], 5);
        assert_eq!(t.error_examples["websocket refused: 404"].len(), EXAMPLES);
        assert_eq!(t.errors_total(), 6);
        assert!(t.passed(), "errors alone do not fail a run");
    }

    #[test]
    fn peak_follows_held_sessions() {
        let mut t = Tally::default();
        t.session_held();
        t.session_held();
        t.session_released();
        t.session_held();
        t.session_released();
        t.session_released();
        t.session_released();
        assert_eq!((t.counters.held, t.counters.peak_held), (0, 2));
    }

    #[test]
    fn a_lost_session_is_counted_once_and_fails_the_run() {
        let mut t = Tally::default();
        for when in ["after restart-gateway at 50 s", "at the end"] {
            t.lost(Lost {
                session: "darts-aaaaaaaaaaaa".into(),
                role: Role::Long,
                when: when.into(),
                why: "not listed".into(),
            });
        }
        assert_eq!(t.lost.len(), 1);
        assert!(!t.passed());
        let mut t = Tally::default();
        t.invariant("killed session still listed".into());
        assert!(!t.passed());
    }
}
