//! Stand-ins for the authentication chain and the mailer.

use std::sync::Mutex;

use darts::api::login::{LoginFuture, MailFuture};
use darts::api::{LoginCheck, LoginOutcome, Mailer};
use darts::auth::Credentials;

const USERS: &[(&str, &str)] = &[
    ("alice", "alice-pw"),
    ("bob", "bob-pw"),
    ("root", "root-pw"),
];
pub(crate) const INVALID: &str = "Invalid user name or password.";

/// The user table; a user name with `@` asks for an e-mail link.
#[derive(Debug)]
pub(crate) struct FakeLogin;

impl LoginCheck for FakeLogin {
    fn check<'a>(&'a self, creds: &'a Credentials) -> LoginFuture<'a> {
        Box::pin(async move {
            if creds.user.contains('@') {
                return LoginOutcome::EmailLink {
                    email: creds.user.clone(),
                };
            }
            match USERS.iter().find(|(u, _)| *u == creds.user) {
                Some((u, p)) if *p == creds.password => LoginOutcome::Authenticated {
                    user: (*u).to_owned(),
                    email: None,
                },
                _ => LoginOutcome::Rejected,
            }
        })
    }
}

/// Keeps every link and second-factor code it is asked to send.
#[derive(Debug, Default)]
pub(crate) struct FakeMailer {
    pub(crate) sent: Mutex<Vec<(String, String)>>,
    pub(crate) codes: Mutex<Vec<(String, String)>>,
}

impl Mailer for FakeMailer {
    fn send_login_link<'a>(&'a self, to: &'a str, link: &'a str) -> MailFuture<'a> {
        self.sent
            .lock()
            .unwrap()
            .push((to.to_owned(), link.to_owned()));
        Box::pin(async { Ok(()) })
    }

    fn send_mfa_code<'a>(&'a self, to: &'a str, code: &'a str) -> MailFuture<'a> {
        self.codes
            .lock()
            .unwrap()
            .push((to.to_owned(), code.to_owned()));
        Box::pin(async { Ok(()) })
    }
}

/// Users as a directory knows them: Erin has an e-mail address, Frank none.
#[derive(Debug)]
pub(crate) struct MfaLogin;

impl LoginCheck for MfaLogin {
    fn check<'a>(&'a self, creds: &'a Credentials) -> LoginFuture<'a> {
        Box::pin(async move {
            match (creds.user.as_str(), creds.password.as_str()) {
                ("erin", "erin-pw") => LoginOutcome::Authenticated {
                    user: "erin".into(),
                    email: Some("erin@e2e.test".into()),
                },
                ("frank", "frank-pw") => LoginOutcome::Authenticated {
                    user: "frank".into(),
                    email: None,
                },
                _ => LoginOutcome::Rejected,
            }
        })
    }
}
