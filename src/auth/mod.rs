//! Authentication: the original's chain of methods (e-mail link, local PAM, IMAP, SMTP,
//! LDAP, then the custom command), each an [`Authenticator`], and the second factor.
//!
//! A method either proves the user (an [`Identity`]), refuses the credentials, or cannot
//! tell (server down, misconfigured): then the next method is tried. Passwords are never
//! logged, and every refusal reaches the user as one uniform message.

pub mod chain;
pub mod custom;
pub mod email_link;
pub mod imap;
pub mod ldap;
pub mod mfa;
pub mod pam;
pub mod smtp;
pub mod tls;

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

/// What a user typed in the login form.
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
    /// The client's address (after trusted proxies), for rate limits and the custom hook.
    pub remote: Option<IpAddr>,
}

impl std::fmt::Debug for Credentials {
    /// Never the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

/// A proven user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The login sessions are filed under.
    pub user: String,
    /// Where mails (login link, second factor) go, when known.
    pub email: Option<String>,
    /// The method that proved it: `local`, `imap`, `smtp`, `ldap`, `custom`, `email`.
    pub method: &'static str,
}

impl Identity {
    /// The one name a person's sessions, limits, logins and audit lines are filed under,
    /// whichever way they typed it. Mail servers (IMAP, SMTP, e-mail links) and LDAP
    /// (`uid` matches without case; ldap.rs already took the entry's own `uid`) compare
    /// user names without case, so the name is folded to lower case; local accounts
    /// (PAM) and the custom command's `user=` are case-sensitive and stay as given.
    pub fn canonical(mut self) -> Self {
        if case_insensitive(self.method) {
            self.user = self.user.to_lowercase();
        }
        self
    }
}

/// Whether `method` matches user names without case.
pub fn case_insensitive(method: &str) -> bool {
    matches!(method, "imap" | "smtp" | "ldap" | "email")
}

/// Why a method did not prove the user.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The server (or command) answered: these credentials are wrong.
    #[error("{method}: wrong user name or password")]
    Rejected { method: &'static str },
    /// The method could not decide: server unreachable, TLS failure, timeout.
    #[error("{method}: cannot reach {server}: {reason}")]
    Unavailable {
        method: &'static str,
        server: String,
        reason: String,
    },
    /// The configuration cannot work (missing server name, unreadable CA file, …).
    #[error("{method}: {reason}")]
    Misconfigured {
        method: &'static str,
        reason: String,
    },
}

/// A boxed authentication future.
pub type AuthFuture<'a> = Pin<Box<dyn Future<Output = Result<Identity, AuthError>> + Send + 'a>>;

/// One method of the chain.
pub trait Authenticator: Send + Sync + std::fmt::Debug {
    /// Short name for logs and messages (`imap`, `ldap`, …).
    fn name(&self) -> &'static str;
    /// Checks the credentials, within a bounded time.
    fn authenticate<'a>(&'a self, creds: &'a Credentials) -> AuthFuture<'a>;
}
