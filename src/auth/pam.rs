//! `check_user_with_local`: the accounts of this host, through PAM (service `pam_service`).
//!
//! The original logged in over SSH to `server_name`, which came from the request's Host
//! header; this asks the local PAM stack and contacts no other host. PAM calls block (and
//! a bad password costs the stack's fail delay, about 3 s on Debian's `login`), so they run
//! on the blocking pool, a few at a time, each bounded by the chain's timeout.
//!
//! Reading other users' password hashes needs root, or membership of the `shadow` group
//! on Debian (pam_unix otherwise only checks the calling user's own password).

use std::sync::Arc;

use pam_client2::conv_mock::Conversation;
use pam_client2::{Context, ErrorCode, Flag};
use tokio::sync::Semaphore;

use super::{AuthError, AuthFuture, Authenticator, Credentials, Identity};
use crate::config::Config;

const METHOD: &str = "local";

/// PAM conversations running at once; the others wait (within the chain's timeout).
const MAX_CONCURRENT: usize = 4;

/// Checks passwords with the host's PAM stack.
#[derive(Debug, Clone)]
pub struct PamAuth {
    service: String,
    slots: Arc<Semaphore>,
}

impl PamAuth {
    /// From `pam_service`.
    pub fn from_config(config: &Config) -> Result<Self, AuthError> {
        Self::new(config.pam_service.trim())
    }

    pub fn new(service: &str) -> Result<Self, AuthError> {
        // A service name is a file name under /etc/pam.d.
        if service.is_empty() || service.contains(['/', '\0']) || service.starts_with('.') {
            return Err(AuthError::Misconfigured {
                method: METHOD,
                reason: format!("pam_service = {service:?} is not a PAM service name"),
            });
        }
        Ok(Self {
            service: service.to_owned(),
            slots: Arc::new(Semaphore::new(MAX_CONCURRENT)),
        })
    }

    fn unavailable(&self, reason: impl Into<String>) -> AuthError {
        AuthError::Unavailable {
            method: METHOD,
            server: format!("PAM service {}", self.service),
            reason: reason.into(),
        }
    }

    async fn check(&self, creds: &Credentials) -> Result<Identity, AuthError> {
        if !acceptable_login(&creds.user)
            || creds.password.is_empty()
            || creds.password.contains('\0')
        {
            return Err(AuthError::Rejected { method: METHOD });
        }
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| self.unavailable("closed"))?;
        let service = self.service.clone();
        let user = creds.user.clone();
        let password = creds.password.clone();
        // The permit moves into the blocking task: a conversation that outlives the
        // chain's timeout still holds its slot until PAM returns.
        let outcome = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            pam_check(&service, &user, password)
        })
        .await
        .map_err(|e| self.unavailable(format!("PAM task failed: {e}")))?;
        match outcome {
            Ok(()) => Ok(Identity {
                user: creds.user.clone(),
                email: None,
                method: METHOD,
            }),
            Err(code) if refuses_user(code) => Err(AuthError::Rejected { method: METHOD }),
            Err(code) => Err(self.unavailable(format!("PAM error {code:?}"))),
        }
    }
}

/// A login PAM may be asked about: no NUL, no option-like or path-like names.
fn acceptable_login(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= 256
        && !user.starts_with('-')
        && !user.contains(['/', '\0'])
        && !user.chars().any(char::is_control)
}

/// Authentication, then the account check (expired, locked, not allowed here).
fn pam_check(service: &str, user: &str, password: String) -> Result<(), ErrorCode> {
    let conversation = Conversation::with_credentials(user, password);
    let mut context = Context::new(service, Some(user), conversation).map_err(|e| e.code())?;
    context
        .authenticate(Flag::DISALLOW_NULL_AUTHTOK)
        .map_err(|e| e.code())?;
    context
        .acct_mgmt(Flag::DISALLOW_NULL_AUTHTOK)
        .map_err(|e| e.code())
}

/// PAM's answers that mean "not this user with this password", as opposed to a broken
/// stack or an unreachable backend (NIS, LDAP, SSSD) behind it.
fn refuses_user(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::AUTH_ERR
            | ErrorCode::USER_UNKNOWN
            | ErrorCode::CRED_INSUFFICIENT
            | ErrorCode::MAXTRIES
            | ErrorCode::PERM_DENIED
            | ErrorCode::ACCT_EXPIRED
            | ErrorCode::NEW_AUTHTOK_REQD
            | ErrorCode::AUTHTOK_EXPIRED
            | ErrorCode::CRED_EXPIRED
    )
}

impl Authenticator for PamAuth {
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
    fn service_names() {
        assert!(PamAuth::new("login").is_ok());
        for bad in ["", "../shadow", "a/b", ".hidden"] {
            assert!(
                matches!(PamAuth::new(bad), Err(AuthError::Misconfigured { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn odd_logins_are_not_passed_to_pam() {
        assert!(acceptable_login("alice"));
        assert!(acceptable_login("alice@example.org"));
        for bad in ["", "-froot", "a/b", "a\0b", "a\nb"] {
            assert!(!acceptable_login(bad), "{bad:?}");
        }
    }

    #[test]
    fn wrong_password_codes_are_refusals_and_the_rest_unavailable() {
        assert!(refuses_user(ErrorCode::AUTH_ERR));
        assert!(refuses_user(ErrorCode::USER_UNKNOWN));
        assert!(!refuses_user(ErrorCode::AUTHINFO_UNAVAIL));
        assert!(!refuses_user(ErrorCode::SYSTEM_ERR));
    }

    #[tokio::test]
    async fn an_empty_password_is_refused_without_pam() {
        let auth = PamAuth::new("darts-no-such-service").unwrap();
        let creds = Credentials {
            user: "root".into(),
            password: String::new(),
            remote: None,
        };
        assert!(matches!(
            auth.authenticate(&creds).await,
            Err(AuthError::Rejected { method: "local" })
        ));
    }
}
