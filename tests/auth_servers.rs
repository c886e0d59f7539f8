//! The password methods and the chain against real servers on loopback: dovecot (IMAPS
//! and STARTTLS), slapd (LDAPS and StartTLS, search then bind, or a bind template), the
//! host's PAM with a throwaway account, and a custom hook program written by the test.
//! Needs `bash tests/setup.sh auth`, and root (for the PAM account).
#![allow(clippy::unwrap_used)]

#[path = "support/auth_servers.rs"]
mod auth_servers;
mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use auth_servers::{dead_port, Dovecot, LocalAccount, Slapd, TestCa, LDAP_BASE};
use darts::auth::chain::{AuthChain, ChainOutcome};
use darts::auth::custom::{CustomCommand, CustomHook, Previous};
use darts::auth::imap::{ImapAuth, ImapSecurity};
use darts::auth::ldap::{EntryLookup, LdapAuth, LdapSecurity};
use darts::auth::pam::PamAuth;
use darts::auth::tls::AuthTls;
use darts::auth::{AuthError, Authenticator, Credentials, Identity};
use darts::config::Config;
use support::Scratch;

const USERS: &[(&str, &str)] = &[("alice", "alicepw"), ("bob", "bobpw")];

fn creds(user: &str, password: &str) -> Credentials {
    Credentials {
        user: user.into(),
        password: password.into(),
        remote: Some("192.0.2.7".parse().unwrap()),
    }
}

fn trusting(ca: &TestCa) -> AuthTls {
    AuthTls::new(Some(&ca.ca_file), &[]).unwrap()
}

async fn accepted(auth: &dyn Authenticator, user: &str, password: &str) -> Identity {
    match auth.authenticate(&creds(user, password)).await {
        Ok(identity) => identity,
        Err(e) => panic!("{} refused {user}: {e}", auth.name()),
    }
}

async fn assert_rejected(auth: &dyn Authenticator, user: &str, password: &str) {
    match auth.authenticate(&creds(user, password)).await {
        Err(AuthError::Rejected { .. }) => {}
        other => panic!(
            "{} should refuse {user:?}/{password:?}, got {other:?}",
            auth.name()
        ),
    }
}

/// The error, which must be Unavailable; returns its reason.
async fn unavailable(auth: &dyn Authenticator, user: &str, password: &str) -> String {
    match auth.authenticate(&creds(user, password)).await {
        Err(AuthError::Unavailable { reason, .. }) => reason,
        other => panic!("{} should be unavailable, got {other:?}", auth.name()),
    }
}

// ---------------------------------------------------------------- IMAP

#[tokio::test]
async fn imaps_accepts_good_passwords_only() {
    let scratch = Scratch::new("imaps");
    let ca = TestCa::new(&scratch.0, "imap");
    let dovecot = Dovecot::start(&scratch.0, &ca, USERS);
    let imap = ImapAuth::new(
        "127.0.0.1",
        dovecot.imaps_port,
        ImapSecurity::Tls,
        trusting(&ca),
    );

    let alice = accepted(&imap, "alice", "alicepw").await;
    assert_eq!(alice.user, "alice");
    assert_eq!(alice.method, "imap");
    assert_eq!(alice.email.as_deref(), Some("alice@127.0.0.1"));
    assert_rejected(&imap, "alice", "bobpw").await;
    assert_rejected(&imap, "nobody", "alicepw").await;
    assert_rejected(&imap, "alice", "").await;
    // CR/LF cannot smuggle a second command.
    assert_rejected(&imap, "alice", "x\r\na2 LOGIN bob bobpw").await;
}

#[tokio::test]
async fn imap_starttls_accepts_good_passwords_only() {
    let scratch = Scratch::new("imap-starttls");
    let ca = TestCa::new(&scratch.0, "imap");
    let dovecot = Dovecot::start(&scratch.0, &ca, USERS);
    let imap = ImapAuth::new(
        "127.0.0.1",
        dovecot.imap_port,
        ImapSecurity::StartTls,
        trusting(&ca),
    );
    assert_eq!(accepted(&imap, "bob", "bobpw").await.user, "bob");
    assert_rejected(&imap, "bob", "alicepw").await;
}

#[tokio::test]
async fn imap_certificate_from_an_unknown_ca_is_refused_unless_the_server_is_listed() {
    let scratch = Scratch::new("imap-ca");
    let ca = TestCa::new(&scratch.0, "imap");
    let other = TestCa::new(&scratch.0, "other");
    let dovecot = Dovecot::start(&scratch.0, &ca, USERS);

    for (port, security) in [
        (dovecot.imaps_port, ImapSecurity::Tls),
        (dovecot.imap_port, ImapSecurity::StartTls),
    ] {
        let strict = ImapAuth::new("127.0.0.1", port, security, trusting(&other));
        let reason = unavailable(&strict, "alice", "alicepw").await;
        assert!(reason.contains("certificate"), "{security:?}: {reason}");

        let insecure = AuthTls::new(Some(&other.ca_file), &["127.0.0.1".into()]).unwrap();
        let lenient = ImapAuth::new("127.0.0.1", port, security, insecure);
        accepted(&lenient, "alice", "alicepw").await;
    }
}

#[tokio::test]
async fn imap_server_down_is_unavailable() {
    let imap = ImapAuth::new(
        "127.0.0.1",
        dead_port(),
        ImapSecurity::Tls,
        AuthTls::new(None, &[]).unwrap(),
    );
    let reason = unavailable(&imap, "alice", "alicepw").await;
    assert!(reason.to_lowercase().contains("refused"), "{reason}");
}

// ---------------------------------------------------------------- LDAP

fn search_lookup() -> EntryLookup {
    EntryLookup::Search {
        base: LDAP_BASE.into(),
        filter: "(|(uid={user})(cn={user}))".into(),
    }
}

fn template_lookup() -> EntryLookup {
    EntryLookup::Template(format!("uid={{user}},ou=people,{LDAP_BASE}"))
}

#[tokio::test]
async fn ldaps_search_then_bind() {
    let scratch = Scratch::new("ldaps");
    let ca = TestCa::new(&scratch.0, "ldap");
    let slapd = Slapd::start(&scratch.0, &ca, USERS);
    let ldap = LdapAuth::new(
        "127.0.0.1",
        slapd.ldaps_port,
        LdapSecurity::Ldaps,
        search_lookup(),
        trusting(&ca),
    )
    .unwrap();

    let alice = accepted(&ldap, "alice", "alicepw").await;
    assert_eq!(alice.method, "ldap");
    assert_eq!(alice.email.as_deref(), Some("alice@darts.test"));
    assert_rejected(&ldap, "alice", "bobpw").await;
    assert_rejected(&ldap, "nobody", "alicepw").await;
    // An empty password would be an "unauthenticated bind", which slapd accepts.
    assert_rejected(&ldap, "alice", "").await;
    // A wildcard in the login is a literal: unescaped, `al*` would find alice's entry.
    assert_rejected(&ldap, "al*", "alicepw").await;
    assert_rejected(&ldap, "*)(uid=*", "alicepw").await;
    // "Twin" names two entries: refused even with their password, though each alone works.
    assert_rejected(&ldap, "Twin", "twinpw").await;
    assert_eq!(
        accepted(&ldap, "twin1", "twinpw").await.email.as_deref(),
        Some("twin1@darts.test")
    );
}

#[tokio::test]
async fn ldap_starttls_template_bind() {
    let scratch = Scratch::new("ldap-starttls");
    let ca = TestCa::new(&scratch.0, "ldap");
    let slapd = Slapd::start(&scratch.0, &ca, USERS);
    let ldap = LdapAuth::new(
        "127.0.0.1",
        slapd.ldap_port,
        LdapSecurity::StartTls,
        template_lookup(),
        trusting(&ca),
    )
    .unwrap();

    let bob = accepted(&ldap, "bob", "bobpw").await;
    assert_eq!(bob.user, "bob");
    assert_eq!(bob.email.as_deref(), Some("bob@darts.test"));
    assert_rejected(&ldap, "bob", "alicepw").await;
    assert_rejected(&ldap, "bob", "").await;
    // The login cannot rewrite the DN.
    assert_rejected(&ldap, "bob,ou=people", "bobpw").await;
}

#[tokio::test]
async fn plain_ldap_on_loopback() {
    let scratch = Scratch::new("ldap-plain");
    let ca = TestCa::new(&scratch.0, "ldap");
    let slapd = Slapd::start(&scratch.0, &ca, USERS);
    let ldap = LdapAuth::new(
        "127.0.0.1",
        slapd.ldap_port,
        LdapSecurity::None,
        search_lookup(),
        AuthTls::new(None, &[]).unwrap(),
    )
    .unwrap();
    accepted(&ldap, "alice", "alicepw").await;
    assert_rejected(&ldap, "alice", "wrong").await;
}

#[tokio::test]
async fn ldap_certificate_from_an_unknown_ca_is_refused_unless_the_server_is_listed() {
    let scratch = Scratch::new("ldap-ca");
    let ca = TestCa::new(&scratch.0, "ldap");
    let other = TestCa::new(&scratch.0, "other");
    let slapd = Slapd::start(&scratch.0, &ca, USERS);

    for (port, security) in [
        (slapd.ldaps_port, LdapSecurity::Ldaps),
        (slapd.ldap_port, LdapSecurity::StartTls),
    ] {
        let strict = LdapAuth::new(
            "127.0.0.1",
            port,
            security,
            search_lookup(),
            trusting(&other),
        )
        .unwrap();
        let reason = unavailable(&strict, "alice", "alicepw").await;
        assert!(reason.contains("certificate"), "{security:?}: {reason}");

        let insecure = AuthTls::new(Some(&other.ca_file), &["127.0.0.1".into()]).unwrap();
        let lenient =
            LdapAuth::new("127.0.0.1", port, security, search_lookup(), insecure).unwrap();
        accepted(&lenient, "alice", "alicepw").await;
    }
}

#[tokio::test]
async fn ldap_server_down_is_unavailable() {
    let ldap = LdapAuth::new(
        "127.0.0.1",
        dead_port(),
        LdapSecurity::Ldaps,
        search_lookup(),
        AuthTls::new(None, &[]).unwrap(),
    )
    .unwrap();
    unavailable(&ldap, "alice", "alicepw").await;
}

// ---------------------------------------------------------------- PAM

#[tokio::test]
async fn local_accounts_through_pam() {
    let account = LocalAccount::create("S3cret-pam");
    let pam = PamAuth::new("login").unwrap();
    let identity = accepted(&pam, &account.name, "S3cret-pam").await;
    assert_eq!(identity.user, account.name);
    assert_eq!(identity.method, "local");
    // Each refusal costs PAM's fail delay (about 3 s with Debian's `login`).
    assert_rejected(&pam, &account.name, "wrong").await;
    assert_rejected(&pam, &account.name, "").await;
    assert_rejected(&pam, "darts-no-such-user", "S3cret-pam").await;
}

// ---------------------------------------------------------------- custom hook

/// Writes an executable shell script into `dir`.
fn script(dir: &Path, name: &str, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn custom_hook_program() {
    let scratch = Scratch::new("custom");
    let request = scratch.path("request.json");
    // Accepts password "hookpw" (renaming the user), records what it was sent.
    let hook = script(
        &scratch.0,
        "hook",
        r#"input=$(cat); printf '%s' "$input" > "$1"
case "$input" in
  *'"password":"hookpw"'*) echo "SUCCESS user=carol email=carol@darts.test" ;;
  *) echo FAILED not the hook password ;;
esac
"#,
    );
    let command = CustomCommand::parse(&format!("{hook} '{}'", request.display())).unwrap();

    let previous = Previous::none();
    let identity = command
        .decide(&creds("dave", "hookpw"), &previous)
        .await
        .unwrap();
    assert_eq!(identity.user, "carol");
    assert_eq!(identity.email.as_deref(), Some("carol@darts.test"));
    assert_eq!(identity.method, "custom");
    let sent: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&request).unwrap()).unwrap();
    assert_eq!(
        sent,
        serde_json::json!({
            "user": "dave", "password": "hookpw", "remote": "192.0.2.7",
            "previous": {"result": "NONE", "method": null, "user": null, "email": null}
        })
    );
    assert!(matches!(
        command.decide(&creds("dave", "other"), &previous).await,
        Err(AuthError::Rejected { .. })
    ));
}

#[tokio::test]
async fn custom_hook_that_cannot_answer_is_unavailable() {
    let scratch = Scratch::new("custom-bad");
    let previous = Previous::none();
    let cases = [
        (
            "exit",
            "cat > /dev/null; echo 'boom: hookpw' >&2; exit 3",
            "exited",
        ),
        (
            "garbage",
            "cat > /dev/null; echo 'maybe?'",
            "neither SUCCESS nor FAILED",
        ),
        ("silent", "cat > /dev/null", "empty"),
        (
            "chatty",
            "cat > /dev/null; yes SUCCESS | head -c 100000",
            "longer than",
        ),
    ];
    for (name, body, expected) in cases {
        let hook = CustomCommand::parse(&script(&scratch.0, name, body)).unwrap();
        match hook.decide(&creds("dave", "hookpw"), &previous).await {
            Err(AuthError::Unavailable { reason, .. }) => {
                assert!(reason.contains(expected), "{name}: {reason}");
                assert!(
                    !reason.contains("hookpw"),
                    "{name} leaks the password: {reason}"
                );
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    // A program that never answers is killed when its time is up.
    let slow = CustomCommand::parse(&script(&scratch.0, "slow", "exec sleep 600"))
        .unwrap()
        .with_timeout(Duration::from_millis(300));
    match slow.decide(&creds("dave", "hookpw"), &previous).await {
        Err(AuthError::Unavailable { reason, .. }) => {
            assert!(reason.contains("no answer"), "{reason}")
        }
        other => panic!("slow: {other:?}"),
    }
}

// ---------------------------------------------------------------- the chain

/// A configuration with every password method pointing at the given ports.
fn config_for(ca: &TestCa, imap_port: u16, ldap_port: u16) -> Config {
    Config {
        check_user_with_local: true,
        pam_service: "login".into(),
        check_user_with_imap: true,
        imap_server: "127.0.0.1".into(),
        imap_port,
        imap_security: "tls".into(),
        check_user_with_ldap: true,
        ldap_server: "127.0.0.1".into(),
        ldap_port,
        ldap_security: "ldaps".into(),
        ldap_base_dn: LDAP_BASE.into(),
        ldap_filter: "(uid={user})".into(),
        auth_ca_file: ca.ca_file.display().to_string(),
        ..Config::default()
    }
}

#[tokio::test]
async fn chain_goes_past_a_server_that_is_down() {
    let scratch = Scratch::new("chain-down");
    let ca = TestCa::new(&scratch.0, "auth");
    let slapd = Slapd::start(&scratch.0, &ca, USERS);
    // Local: no such account; IMAP: nothing listening; LDAP: up.
    let chain = AuthChain::from_config(&config_for(&ca, dead_port(), slapd.ldaps_port)).unwrap();
    assert_eq!(chain.methods(), ["local", "imap", "ldap"]);

    let outcome = chain.authenticate(&creds("alice", "alicepw")).await;
    let ChainOutcome::Authenticated(identity) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(identity.method, "ldap");
    assert_eq!(identity.email.as_deref(), Some("alice@darts.test"));

    let outcome = chain.authenticate(&creds("alice", "Bad-pw-42")).await;
    let ChainOutcome::Rejected { reasons } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons[0].starts_with("local:"), "{reasons:?}");
    assert!(reasons[1].starts_with("imap: cannot reach"), "{reasons:?}");
    assert!(reasons[2].starts_with("ldap: wrong"), "{reasons:?}");
    assert!(
        !reasons.iter().any(|r| r.contains("Bad-pw-42")),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn chain_stops_at_the_first_method_that_accepts() {
    let scratch = Scratch::new("chain-first");
    let ca = TestCa::new(&scratch.0, "auth");
    let dovecot = Dovecot::start(&scratch.0, &ca, USERS);
    let slapd = Slapd::start(&scratch.0, &ca, &[("alice", "ldap-only-pw")]);
    let mut config = config_for(&ca, dovecot.imaps_port, slapd.ldaps_port);
    config.check_user_with_local = false;
    let chain = AuthChain::from_config(&config).unwrap();

    let by_imap = chain.authenticate(&creds("alice", "alicepw")).await;
    assert!(
        matches!(&by_imap, ChainOutcome::Authenticated(id) if id.method == "imap"),
        "{by_imap:?}"
    );
    let by_ldap = chain.authenticate(&creds("alice", "ldap-only-pw")).await;
    assert!(
        matches!(&by_ldap, ChainOutcome::Authenticated(id) if id.method == "ldap"),
        "{by_ldap:?}"
    );
}

#[tokio::test]
async fn chain_lets_the_custom_hook_decide_last() {
    let scratch = Scratch::new("chain-custom");
    let ca = TestCa::new(&scratch.0, "auth");
    let dovecot = Dovecot::start(&scratch.0, &ca, USERS);
    let seen = scratch.path("seen.json");
    // Refuses bob whatever IMAP said; accepts anyone IMAP accepted.
    let hook = script(
        &scratch.0,
        "hook",
        r#"input=$(cat); printf '%s' "$input" > "$1"
case "$input" in
  *'"user":"bob"'*) echo FAILED bob is suspended ;;
  *'"result":"SUCCESS"'*) echo SUCCESS ;;
  *) echo FAILED ;;
esac
"#,
    );
    let mut config = config_for(&ca, dovecot.imaps_port, dead_port());
    config.check_user_with_local = false;
    config.check_user_with_ldap = false;
    config.check_user_custom = format!("{hook} {}", seen.display());
    let chain = AuthChain::from_config(&config).unwrap();
    assert_eq!(chain.methods(), ["imap", "custom"]);

    let alice = chain.authenticate(&creds("alice", "alicepw")).await;
    let ChainOutcome::Authenticated(identity) = alice else {
        panic!("{alice:?}")
    };
    assert_eq!(identity.method, "custom");
    assert_eq!(identity.email.as_deref(), Some("alice@127.0.0.1"));
    let sent: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&seen).unwrap()).unwrap();
    assert_eq!(
        sent["previous"],
        serde_json::json!({"result": "SUCCESS", "method": "imap", "user": "alice", "email": "alice@127.0.0.1"})
    );

    let bob = chain.authenticate(&creds("bob", "bobpw")).await;
    assert!(matches!(bob, ChainOutcome::Rejected { .. }), "{bob:?}");
    let wrong = chain.authenticate(&creds("alice", "wrong")).await;
    assert!(matches!(wrong, ChainOutcome::Rejected { .. }), "{wrong:?}");
    let sent: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&seen).unwrap()).unwrap();
    assert_eq!(sent["previous"]["result"], "FAILED");
}

#[tokio::test]
async fn chain_with_an_smtp_slot_keeps_the_order() {
    // The SMTP method is attached by its own module; here a stand-in proves the slot sits
    // between IMAP and LDAP: IMAP refuses, the slot accepts, LDAP is never asked.
    #[derive(Debug)]
    struct Accepting;
    impl Authenticator for Accepting {
        fn name(&self) -> &'static str {
            "smtp"
        }
        fn authenticate<'a>(&'a self, creds: &'a Credentials) -> darts::auth::AuthFuture<'a> {
            Box::pin(async move {
                Ok(Identity {
                    user: creds.user.clone(),
                    email: None,
                    method: "smtp",
                })
            })
        }
    }
    let scratch = Scratch::new("chain-smtp");
    let ca = TestCa::new(&scratch.0, "auth");
    let dovecot = Dovecot::start(&scratch.0, &ca, USERS);
    let mut config = config_for(&ca, dovecot.imaps_port, dead_port());
    config.check_user_with_local = false;
    let chain = AuthChain::from_config(&config)
        .unwrap()
        .with_smtp(Arc::new(Accepting));
    assert_eq!(chain.methods(), ["imap", "smtp", "ldap"]);
    let outcome = chain.authenticate(&creds("alice", "not-the-imap-pw")).await;
    assert!(
        matches!(&outcome, ChainOutcome::Authenticated(id) if id.method == "smtp"),
        "{outcome:?}"
    );
}

/// One person, one identity: `alice`, `Alice` and (through `ldap_filter`) her address are
/// filed under the same name by LDAP (the entry's uid) and by IMAP (mail servers match
/// names without case), so limits, ownership and audit count her once.
#[tokio::test]
async fn every_spelling_of_a_login_yields_one_canonical_identity() {
    let scratch = Scratch::new("chain-canonical");
    let ca = TestCa::new(&scratch.0, "auth");
    let dovecot = Dovecot::start(&scratch.0, &ca, USERS);
    let slapd = Slapd::start(&scratch.0, &ca, &[("alice", "ldap-only-pw")]);
    let mut config = config_for(&ca, dovecot.imaps_port, slapd.ldaps_port);
    config.check_user_with_local = false;
    config.ldap_filter = "(|(uid={user})(mail={user}))".into();
    let chain = AuthChain::from_config(&config).unwrap();
    let user_of = |outcome: ChainOutcome| match outcome {
        ChainOutcome::Authenticated(id) => (id.user, id.method),
        other => panic!("{other:?}"),
    };
    for login in ["alice", "Alice", "ALICE"] {
        assert_eq!(
            user_of(chain.authenticate(&creds(login, "alicepw")).await),
            ("alice".to_owned(), "imap"),
            "IMAP login {login:?}"
        );
    }
    for login in ["alice", "Alice", "alice@darts.test", "Alice@Darts.Test"] {
        assert_eq!(
            user_of(chain.authenticate(&creds(login, "ldap-only-pw")).await),
            ("alice".to_owned(), "ldap"),
            "LDAP login {login:?}"
        );
    }
}
