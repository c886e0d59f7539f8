//! `check_user_with_smtp`: the user's credentials are tried as SMTP AUTH on the
//! configured server, over STARTTLS or TLS (plain only to loopback), certificates verified.

use lettre::transport::smtp::authentication::Credentials as SmtpCredentials;

use super::{AuthError, AuthFuture, Authenticator, Credentials, Identity};
use crate::config::Config;
use crate::mail::{is_email_address, SmtpEndpoint};

const METHOD: &str = "smtp";

/// SMTP AUTH against `smtp_server:smtp_port`.
#[derive(Debug, Clone)]
pub struct SmtpAuth {
    endpoint: SmtpEndpoint,
}

impl SmtpAuth {
    pub fn new(endpoint: SmtpEndpoint) -> Self {
        Self { endpoint }
    }

    /// `smtp_server`, `smtp_port`, `smtp_use_ssl`, `auth_ca_file`, `auth_insecure_servers`.
    pub fn from_config(cfg: &Config) -> Result<Self, AuthError> {
        SmtpEndpoint::from_config(cfg)
            .map(Self::new)
            .map_err(|e| AuthError::Misconfigured {
                method: METHOD,
                reason: e.to_string(),
            })
    }

    /// The user's address: the login when it is one, else `user@smtp_server`.
    fn email_of(&self, user: &str) -> Option<String> {
        if is_email_address(user) {
            return Some(user.to_owned());
        }
        let derived = format!("{user}@{}", self.endpoint.host());
        is_email_address(&derived).then_some(derived)
    }

    async fn check(&self, creds: &Credentials) -> Result<Identity, AuthError> {
        if creds.user.is_empty() || creds.password.is_empty() {
            return Err(AuthError::Rejected { method: METHOD });
        }
        let server = self.endpoint.server();
        let transport = self.endpoint.transport(
            Some(SmtpCredentials::new(
                creds.user.clone(),
                creds.password.clone(),
            )),
            // lettre wants a socket timeout; the whole check is bounded by the chain.
            super::chain::METHOD_TIMEOUT,
        );
        // Connects, secures, authenticates (an AUTH refusal is an error), NOOP, QUIT.
        match transport.test_connection().await {
            Ok(_) => {
                tracing::info!(method = METHOD, user = %creds.user, server = %server, "authenticated");
                Ok(Identity {
                    user: creds.user.clone(),
                    email: self.email_of(&creds.user),
                    method: METHOD,
                })
            }
            Err(e) if is_credentials_refusal(&e) => {
                tracing::info!(method = METHOD, user = %creds.user, server = %server, "credentials refused");
                Err(AuthError::Rejected { method: METHOD })
            }
            Err(e) => {
                tracing::warn!(method = METHOD, user = %creds.user, server = %server, error = %e, "server unavailable");
                Err(AuthError::Unavailable {
                    method: METHOD,
                    server,
                    reason: e.to_string(),
                })
            }
        }
    }
}

/// 535: authentication credentials invalid (RFC 4954). Other replies say nothing about
/// the password (454 temporary failure, 530 TLS required, …).
fn is_credentials_refusal(e: &lettre::transport::smtp::Error) -> bool {
    e.status().is_some_and(|code| code.to_string() == "535")
}

impl Authenticator for SmtpAuth {
    fn name(&self) -> &'static str {
        METHOD
    }

    fn authenticate<'a>(&'a self, creds: &'a Credentials) -> AuthFuture<'a> {
        Box::pin(self.check(creds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::SmtpSecurity;

    fn auth(host: &str) -> SmtpAuth {
        let tls = crate::auth::tls::AuthTls::new(None, &[]).unwrap();
        SmtpAuth::new(SmtpEndpoint::new(host, 587, SmtpSecurity::StartTls, &tls).unwrap())
    }

    #[test]
    fn email_is_the_login_or_derived_from_the_server() {
        let a = auth("mail.example.org");
        assert_eq!(a.email_of("bob@lab.org").as_deref(), Some("bob@lab.org"));
        assert_eq!(a.email_of("bob").as_deref(), Some("bob@mail.example.org"));
    }

    #[tokio::test]
    async fn empty_credentials_are_refused_without_a_connection() {
        // A name that never resolves: a connection attempt would give Unavailable.
        let a = auth("smtp.invalid");
        for (user, password) in [("", "pw"), ("bob", "")] {
            let creds = Credentials {
                user: user.into(),
                password: password.into(),
                remote: None,
            };
            assert!(matches!(
                a.authenticate(&creds).await,
                Err(AuthError::Rejected { method: "smtp" })
            ));
        }
    }

    #[test]
    fn misconfiguration_is_reported() {
        let cfg = Config {
            check_user_with_smtp: true,
            smtp_server: "mail.example.org".into(),
            smtp_use_ssl: "none".into(),
            ..Config::default()
        };
        assert!(matches!(
            SmtpAuth::from_config(&cfg),
            Err(AuthError::Misconfigured { method: "smtp", .. })
        ));
    }
}
