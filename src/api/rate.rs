//! Failed-login back-off, per client address and per user name.
//!
//! A key may fail `free` times; from then on each further failure locks it for twice as long as
//! the previous one (1 s, 2 s, 4 s, … up to [`MAX_LOCK`]). While locked, attempts are
//! refused before the credentials are looked at, so a locked key learns nothing. A key
//! is forgotten [`FORGET_AFTER`] after its last failure.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// First lock.
const BASE_LOCK: Duration = Duration::from_secs(1);
/// Longest lock.
pub const MAX_LOCK: Duration = Duration::from_secs(15 * 60);
/// Failures older than this no longer count.
pub const FORGET_AFTER: Duration = Duration::from_secs(30 * 60);
/// Keys tracked at once; beyond, forgotten keys are dropped, then the oldest.
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last_failure: Instant,
    locked_until: Instant,
}

/// The back-off table.
#[derive(Debug)]
pub struct Backoff {
    free: u32,
    keys: Mutex<HashMap<String, Record>>,
}

impl Backoff {
    /// `free` failures are allowed before the first lock.
    pub fn new(free: u32) -> Self {
        Self {
            free,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` while `key` is locked.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let keys = lock(&self.keys);
        match keys.get(key) {
            Some(r) if r.locked_until > now => Err(r.locked_until - now),
            _ => Ok(()),
        }
    }

    /// Counts a failure of `key`; returns the lock it now carries, if any.
    pub fn failure(&self, key: &str, now: Instant) -> Option<Duration> {
        let mut keys = lock(&self.keys);
        if keys.len() >= MAX_KEYS && !keys.contains_key(key) {
            keys.retain(|_, r| now.saturating_duration_since(r.last_failure) < FORGET_AFTER);
            if keys.len() >= MAX_KEYS {
                if let Some(oldest) = keys
                    .iter()
                    .min_by_key(|(_, r)| r.last_failure)
                    .map(|(k, _)| k.clone())
                {
                    keys.remove(&oldest);
                }
            }
        }
        let r = keys.entry(key.to_owned()).or_insert(Record {
            failures: 0,
            last_failure: now,
            locked_until: now,
        });
        if now.saturating_duration_since(r.last_failure) >= FORGET_AFTER {
            r.failures = 0;
        }
        r.failures = r.failures.saturating_add(1);
        r.last_failure = now;
        let lock = lock_for(r.failures, self.free);
        r.locked_until = now + lock;
        (!lock.is_zero()).then_some(lock)
    }

    /// Forgets the failures of `key` (a successful login of that user).
    pub fn success(&self, key: &str) {
        lock(&self.keys).remove(key);
    }
}

/// The lock after `failures` failures when `free` are allowed.
fn lock_for(failures: u32, free: u32) -> Duration {
    if failures <= free {
        return Duration::ZERO;
    }
    let doublings = (failures - free - 1).min(20);
    (BASE_LOCK * 2u32.pow(doublings)).min(MAX_LOCK)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_double_after_the_free_failures() {
        let b = Backoff::new(2);
        let t0 = Instant::now();
        assert_eq!(b.failure("u", t0), None);
        assert_eq!(b.failure("u", t0), None);
        assert!(b.check("u", t0).is_ok());
        assert_eq!(b.failure("u", t0), Some(Duration::from_secs(1)));
        assert_eq!(b.check("u", t0), Err(Duration::from_secs(1)));
        // Other keys are not affected.
        assert!(b.check("v", t0).is_ok());
        let t1 = t0 + Duration::from_secs(1);
        assert!(b.check("u", t1).is_ok());
        assert_eq!(b.failure("u", t1), Some(Duration::from_secs(2)));
        let t2 = t1 + Duration::from_secs(2);
        assert_eq!(b.failure("u", t2), Some(Duration::from_secs(4)));
        assert_eq!(
            b.check("u", t2 + Duration::from_secs(1)),
            Err(Duration::from_secs(3))
        );
    }

    #[test]
    fn locks_are_capped_success_resets_and_old_failures_are_forgotten() {
        assert_eq!(lock_for(60, 5), MAX_LOCK);
        let b = Backoff::new(0);
        let t0 = Instant::now();
        assert!(b.failure("u", t0).is_some());
        b.success("u");
        assert!(b.check("u", t0).is_ok());
        assert_eq!(b.failure("u", t0), Some(Duration::from_secs(1)));
        assert_eq!(
            b.failure("u", t0 + Duration::from_secs(5)),
            Some(Duration::from_secs(2))
        );
        // Half an hour later the count starts again.
        assert_eq!(
            b.failure("u", t0 + FORGET_AFTER + Duration::from_secs(10)),
            Some(Duration::from_secs(1))
        );
    }
}
