//! Sessions held per token, so that one link (shared, leaked or scripted) cannot take
//! every connection of the gateway. A place is taken when an upgrade finds its route by
//! a token and given back when the session ends: nothing on the data path. Tokens are
//! counted by their digest, never kept in clear.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::route::TokenKey;

/// How many sessions each token holds, against one limit.
#[derive(Debug)]
pub(crate) struct TokenViewers {
    max: usize,
    held: Mutex<HashMap<TokenKey, usize>>,
}

/// One session counted against its token until dropped.
#[derive(Debug)]
pub(crate) struct ViewerSlot {
    viewers: Arc<TokenViewers>,
    key: TokenKey,
}

impl TokenViewers {
    /// `None` when `max` is 0 (no limit).
    pub(crate) fn new(max: usize) -> Option<Arc<Self>> {
        (max > 0).then(|| {
            Arc::new(Self {
                max,
                held: Mutex::new(HashMap::new()),
            })
        })
    }

    /// A place for one more session of `token`, or `None` when it holds `max` already.
    pub(crate) fn acquire(self: &Arc<Self>, key: TokenKey) -> Option<ViewerSlot> {
        let mut held = self.lock();
        let n = held.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ViewerSlot {
            viewers: self.clone(),
            key,
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<TokenKey, usize>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for ViewerSlot {
    fn drop(&mut self) {
        let mut held = self.viewers.lock();
        if let Some(n) = held.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_over_the_limit_per_token_and_frees_on_drop() {
        let v = TokenViewers::new(2).unwrap();
        let one = v.acquire(TokenKey::of("a")).unwrap();
        let two = v.acquire(TokenKey::of("a")).unwrap();
        assert!(v.acquire(TokenKey::of("a")).is_none());
        let other = v.acquire(TokenKey::of("b")).unwrap();
        drop(one);
        let three = v.acquire(TokenKey::of("a")).unwrap();
        drop((two, three, other));
        assert!(
            v.lock().is_empty(),
            "no entry stays for a token without sessions"
        );
    }

    #[test]
    fn zero_means_no_limit() {
        assert!(TokenViewers::new(0).is_none());
    }
}
