//! Failed-login back-off, per client address and per user name.
//!
//! A key may fail `free` times; the `free`-th failure locks it for [`BASE_LOCK`] and each
//! further one for twice as long as the previous (1 s, 2 s, 4 s, … up to [`MAX_LOCK`]).
//! While locked, attempts are refused before the credentials are looked at, so a locked
//! key learns nothing. A key is forgotten [`FORGET_AFTER`] after its last failure.
//!
//! An attempt is admitted by [`Backoff::reserve`] before its credentials reach the
//! authentication server, for all its keys at once under one lock. A reservation counts
//! like a failure until it is settled, so parallel requests cannot all pass the check
//! before the first failure is recorded: at most `free` attempts of a key run at once
//! while it has failures to spare, and one at a time once it has none.
//!
//! The table is bounded. When it is full, forgotten keys go first, then the unlocked key
//! with the oldest failure; a locked key or one with an attempt under way is never dropped
//! to make room, so a flood of new names cannot free a victim's lock: the newcomer is
//! refused instead.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// First lock.
const BASE_LOCK: Duration = Duration::from_secs(1);
/// Longest lock.
pub const MAX_LOCK: Duration = Duration::from_secs(15 * 60);
/// Failures older than this no longer count.
pub const FORGET_AFTER: Duration = Duration::from_secs(30 * 60);
/// Keys tracked at once.
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last_failure: Instant,
    locked_until: Instant,
    /// Reserved attempts not settled yet.
    in_flight: u32,
}

impl Record {
    fn new(now: Instant) -> Self {
        Self {
            failures: 0,
            last_failure: now,
            locked_until: now,
            in_flight: 0,
        }
    }

    fn is_forgotten(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_failure) >= FORGET_AFTER
    }

    /// Failures that still count.
    fn failures(&self, now: Instant) -> u32 {
        if self.is_forgotten(now) {
            0
        } else {
            self.failures
        }
    }

    fn is_locked(&self, now: Instant) -> bool {
        self.locked_until > now
    }

    /// Worth keeping: locked, counting failures, or with an attempt under way.
    fn matters(&self, now: Instant) -> bool {
        self.in_flight > 0 || self.is_locked(now) || self.failures(now) > 0
    }

    /// `Err(wait)` unless one more attempt may start now.
    fn admits(&self, free: u32, now: Instant) -> Result<(), Duration> {
        if self.is_locked(now) {
            return Err(self.locked_until - now);
        }
        let failures = self.failures(now);
        let spare = failures.saturating_add(self.in_flight) < free;
        // No failure to spare: one attempt at a time, each one's failure locks again.
        let alone = failures >= free && self.in_flight == 0;
        if spare || alone {
            Ok(())
        } else {
            Err(BASE_LOCK)
        }
    }
}

/// The back-off table.
#[derive(Debug)]
pub struct Backoff {
    free: u32,
    capacity: usize,
    keys: Mutex<HashMap<String, Record>>,
}

/// An admitted attempt, holding its place on each of its keys until it is settled:
/// [`Attempt::release`] (credentials accepted, or nothing was checked) or
/// [`Attempt::fail`]. Dropped unsettled (the request went away while the server was
/// asked), it counts as a failure.
#[derive(Debug)]
#[must_use = "an attempt left unsettled counts as a failure"]
pub struct Attempt<'a> {
    backoff: &'a Backoff,
    keys: Vec<String>,
    settled: bool,
}

impl Attempt<'_> {
    /// Settles the attempt without a failure.
    pub fn release(mut self) {
        self.settled = true;
        self.backoff.settle(&self.keys, false, Instant::now());
    }

    /// Settles the attempt as a failure of every key; returns the longest lock it set.
    pub fn fail(self) -> Option<Duration> {
        self.fail_at(Instant::now())
    }

    /// [`Attempt::fail`] at `now`.
    fn fail_at(mut self, now: Instant) -> Option<Duration> {
        self.settled = true;
        self.backoff.settle(&self.keys, true, now)
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.backoff.settle(&self.keys, true, Instant::now());
        }
    }
}

impl Backoff {
    /// `free` failures are allowed before the first lock.
    pub fn new(free: u32) -> Self {
        Self::with_capacity(free, MAX_KEYS)
    }

    /// A table of at most `capacity` keys.
    pub fn with_capacity(free: u32, capacity: usize) -> Self {
        Self {
            free,
            capacity: capacity.max(1),
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// Admits one attempt on all of `keys` at once, or none: `Err(wait)` while any of
    /// them is locked or already has as many attempts under way as it may fail, and when
    /// the table has no room left but locked keys.
    pub fn reserve(&self, keys: &[String], now: Instant) -> Result<Attempt<'_>, Duration> {
        let mut table = lock(&self.keys);
        let wait = keys
            .iter()
            .filter_map(|k| table.get(k)?.admits(self.free, now).err())
            .max();
        if let Some(wait) = wait {
            return Err(wait);
        }
        let new = keys.iter().filter(|k| !table.contains_key(*k)).count();
        if !make_room(&mut table, self.capacity, new, keys, now) {
            tracing::warn!(
                keys = table.len(),
                "login back-off table full of locked keys: attempt refused"
            );
            return Err(BASE_LOCK);
        }
        for k in keys {
            let r = table.entry(k.clone()).or_insert_with(|| Record::new(now));
            r.in_flight = r.in_flight.saturating_add(1);
        }
        Ok(Attempt {
            backoff: self,
            keys: keys.to_vec(),
            settled: false,
        })
    }

    /// Ends a reservation of `keys`, counting a failure of each when `failed`.
    fn settle(&self, keys: &[String], failed: bool, now: Instant) -> Option<Duration> {
        let mut table = lock(&self.keys);
        let mut longest = None;
        for k in keys {
            let Some(r) = table.get_mut(k) else { continue };
            r.in_flight = r.in_flight.saturating_sub(1);
            if failed {
                r.failures = r.failures(now).saturating_add(1);
                r.last_failure = now;
                let lock = lock_for(r.failures, self.free);
                r.locked_until = now + lock;
                if !lock.is_zero() {
                    longest = longest.max(Some(lock));
                }
            }
            if !r.matters(now) {
                table.remove(k);
            }
        }
        longest
    }

    /// Forgets the failures of `key` (a successful login of that user). An attempt under
    /// way keeps its place.
    pub fn success(&self, key: &str) {
        let mut table = lock(&self.keys);
        if let Some(r) = table.get_mut(key) {
            if r.in_flight == 0 {
                table.remove(key);
            } else {
                *r = Record {
                    in_flight: r.in_flight,
                    ..Record::new(Instant::now())
                };
            }
        }
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        lock(&self.keys).len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[cfg(test)]
    fn failures_of(&self, key: &str) -> Option<u32> {
        lock(&self.keys).get(key).map(|r| r.failures)
    }
}

/// Makes room for `new` more keys in a table of at most `capacity`: forgotten keys go
/// first, then unlocked keys with no attempt under way, the oldest failure first. Never
/// one of `keeping` (the attempt's own keys), a locked key or one in use; `false` if that
/// is not enough.
fn make_room(
    table: &mut HashMap<String, Record>,
    capacity: usize,
    new: usize,
    keeping: &[String],
    now: Instant,
) -> bool {
    if table.len() + new <= capacity {
        return true;
    }
    table.retain(|k, r| keeping.contains(k) || r.in_flight > 0 || !r.is_forgotten(now));
    while table.len() + new > capacity {
        let victim = table
            .iter()
            .filter(|(k, r)| !keeping.contains(k) && r.in_flight == 0 && !r.is_locked(now))
            .min_by_key(|(_, r)| r.last_failure)
            .map(|(k, _)| k.clone());
        match victim {
            Some(k) => table.remove(&k),
            None => return false,
        };
    }
    true
}

/// The lock after `failures` failures when `free` are allowed.
fn lock_for(failures: u32, free: u32) -> Duration {
    if failures == 0 || failures < free {
        return Duration::ZERO;
    }
    let doublings = (failures - free.max(1)).min(20);
    (BASE_LOCK * 2u32.pow(doublings)).min(MAX_LOCK)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| (*s).to_owned()).collect()
    }

    /// One whole failed attempt of `k` at `now`; the lock it set.
    fn fail(b: &Backoff, k: &[&str], now: Instant) -> Option<Duration> {
        b.reserve(&keys(k), now).unwrap().fail_at(now)
    }

    #[test]
    fn locks_double_from_the_last_free_failure() {
        let b = Backoff::new(2);
        let t0 = Instant::now();
        assert_eq!(fail(&b, &["u"], t0), None);
        assert_eq!(fail(&b, &["u"], t0), Some(Duration::from_secs(1)));
        assert!(b.reserve(&keys(&["u"]), t0).is_err());
        // Other keys are not affected.
        b.reserve(&keys(&["v"]), t0).unwrap().release();
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(fail(&b, &["u"], t1), Some(Duration::from_secs(2)));
        let t2 = t1 + Duration::from_secs(2);
        assert_eq!(fail(&b, &["u"], t2), Some(Duration::from_secs(4)));
        assert_eq!(
            b.reserve(&keys(&["u"]), t2 + Duration::from_secs(1))
                .unwrap_err(),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn locks_are_capped_success_resets_and_old_failures_are_forgotten() {
        assert_eq!(lock_for(60, 5), MAX_LOCK);
        assert_eq!(lock_for(1, 0), BASE_LOCK);
        let b = Backoff::new(0);
        let t0 = Instant::now();
        assert!(fail(&b, &["u"], t0).is_some());
        b.success("u");
        assert!(b.is_empty());
        assert_eq!(fail(&b, &["u"], t0), Some(Duration::from_secs(1)));
        assert_eq!(
            fail(&b, &["u"], t0 + Duration::from_secs(5)),
            Some(Duration::from_secs(2))
        );
        // Half an hour later the count starts again.
        assert_eq!(
            fail(&b, &["u"], t0 + FORGET_AFTER + Duration::from_secs(10)),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn attempts_under_way_count_against_the_free_failures() {
        let b = Backoff::new(3);
        let t0 = Instant::now();
        let k = keys(&["addr:a", "user:u"]);
        let held: Vec<_> = (0..3).map(|_| b.reserve(&k, t0).unwrap()).collect();
        assert_eq!(b.reserve(&k, t0).unwrap_err(), BASE_LOCK);
        // All or nothing: the refused attempt took no place on the address either.
        let other = keys(&["addr:a", "user:w"]);
        assert!(b.reserve(&other, t0).is_err());
        assert_eq!(b.failures_of("user:w"), None);
        // A success gives its place back; a failure keeps it as a failure.
        let mut held = held.into_iter();
        held.next().unwrap().release();
        let again = b.reserve(&k, t0).unwrap();
        assert!(b.reserve(&k, t0).is_err());
        // Dropped unsettled: a failure.
        drop(again);
        assert_eq!(b.failures_of("user:u"), Some(1));
        assert_eq!(held.next().unwrap().fail_at(t0), None);
        assert_eq!(held.next().unwrap().fail_at(t0), Some(BASE_LOCK));
        assert!(b.reserve(&k, t0).is_err());
        // Once the lock is over, one attempt at a time.
        let t1 = t0 + BASE_LOCK;
        let one = b.reserve(&k, t1).unwrap();
        assert!(b.reserve(&k, t1).is_err());
        one.release();
        b.success("user:u");
        assert_eq!(b.failures_of("user:u"), None);
        assert_eq!(b.failures_of("addr:a"), Some(3));
    }

    #[test]
    fn released_attempts_leave_nothing_behind() {
        let b = Backoff::new(2);
        b.reserve(&keys(&["addr:a", "user:u"]), Instant::now())
            .unwrap()
            .release();
        assert!(b.is_empty());
    }

    #[test]
    fn a_full_table_never_frees_a_lock() {
        let b = Backoff::new(1);
        let t0 = Instant::now();
        // The victim is locked first; then the attacker fills the table with locked names.
        assert!(fail(&b, &["user:victim"], t0).is_some());
        let t1 = t0 + Duration::from_millis(1);
        for i in 1..MAX_KEYS {
            assert!(fail(&b, &[&format!("user:a{i}")], t1).is_some());
        }
        assert_eq!(b.len(), MAX_KEYS);
        // Everything is locked: the newcomer is refused, nothing is dropped.
        assert_eq!(b.reserve(&keys(&["user:new"]), t1).unwrap_err(), BASE_LOCK);
        assert_eq!(b.len(), MAX_KEYS);
        assert!(b.reserve(&keys(&["user:victim"]), t1).is_err());
        // Once the attacker's locks are over, their names make room, not the victim's.
        let b = Backoff::with_capacity(1, 3);
        assert!(fail(&b, &["user:victim"], t0).is_some());
        let t1 = t0 + BASE_LOCK;
        assert_eq!(fail(&b, &["user:victim"], t1), Some(2 * BASE_LOCK));
        assert!(fail(&b, &["user:a1"], t1).is_some());
        assert!(fail(&b, &["user:a2"], t1).is_some());
        let t2 = t1 + BASE_LOCK;
        b.reserve(&keys(&["user:new"]), t2).unwrap().release();
        let attackers_left = [b.failures_of("user:a1"), b.failures_of("user:a2")];
        assert_eq!(attackers_left.iter().flatten().count(), 1);
        assert_eq!(b.failures_of("user:victim"), Some(2));
        assert!(b.reserve(&keys(&["user:victim"]), t2).is_err());
    }

    #[test]
    fn a_full_table_drops_forgotten_then_unlocked_keys_oldest_first() {
        let b = Backoff::with_capacity(2, 3);
        let t0 = Instant::now();
        assert!(fail(&b, &["user:forgotten"], t0).is_none());
        let t1 = t0 + FORGET_AFTER;
        assert!(fail(&b, &["user:victim"], t1).is_none());
        assert!(fail(&b, &["user:victim"], t1).is_some());
        assert!(fail(&b, &["user:old"], t1).is_none());
        // Full: the forgotten key goes first.
        let t2 = t1 + Duration::from_millis(10);
        assert!(fail(&b, &["user:young"], t2).is_none());
        assert_eq!(b.failures_of("user:forgotten"), None);
        assert_eq!(b.failures_of("user:old"), Some(1));
        // Full again: the unlocked key with the oldest failure goes, never the lock.
        let t3 = t2 + Duration::from_millis(10);
        assert!(fail(&b, &["user:new"], t3).is_none());
        assert_eq!(b.failures_of("user:old"), None);
        assert_eq!(b.failures_of("user:young"), Some(1));
        assert_eq!(b.failures_of("user:victim"), Some(2));
        assert!(b.reserve(&keys(&["user:victim"]), t3).is_err());
    }
}
