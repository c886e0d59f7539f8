//! What a token leads to: the route of a websocket's `?token=`, and the digest the
//! gateway keeps instead of the token. Below every source of routes (in process, token
//! files, the shared registry) and everything that reports on them, so that each can
//! name a route without depending on the others.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use ring::digest;

use crate::rfb::BackendSecurity;
use crate::target::Target;

/// The SHA-256 digest of a token: what the gateway keeps instead of the token.
#[derive(Clone, Copy, Eq)]
pub struct TokenKey([u8; 32]);

impl TokenKey {
    /// The digest itself.
    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The digest of `token`.
    pub fn of(token: &str) -> Self {
        let d = digest::digest(&digest::SHA256, token.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(d.as_ref());
        Self(key)
    }

    /// The digest written by `to_hex`; `None` unless it is 64 hex digits.
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 64 {
            return None;
        }
        let mut key = [0u8; 32];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self(key))
    }

    /// Hex of the full digest, for state files that must find a route again after a restart.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl PartialEq for TokenKey {
    /// Constant time: every byte is looked at whatever the first difference.
    fn eq(&self, other: &Self) -> bool {
        let diff = self
            .0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

impl std::hash::Hash for TokenKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl fmt::Debug for TokenKey {
    /// Only a short prefix of the digest, enough to correlate log lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sha256:{:02x}{:02x}{:02x}{:02x}…",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

/// Where a token leads and under which conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Route {
    /// The VNC server (or other TCP/unix service) the websocket is relayed to.
    pub target: Target,
    /// After this instant the token is refused (and removed).
    pub expires_at: Option<SystemTime>,
    /// Accepted for one connection only; removed by the lookup that accepts it.
    pub one_shot: bool,
    /// A name for logs and metrics (e.g. a session id); never the token.
    pub label: Option<Arc<str>>,
    /// How darts authenticates to the target's VNC server.
    pub security: BackendSecurity,
    /// Drop keyboard, pointer and clipboard input from this viewer.
    pub view_only: bool,
    /// Largest clipboard paste forwarded, in bytes; `Some(0)` disables the clipboard.
    pub max_clipboard: Option<u32>,
    /// A view-only viewer still receives the guest's clipboard (its owner allowed it).
    pub view_only_clipboard: bool,
}

impl Route {
    /// A route to `target`: no expiry, reusable, unlabelled, no terminated security, no
    /// input restrictions.
    pub fn new(target: Target) -> Self {
        Self {
            target,
            expires_at: None,
            one_shot: false,
            label: None,
            security: BackendSecurity::None,
            view_only: false,
            max_clipboard: None,
            view_only_clipboard: false,
        }
    }

    /// Sets how darts authenticates to the target's VNC server.
    pub fn security(mut self, security: BackendSecurity) -> Self {
        self.security = security;
        self
    }

    /// Sets whether this route's viewers have their input dropped.
    pub fn view_only(mut self, view_only: bool) -> Self {
        self.view_only = view_only;
        self
    }

    /// Sets the largest clipboard paste forwarded (`Some(0)`: no clipboard).
    pub fn max_clipboard(mut self, max: Option<u32>) -> Self {
        self.max_clipboard = max;
        self
    }

    /// Sets whether view-only viewers still receive the guest's clipboard.
    pub fn view_only_clipboard(mut self, allowed: bool) -> Self {
        self.view_only_clipboard = allowed;
        self
    }

    /// What a viewer of this route may do.
    pub fn policy(&self) -> crate::rfb::Policy {
        crate::rfb::Policy {
            view_only: self.view_only,
            max_clipboard: self.max_clipboard,
            view_only_clipboard: self.view_only_clipboard,
        }
    }

    /// The input filter a viewer of this route needs, if any: one per connection, fed
    /// every browser byte from ClientInit to the end. Boxed: most routes need none, and
    /// an idle session's task should not carry the filter's size.
    pub fn filter(&self) -> Option<Box<crate::rfb::ClientFilter>> {
        let policy = self.policy();
        policy
            .filters()
            .then(|| Box::new(crate::rfb::ClientFilter::new(policy)))
    }

    /// Refuses the token from `at` on.
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// Sets whether the token is accepted for one connection only.
    pub fn one_shot(mut self, one_shot: bool) -> Self {
        self.one_shot = one_shot;
        self
    }

    /// Names the route (e.g. a session id) for logs and viewer events.
    pub fn label(mut self, label: impl Into<Arc<str>>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub(crate) fn expired(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|t| now >= t)
    }
}

#[cfg(test)]
mod key_tests {
    use super::TokenKey;

    #[test]
    fn hex_round_trip() {
        let k = TokenKey::of("abc");
        assert!(TokenKey::from_hex(&k.to_hex()) == Some(k));
        assert!(TokenKey::from_hex("zz").is_none());
        assert!(TokenKey::from_hex(&"g".repeat(64)).is_none());
    }
}
