//! `check_user_with_ldap`: a simple bind as the user proves the password.
//!
//! The user's entry is found either from `ldap_bind_template` (`uid={user},ou=people,…`,
//! the login escaped per RFC 4514) or by an anonymous search with `ldap_filter` (the login
//! escaped per RFC 4515) under `ldap_base_dn` (default `dc=<ldap_domain>`), which must
//! find exactly one entry. The e-mail address comes from the entry's `mail`.
//!
//! Unlike the original (plain LDAP, last matching entry wins), the connection is LDAPS or
//! StartTLS unless the server is on loopback, several matching entries are refused, and an
//! empty password is refused before any bind: LDAP treats a bind with a DN and no password
//! as an anonymous ("unauthenticated") bind, which succeeds.

use std::net::IpAddr;

use ldap3::{dn_escape, ldap_escape, Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope};

use super::tls::{describe_io_error, describe_rustls_error, AuthTls};
use super::{AuthError, AuthFuture, Authenticator, Credentials, Identity};
use crate::config::Config;
use crate::net::is_loopback_host;

const METHOD: &str = "ldap";

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LdapSecurity {
    /// `ldaps://`: TLS from the first byte (port 636).
    Ldaps,
    /// `ldap://` upgraded with the StartTLS extended operation before any bind.
    StartTls,
    /// Plain LDAP: accepted only for a server on loopback.
    None,
}

impl LdapSecurity {
    /// Parses `ldap_security`.
    pub fn parse(value: &str) -> Result<Self, AuthError> {
        match value.to_ascii_lowercase().as_str() {
            "ldaps" | "tls" | "ssl" => Ok(Self::Ldaps),
            "starttls" => Ok(Self::StartTls),
            "none" | "plain" => Ok(Self::None),
            other => Err(misconfigured(format!(
                "ldap_security = {other:?}: expected \"ldaps\", \"starttls\" or \"none\""
            ))),
        }
    }
}

/// How the user's entry is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryLookup {
    /// Bind directly as this DN template, `{user}` replaced by the escaped login.
    Template(String),
    /// Anonymous search under `base` with this filter, `{user}` replaced by the escaped login.
    Search { base: String, filter: String },
}

impl EntryLookup {
    /// The DN a template gives for `user` (RFC 4514 escaping).
    pub fn bind_dn(template: &str, user: &str) -> String {
        template.replace("{user}", &dn_escape(user))
    }

    /// The search filter for `user` (RFC 4515 escaping).
    pub fn filter_for(filter: &str, user: &str) -> String {
        filter.replace("{user}", &ldap_escape(user))
    }
}

/// Checks passwords against an LDAP directory.
#[derive(Debug, Clone)]
pub struct LdapAuth {
    server: String,
    port: u16,
    security: LdapSecurity,
    lookup: EntryLookup,
    tls: AuthTls,
}

impl LdapAuth {
    /// From `ldap_server`, `ldap_port`, `ldap_security`, `ldap_base_dn`/`ldap_domain`,
    /// `ldap_filter`, `ldap_bind_template`.
    pub fn from_config(config: &Config, tls: AuthTls) -> Result<Self, AuthError> {
        let server = config.ldap_server.trim();
        if server.is_empty() {
            return Err(misconfigured(
                "check_user_with_ldap is on but ldap_server is empty",
            ));
        }
        let lookup = if config.ldap_bind_template.trim().is_empty() {
            let base = if config.ldap_base_dn.trim().is_empty() {
                base_from_domain(&config.ldap_domain)
            } else {
                config.ldap_base_dn.trim().to_owned()
            };
            EntryLookup::Search {
                base,
                filter: config.ldap_filter.trim().to_owned(),
            }
        } else {
            EntryLookup::Template(config.ldap_bind_template.trim().to_owned())
        };
        Self::new(
            server,
            config.ldap_port,
            LdapSecurity::parse(&config.ldap_security)?,
            lookup,
            tls,
        )
    }

    pub fn new(
        server: &str,
        port: u16,
        security: LdapSecurity,
        lookup: EntryLookup,
        tls: AuthTls,
    ) -> Result<Self, AuthError> {
        if security == LdapSecurity::None && !is_loopback_host(server) {
            return Err(misconfigured(format!(
                "ldap_security = \"none\" would send passwords in clear to {server}: \
                 only a server on loopback may use it (choose \"ldaps\" or \"starttls\")"
            )));
        }
        let template = match &lookup {
            EntryLookup::Template(t) => t,
            EntryLookup::Search { filter, .. } => filter,
        };
        if !template.contains("{user}") {
            return Err(misconfigured(format!(
                "{template:?} has no {{user}}: every login would match the same entry"
            )));
        }
        Ok(Self {
            server: server.to_owned(),
            port,
            security,
            lookup,
            tls,
        })
    }

    fn url(&self) -> String {
        let host = match self.server.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
            _ => self.server.clone(),
        };
        let scheme = match self.security {
            LdapSecurity::Ldaps => "ldaps",
            LdapSecurity::StartTls | LdapSecurity::None => "ldap",
        };
        format!("{scheme}://{host}:{}", self.port)
    }

    fn unavailable(&self, reason: impl Into<String>) -> AuthError {
        AuthError::Unavailable {
            method: METHOD,
            server: format!("{}:{}", self.server, self.port),
            reason: reason.into(),
        }
    }

    fn ldap_failure(&self, e: LdapError) -> AuthError {
        let reason = match &e {
            LdapError::Io { source } => describe_io_error(source),
            LdapError::Rustls { source } => describe_rustls_error(source),
            other => other.to_string(),
        };
        self.unavailable(reason)
    }

    async fn connect(&self) -> Result<Ldap, AuthError> {
        let mut settings = LdapConnSettings::new();
        if self.security != LdapSecurity::None {
            settings = settings
                .set_config(self.tls.client_config(&self.server))
                .set_starttls(self.security == LdapSecurity::StartTls);
        }
        let (conn, ldap) = LdapConnAsync::with_settings(settings, &self.url())
            .await
            .map_err(|e| self.ldap_failure(e))?;
        ldap3::drive!(conn);
        Ok(ldap)
    }

    async fn check(&self, creds: &Credentials) -> Result<Identity, AuthError> {
        // An empty password makes an "unauthenticated" bind, which LDAP servers accept.
        if creds.user.is_empty() || creds.password.is_empty() {
            return Err(AuthError::Rejected { method: METHOD });
        }
        let mut ldap = self.connect().await?;
        let result = self.check_on(&mut ldap, creds).await;
        let _ = ldap.unbind().await;
        result
    }

    async fn check_on(&self, ldap: &mut Ldap, creds: &Credentials) -> Result<Identity, AuthError> {
        let (dn, entry) = match &self.lookup {
            EntryLookup::Template(template) => (EntryLookup::bind_dn(template, &creds.user), None),
            EntryLookup::Search { base, filter } => {
                let entry = self.find_entry(ldap, base, filter, &creds.user).await?;
                (entry.dn.clone(), Some(entry))
            }
        };
        self.bind(ldap, &dn, &creds.password).await?;
        let entry = match entry {
            Some(entry) => Some(entry),
            // Read as the user just bound; an entry we may not read only costs the e-mail.
            None => self.read_entry(ldap, &dn).await,
        };
        Ok(identity_from(&creds.user, entry.as_ref()))
    }

    async fn find_entry(
        &self,
        ldap: &mut Ldap,
        base: &str,
        filter: &str,
        user: &str,
    ) -> Result<ldap3::SearchEntry, AuthError> {
        let filter = EntryLookup::filter_for(filter, user);
        // Two are enough to know the login is ambiguous.
        let result = ldap
            .with_search_options(ldap3::SearchOptions::new().sizelimit(2))
            .search(base, Scope::Subtree, &filter, ENTRY_ATTRS)
            .await
            .map_err(|e| self.ldap_failure(e))?;
        let ldap3::SearchResult(entries, status) = result;
        match status.rc {
            0 => {}
            // sizeLimitExceeded
            4 => {
                tracing::warn!(
                    method = METHOD,
                    user,
                    "several directory entries match: refused"
                );
                return Err(AuthError::Rejected { method: METHOD });
            }
            // noSuchObject: the base itself does not exist.
            32 => {
                return Err(misconfigured(format!(
                    "search base {base:?} does not exist"
                )))
            }
            _ => return Err(self.unavailable(format!("search: {status}"))),
        }
        let mut entries = entries.into_iter().map(ldap3::SearchEntry::construct);
        match (entries.next(), entries.next()) {
            (Some(entry), None) => Ok(entry),
            (None, _) => Err(AuthError::Rejected { method: METHOD }),
            (Some(_), Some(_)) => {
                tracing::warn!(
                    method = METHOD,
                    user,
                    "several directory entries match: refused"
                );
                Err(AuthError::Rejected { method: METHOD })
            }
        }
    }

    async fn bind(&self, ldap: &mut Ldap, dn: &str, password: &str) -> Result<(), AuthError> {
        let status = ldap
            .simple_bind(dn, password)
            .await
            .map_err(|e| self.ldap_failure(e))?;
        match status.rc {
            0 => Ok(()),
            // invalidCredentials, inappropriateAuthentication, insufficientAccessRights,
            // noSuchObject, unwillingToPerform (e.g. an account locked by policy).
            49 | 48 | 50 | 32 | 53 => Err(AuthError::Rejected { method: METHOD }),
            _ => Err(self.unavailable(format!("bind: {status}"))),
        }
    }

    async fn read_entry(&self, ldap: &mut Ldap, dn: &str) -> Option<ldap3::SearchEntry> {
        let result = ldap
            .search(dn, Scope::Base, "(objectClass=*)", ENTRY_ATTRS)
            .await
            .ok()?;
        let (entries, _) = result.success().ok()?;
        entries
            .into_iter()
            .next()
            .map(ldap3::SearchEntry::construct)
    }
}

const ENTRY_ATTRS: [&str; 3] = ["mail", "uid", "cn"];

/// The entry's `uid` when it has one (so one person's sessions are filed under one name
/// whichever way they log in: `alice`, `Alice`, their address or their `cn` through
/// `ldap_filter`); else the login as typed. The chain folds it to lower case.
fn identity_from(login: &str, entry: Option<&ldap3::SearchEntry>) -> Identity {
    let first = |attr: &str| {
        entry
            .and_then(|e| e.attrs.get(attr))
            .and_then(|values| values.first())
            .filter(|v| !v.is_empty())
            .cloned()
    };
    let is_address = super::chain::looks_like_address(login);
    let user = first("uid").unwrap_or_else(|| login.to_owned());
    let email = first("mail").or_else(|| is_address.then(|| login.to_owned()));
    Identity {
        user,
        email,
        method: METHOD,
    }
}

/// `example.org` → `dc=example,dc=org`; `EXP` → `dc=EXP` (the original's default).
fn base_from_domain(domain: &str) -> String {
    domain
        .trim()
        .split('.')
        .filter(|part| !part.is_empty())
        .map(|part| format!("dc={}", dn_escape(part)))
        .collect::<Vec<_>>()
        .join(",")
}

fn misconfigured(reason: impl Into<String>) -> AuthError {
    AuthError::Misconfigured {
        method: METHOD,
        reason: reason.into(),
    }
}

impl Authenticator for LdapAuth {
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

    fn tls() -> AuthTls {
        AuthTls::new(None, &[]).unwrap()
    }

    fn search(filter: &str) -> EntryLookup {
        EntryLookup::Search {
            base: "dc=example,dc=org".into(),
            filter: filter.into(),
        }
    }

    #[test]
    fn filter_injection_is_escaped() {
        let filter = EntryLookup::filter_for("(&(uid={user})(objectClass=person))", "*)(uid=*");
        assert_eq!(filter, r"(&(uid=\2a\29\28uid=\2a)(objectClass=person))");
        assert_eq!(
            EntryLookup::filter_for("(uid={user})", r"a\b"),
            r"(uid=a\5cb)"
        );
        assert_eq!(
            EntryLookup::filter_for("(uid={user})", "al*"),
            r"(uid=al\2a)"
        );
        // Plain logins are left alone.
        assert_eq!(
            EntryLookup::filter_for("(uid={user})", "alice"),
            "(uid=alice)"
        );
    }

    #[test]
    fn dn_injection_is_escaped() {
        let template = "uid={user},ou=people,dc=example,dc=org";
        assert_eq!(
            EntryLookup::bind_dn(template, "alice,ou=admins"),
            r"uid=alice\2cou\3dadmins,ou=people,dc=example,dc=org"
        );
        assert_eq!(
            EntryLookup::bind_dn(template, "a+b"),
            r"uid=a\2bb,ou=people,dc=example,dc=org"
        );
        assert_eq!(
            EntryLookup::bind_dn(template, " #x "),
            r"uid=\20#x\20,ou=people,dc=example,dc=org"
        );
    }

    #[test]
    fn base_comes_from_the_domain() {
        assert_eq!(base_from_domain("EXP"), "dc=EXP");
        assert_eq!(base_from_domain("example.org"), "dc=example,dc=org");
    }

    #[test]
    fn plain_ldap_only_on_loopback() {
        for host in ["127.0.0.1", "::1", "localhost"] {
            assert!(
                LdapAuth::new(host, 389, LdapSecurity::None, search("(uid={user})"), tls()).is_ok(),
                "{host}"
            );
        }
        let err = LdapAuth::new(
            "ldap.example.org",
            389,
            LdapSecurity::None,
            search("(uid={user})"),
            tls(),
        )
        .unwrap_err();
        assert!(matches!(err, AuthError::Misconfigured { .. }), "{err}");
    }

    #[test]
    fn a_filter_without_user_is_refused() {
        let err = LdapAuth::new(
            "ldap.example.org",
            636,
            LdapSecurity::Ldaps,
            search("(objectClass=person)"),
            tls(),
        )
        .unwrap_err();
        assert!(matches!(err, AuthError::Misconfigured { .. }), "{err}");
    }

    #[test]
    fn urls() {
        let auth = |host: &str, security| {
            LdapAuth::new(host, 636, security, search("(uid={user})"), tls()).unwrap()
        };
        assert_eq!(
            auth("ldap.example.org", LdapSecurity::Ldaps).url(),
            "ldaps://ldap.example.org:636"
        );
        assert_eq!(
            auth("::1", LdapSecurity::StartTls).url(),
            "ldap://[::1]:636"
        );
    }

    #[tokio::test]
    async fn an_empty_password_never_reaches_the_server() {
        // Port 9 on loopback: were a connection attempted, the answer would be Unavailable.
        let auth = LdapAuth::new(
            "127.0.0.1",
            9,
            LdapSecurity::None,
            search("(uid={user})"),
            tls(),
        )
        .unwrap();
        let creds = Credentials {
            user: "alice".into(),
            password: String::new(),
            remote: None,
        };
        assert!(matches!(
            auth.authenticate(&creds).await,
            Err(AuthError::Rejected { method: "ldap" })
        ));
    }

    #[test]
    fn identity_prefers_uid_for_address_logins() {
        let mut attrs = std::collections::HashMap::new();
        attrs.insert("uid".to_owned(), vec!["alice".to_owned()]);
        attrs.insert("mail".to_owned(), vec!["alice@example.org".to_owned()]);
        let entry = ldap3::SearchEntry {
            dn: "uid=alice,dc=example,dc=org".into(),
            attrs,
            bin_attrs: Default::default(),
        };
        let by_address = identity_from("alice@example.org", Some(&entry));
        assert_eq!(by_address.user, "alice");
        assert_eq!(by_address.email.as_deref(), Some("alice@example.org"));
        // The entry's uid, however the login was typed.
        let by_login = identity_from("Alice", Some(&entry));
        assert_eq!(by_login.user, "alice");
        let no_entry = identity_from("bob", None);
        assert_eq!(no_entry.email, None);
    }
}
