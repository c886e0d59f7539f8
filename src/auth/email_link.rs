//! `check_user_with_email`: a one-time login link mailed to the address typed as user
//! name. Whoever opens the link proves they read that mailbox.
//!
//! Tokens are kept only as SHA-256 digests (compared in constant time, as the gateway's
//! tokens are), work once, expire, and are bounded per address and in total so that a
//! flood of requests cannot grow memory.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use darts_proxy::token::TokenKey;

use crate::mail::{html_escape, service_name};
use crate::session::secret;

/// How long a login link works unless the caller says otherwise.
pub const DEFAULT_LINK_TTL: Duration = Duration::from_secs(15 * 60);

/// Bounds on pending links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkLimits {
    /// Links pending for one address; a new one replaces the oldest.
    pub per_address: usize,
    /// Links pending for everyone; past it, new requests are refused until some expire.
    pub total: usize,
}

impl Default for LinkLimits {
    fn default() -> Self {
        Self {
            per_address: 3,
            total: 10_000,
        }
    }
}

/// Why no link was issued.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LinkError {
    #[error("too many login links are pending; try again later")]
    Full,
    #[error("the system's random generator failed")]
    Random,
}

struct Pending {
    email: String,
    issued: Instant,
    expires: Instant,
}

/// Pending login links, keyed by the digest of their token.
pub struct LinkStore {
    limits: LinkLimits,
    pending: Mutex<HashMap<TokenKey, Pending>>,
}

impl fmt::Debug for LinkStore {
    /// Counts only: neither tokens nor addresses.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkStore")
            .field("limits", &self.limits)
            .field("pending", &self.lock().len())
            .finish()
    }
}

impl Default for LinkStore {
    fn default() -> Self {
        Self::new(LinkLimits::default())
    }
}

impl LinkStore {
    pub fn new(limits: LinkLimits) -> Self {
        Self {
            limits,
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// A new token (32 letters and digits) for `email`, valid for `ttl`. The caller mails
    /// it and forgets it: only its digest is kept.
    pub fn issue(&self, email: &str, ttl: Duration) -> Result<String, LinkError> {
        self.issue_at(email, ttl, Instant::now())
    }

    /// The address the token was issued for, once; `None` when unknown, used or expired.
    pub fn redeem(&self, token: &str) -> Option<String> {
        self.redeem_at(token, Instant::now())
    }

    /// Forgets expired links; returns how many.
    pub fn purge_expired(&self) -> usize {
        let mut pending = self.lock();
        purge(&mut pending, Instant::now())
    }

    /// Links waiting to be redeemed (expired ones included until purged).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn issue_at(&self, email: &str, ttl: Duration, now: Instant) -> Result<String, LinkError> {
        let token = secret::token().map_err(|_| LinkError::Random)?;
        let mut pending = self.lock();
        // Drop the oldest links of this address so the newest always works.
        let mut same: Vec<(TokenKey, Instant)> = pending
            .iter()
            .filter(|(_, p)| p.email.eq_ignore_ascii_case(email))
            .map(|(k, p)| (*k, p.issued))
            .collect();
        if same.len() >= self.limits.per_address {
            same.sort_by_key(|(_, issued)| *issued);
            let excess = same.len() + 1 - self.limits.per_address.max(1);
            for (key, _) in same.into_iter().take(excess) {
                pending.remove(&key);
            }
        }
        if pending.len() >= self.limits.total {
            purge(&mut pending, now);
            if pending.len() >= self.limits.total {
                tracing::warn!(
                    pending = pending.len(),
                    "login links: store full, request refused"
                );
                return Err(LinkError::Full);
            }
        }
        pending.insert(
            TokenKey::of(&token),
            Pending {
                email: email.to_owned(),
                issued: now,
                expires: now + ttl,
            },
        );
        Ok(token)
    }

    fn redeem_at(&self, token: &str, now: Instant) -> Option<String> {
        let entry = self.lock().remove(&TokenKey::of(token))?;
        (now < entry.expires).then_some(entry.email)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<TokenKey, Pending>> {
        // The map stays consistent whatever a panicking holder did: every change is one call.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn purge(pending: &mut HashMap<TokenKey, Pending>, now: Instant) -> usize {
    let before = pending.len();
    pending.retain(|_, p| now < p.expires);
    before - pending.len()
}

/// Subject, plain text and HTML of the mail carrying `link_url`. The subject names the
/// service only; the link is in the body.
pub fn login_mail(link_url: &str, service_title: &str) -> (String, String, String) {
    let name = service_name(service_title);
    let subject = format!("{name}: your login link");
    let text = format!(
        "Hello,\n\n\
         Someone, probably you, asked to sign in to {name} with this address.\n\
         Open this link to sign in:\n\n\
         {link_url}\n\n\
         The link works once and for a short time only. If you did not ask for it, \
         ignore this mail: nobody can sign in without it.\n"
    );
    let (name_html, link_html) = (html_escape(&name), html_escape(link_url));
    let html = format!(
        "<!DOCTYPE html>\n<html><body>\n\
         <p>Hello,</p>\n\
         <p>Someone, probably you, asked to sign in to {name_html} with this address.</p>\n\
         <p><a href=\"{link_html}\">Sign in to {name_html}</a></p>\n\
         <p>Or copy this address into your browser:<br>{link_html}</p>\n\
         <p>The link works once and for a short time only. If you did not ask for it, \
         ignore this mail: nobody can sign in without it.</p>\n\
         </body></html>\n"
    );
    (subject, text, html)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(600);

    #[test]
    fn a_link_works_once() {
        let store = LinkStore::default();
        let token = store.issue("alice@example.org", TTL).unwrap();
        assert_eq!(token.len(), 32);
        assert!(token.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(store.redeem(&token).as_deref(), Some("alice@example.org"));
        assert_eq!(store.redeem(&token), None);
        assert!(store.is_empty());
    }

    #[test]
    fn unknown_and_altered_tokens_are_refused() {
        let store = LinkStore::default();
        let token = store.issue("alice@example.org", TTL).unwrap();
        assert_eq!(store.redeem(""), None);
        let upper = token.to_ascii_uppercase();
        if upper != token {
            assert_eq!(store.redeem(&upper), None, "tokens are case-sensitive");
        }
        let mut altered = token.clone().into_bytes();
        altered[0] = if altered[0] == b'a' { b'b' } else { b'a' };
        assert_eq!(store.redeem(std::str::from_utf8(&altered).unwrap()), None);
        // The failed attempts did not consume the real link.
        assert_eq!(store.redeem(&token).as_deref(), Some("alice@example.org"));
    }

    #[test]
    fn links_expire() {
        let store = LinkStore::default();
        let t0 = Instant::now();
        let token = store.issue_at("alice@example.org", TTL, t0).unwrap();
        assert_eq!(store.redeem_at(&token, t0 + TTL), None);
        // An expired link is gone for good, even if the clock went back.
        assert_eq!(store.redeem_at(&token, t0), None);

        let token = store.issue_at("alice@example.org", TTL, t0).unwrap();
        assert_eq!(
            store
                .redeem_at(&token, t0 + TTL - Duration::from_secs(1))
                .as_deref(),
            Some("alice@example.org")
        );
    }

    #[test]
    fn a_new_link_replaces_the_oldest_of_its_address() {
        let store = LinkStore::new(LinkLimits {
            per_address: 2,
            total: 100,
        });
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let first = store.issue_at("alice@example.org", TTL, t0).unwrap();
        let second = store.issue_at("Alice@Example.org", TTL, t0 + s).unwrap();
        let other = store.issue_at("bob@example.org", TTL, t0 + s).unwrap();
        let third = store
            .issue_at("alice@example.org", TTL, t0 + 2 * s)
            .unwrap();
        assert_eq!(store.len(), 3);
        assert_eq!(store.redeem_at(&first, t0 + 3 * s), None);
        assert!(store.redeem_at(&second, t0 + 3 * s).is_some());
        assert!(store.redeem_at(&third, t0 + 3 * s).is_some());
        assert!(store.redeem_at(&other, t0 + 3 * s).is_some());
    }

    #[test]
    fn the_store_is_bounded() {
        let store = LinkStore::new(LinkLimits {
            per_address: 1,
            total: 3,
        });
        let t0 = Instant::now();
        for i in 0..3 {
            store
                .issue_at(&format!("u{i}@example.org"), TTL, t0)
                .unwrap();
        }
        assert_eq!(
            store.issue_at("late@example.org", TTL, t0),
            Err(LinkError::Full)
        );
        // Once the others expire there is room again.
        let later = t0 + TTL;
        let token = store.issue_at("late@example.org", TTL, later).unwrap();
        assert_eq!(store.len(), 1);
        assert!(store.redeem_at(&token, later).is_some());
    }

    #[test]
    fn no_clear_token_is_kept() {
        let store = LinkStore::default();
        let token = store.issue("alice@example.org", TTL).unwrap();
        let shown = format!("{store:?}");
        assert!(!shown.contains(&token), "{shown}");
        assert!(!shown.contains("alice"), "{shown}");
        let pending = store.lock();
        assert_eq!(pending.len(), 1);
        for (key, entry) in pending.iter() {
            assert_eq!(*key, TokenKey::of(&token));
            assert!(!key.to_hex().contains(&token));
            assert!(!format!("{key:?}").contains(&token));
            assert!(!entry.email.contains(&token));
        }
    }

    #[test]
    fn the_mail_carries_the_link_in_its_body_only() {
        let link = "https://darts.example.org/darts/api/login/link?t=AbC123&x=<y>";
        let (subject, text, html) = login_mail(link, "Data Analysis\nService");
        assert_eq!(subject, "Data Analysis Service: your login link");
        assert!(!subject.contains("AbC123"));
        assert!(text.contains(link));
        assert!(html.contains(
            "href=\"https://darts.example.org/darts/api/login/link?t=AbC123&amp;x=&lt;y&gt;\""
        ));
        assert!(!html.contains("<y>"));
    }
}
