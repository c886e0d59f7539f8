//! The second factor: a code mailed through a real SMTP server, refusals and limits.

use std::sync::Arc;

use crate::client::assert_api_headers;
use crate::fakes::MfaLogin;
use crate::harness::{Mail, Web, BASE};
use crate::smtp_sink;

/// Settings for a second factor mailed through `sink` (STARTTLS, its CA trusted).
fn mfa_mail_config(sink: &smtp_sink::SmtpSink) -> String {
    format!(
        r#"check_user_mfa = true
smtp_server = "127.0.0.1"
smtp_port = {port}
smtp_use_ssl = "starttls"
auth_ca_file = "{ca}"
email_from = "darts@e2e.test"
email_passwd = "senderpw"
"#,
        port = sink.port,
        ca = sink.ca_pem.display()
    )
}

/// The code in a second-factor mail: the line that is 8 digits.
fn code_in(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| l.len() == 8 && l.bytes().all(|c| c.is_ascii_digit()))
        .unwrap_or_else(|| panic!("no code in {text:?}"))
        .to_owned()
}

/// A code that is not `code`.
fn other_code(code: &str) -> String {
    let last = code.as_bytes()[7];
    format!("{}{}", &code[..7], if last == b'0' { '1' } else { '0' })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mailed_second_factor_opens_the_login() {
    let sink = smtp_sink::SmtpSink::start(&[("darts@e2e.test", "senderpw")]);
    let config = format!("{BASE}\n{}", mfa_mail_config(&sink));
    let web = Web::build("api-mfa", &config, Arc::new(MfaLogin), false, Mail::Smtp).await;
    assert_eq!(
        web.browser().get("/api/config").await.json()["auth"]["mfa"],
        true
    );

    // The right password does not open the login: a code is mailed instead.
    let mut b = web.browser();
    let r = b.login("erin", "erin-pw").await;
    assert_eq!(r.status, 202, "{}\nsink log:\n{}", r.text(), sink.log());
    assert_api_headers(&r);
    let body = r.json();
    assert_eq!(body["code"], "mfa_required");
    assert_eq!(body["user"], "erin");
    assert_eq!(body["expires_in"], 300);
    assert!(
        body["message"].as_str().unwrap().contains("e***@e2e.test"),
        "{body}"
    );
    assert!(r.set_cookie("darts_login").is_none(), "{}", r.head);
    let pending = r.set_cookie("darts_mfa").unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/darts", "Max-Age=300"] {
        assert!(pending.contains(attr), "{pending}");
    }
    b.hold_pending(&r);
    assert!(b.get("/api/config").await.json()["user"].is_null());
    b.get("/api/sessions")
        .await
        .assert_error(401, "login_required");

    // The mail: from darts' account to Erin, the code in the text, none in the subject.
    let mails = sink.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    assert_eq!(mail.rcpt_to, "erin@e2e.test");
    assert_eq!(mail.auth_user, "darts@e2e.test");
    assert_eq!(mail.subject, "Test desktops: your sign-in code");
    let code = code_in(mail.text.as_deref().unwrap());
    assert!(!mail.subject.contains(&code));
    assert!(
        !mail.subject.chars().any(|c| c.is_ascii_digit()),
        "{}",
        mail.subject
    );

    // A wrong code is refused, with the tries left; the login stays closed.
    let e = b
        .send_code(&other_code(&code))
        .await
        .assert_error(401, "mfa_wrong_code");
    assert_eq!(e["remaining"], 4);
    assert!(b.get("/api/config").await.json()["user"].is_null());
    // The pending login's CSRF token is required.
    let mut no_token = b.clone();
    no_token.csrf = None;
    no_token.send_code(&code).await.assert_error(403, "csrf");
    // Another browser, without the pending cookie, cannot use the code.
    web.browser()
        .send_code(&code)
        .await
        .assert_error(401, "mfa_not_pending");

    // The right code (as people type it) opens the login and ends the pending one.
    let typed = format!("{} {}", &code[..4], &code[4..]);
    let pending_browser = b.clone();
    let r = b.send_code(&typed).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_api_headers(&r);
    assert_eq!(r.json()["user"], "erin");
    let login = r.set_cookie("darts_login").unwrap();
    assert!(login.contains("HttpOnly") && login.contains("SameSite=Strict"));
    assert!(r.set_cookie("darts_mfa").unwrap().contains("Max-Age=0"));
    let c = b.get("/api/config").await.json();
    assert_eq!(c["user"]["name"], "erin");
    assert_eq!(c["user"]["email"], "erin@e2e.test");
    assert_eq!(b.get("/api/sessions").await.status, 200);
    // The code worked once.
    pending_browser
        .clone()
        .send_code(&code)
        .await
        .assert_error(401, "mfa_not_pending");
    assert_eq!(sink.mails().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn second_factor_refusals_and_limits() {
    let mfa = "check_user_mfa = true";
    // login_max_failures = 2: wrong codes count as failed logins.
    let web = Web::build(
        "api-mfa-limits",
        &format!("{BASE}\n{mfa}"),
        Arc::new(MfaLogin),
        false,
        Mail::Fake,
    )
    .await;
    // A wrong password is refused as ever, and mails nothing.
    web.browser()
        .login("erin", "nope")
        .await
        .assert_error(401, "invalid_credentials");
    // No address known: refused with a clear reason.
    let r = web.browser().login("frank", "frank-pw").await;
    r.assert_error(403, "mfa_no_email");
    assert!(r.headers("set-cookie").is_empty());
    assert!(web.mailer.codes.lock().unwrap().is_empty());

    let mut b = web.browser().at_addr("192.0.2.80");
    let r = b.login("erin", "erin-pw").await;
    assert_eq!(r.status, 202, "{}", r.text());
    b.hold_pending(&r);
    let (to, code) = web.mailer.codes.lock().unwrap()[0].clone();
    assert_eq!(to, "erin@e2e.test");
    b.send_code("12ab").await.assert_error(400, "invalid_field");
    let e = b
        .send_code(&other_code(&code))
        .await
        .assert_error(401, "mfa_wrong_code");
    assert_eq!(e["remaining"], 4);
    // The second failure (the wrong password above was the first) locks Erin out for a
    // while, even with the right code.
    let r = b.send_code(&code).await;
    r.assert_error(429, "rate_limited");
    assert!(r.header("retry-after").is_some());

    // Too many wrong codes throw the code and the pending login away.
    let lenient = BASE.replace("login_max_failures = 2", "login_max_failures = 20");
    let web = Web::build(
        "api-mfa-attempts",
        &format!("{lenient}\n{mfa}"),
        Arc::new(MfaLogin),
        false,
        Mail::Fake,
    )
    .await;
    let mut b = web.browser();
    let r = b.login("erin", "erin-pw").await;
    b.hold_pending(&r);
    let (_, code) = web.mailer.codes.lock().unwrap()[0].clone();
    for remaining in (1..=4).rev() {
        let e = b
            .send_code(&other_code(&code))
            .await
            .assert_error(401, "mfa_wrong_code");
        assert_eq!(e["remaining"], remaining);
    }
    let r = b.send_code(&other_code(&code)).await;
    r.assert_error(401, "mfa_too_many_attempts");
    assert!(r.set_cookie("darts_mfa").unwrap().contains("Max-Age=0"));
    b.send_code(&code)
        .await
        .assert_error(401, "mfa_not_pending");
    // Logging in again mails a new code, which works.
    let r = b.login("erin", "erin-pw").await;
    b.hold_pending(&r);
    let (_, code) = web.mailer.codes.lock().unwrap()[1].clone();
    assert_eq!(b.send_code(&code).await.status, 200);
    assert_eq!(b.get("/api/config").await.json()["user"]["name"], "erin");

    // No mail server configured: refused with a clear reason.
    let web = Web::build(
        "api-mfa-nomail",
        &format!("{BASE}\n{mfa}"),
        Arc::new(MfaLogin),
        false,
        Mail::Off,
    )
    .await;
    let r = web.browser().login("erin", "erin-pw").await;
    let e = r.assert_error(503, "mfa_unavailable");
    assert!(e["message"].as_str().unwrap().contains("cannot send mail"));
    assert!(r.headers("set-cookie").is_empty());
}
