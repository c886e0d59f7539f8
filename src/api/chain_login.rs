//! The real authentication chain and mailer behind the API's [`LoginCheck`] and
//! [`Mailer`]: `auth::chain::AuthChain` (with SMTP attached when configured) and
//! `mail::Mailer` for one-time login links and second-factor codes.

use std::sync::Arc;

use super::login::{LoginCheck, LoginFuture, LoginOutcome, MailError, MailFuture, Mailer};
use crate::auth::chain::{AuthChain, ChainOutcome};
use crate::auth::smtp::SmtpAuth;
use crate::auth::{AuthError, Credentials};
use crate::config::Config;

/// The configured chain.
#[derive(Debug)]
pub struct ChainLogin {
    chain: AuthChain,
}

impl ChainLogin {
    /// Builds every configured method. A method that cannot be built (say, an unreadable
    /// CA file) is an error: darts refuses to start rather than run with a hole.
    pub fn from_config(config: &Config) -> Result<Self, AuthError> {
        let mut chain = AuthChain::from_config(config)?;
        if config.check_user_with_smtp {
            chain = chain.with_smtp(Arc::new(SmtpAuth::from_config(config)?));
        }
        tracing::info!(methods = ?chain.methods(), "authentication chain");
        Ok(Self { chain })
    }
}

impl LoginCheck for ChainLogin {
    fn check<'a>(&'a self, creds: &'a Credentials) -> LoginFuture<'a> {
        Box::pin(async move {
            match self.chain.authenticate(creds).await {
                ChainOutcome::Authenticated(id) => LoginOutcome::Authenticated {
                    user: id.user,
                    email: id.email,
                },
                ChainOutcome::EmailLink { email } => LoginOutcome::EmailLink { email },
                ChainOutcome::Rejected { reasons } => {
                    tracing::info!(user = %creds.user, ?reasons, "login refused");
                    LoginOutcome::Rejected
                }
                ChainOutcome::Open => LoginOutcome::Open,
            }
        })
    }
}

/// One-time login links and second-factor codes by SMTP.
#[derive(Debug)]
pub struct SmtpMailer {
    mailer: crate::mail::Mailer,
    title: String,
}

impl SmtpMailer {
    pub fn from_config(config: &Config) -> Result<Self, crate::mail::MailError> {
        Ok(Self {
            mailer: crate::mail::Mailer::from_config(config)?,
            title: config.layout_title.clone(),
        })
    }
}

impl Mailer for SmtpMailer {
    fn send_login_link<'a>(&'a self, to: &'a str, link: &'a str) -> MailFuture<'a> {
        Box::pin(async move {
            let (subject, text, html) = crate::auth::email_link::login_mail(link, &self.title);
            self.mailer
                .send(to, &subject, &text, Some(&html))
                .await
                .map_err(|e| MailError(e.to_string()))
        })
    }

    fn send_mfa_code<'a>(&'a self, to: &'a str, code: &'a str) -> MailFuture<'a> {
        Box::pin(async move {
            let (subject, text) = crate::auth::mfa::mfa_mail(code, &self.title);
            self.mailer
                .send(to, &subject, &text, None)
                .await
                .map_err(|e| MailError(e.to_string()))
        })
    }
}
