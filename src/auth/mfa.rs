//! `check_user_mfa`: after the first factor, a short code is mailed to the user and must
//! be typed before the desktop opens. The original mailed the VNC password in the subject
//! line; here the subject carries nothing secret and the code is a separate, short-lived,
//! single-use value.
//!
//! Codes are kept only as HMAC-SHA256 tags under a key drawn when the store is made, and
//! checked in constant time. A code dies after a few wrong tries, so guessing 8 digits
//! has no practical chance.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::mail::service_name;

/// How long a code works.
pub const MFA_TTL: Duration = Duration::from_secs(5 * 60);
/// Wrong codes allowed before the code is thrown away.
pub const MFA_MAX_ATTEMPTS: u32 = 5;
/// Digits in a code.
pub const MFA_CODE_DIGITS: usize = 8;

const CODE_SPACE: u32 = 100_000_000; // 10^MFA_CODE_DIGITS
/// The largest multiple of `CODE_SPACE` that fits a u32: draws at or above it are redrawn,
/// so every code is equally likely.
const DRAW_LIMIT: u32 = CODE_SPACE * (u32::MAX / CODE_SPACE);

/// Bounds on pending codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MfaLimits {
    pub ttl: Duration,
    pub max_attempts: u32,
    /// Users with a pending code; past it, new codes are refused until some expire.
    pub total: usize,
}

impl Default for MfaLimits {
    fn default() -> Self {
        Self {
            ttl: MFA_TTL,
            max_attempts: MFA_MAX_ATTEMPTS,
            total: 10_000,
        }
    }
}

/// Why a second factor was not accepted (or not issued).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MfaError {
    /// No code is pending for this user: never issued, already used, or thrown away.
    #[error("no code is pending; sign in again to get a new one")]
    NotPending,
    #[error("the code has expired; sign in again to get a new one")]
    Expired,
    #[error("wrong code ({remaining} tries left)")]
    Wrong { remaining: u32 },
    /// The last allowed try was wrong: the code is gone.
    #[error("too many wrong codes; sign in again to get a new one")]
    TooManyAttempts,
    #[error("too many codes are pending; try again later")]
    Full,
    #[error("the system's random generator failed")]
    Random,
}

struct Challenge {
    tag: Vec<u8>,
    expires: Instant,
    attempts_left: u32,
}

/// Pending second-factor codes, one per user (a new code replaces the previous one).
pub struct MfaStore {
    limits: MfaLimits,
    key: hmac::Key,
    rng: SystemRandom,
    pending: Mutex<HashMap<String, Challenge>>,
}

impl fmt::Debug for MfaStore {
    /// Counts only: no key, no tag, no user.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MfaStore")
            .field("limits", &self.limits)
            .field("pending", &self.lock().len())
            .finish_non_exhaustive()
    }
}

impl MfaStore {
    pub fn new(limits: MfaLimits) -> Result<Self, MfaError> {
        let rng = SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).map_err(|_| MfaError::Random)?;
        Ok(Self {
            limits,
            key,
            rng,
            pending: Mutex::new(HashMap::new()),
        })
    }

    /// A new code for `user` (8 digits), replacing any pending one. The caller mails it
    /// and forgets it.
    pub fn issue(&self, user: &str) -> Result<String, MfaError> {
        self.issue_at(user, Instant::now())
    }

    /// Accepts the code once. Spaces and dashes the user typed are ignored.
    pub fn verify(&self, user: &str, code: &str) -> Result<(), MfaError> {
        self.verify_at(user, code, Instant::now())
    }

    /// Forgets expired codes; returns how many.
    pub fn purge_expired(&self) -> usize {
        purge(&mut self.lock(), Instant::now())
    }

    /// Users with a pending code (expired ones included until purged).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn issue_at(&self, user: &str, now: Instant) -> Result<String, MfaError> {
        let code = self.draw_code()?;
        let challenge = Challenge {
            tag: hmac::sign(&self.key, &message(user, &code))
                .as_ref()
                .to_vec(),
            expires: now + self.limits.ttl,
            attempts_left: self.limits.max_attempts.max(1),
        };
        let mut pending = self.lock();
        if pending.len() >= self.limits.total && !pending.contains_key(user) {
            purge(&mut pending, now);
            if pending.len() >= self.limits.total {
                tracing::warn!(
                    pending = pending.len(),
                    "second factor: store full, request refused"
                );
                return Err(MfaError::Full);
            }
        }
        pending.insert(user.to_owned(), challenge);
        Ok(code)
    }

    fn verify_at(&self, user: &str, code: &str, now: Instant) -> Result<(), MfaError> {
        let typed: String = code
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect();
        let mut pending = self.lock();
        let challenge = pending.get_mut(user).ok_or(MfaError::NotPending)?;
        if now >= challenge.expires {
            pending.remove(user);
            return Err(MfaError::Expired);
        }
        if hmac::verify(&self.key, &message(user, &typed), &challenge.tag).is_ok() {
            pending.remove(user);
            return Ok(());
        }
        challenge.attempts_left -= 1;
        let remaining = challenge.attempts_left;
        if remaining == 0 {
            pending.remove(user);
            tracing::warn!(user = %user, "second factor: too many wrong codes, code discarded");
            return Err(MfaError::TooManyAttempts);
        }
        Err(MfaError::Wrong { remaining })
    }

    fn draw_code(&self) -> Result<String, MfaError> {
        loop {
            let mut buf = [0u8; 4];
            self.rng.fill(&mut buf).map_err(|_| MfaError::Random)?;
            let n = u32::from_le_bytes(buf);
            if n < DRAW_LIMIT {
                return Ok(format!(
                    "{:0width$}",
                    n % CODE_SPACE,
                    width = MFA_CODE_DIGITS
                ));
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Challenge>> {
        // Every change is one call under the lock, so a panicking holder leaves it consistent.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the tag covers: the user and the code, so a code is good for its user only.
fn message(user: &str, code: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(user.len() + 1 + code.len());
    m.extend_from_slice(user.as_bytes());
    m.push(0);
    m.extend_from_slice(code.as_bytes());
    m
}

fn purge(pending: &mut HashMap<String, Challenge>, now: Instant) -> usize {
    let before = pending.len();
    pending.retain(|_, c| now < c.expires);
    before - pending.len()
}

/// Subject and text of the mail carrying `code`. The subject names the service only.
pub fn mfa_mail(code: &str, service_title: &str) -> (String, String) {
    let name = service_name(service_title);
    let minutes = MFA_TTL.as_secs() / 60;
    let subject = format!("{name}: your sign-in code");
    let text = format!(
        "Hello,\n\n\
         Your code to finish signing in to {name} is:\n\n    {code}\n\n\
         It works once, for {minutes} minutes. If you did not just sign in, someone knows \
         your password: change it, and do not give this code to anyone.\n"
    );
    (subject, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> MfaStore {
        MfaStore::new(MfaLimits::default()).unwrap()
    }

    fn wrong(code: &str) -> String {
        let last = code.as_bytes()[code.len() - 1];
        let other = if last == b'0' { '1' } else { '0' };
        format!("{}{other}", &code[..code.len() - 1])
    }

    #[test]
    fn codes_are_eight_digits_and_differ() {
        let s = store();
        let a = s.issue("alice").unwrap();
        let b = s.issue("bob").unwrap();
        for code in [&a, &b] {
            assert_eq!(code.len(), MFA_CODE_DIGITS);
            assert!(code.bytes().all(|c| c.is_ascii_digit()), "{code}");
        }
        // 20 draws of 10^8 equal values: a repeat would mean a broken generator.
        let mut seen: Vec<String> = (0..20).map(|_| s.draw_code().unwrap()).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 20);
    }

    #[test]
    fn a_code_works_once_for_its_user_only() {
        let s = store();
        let code = s.issue("alice").unwrap();
        s.issue("bob").unwrap();
        assert!(matches!(
            s.verify("bob", &code),
            Err(MfaError::Wrong { .. })
        ));
        let spaced = format!("{} {}", &code[..4], &code[4..]);
        assert_eq!(s.verify("alice", &spaced), Ok(()));
        assert_eq!(s.verify("alice", &code), Err(MfaError::NotPending));
        assert_eq!(s.verify("carol", &code), Err(MfaError::NotPending));
    }

    #[test]
    fn a_new_code_replaces_the_old_one() {
        let s = store();
        let old = s.issue("alice").unwrap();
        let new = s.issue("alice").unwrap();
        if old != new {
            assert!(matches!(
                s.verify("alice", &old),
                Err(MfaError::Wrong { .. })
            ));
        }
        assert_eq!(s.verify("alice", &new), Ok(()));
    }

    #[test]
    fn codes_expire() {
        let s = store();
        let t0 = Instant::now();
        let code = s.issue_at("alice", t0).unwrap();
        assert_eq!(
            s.verify_at("alice", &code, t0 + MFA_TTL),
            Err(MfaError::Expired)
        );
        assert_eq!(s.verify_at("alice", &code, t0), Err(MfaError::NotPending));

        let code = s.issue_at("alice", t0).unwrap();
        assert_eq!(
            s.verify_at("alice", &code, t0 + MFA_TTL - Duration::from_secs(1)),
            Ok(())
        );
    }

    #[test]
    fn too_many_wrong_codes_discard_the_code() {
        let s = store();
        let code = s.issue("alice").unwrap();
        let bad = wrong(&code);
        for remaining in (1..MFA_MAX_ATTEMPTS).rev() {
            assert_eq!(s.verify("alice", &bad), Err(MfaError::Wrong { remaining }));
        }
        assert_eq!(s.verify("alice", &bad), Err(MfaError::TooManyAttempts));
        // Even the right code is useless now.
        assert_eq!(s.verify("alice", &code), Err(MfaError::NotPending));
    }

    #[test]
    fn the_right_code_on_the_last_try_works() {
        let s = store();
        let code = s.issue("alice").unwrap();
        for _ in 1..MFA_MAX_ATTEMPTS {
            assert!(matches!(
                s.verify("alice", &wrong(&code)),
                Err(MfaError::Wrong { .. })
            ));
        }
        assert_eq!(s.verify("alice", &code), Ok(()));
    }

    #[test]
    fn the_store_is_bounded() {
        let s = MfaStore::new(MfaLimits {
            total: 2,
            ..MfaLimits::default()
        })
        .unwrap();
        let t0 = Instant::now();
        s.issue_at("a", t0).unwrap();
        s.issue_at("b", t0).unwrap();
        assert_eq!(s.issue_at("c", t0), Err(MfaError::Full));
        // A user with a pending code may get a new one; expired codes make room.
        assert!(s.issue_at("b", t0).is_ok());
        assert!(s.issue_at("c", t0 + MFA_TTL).is_ok());
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn no_clear_code_is_kept() {
        let s = store();
        let code = s.issue("alice").unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains(&code), "{shown}");
        assert!(!shown.contains("alice"), "{shown}");
        let pending = s.lock();
        let challenge = &pending["alice"];
        assert_eq!(challenge.tag.len(), 32);
        assert!(!challenge
            .tag
            .windows(code.len())
            .any(|w| w == code.as_bytes()));
        // The tag is keyed: the same code under another store's key does not match.
        let other = store();
        assert!(hmac::verify(&other.key, &message("alice", &code), &challenge.tag).is_err());
    }

    #[test]
    fn the_mail_subject_has_no_code() {
        let (subject, text) = mfa_mail("12345678", "Data Analysis Remote Treatment Service");
        assert_eq!(
            subject,
            "Data Analysis Remote Treatment Service: your sign-in code"
        );
        assert!(!subject.contains("12345678"));
        assert!(text.contains("    12345678\n"));
        assert!(text.contains("5 minutes"));
    }
}
