//! Mail against a real SMTP server (aiosmtpd, STARTTLS, AUTH required, each mail stored as
//! a file): SMTP authentication, the e-mail login link and the e-mail second factor, read
//! back from the mails the server received.
//!
//! Needs python3-aiosmtpd (`bash tests/setup.sh mail`).

#[path = "support/smtp_sink.rs"]
mod smtp_sink;

use darts::auth::email_link::{login_mail, LinkStore, DEFAULT_LINK_TTL};
use darts::auth::mfa::{mfa_mail, MfaError, MfaLimits, MfaStore};
use darts::auth::smtp::SmtpAuth;
use darts::auth::{AuthError, Authenticator, Credentials, Identity};
use darts::config::Config;
use darts::mail::{MailError, Mailer};
use smtp_sink::{test_ca, SmtpSink};

const SENDER: (&str, &str) = ("darts@e2e.test", "senderpw");
const TITLE: &str = "Data Analysis Remote Treatment Service";

fn sink() -> SmtpSink {
    SmtpSink::start(&[("alice", "alicepw"), ("bob@e2e.test", "bobpw"), SENDER])
}

/// Settings for the sink: STARTTLS, its CA trusted, the sender's account.
fn config(sink: &SmtpSink) -> Config {
    Config {
        check_user_with_smtp: true,
        smtp_server: "127.0.0.1".into(),
        smtp_port: sink.port,
        smtp_use_ssl: "starttls".into(),
        auth_ca_file: sink.ca_pem.display().to_string(),
        email_from: SENDER.0.into(),
        email_passwd: SENDER.1.into(),
        ..Config::default()
    }
}

fn creds(user: &str, password: &str) -> Credentials {
    Credentials {
        user: user.into(),
        password: password.into(),
        remote: None,
    }
}

async fn login(cfg: &Config, user: &str, password: &str) -> Result<Identity, AuthError> {
    SmtpAuth::from_config(cfg)
        .unwrap()
        .authenticate(&creds(user, password))
        .await
}

#[tokio::test]
async fn smtp_auth_accepts_good_passwords_and_refuses_bad_ones() {
    let sink = sink();
    let cfg = config(&sink);

    let alice = login(&cfg, "alice", "alicepw").await.unwrap();
    assert_eq!(alice.user, "alice");
    assert_eq!(alice.method, "smtp");
    assert_eq!(alice.email.as_deref(), Some("alice@127.0.0.1"));

    let bob = login(&cfg, "bob@e2e.test", "bobpw").await.unwrap();
    assert_eq!(bob.email.as_deref(), Some("bob@e2e.test"));

    for (user, password) in [("alice", "wrong"), ("alice", "bobpw"), ("mallory", "x")] {
        match login(&cfg, user, password).await {
            Err(AuthError::Rejected { method: "smtp" }) => {}
            other => panic!("{user}/{password}: {other:?}; sink log:\n{}", sink.log()),
        }
    }
    // Checking passwords sends no mail.
    assert!(sink.mails().is_empty());
}

#[tokio::test]
async fn smtp_auth_with_the_server_down_is_unavailable() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = Config {
        smtp_server: "127.0.0.1".into(),
        smtp_port: port,
        ..Config::default()
    };
    match login(&cfg, "alice", "alicepw").await {
        Err(AuthError::Unavailable {
            method: "smtp",
            server,
            ..
        }) => assert_eq!(server, format!("127.0.0.1:{port}")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_unknown_ca_is_refused_unless_the_host_is_insecure() {
    let sink = sink();
    let other_ca = sink.maildir.with_file_name("other-ca.pem");
    std::fs::write(&other_ca, test_ca("another CA").0).unwrap();

    let untrusted = [
        // The system's roots only.
        Config {
            auth_ca_file: String::new(),
            ..config(&sink)
        },
        // Another CA.
        Config {
            auth_ca_file: other_ca.display().to_string(),
            ..config(&sink)
        },
        // Insecure for another host only.
        Config {
            auth_ca_file: String::new(),
            auth_insecure_servers: vec!["mail.example.org".into()],
            ..config(&sink)
        },
    ];
    for cfg in &untrusted {
        match login(cfg, "alice", "alicepw").await {
            Err(AuthError::Unavailable { reason, .. }) => {
                assert!(
                    reason.to_lowercase().contains("certificate")
                        || reason.to_lowercase().contains("tls"),
                    "{reason}"
                )
            }
            other => panic!("{:?}: {other:?}", cfg.auth_ca_file),
        }
        let mailer = Mailer::from_config(cfg).unwrap();
        let err = mailer
            .send("bob@e2e.test", "hello", "hello", None)
            .await
            .unwrap_err();
        assert!(matches!(err, MailError::Transport { .. }), "{err:?}");
    }
    assert!(
        sink.mails().is_empty(),
        "nothing was sent over an unverified connection"
    );

    let insecure = Config {
        auth_ca_file: String::new(),
        auth_insecure_servers: vec!["127.0.0.1".into()],
        ..config(&sink)
    };
    assert!(login(&insecure, "alice", "alicepw").await.is_ok());
    Mailer::from_config(&insecure)
        .unwrap()
        .send("bob@e2e.test", "hello", "hello", None)
        .await
        .unwrap();
    assert_eq!(sink.mails().len(), 1);
}

#[tokio::test]
async fn a_wrong_sender_password_sends_nothing() {
    let sink = sink();
    let cfg = Config {
        email_passwd: "not-the-password".into(),
        ..config(&sink)
    };
    let err = Mailer::from_config(&cfg)
        .unwrap()
        .send("bob@e2e.test", "hello", "hello", None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, MailError::Transport { source, .. } if source.status().is_some_and(|c| c.to_string() == "535")),
        "{err:?}"
    );
    assert!(sink.mails().is_empty());
}

/// The token in `…/api/login/link?t=TOKEN` on some line of `text`.
fn token_in(text: &str) -> String {
    let start = text.find("/api/login/link?t=").expect("a login link") + "/api/login/link?t=".len();
    text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect()
}

#[tokio::test]
async fn the_login_link_arrives_by_mail_and_works_once() {
    let sink = sink();
    let mailer = Mailer::from_config(&config(&sink)).unwrap();
    let links = LinkStore::default();

    let token = links.issue("bob@e2e.test", DEFAULT_LINK_TTL).unwrap();
    let url = format!("https://darts.e2e.test/darts/api/login/link?t={token}");
    let (subject, text, html) = login_mail(&url, TITLE);
    mailer
        .send("bob@e2e.test", &subject, &text, Some(&html))
        .await
        .unwrap();

    let mails = sink.mails();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.rcpt_to, "bob@e2e.test");
    assert_eq!(mail.mail_from, SENDER.0);
    assert_eq!(mail.auth_user, SENDER.0);
    assert!(mail.to.contains("bob@e2e.test"), "{}", mail.to);
    assert!(mail.from.contains(SENDER.0), "{}", mail.from);
    assert_eq!(mail.subject, format!("{TITLE}: your login link"));
    assert!(!mail.subject.contains(&token));
    assert!(mail.message_id.starts_with('<'), "{}", mail.message_id);

    let text = mail.text.as_deref().expect("a plain-text part");
    let html = mail.html.as_deref().expect("an HTML part");
    assert!(text.contains(&url), "{text}");
    assert!(html.contains(&format!("href=\"{url}\"")), "{html}");

    // What the user clicks, taken from the mail itself.
    let received = token_in(text);
    assert_eq!(received.len(), 32);
    assert_eq!(links.redeem(&received).as_deref(), Some("bob@e2e.test"));
    assert_eq!(links.redeem(&received), None, "a link works once");
}

#[tokio::test]
async fn the_second_factor_arrives_by_mail_and_verifies() {
    let sink = sink();
    let mailer = Mailer::from_config(&config(&sink)).unwrap();
    let codes = MfaStore::new(MfaLimits::default()).unwrap();

    let code = codes.issue("alice").unwrap();
    let (subject, text) = mfa_mail(&code, TITLE);
    mailer
        .send("alice@e2e.test", &subject, &text, None)
        .await
        .unwrap();

    let mails = sink.mails();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.rcpt_to, "alice@e2e.test");
    assert_eq!(mail.subject, format!("{TITLE}: your sign-in code"));
    assert!(
        !mail.subject.contains(&code),
        "the subject carries no secret"
    );
    assert!(mail.html.is_none());
    let body = mail.text.as_deref().expect("a plain-text body");

    // The code as the user reads it in the mail.
    let received: String = body
        .split_whitespace()
        .find(|w| w.len() == 8 && w.bytes().all(|b| b.is_ascii_digit()))
        .expect("an 8-digit code in the body")
        .to_owned();
    assert_eq!(received, code);
    assert!(matches!(
        codes.verify("bob", &received),
        Err(MfaError::NotPending)
    ));
    assert_eq!(codes.verify("alice", &received), Ok(()));
    assert_eq!(codes.verify("alice", &received), Err(MfaError::NotPending));
}
