//! Pending connections per client address: accepted, but not yet a session with a valid
//! token. One address (a flood, or a campus NAT) may hold `max` of them; a newcomer over
//! that pushes out the address's oldest pending connection instead of being refused, so
//! a flood of idle connections cannot lock out a real viewer behind the same address.
//! A connection leaves the count when it becomes a session (or closes); sessions are
//! bounded elsewhere (`max_connections`, `max_viewers_per_token`).
//!
//! Bounded: at most `max` entries per address, and every entry belongs to a connection
//! that holds an admission permit. Nothing here is on the data path.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// At most one log line per interval about dropped connections: a flood must not
/// become a flood of log lines.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The pending connections of each address, against one limit.
#[derive(Debug)]
pub(crate) struct AddressLimits {
    max: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Per address, its pending connections by age (the number given at acquire) with
    /// the token that closes each.
    pending: HashMap<IpAddr, BTreeMap<u64, CancellationToken>>,
    next: u64,
    dropped_since_log: u64,
    last_log: Option<Instant>,
}

/// One pending connection counted against its address until dropped.
#[derive(Debug)]
pub(crate) struct PendingSlot {
    limits: Arc<AddressLimits>,
    key: IpAddr,
    id: u64,
    evicted: CancellationToken,
}

impl AddressLimits {
    /// `None` when `max` is 0 (no limit).
    pub(crate) fn new(max: usize) -> Option<Arc<Self>> {
        (max > 0).then(|| {
            Arc::new(Self {
                max,
                state: Mutex::new(State::default()),
            })
        })
    }

    /// Counts a new pending connection from `ip`. When its address holds `max` already,
    /// the oldest of them is told to close (its slot's `evicted` token) and is no longer
    /// counted; returns whether that happened along with the slot.
    pub(crate) fn acquire(self: &Arc<Self>, ip: IpAddr) -> (PendingSlot, bool) {
        let key = key(ip);
        let evicted = CancellationToken::new();
        let mut st = self.lock();
        let id = st.next;
        st.next += 1;
        let held = st.pending.entry(key).or_default();
        let oldest = if held.len() >= self.max {
            held.pop_first()
        } else {
            None
        };
        held.insert(id, evicted.clone());
        if let Some((_, token)) = &oldest {
            token.cancel();
            st.note_dropped(ip, self.max);
        }
        let slot = PendingSlot {
            limits: self.clone(),
            key,
            id,
            evicted,
        };
        (slot, oldest.is_some())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    fn note_dropped(&mut self, ip: IpAddr, limit: usize) {
        self.dropped_since_log += 1;
        let now = Instant::now();
        if self
            .last_log
            .is_none_or(|t| now.duration_since(t) >= LOG_INTERVAL)
        {
            tracing::warn!(
                client.addr = %ip,
                limit,
                dropped = self.dropped_since_log,
                "oldest pending connections dropped: too many from one address"
            );
            self.last_log = Some(now);
            self.dropped_since_log = 0;
        }
    }
}

impl PendingSlot {
    /// Cancelled when a newer connection of the same address pushed this one out.
    pub(crate) fn evicted(&self) -> CancellationToken {
        self.evicted.clone()
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut st = self.limits.lock();
        if let Some(held) = st.pending.get_mut(&self.key) {
            held.remove(&self.id);
            if held.is_empty() {
                st.pending.remove(&self.key);
            }
        }
    }
}

/// The address a client is counted under: IPv4 as is (also when seen through an IPv6
/// socket), IPv6 by its /64, the block one host usually holds whole.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(l: &AddressLimits, ip: &str) -> usize {
        l.lock()
            .pending
            .get(&key(ip.parse().unwrap()))
            .map_or(0, BTreeMap::len)
    }

    #[test]
    fn over_the_limit_the_oldest_is_evicted_and_slots_free_on_drop() {
        let l = AddressLimits::new(2).unwrap();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let (one, _) = l.acquire(a);
        let (two, _) = l.acquire(a);
        let (three, evicted) = l.acquire(a);
        assert!(evicted);
        assert!(one.evicted().is_cancelled(), "the oldest is told to close");
        assert!(!two.evicted().is_cancelled() && !three.evicted().is_cancelled());
        assert_eq!(held(&l, "10.0.0.1"), 2);
        // Another address is not affected.
        let (other, evicted) = l.acquire("10.0.0.2".parse().unwrap());
        assert!(!evicted);
        // The evicted slot's drop does not free a place it no longer holds.
        drop(one);
        assert_eq!(held(&l, "10.0.0.1"), 2);
        let (four, _) = l.acquire(a);
        assert!(two.evicted().is_cancelled());
        drop((two, three, four, other));
        assert!(
            l.lock().pending.is_empty(),
            "no entry stays for a gone address"
        );
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let l = AddressLimits::new(1).unwrap();
        let (_a, _) = l.acquire("2001:db8:1:2::1".parse().unwrap());
        assert!(l.acquire("2001:db8:1:2:ffff::9".parse().unwrap()).1);
        assert!(!l.acquire("2001:db8:1:3::1".parse().unwrap()).1);
        let (_v4, _) = l.acquire("192.0.2.7".parse().unwrap());
        assert!(l.acquire("::ffff:192.0.2.7".parse().unwrap()).1);
    }

    #[test]
    fn zero_means_no_limit() {
        assert!(AddressLimits::new(0).is_none());
    }
}
