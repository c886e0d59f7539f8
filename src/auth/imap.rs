//! `check_user_with_imap`: the password is good if the IMAP server accepts LOGIN with it,
//! over IMAPS (`imap_security = "tls"`) or STARTTLS (`"starttls"`). Never in clear.

use async_imap::error::Error as ImapError;
use async_imap::imap_proto::{Response, Status};
use async_imap::Client;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::tls::{describe_io_error, AuthTls};
use super::{AuthError, AuthFuture, Authenticator, Credentials, Identity};
use crate::config::Config;

const METHOD: &str = "imap";

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImapSecurity {
    /// TLS from the first byte (IMAPS, port 993).
    Tls,
    /// Plain connection upgraded with STARTTLS before LOGIN (port 143).
    StartTls,
}

impl ImapSecurity {
    /// Parses `imap_security`.
    pub fn parse(value: &str) -> Result<Self, AuthError> {
        match value.to_ascii_lowercase().as_str() {
            "tls" | "ssl" | "imaps" => Ok(Self::Tls),
            "starttls" => Ok(Self::StartTls),
            other => Err(AuthError::Misconfigured {
                method: METHOD,
                reason: format!("imap_security = {other:?}: expected \"tls\" or \"starttls\""),
            }),
        }
    }
}

/// Checks passwords against an IMAP server.
#[derive(Debug, Clone)]
pub struct ImapAuth {
    server: String,
    port: u16,
    security: ImapSecurity,
    tls: AuthTls,
}

impl ImapAuth {
    /// From `imap_server`, `imap_port`, `imap_security`.
    pub fn from_config(config: &Config, tls: AuthTls) -> Result<Self, AuthError> {
        if config.imap_server.trim().is_empty() {
            return Err(AuthError::Misconfigured {
                method: METHOD,
                reason: "check_user_with_imap is on but imap_server is empty".into(),
            });
        }
        Ok(Self::new(
            config.imap_server.trim(),
            config.imap_port,
            ImapSecurity::parse(&config.imap_security)?,
            tls,
        ))
    }

    pub fn new(server: &str, port: u16, security: ImapSecurity, tls: AuthTls) -> Self {
        Self {
            server: server.to_owned(),
            port,
            security,
            tls,
        }
    }

    fn unavailable(&self, reason: impl Into<String>) -> AuthError {
        AuthError::Unavailable {
            method: METHOD,
            server: format!("{}:{}", self.server, self.port),
            reason: reason.into(),
        }
    }

    async fn check(&self, creds: &Credentials) -> Result<Identity, AuthError> {
        if creds.user.is_empty() || creds.password.is_empty() {
            return Err(AuthError::Rejected { method: METHOD });
        }
        let tcp = TcpStream::connect((self.server.as_str(), self.port))
            .await
            .map_err(|e| self.unavailable(e.to_string()))?;
        match self.security {
            ImapSecurity::Tls => {
                let tls = self
                    .tls
                    .connect(&self.server, tcp)
                    .await
                    .map_err(|e| self.unavailable(describe_io_error(&e)))?;
                let mut client = Client::new(tls);
                self.expect_greeting(&mut client).await?;
                self.login(client, creds).await
            }
            ImapSecurity::StartTls => {
                let mut client = Client::new(tcp);
                self.expect_greeting(&mut client).await?;
                client
                    .run_command_and_check_ok("STARTTLS", None)
                    .await
                    .map_err(|e| self.unavailable(format!("STARTTLS refused: {e}")))?;
                // Whatever the server sent after its OK is dropped with the plain client:
                // nothing read before the handshake may be trusted.
                let tls = self
                    .tls
                    .connect(&self.server, client.into_inner())
                    .await
                    .map_err(|e| self.unavailable(describe_io_error(&e)))?;
                self.login(Client::new(tls), creds).await
            }
        }
    }

    async fn expect_greeting<S>(&self, client: &mut Client<S>) -> Result<(), AuthError>
    where
        S: AsyncRead + AsyncWrite + Unpin + std::fmt::Debug + Send,
    {
        let greeting = client
            .read_response()
            .await
            .map_err(|e| self.unavailable(describe_io_error(&e)))?
            .ok_or_else(|| self.unavailable("connection closed before the greeting"))?;
        match greeting.parsed() {
            Response::Data {
                status: Status::Ok, ..
            } => Ok(()),
            other => Err(self.unavailable(format!("unexpected greeting: {other:?}"))),
        }
    }

    async fn login<S>(&self, client: Client<S>, creds: &Credentials) -> Result<Identity, AuthError>
    where
        S: AsyncRead + AsyncWrite + Unpin + std::fmt::Debug + Send,
    {
        match client.login(&creds.user, &creds.password).await {
            Ok(mut session) => {
                // Only politeness: the answer to LOGIN already decided.
                let _ = session.logout().await;
                Ok(Identity {
                    user: creds.user.clone(),
                    email: Some(email_of(&creds.user, &self.server)),
                    method: METHOD,
                })
            }
            Err((e, _client)) => Err(self.classify_login_error(e)),
        }
    }

    fn classify_login_error(&self, e: ImapError) -> AuthError {
        match e {
            // RFC 5530: UNAVAILABLE means the server cannot check now, not a wrong password.
            ImapError::No(text) if text.to_ascii_uppercase().contains("UNAVAILABLE") => {
                self.unavailable(format!("LOGIN: {text}"))
            }
            // A NO, or a password the protocol cannot carry (CR, LF).
            ImapError::No(_) | ImapError::Validate(_) => AuthError::Rejected { method: METHOD },
            ImapError::Io(e) => self.unavailable(describe_io_error(&e)),
            other => self.unavailable(format!("LOGIN: {other}")),
        }
    }
}

/// The login when it is an address, else `login@server` (the original's rule).
fn email_of(user: &str, server: &str) -> String {
    if super::chain::looks_like_address(user) {
        user.to_owned()
    } else {
        format!("{user}@{server}")
    }
}

impl Authenticator for ImapAuth {
    fn name(&self) -> &'static str {
        METHOD
    }

    fn authenticate<'a>(&'a self, creds: &'a Credentials) -> AuthFuture<'a> {
        // Bounded by the chain (AuthChain::with_method_timeout), as every method is.
        Box::pin(self.check(creds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_values() {
        assert_eq!(ImapSecurity::parse("TLS").unwrap(), ImapSecurity::Tls);
        assert_eq!(
            ImapSecurity::parse("starttls").unwrap(),
            ImapSecurity::StartTls
        );
        assert!(matches!(
            ImapSecurity::parse("none"),
            Err(AuthError::Misconfigured { .. })
        ));
    }

    #[test]
    fn email_is_the_login_or_login_at_server() {
        assert_eq!(email_of("alice@example.org", "imap.x"), "alice@example.org");
        assert_eq!(
            email_of("alice", "imap.example.org"),
            "alice@imap.example.org"
        );
    }

    #[test]
    fn no_server_is_a_configuration_error() {
        let config = Config {
            check_user_with_imap: true,
            ..Config::default()
        };
        let tls = AuthTls::new(None, &[]).unwrap();
        assert!(matches!(
            ImapAuth::from_config(&config, tls),
            Err(AuthError::Misconfigured { .. })
        ));
    }
}
