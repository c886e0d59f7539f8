//! Web logins: the `darts_login` cookie, the CSRF token that goes with it, pending
//! one-time e-mail login links, and logins waiting for their second factor (the
//! `darts_mfa` cookie).
//!
//! Secrets are kept by SHA-256 digest only (as the gateway keeps its tokens), so the
//! lookup does not compare secrets byte by byte. Logins live in memory: a restart of
//! darts logs everybody out, while their sessions and links keep working.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use darts_proxy::token::TokenKey;

use super::error::ApiError;
use crate::session::secret;

/// The login cookie's name.
pub const COOKIE: &str = "darts_login";
/// The cookie of a login waiting for its second factor.
pub const MFA_COOKIE: &str = "darts_mfa";
/// Logins held at once; beyond, the oldest go first.
const MAX_LOGINS: usize = 10_000;
/// Default of `login_max_per_user`.
pub const DEFAULT_MAX_PER_USER: usize = 20;
/// Pending e-mail links held at once.
const MAX_LINKS: usize = 10_000;
/// Logins waiting for a second factor, held at once.
const MAX_PENDING: usize = 10_000;
/// Hand-offs held at once.
const MAX_HANDOFFS: usize = 10_000;
/// How long a hand-off from a peer stays valid: the browser follows it at once.
pub const HANDOFF_LIFETIME: Duration = Duration::from_secs(120);
/// How long a mailed login link stays valid.
pub const LINK_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// An open login.
#[derive(Debug, Clone)]
pub struct Login {
    pub user: String,
    pub email: Option<String>,
    /// Sent back by the pages in `X-CSRF-Token` on every state-changing request.
    pub csrf: String,
    /// Who proved the user's identity.
    pub origin: LoginOrigin,
}

/// Who proved a login's identity, which bounds what it may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOrigin {
    /// This node's own authentication (password, second factor, mailed link).
    Here,
    /// A peer node's hand-off: the peer vouches for the user, not for their rights here,
    /// so such a login never has administrator rights on this node.
    Peer,
}

impl Login {
    /// Whether this login has administrator rights: a user of `user_admin` who proved
    /// who they are to this node.
    pub fn is_admin(&self, config: &crate::config::Config) -> bool {
        self.origin == LoginOrigin::Here && config.is_admin(&self.user)
    }

    /// Whether `header` carries this login's CSRF token.
    pub fn csrf_matches(&self, header: Option<&str>) -> bool {
        header.is_some_and(|h| TokenKey::of(h.trim()) == TokenKey::of(&self.csrf))
    }
}

/// A login whose first factor succeeded, waiting for the mailed code.
#[derive(Debug, Clone)]
pub struct PendingLogin {
    pub user: String,
    pub email: Option<String>,
    /// Sent back with the code in `X-CSRF-Token`.
    pub csrf: String,
}

impl PendingLogin {
    pub fn csrf_matches(&self, header: Option<&str>) -> bool {
        header.is_some_and(|h| TokenKey::of(h.trim()) == TokenKey::of(&self.csrf))
    }
}

#[derive(Debug)]
struct Entry<T> {
    value: T,
    opened: Instant,
    expires: Instant,
}

/// Every open login and pending link of this server.
#[derive(Debug)]
pub struct Logins {
    /// Open logins one user may hold (`login_max_per_user`); beyond, that user's oldest
    /// goes, so one account cannot fill the table and push out everyone else's.
    max_per_user: usize,
    open: Mutex<HashMap<TokenKey, Entry<Login>>>,
    links: Mutex<HashMap<TokenKey, Entry<String>>>,
    pending: Mutex<HashMap<TokenKey, Entry<PendingLogin>>>,
    /// One-time hand-offs from a peer node: user and session.
    handoffs: Mutex<HashMap<TokenKey, Entry<(String, String)>>>,
}

/// Stores `value` under a new random cookie (kept only as its digest) until `lifetime`
/// ends, making room first when the map is full; returns the cookie.
fn hold<T>(
    map: &Mutex<HashMap<TokenKey, Entry<T>>>,
    cap: usize,
    value: T,
    lifetime: Duration,
) -> Result<String, ApiError> {
    let mut map = lock(map);
    make_room(&mut map, cap);
    insert_new(&mut map, value, lifetime)
}

/// Stores `value` under a new random cookie until `lifetime` ends; returns the cookie.
fn insert_new<T>(
    map: &mut HashMap<TokenKey, Entry<T>>,
    value: T,
    lifetime: Duration,
) -> Result<String, ApiError> {
    let cookie = secret::token().map_err(|_| rng_failed())?;
    let now = Instant::now();
    map.insert(
        TokenKey::of(&cookie),
        Entry {
            value,
            opened: now,
            expires: now + lifetime,
        },
    );
    Ok(cookie)
}

/// The value a cookie stands for while it is valid; an expired entry is dropped.
fn find_valid<T: Clone>(map: &Mutex<HashMap<TokenKey, Entry<T>>>, cookie: &str) -> Option<T> {
    let key = TokenKey::of(cookie);
    let mut map = lock(map);
    match map.get(&key) {
        Some(e) if e.expires > Instant::now() => Some(e.value.clone()),
        Some(_) => {
            map.remove(&key);
            None
        }
        None => None,
    }
}

impl Default for Logins {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_PER_USER)
    }
}

impl Logins {
    /// Each user may hold `max_per_user` open logins (at least one).
    pub fn new(max_per_user: usize) -> Self {
        Self {
            max_per_user: max_per_user.max(1),
            open: Mutex::default(),
            links: Mutex::default(),
            pending: Mutex::default(),
            handoffs: Mutex::default(),
        }
    }

    /// Opens a login for `lifetime`; returns the cookie value and the login.
    pub fn open(
        &self,
        user: String,
        email: Option<String>,
        origin: LoginOrigin,
        lifetime: Duration,
    ) -> Result<(String, Login), ApiError> {
        let csrf = secret::token().map_err(|_| rng_failed())?;
        let login = Login {
            user,
            email,
            csrf,
            origin,
        };
        let mut map = lock(&self.open);
        make_room_for_user(&mut map, &login.user, self.max_per_user);
        make_room(&mut map, MAX_LOGINS);
        let cookie = insert_new(&mut map, login.clone(), lifetime)?;
        Ok((cookie, login))
    }

    /// The login a cookie belongs to, if it is still valid.
    pub fn find(&self, cookie: &str) -> Option<Login> {
        find_valid(&self.open, cookie)
    }

    /// Ends a login.
    pub fn close(&self, cookie: &str) -> bool {
        lock(&self.open).remove(&TokenKey::of(cookie)).is_some()
    }

    /// Holds a login until its second factor arrives, for `lifetime`; returns the
    /// `darts_mfa` cookie value and the pending login.
    pub fn new_pending(
        &self,
        user: String,
        email: Option<String>,
        lifetime: Duration,
    ) -> Result<(String, PendingLogin), ApiError> {
        let csrf = secret::token().map_err(|_| rng_failed())?;
        let pending = PendingLogin { user, email, csrf };
        let cookie = hold(&self.pending, MAX_PENDING, pending.clone(), lifetime)?;
        Ok((cookie, pending))
    }

    /// The pending login a `darts_mfa` cookie stands for, if still valid.
    pub fn find_pending(&self, cookie: &str) -> Option<PendingLogin> {
        find_valid(&self.pending, cookie)
    }

    /// Forgets a pending login.
    pub fn close_pending(&self, cookie: &str) -> bool {
        lock(&self.pending).remove(&TokenKey::of(cookie)).is_some()
    }

    /// A one-time link token that will open a login for `email`.
    pub fn new_link(&self, email: String) -> Result<String, ApiError> {
        hold(&self.links, MAX_LINKS, email, LINK_LIFETIME)
    }

    /// A one-time token that logs `user` in here and opens `session`'s connect page:
    /// how a user authenticated by a peer node lands on this node.
    pub fn new_handoff(&self, user: String, session: String) -> Result<String, ApiError> {
        hold(
            &self.handoffs,
            MAX_HANDOFFS,
            (user, session),
            HANDOFF_LIFETIME,
        )
    }

    /// Consumes a hand-off token: the user and the session, if still valid.
    pub fn take_handoff(&self, token: &str) -> Option<(String, String)> {
        let e = lock(&self.handoffs).remove(&TokenKey::of(token))?;
        (e.expires > Instant::now()).then_some(e.value)
    }

    /// Consumes a link token; the address it was mailed to, if still valid.
    pub fn take_link(&self, token: &str) -> Option<String> {
        let e = lock(&self.links).remove(&TokenKey::of(token))?;
        (e.expires > Instant::now()).then_some(e.value)
    }
}

/// Drops expired entries when the map is full, then the one closest to expiry.
fn make_room<T>(map: &mut HashMap<TokenKey, Entry<T>>, max: usize) {
    if map.len() < max {
        return;
    }
    let now = Instant::now();
    map.retain(|_, e| e.expires > now);
    while map.len() >= max {
        let Some(oldest) = map.iter().min_by_key(|(_, e)| e.expires).map(|(k, _)| *k) else {
            break;
        };
        map.remove(&oldest);
    }
}

/// Drops `user`'s expired logins, then their oldest until one more fits in `max`.
fn make_room_for_user(map: &mut HashMap<TokenKey, Entry<Login>>, user: &str, max: usize) {
    let now = Instant::now();
    map.retain(|_, e| e.value.user != user || e.expires > now);
    loop {
        let theirs = map.iter().filter(|(_, e)| e.value.user == user);
        if theirs.clone().count() < max {
            return;
        }
        let Some(oldest) = theirs.min_by_key(|(_, e)| e.opened).map(|(k, _)| *k) else {
            return;
        };
        tracing::info!(user = %user, max, "too many logins for this user: the oldest is closed");
        map.remove(&oldest);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn rng_failed() -> ApiError {
    tracing::error!("the system random generator failed");
    ApiError::Internal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_open_find_and_close_logins() {
        let logins = Logins::default();
        let (cookie, login) = logins
            .open(
                "alice".into(),
                None,
                LoginOrigin::Here,
                Duration::from_secs(60),
            )
            .unwrap();
        assert_ne!(cookie, login.csrf);
        let found = logins.find(&cookie).unwrap();
        assert_eq!(found.user, "alice");
        assert!(found.csrf_matches(Some(&login.csrf)));
        assert!(!found.csrf_matches(Some("wrong")));
        assert!(!found.csrf_matches(None));
        assert!(logins.find("not-a-cookie").is_none());
        assert!(logins.close(&cookie));
        assert!(logins.find(&cookie).is_none());
    }

    #[test]
    fn expired_logins_are_gone() {
        let logins = Logins::default();
        let (cookie, _) = logins
            .open("bob".into(), None, LoginOrigin::Here, Duration::ZERO)
            .unwrap();
        assert!(logins.find(&cookie).is_none());
    }

    #[test]
    fn links_work_once() {
        let logins = Logins::default();
        let t = logins.new_link("a@example.org".into()).unwrap();
        assert_eq!(logins.take_link(&t).as_deref(), Some("a@example.org"));
        assert_eq!(logins.take_link(&t), None);
    }

    #[test]
    fn pending_logins_are_found_by_cookie_until_closed_or_expired() {
        let logins = Logins::default();
        let (cookie, pending) = logins
            .new_pending(
                "erin".into(),
                Some("erin@example.org".into()),
                Duration::from_secs(60),
            )
            .unwrap();
        let found = logins.find_pending(&cookie).unwrap();
        assert_eq!(found.user, "erin");
        assert!(found.csrf_matches(Some(&pending.csrf)));
        assert!(!found.csrf_matches(Some("other")));
        // A pending login is not a login.
        assert!(logins.find(&cookie).is_none());
        assert!(logins.close_pending(&cookie));
        assert!(logins.find_pending(&cookie).is_none());
        let (old, _) = logins
            .new_pending("erin".into(), None, Duration::ZERO)
            .unwrap();
        assert!(logins.find_pending(&old).is_none());
    }

    #[test]
    fn a_full_table_drops_the_oldest() {
        let mut map = HashMap::new();
        let now = Instant::now();
        for i in 0..3u64 {
            map.insert(
                TokenKey::of(&i.to_string()),
                Entry {
                    value: i,
                    opened: now,
                    expires: now + Duration::from_secs(100 + i),
                },
            );
        }
        make_room(&mut map, 3);
        assert_eq!(map.len(), 2);
        assert!(!map.contains_key(&TokenKey::of("0")));
    }

    #[test]
    fn one_user_cannot_push_out_other_users_logins() {
        let logins = Logins::new(3);
        let hour = Duration::from_secs(3600);
        let (bob, _) = logins
            .open("bob".into(), None, LoginOrigin::Here, hour)
            .unwrap();
        let mallory: Vec<String> = (0..MAX_LOGINS)
            .map(|_| {
                logins
                    .open("mallory".into(), None, LoginOrigin::Here, hour)
                    .unwrap()
                    .0
            })
            .collect();
        assert!(logins.find(&bob).is_some(), "bob's login was pushed out");
        // Mallory keeps her three newest logins only.
        let kept: Vec<bool> = mallory.iter().map(|c| logins.find(c).is_some()).collect();
        assert_eq!(kept.iter().filter(|k| **k).count(), 3);
        assert!(kept[MAX_LOGINS - 3..].iter().all(|k| *k));
        assert_eq!(lock(&logins.open).len(), 4);
    }
}
