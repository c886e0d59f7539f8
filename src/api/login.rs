//! How the web service proves who logs in, seen from the API: one [`LoginCheck`] answers
//! for the whole authentication chain, and a [`Mailer`] sends one-time login links.
//!
//! The API does not know the methods (PAM, IMAP, SMTP, LDAP, the custom command); they
//! sit behind `LoginCheck`. This module's own implementation is [`OpenLogin`], used when
//! no method is configured. The second factor (`check_user_mfa`) is the API's own step
//! after an `Authenticated` outcome: a code mailed through the same [`Mailer`].

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;

use crate::auth::Credentials;
use crate::config::Config;

/// What the chain decided about a login attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginOutcome {
    /// Proven: the login is opened for `user`.
    Authenticated { user: String, email: Option<String> },
    /// The user typed an e-mail address and e-mail login is on: mail a one-time link to
    /// `email` instead of opening the login now.
    EmailLink { email: String },
    /// Wrong credentials, or no method could decide; the user sees one uniform message.
    Rejected,
    /// No method is configured: every user name is accepted as typed.
    Open,
}

/// A boxed login future.
pub type LoginFuture<'a> = Pin<Box<dyn Future<Output = LoginOutcome> + Send + 'a>>;

/// The authentication chain as the API calls it.
pub trait LoginCheck: Send + Sync + Debug {
    fn check<'a>(&'a self, creds: &'a Credentials) -> LoginFuture<'a>;
}

/// No authentication at all (the embedded default, loopback only unless
/// `allow_open_access`).
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenLogin;

impl LoginCheck for OpenLogin {
    fn check<'a>(&'a self, _creds: &'a Credentials) -> LoginFuture<'a> {
        Box::pin(async { LoginOutcome::Open })
    }
}

/// Why a mail could not be sent.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MailError(pub String);

/// A boxed mail future.
pub type MailFuture<'a> = Pin<Box<dyn Future<Output = Result<(), MailError>> + Send + 'a>>;

/// Sends the one-time login link of `LoginOutcome::EmailLink` and second-factor codes.
pub trait Mailer: Send + Sync + Debug {
    /// Mails `link` (which holds a secret: it must not be logged) to `to`.
    fn send_login_link<'a>(&'a self, to: &'a str, link: &'a str) -> MailFuture<'a>;
    /// Mails a second-factor `code` (a secret: not logged, not in the subject) to `to`.
    fn send_mfa_code<'a>(&'a self, to: &'a str, code: &'a str) -> MailFuture<'a>;
}

/// Whether any authentication method is configured.
pub fn auth_configured(config: &Config) -> bool {
    config.check_user_with_email
        || config.check_user_with_local
        || config.check_user_with_imap
        || config.check_user_with_smtp
        || config.check_user_with_ldap
        || !config.check_user_custom.trim().is_empty()
}

/// Stands in for the chain when methods are configured but this build has no chain
/// to run them: every login is refused, loudly in the log, never opened.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoChain;

impl LoginCheck for NoChain {
    fn check<'a>(&'a self, _creds: &'a Credentials) -> LoginFuture<'a> {
        Box::pin(async {
            tracing::error!(
                "authentication methods are configured but no authentication chain is built in; login refused"
            );
            LoginOutcome::Rejected
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_method_counts_as_configured() {
        assert!(!auth_configured(&Config::default()));
        let c = Config {
            check_user_with_imap: true,
            ..Config::default()
        };
        assert!(auth_configured(&c));
        let c = Config {
            check_user_custom: "/usr/local/bin/check".into(),
            ..Config::default()
        };
        assert!(auth_configured(&c));
    }

    #[tokio::test]
    async fn open_and_no_chain() {
        let creds = Credentials {
            user: "u".into(),
            password: "p".into(),
            remote: None,
        };
        assert_eq!(OpenLogin.check(&creds).await, LoginOutcome::Open);
        assert_eq!(NoChain.check(&creds).await, LoginOutcome::Rejected);
    }
}
