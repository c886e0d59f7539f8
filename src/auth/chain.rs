//! The authentication chain, in the original's order: e-mail link, local (PAM), IMAP,
//! SMTP, LDAP, then the custom hook.
//!
//! Rules:
//! - **E-mail link**: with `check_user_with_email` on, a login that is an e-mail address
//!   and an empty password gives [`ChainOutcome::EmailLink`]: the caller mails a one-time
//!   link, and only the owner of the mailbox gets in. (The original produced "EMAIL",
//!   which its final rule then refused.) The custom hook, when set, may veto it: it sees
//!   `previous = {"result": "NONE", "method": "email", …}`.
//! - **Password methods** run in order until one proves the user. A method that refuses
//!   the password, or cannot answer (server down, TLS failure, timeout, misconfigured),
//!   is logged (never with the password) and the next one is tried. An empty password
//!   reaches no server.
//! - **Custom hook** (`check_user_custom`) always runs last when set, sees what came
//!   before, and its answer replaces the result. A hook that cannot answer refuses: it is
//!   the operator's last word, so it fails closed.
//! - **Nothing configured**: [`ChainOutcome::Open`], access granted (the caller warns).

use std::sync::Arc;
use std::time::Duration;

use super::custom::{CustomCommand, CustomHook, Previous, PreviousResult};
use super::imap::ImapAuth;
use super::ldap::LdapAuth;
use super::pam::PamAuth;
use super::tls::AuthTls;
use super::{AuthError, Authenticator, Credentials, Identity};
use crate::config::Config;

/// The time one password method gets (connect, TLS, exchange) before the next is tried,
/// and the custom hook's own limit. Methods do not bound themselves: the chain does.
pub const METHOD_TIMEOUT: Duration = Duration::from_secs(10);

/// What the chain concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainOutcome {
    /// A method (or the custom hook) proved the user.
    Authenticated(Identity),
    /// Mail a one-time login link to this address; nothing is proved yet.
    EmailLink { email: String },
    /// Refused. The reasons (one per method tried) are for the log, not for the user.
    Rejected { reasons: Vec<String> },
    /// No method is configured: access is granted to anyone.
    Open,
}

/// The configured methods, in order.
#[derive(Debug, Clone)]
pub struct AuthChain {
    email_link: bool,
    local: Option<Arc<dyn Authenticator>>,
    imap: Option<Arc<dyn Authenticator>>,
    smtp: Option<Arc<dyn Authenticator>>,
    /// `check_user_with_smtp` is on: without an authenticator in the slot, SMTP logins fail.
    smtp_wanted: bool,
    ldap: Option<Arc<dyn Authenticator>>,
    custom: Option<Arc<dyn CustomHook>>,
    method_timeout: Duration,
}

impl Default for AuthChain {
    fn default() -> Self {
        Self::new()
    }
}

impl AuthChain {
    /// An empty chain (open until methods are added).
    pub fn new() -> Self {
        Self {
            email_link: false,
            local: None,
            imap: None,
            smtp: None,
            smtp_wanted: false,
            ldap: None,
            custom: None,
            method_timeout: METHOD_TIMEOUT,
        }
    }

    /// The methods the configuration enables, except SMTP, whose authenticator is attached
    /// with [`AuthChain::with_smtp`]. Fails on a configuration that cannot work (no
    /// server name, plain LDAP to a remote host, unreadable `auth_ca_file`, a custom
    /// command that does not exist).
    pub fn from_config(config: &Config) -> Result<Self, AuthError> {
        let mut chain = Self::new().with_email_link(config.check_user_with_email);
        let tls = |method: &'static str| {
            AuthTls::from_config(config).map_err(|e| AuthError::Misconfigured {
                method,
                reason: e.to_string(),
            })
        };
        if config.check_user_with_local {
            chain = chain.with_local(Arc::new(PamAuth::from_config(config)?));
        }
        if config.check_user_with_imap {
            chain = chain.with_imap(Arc::new(ImapAuth::from_config(config, tls("imap")?)?));
        }
        chain.smtp_wanted = config.check_user_with_smtp;
        if config.check_user_with_ldap {
            chain = chain.with_ldap(Arc::new(LdapAuth::from_config(config, tls("ldap")?)?));
        }
        if let Some(custom) = CustomCommand::from_config(config)? {
            chain = chain.with_custom(Arc::new(custom));
        }
        Ok(chain)
    }

    pub fn with_email_link(mut self, on: bool) -> Self {
        self.email_link = on;
        self
    }

    pub fn with_local(mut self, method: Arc<dyn Authenticator>) -> Self {
        self.local = Some(method);
        self
    }

    pub fn with_imap(mut self, method: Arc<dyn Authenticator>) -> Self {
        self.imap = Some(method);
        self
    }

    /// Fills the SMTP slot (between IMAP and LDAP).
    pub fn with_smtp(mut self, method: Arc<dyn Authenticator>) -> Self {
        self.smtp = Some(method);
        self.smtp_wanted = true;
        self
    }

    pub fn with_ldap(mut self, method: Arc<dyn Authenticator>) -> Self {
        self.ldap = Some(method);
        self
    }

    pub fn with_custom(mut self, hook: Arc<dyn CustomHook>) -> Self {
        self.custom = Some(hook);
        self
    }

    /// The time each password method gets. The custom hook keeps its own limit
    /// ([`CustomCommand::with_timeout`]): it kills the program it runs when time is up.
    pub fn with_method_timeout(mut self, timeout: Duration) -> Self {
        self.method_timeout = timeout;
        self
    }

    /// No method at all: anyone gets in.
    pub fn is_open(&self) -> bool {
        self.methods().is_empty()
    }

    /// Names of the configured methods, in the order they are tried.
    pub fn methods(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.email_link {
            names.push("email");
        }
        for (name, slot) in self.password_slots() {
            if slot.is_some() || (name == "smtp" && self.smtp_wanted) {
                names.push(name);
            }
        }
        if self.custom.is_some() {
            names.push("custom");
        }
        names
    }

    fn password_slots(&self) -> [(&'static str, Option<&Arc<dyn Authenticator>>); 4] {
        [
            ("local", self.local.as_ref()),
            ("imap", self.imap.as_ref()),
            ("smtp", self.smtp.as_ref()),
            ("ldap", self.ldap.as_ref()),
        ]
    }

    /// Runs the chain for one login attempt.
    pub async fn authenticate(&self, creds: &Credentials) -> ChainOutcome {
        if self.is_open() {
            return ChainOutcome::Open;
        }
        if creds.user.is_empty() {
            return ChainOutcome::Rejected {
                reasons: vec!["no user name".into()],
            };
        }
        if self.email_link && creds.password.is_empty() && looks_like_address(&creds.user) {
            return self.email_link_outcome(creds).await;
        }

        let mut reasons = Vec::new();
        let mut proved = None;
        let mut ran = false;
        for (name, slot) in self.password_slots() {
            let Some(method) = slot else {
                if name == "smtp" && self.smtp_wanted {
                    tracing::error!(
                        method = name,
                        "check_user_with_smtp is on but no SMTP authenticator is attached"
                    );
                    reasons.push("smtp: not available in this build of the chain".into());
                    ran = true;
                }
                continue;
            };
            ran = true;
            if creds.password.is_empty() {
                reasons.push(format!("{name}: empty password"));
                continue;
            }
            match tokio::time::timeout(self.method_timeout, method.authenticate(creds)).await {
                Ok(Ok(identity)) => {
                    let identity = identity.canonical();
                    tracing::info!(method = name, user = %creds.user, identity = %identity.user, "password accepted");
                    proved = Some(identity);
                    break;
                }
                Ok(Err(e @ AuthError::Rejected { .. })) => {
                    tracing::info!(method = name, user = %creds.user, "password refused");
                    reasons.push(e.to_string());
                }
                Ok(Err(e)) => {
                    tracing::warn!(method = name, user = %creds.user, error = %e, "method could not decide; trying the next");
                    reasons.push(e.to_string());
                }
                Err(_) => {
                    let e = format!("{name}: no answer within {:?}", self.method_timeout);
                    tracing::warn!(method = name, user = %creds.user, error = %e, "method could not decide; trying the next");
                    reasons.push(e);
                }
            }
        }

        let Some(hook) = &self.custom else {
            return match proved {
                Some(identity) => ChainOutcome::Authenticated(identity),
                None => {
                    if reasons.is_empty() {
                        reasons.push(
                            "email: a login link needs an e-mail address and an empty password"
                                .into(),
                        );
                    }
                    ChainOutcome::Rejected { reasons }
                }
            };
        };
        let previous = match &proved {
            Some(identity) => Previous::success(identity),
            None if ran => Previous::failed(),
            None => Previous::none(),
        };
        match self.run_hook(hook.as_ref(), creds, &previous).await {
            Ok(identity) => ChainOutcome::Authenticated(identity.canonical()),
            Err(e) => {
                reasons.push(e.to_string());
                ChainOutcome::Rejected { reasons }
            }
        }
    }

    async fn email_link_outcome(&self, creds: &Credentials) -> ChainOutcome {
        // The address is the identity: one person, however they capitalise it.
        let email = creds.user.to_lowercase();
        let Some(hook) = &self.custom else {
            return ChainOutcome::EmailLink { email };
        };
        let previous = Previous {
            result: PreviousResult::None,
            method: Some("email"),
            user: Some(email.clone()),
            email: Some(email.clone()),
        };
        match self.run_hook(hook.as_ref(), creds, &previous).await {
            // The link still goes to the address typed: the mailbox is the proof.
            Ok(_) => ChainOutcome::EmailLink { email },
            Err(e) => ChainOutcome::Rejected {
                reasons: vec![e.to_string()],
            },
        }
    }

    async fn run_hook(
        &self,
        hook: &dyn CustomHook,
        creds: &Credentials,
        previous: &Previous,
    ) -> Result<Identity, AuthError> {
        // The hook bounds itself (CustomHook says so): a second limit here would race it.
        let result = hook.decide(creds, previous).await;
        match &result {
            Ok(identity) => {
                tracing::info!(method = "custom", user = %creds.user, identity = %identity.user, "custom hook accepted")
            }
            Err(e @ AuthError::Rejected { .. }) => {
                tracing::info!(method = "custom", user = %creds.user, error = %e, "custom hook refused")
            }
            Err(e) => {
                tracing::warn!(method = "custom", user = %creds.user, error = %e, "custom hook could not decide: refused")
            }
        }
        result
    }
}

/// An e-mail address, by the same rules the mailer applies.
pub fn looks_like_address(s: &str) -> bool {
    s.len() <= 254 && s.contains('@') && s.parse::<lettre::Address>().is_ok()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use super::*;
    use crate::auth::AuthFuture;

    /// A method that answers the same thing every time and counts its calls.
    #[derive(Debug)]
    struct Fake {
        name: &'static str,
        answer: FakeAnswer,
        calls: AtomicUsize,
    }

    #[derive(Debug, Clone, Copy)]
    enum FakeAnswer {
        Accept,
        Reject,
        Down,
        Hang,
    }

    impl Fake {
        fn new(name: &'static str, answer: FakeAnswer) -> Arc<Self> {
            Arc::new(Self {
                name,
                answer,
                calls: AtomicUsize::new(0),
            })
        }
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl Authenticator for Fake {
        fn name(&self) -> &'static str {
            self.name
        }
        fn authenticate<'a>(&'a self, creds: &'a Credentials) -> AuthFuture<'a> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                match self.answer {
                    FakeAnswer::Accept => Ok(Identity {
                        user: creds.user.clone(),
                        email: Some(format!("{}@{}.test", creds.user, self.name)),
                        method: self.name,
                    }),
                    FakeAnswer::Reject => Err(AuthError::Rejected { method: self.name }),
                    FakeAnswer::Down => Err(AuthError::Unavailable {
                        method: self.name,
                        server: "127.0.0.1:1".into(),
                        reason: "connection refused".into(),
                    }),
                    FakeAnswer::Hang => std::future::pending().await,
                }
            })
        }
    }

    /// A hook that records what it was shown.
    #[derive(Debug)]
    struct FakeHook {
        answer: FakeAnswer,
        seen: Mutex<Vec<Previous>>,
    }

    impl FakeHook {
        fn new(answer: FakeAnswer) -> Arc<Self> {
            Arc::new(Self {
                answer,
                seen: Mutex::new(Vec::new()),
            })
        }
    }

    impl CustomHook for FakeHook {
        fn decide<'a>(&'a self, creds: &'a Credentials, previous: &'a Previous) -> AuthFuture<'a> {
            self.seen.lock().unwrap().push(previous.clone());
            Box::pin(async move {
                match self.answer {
                    FakeAnswer::Accept => Ok(Identity {
                        user: previous.user.clone().unwrap_or_else(|| creds.user.clone()),
                        email: previous.email.clone(),
                        method: "custom",
                    }),
                    FakeAnswer::Reject => Err(AuthError::Rejected { method: "custom" }),
                    FakeAnswer::Down | FakeAnswer::Hang => Err(AuthError::Unavailable {
                        method: "custom",
                        server: "/hook".into(),
                        reason: "exited with 1".into(),
                    }),
                }
            })
        }
    }

    fn creds(user: &str, password: &str) -> Credentials {
        Credentials {
            user: user.into(),
            password: password.into(),
            remote: None,
        }
    }

    #[tokio::test]
    async fn methods_run_in_order_until_one_succeeds() {
        let local = Fake::new("local", FakeAnswer::Reject);
        let imap = Fake::new("imap", FakeAnswer::Down);
        let smtp = Fake::new("smtp", FakeAnswer::Accept);
        let ldap = Fake::new("ldap", FakeAnswer::Accept);
        let chain = AuthChain::new()
            .with_ldap(ldap.clone())
            .with_smtp(smtp.clone())
            .with_imap(imap.clone())
            .with_local(local.clone());
        assert_eq!(chain.methods(), ["local", "imap", "smtp", "ldap"]);
        let outcome = chain.authenticate(&creds("alice", "pw")).await;
        let ChainOutcome::Authenticated(identity) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(identity.method, "smtp");
        assert_eq!(identity.email.as_deref(), Some("alice@smtp.test"));
        assert_eq!(
            [local.calls(), imap.calls(), smtp.calls(), ldap.calls()],
            [1, 1, 1, 0]
        );
    }

    #[tokio::test]
    async fn every_refusal_is_reported_in_order() {
        let chain = AuthChain::new()
            .with_local(Fake::new("local", FakeAnswer::Reject))
            .with_ldap(Fake::new("ldap", FakeAnswer::Down));
        let ChainOutcome::Rejected { reasons } = chain.authenticate(&creds("alice", "pw")).await
        else {
            panic!("not rejected")
        };
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(reasons[0].starts_with("local: wrong"), "{reasons:?}");
        assert!(reasons[1].contains("connection refused"), "{reasons:?}");
        assert!(!reasons.iter().any(|r| r.contains("pw")));
    }

    #[tokio::test]
    async fn a_hanging_method_is_cut_short_and_the_next_tried() {
        let ldap = Fake::new("ldap", FakeAnswer::Accept);
        let chain = AuthChain::new()
            .with_imap(Fake::new("imap", FakeAnswer::Hang))
            .with_ldap(ldap.clone())
            .with_method_timeout(Duration::from_millis(50));
        let outcome = chain.authenticate(&creds("alice", "pw")).await;
        assert!(
            matches!(&outcome, ChainOutcome::Authenticated(id) if id.method == "ldap"),
            "{outcome:?}"
        );
        assert_eq!(ldap.calls(), 1);
    }

    #[tokio::test]
    async fn an_empty_password_reaches_no_method() {
        let imap = Fake::new("imap", FakeAnswer::Accept);
        let chain = AuthChain::new().with_imap(imap.clone());
        let outcome = chain.authenticate(&creds("alice", "")).await;
        assert!(
            matches!(outcome, ChainOutcome::Rejected { .. }),
            "{outcome:?}"
        );
        assert_eq!(imap.calls(), 0);
    }

    #[tokio::test]
    async fn the_custom_hook_has_the_last_word() {
        // A success it vetoes.
        let hook = FakeHook::new(FakeAnswer::Reject);
        let chain = AuthChain::new()
            .with_imap(Fake::new("imap", FakeAnswer::Accept))
            .with_custom(hook.clone());
        let outcome = chain.authenticate(&creds("alice", "pw")).await;
        assert!(
            matches!(outcome, ChainOutcome::Rejected { .. }),
            "{outcome:?}"
        );
        let seen = hook.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].result, PreviousResult::Success);
        assert_eq!(seen[0].method, Some("imap"));
        assert_eq!(seen[0].email.as_deref(), Some("alice@imap.test"));

        // A failure it overturns.
        let hook = FakeHook::new(FakeAnswer::Accept);
        let chain = AuthChain::new()
            .with_imap(Fake::new("imap", FakeAnswer::Reject))
            .with_custom(hook.clone());
        let outcome = chain.authenticate(&creds("alice", "pw")).await;
        assert!(
            matches!(&outcome, ChainOutcome::Authenticated(id) if id.method == "custom"),
            "{outcome:?}"
        );
        assert_eq!(hook.seen.lock().unwrap()[0].result, PreviousResult::Failed);
    }

    #[tokio::test]
    async fn the_custom_hook_alone_sees_none_and_fails_closed() {
        let hook = FakeHook::new(FakeAnswer::Down);
        let chain = AuthChain::new().with_custom(hook.clone());
        assert!(!chain.is_open());
        let outcome = chain.authenticate(&creds("alice", "pw")).await;
        let ChainOutcome::Rejected { reasons } = outcome else {
            panic!("{outcome:?}")
        };
        assert!(reasons[0].contains("exited with 1"), "{reasons:?}");
        assert_eq!(hook.seen.lock().unwrap()[0], Previous::none());
    }

    #[tokio::test]
    async fn an_address_without_password_gets_a_login_link() {
        let imap = Fake::new("imap", FakeAnswer::Accept);
        let chain = AuthChain::new()
            .with_email_link(true)
            .with_imap(imap.clone());
        assert_eq!(
            chain.authenticate(&creds("alice@example.org", "")).await,
            ChainOutcome::EmailLink {
                email: "alice@example.org".into()
            }
        );
        assert_eq!(imap.calls(), 0);
        // With a password, the password methods decide.
        let outcome = chain.authenticate(&creds("alice@example.org", "pw")).await;
        assert!(
            matches!(outcome, ChainOutcome::Authenticated(_)),
            "{outcome:?}"
        );
        // Not an address: no link.
        let outcome = chain.authenticate(&creds("alice", "")).await;
        assert!(
            matches!(outcome, ChainOutcome::Rejected { .. }),
            "{outcome:?}"
        );
        // E-mail only, with a password: refused with a reason.
        let only = AuthChain::new().with_email_link(true);
        let outcome = only.authenticate(&creds("alice@example.org", "pw")).await;
        assert!(
            matches!(&outcome, ChainOutcome::Rejected { reasons } if reasons[0].starts_with("email:")),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn the_custom_hook_may_veto_a_login_link() {
        let hook = FakeHook::new(FakeAnswer::Reject);
        let chain = AuthChain::new()
            .with_email_link(true)
            .with_custom(hook.clone());
        let outcome = chain.authenticate(&creds("eve@example.org", "")).await;
        assert!(
            matches!(outcome, ChainOutcome::Rejected { .. }),
            "{outcome:?}"
        );
        let seen = hook.seen.lock().unwrap()[0].clone();
        assert_eq!(
            (seen.result, seen.method),
            (PreviousResult::None, Some("email"))
        );
    }

    #[tokio::test]
    async fn nothing_configured_is_open() {
        let chain = AuthChain::from_config(&Config::default()).unwrap();
        assert!(chain.is_open());
        assert_eq!(chain.authenticate(&creds("", "")).await, ChainOutcome::Open);
    }

    #[tokio::test]
    async fn smtp_enabled_without_its_authenticator_is_not_open() {
        let config = Config {
            check_user_with_smtp: true,
            ..Config::default()
        };
        let chain = AuthChain::from_config(&config).unwrap();
        assert!(!chain.is_open());
        assert_eq!(chain.methods(), ["smtp"]);
        let outcome = chain.authenticate(&creds("alice", "pw")).await;
        assert!(
            matches!(outcome, ChainOutcome::Rejected { .. }),
            "{outcome:?}"
        );
    }

    #[test]
    fn from_config_orders_and_checks_methods() {
        let config = Config {
            check_user_with_email: true,
            check_user_with_local: true,
            check_user_with_imap: true,
            imap_server: "imap.example.org".into(),
            check_user_with_ldap: true,
            ldap_server: "ldap.example.org".into(),
            check_user_custom: "/bin/true".into(),
            ..Config::default()
        };
        let chain = AuthChain::from_config(&config).unwrap();
        assert_eq!(
            chain.methods(),
            ["email", "local", "imap", "ldap", "custom"]
        );

        let no_server = Config {
            ldap_server: String::new(),
            ..config.clone()
        };
        assert!(matches!(
            AuthChain::from_config(&no_server),
            Err(AuthError::Misconfigured { method: "ldap", .. })
        ));
        let bad_ca = Config {
            auth_ca_file: "/nonexistent/ca.pem".into(),
            ..config
        };
        assert!(matches!(
            AuthChain::from_config(&bad_ca),
            Err(AuthError::Misconfigured { method: "imap", .. })
        ));
    }

    #[test]
    fn addresses() {
        for good in [
            "alice@example.org",
            "a.b+c@sub.example.org",
            "alice@localhost",
        ] {
            assert!(looks_like_address(good), "{good}");
        }
        for bad in [
            "alice",
            "@example.org",
            "alice@",
            "a b@example.org",
            "alice@@x",
        ] {
            assert!(!looks_like_address(bad), "{bad}");
        }
    }
}
