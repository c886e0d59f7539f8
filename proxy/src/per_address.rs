//! Connections held per client address, so that one client opening thousands of
//! connections cannot take every slot of the gateway. A slot is taken once at accept
//! (and once more for the client a trusted proxy's PROXY header names) and given back
//! when the connection closes: nothing on the data path.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// At most one log line per interval about refused connections: a flood must not
/// become a flood of log lines.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// How many connections each address holds, against one limit.
#[derive(Debug)]
pub(crate) struct AddressLimits {
    max: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    held: HashMap<IpAddr, usize>,
    refused_since_log: u64,
    last_log: Option<Instant>,
}

/// One connection counted against its address until dropped.
#[derive(Debug)]
pub(crate) struct AddressSlot {
    limits: Arc<AddressLimits>,
    key: IpAddr,
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

    /// A slot for a connection from `ip`, or `None` when its address holds `max` already.
    pub(crate) fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        let key = key(ip);
        let mut st = self.lock();
        let held = st.held.get(&key).copied().unwrap_or(0);
        if held >= self.max {
            st.refused_since_log += 1;
            let now = Instant::now();
            if st
                .last_log
                .is_none_or(|t| now.duration_since(t) >= LOG_INTERVAL)
            {
                tracing::warn!(
                    client.addr = %ip,
                    limit = self.max,
                    refused = st.refused_since_log,
                    "connections refused: too many from one address"
                );
                st.last_log = Some(now);
                st.refused_since_log = 0;
            }
            return None;
        }
        st.held.insert(key, held + 1);
        Some(AddressSlot {
            limits: self.clone(),
            key,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut st = self.limits.lock();
        if let Some(n) = st.held.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                st.held.remove(&self.key);
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
            .held
            .get(&key(ip.parse().unwrap()))
            .copied()
            .unwrap_or(0)
    }

    #[test]
    fn refuses_over_the_limit_and_frees_on_drop() {
        let l = AddressLimits::new(2).unwrap();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let one = l.acquire(a).unwrap();
        let two = l.acquire(a).unwrap();
        assert!(l.acquire(a).is_none());
        // Another address is not affected.
        let other = l.acquire("10.0.0.2".parse().unwrap()).unwrap();
        drop(one);
        let three = l.acquire(a).unwrap();
        drop((two, three, other));
        assert_eq!(held(&l, "10.0.0.1"), 0);
        assert!(
            l.lock().held.is_empty(),
            "no entry stays for a gone address"
        );
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let l = AddressLimits::new(1).unwrap();
        let _a = l.acquire("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert!(l.acquire("2001:db8:1:2:ffff::9".parse().unwrap()).is_none());
        assert!(l.acquire("2001:db8:1:3::1".parse().unwrap()).is_some());
        let _v4 = l.acquire("192.0.2.7".parse().unwrap()).unwrap();
        assert!(l.acquire("::ffff:192.0.2.7".parse().unwrap()).is_none());
    }

    #[test]
    fn zero_means_no_limit() {
        assert!(AddressLimits::new(0).is_none());
    }
}
