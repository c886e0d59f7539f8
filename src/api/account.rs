//! The page set-up and the login endpoints: `/api/config`, `/api/login`,
//! `/api/login/mfa` (the mailed second factor), `/api/login/link` (the mailed one-time
//! link) and `/api/logout`.
//!
//! With `check_user_mfa`, a login whose password was accepted is not opened: a code is
//! mailed to the user's address and the browser gets a short-lived `darts_mfa` cookie
//! (HttpOnly, SameSite=Strict) plus a CSRF token for that pending login. `POST
//! /api/login/mfa {"code"}` with both opens the login. A login by mailed link needs no
//! code: the link already proves the mailbox the code would be sent to.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::login::LoginOutcome;
use super::logins::{LoginOrigin, LINK_LIFETIME};
use super::rate::Attempt;
use super::wire::{self, Body};
use super::{set_cookie, Call, Inner};
use crate::auth::mfa::{MfaError, MFA_TTL};
use crate::auth::Credentials;
use crate::config::Config;

/// Largest `layout_header`, `layout_footer` or `layout_terms` file read.
const MAX_LAYOUT_FILE: u64 = 256 * 1024;
/// Longest user name.
const MAX_USER: usize = 128;
/// Longest second-factor code accepted (digits, with spaces or dashes as typed).
const MAX_CODE: usize = 32;

/// Shown next to Create when `layout_terms` is empty.
const DEFAULT_TERMS: &str = "<p><b>Terms and Conditions.</b> Sessions are for your work \
within our organisation. A session and its disk are wiped when it ends: keep nothing there \
that you need afterwards. We keep track of this \
service's use (user name, machine, times, client address) for legal purposes. One cookie \
keeps you logged in; none is used for tracking.</p>";

/// `GET /api/config`: what the pages need to draw themselves.
pub(super) fn config(app: &Inner, call: &Call) -> Response<Body> {
    let c = &call.config;
    let catalogue = app.manager.catalogue();
    let machines: Vec<Value> = catalogue
        .machines()
        .iter()
        .filter(|m| m.available)
        .map(|m| json!({ "name": m.name, "description": m.description }))
        .collect();
    let user = call
        .login
        .as_ref()
        .map(|l| json!({ "name": l.user, "admin": l.is_admin(c), "email": l.email }));
    let mut body = json!({
        "title": c.layout_title,
        "service": "darts",
        "version": env!("CARGO_PKG_VERSION"),
        "layout": {
            "cpu": c.layout_cpu,
            "memory": c.layout_memory,
            "lifetime": c.layout_lifetime,
            "gpu": c.layout_gpu,
            "oneshot": c.oneshot,
            "level": c.layout_level,
            "header": file_or_html(&c.layout_header),
            "footer": file_or_html(&c.layout_footer),
            "terms": file_or_html(&c.layout_terms).unwrap_or_else(|| DEFAULT_TERMS.to_owned()),
            "resize": resize(c),
        },
        "defaults": {
            "machine": c.machine,
            "cpu": c.snapshot_alloc_cpu,
            "memory": c.snapshot_alloc_mem,
            "lifetime": c.snapshot_lifetime / 86400,
        },
        "machines": machines,
        "auth": { "open": app.open, "email": c.check_user_with_email, "mfa": c.check_user_mfa },
        "user": user,
    });
    if let Some(l) = &call.login {
        body["csrf"] = json!(l.csrf);
    }
    wire::json(StatusCode::OK, &body)
}

/// `layout_resize`, or `scale` when empty (as the original).
pub(super) fn resize(c: &Config) -> String {
    if c.layout_resize.trim().is_empty() {
        "scale".into()
    } else {
        c.layout_resize.trim().to_owned()
    }
}

/// A layout option that is either a file path or the HTML itself; `None` when empty.
fn file_or_html(value: &str) -> Option<String> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    let path = Path::new(v);
    if path.is_absolute() && path.is_file() {
        return match std::fs::metadata(path) {
            Ok(m) if m.len() <= MAX_LAYOUT_FILE => std::fs::read_to_string(path)
                .map_err(|e| tracing::warn!(file = %path.display(), error = %e, "cannot read a layout file"))
                .ok(),
            _ => {
                tracing::warn!(file = %path.display(), "layout file too large; ignored");
                None
            }
        };
    }
    Some(v.to_owned())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    user: String,
    #[serde(default)]
    password: String,
}

/// `POST /api/login`.
pub(super) async fn login(
    app: &Inner,
    call: &Call,
    body: Incoming,
) -> Result<Response<Body>, ApiError> {
    let form: LoginBody = wire::read_json(&call.headers, body).await?;
    let user = form.user.trim().to_owned();
    check_user_name(&user)?;
    let keys = backoff_keys(call, &user);
    // Reserved before the credentials go anywhere: parallel guesses wait their turn.
    let attempt = match reserve(app, &keys) {
        Ok(attempt) => attempt,
        Err(e) => {
            tracing::info!(user = %user, client.addr = %call.client, "login refused: back-off");
            crate::audit::login(&user, call.client, "password", Some("back-off"));
            return Err(e);
        }
    };
    let creds = Credentials {
        user: user.clone(),
        password: form.password,
        remote: Some(call.client),
    };
    let outcome = app.login.check(&creds).await;
    drop(creds);
    let (user, email) = match outcome {
        LoginOutcome::Authenticated { user, email } => (user, email),
        LoginOutcome::Open => (user, None),
        LoginOutcome::Rejected => {
            attempt.fail();
            tracing::info!(user = %user, client.addr = %call.client, "login refused");
            crate::audit::login(&user, call.client, "password", Some("invalid credentials"));
            return Err(ApiError::InvalidCredentials);
        }
        LoginOutcome::EmailLink { email } => {
            // Each mail counts as an attempt, so nobody can flood a mailbox.
            attempt.fail();
            return send_link(app, call, email).await;
        }
    };
    attempt.release();
    // A new login replaces the one this browser had, and any login waiting for its code.
    if let Some(old) = &call.cookie {
        app.logins.close(old);
    }
    if let Some(old) = &call.mfa_cookie {
        app.logins.close_pending(old);
    }
    if call.config.check_user_mfa {
        // The user's back-off is reset only once the code is right.
        return send_mfa_code(app, call, user, email).await;
    }
    app.backoff.success(&keys[1]);
    open_login(app, call, user, email, false)
}

/// The back-off keys of an attempt: the client's address, then the user name.
fn backoff_keys(call: &Call, user: &str) -> [String; 2] {
    [
        format!("addr:{}", call.client),
        format!("user:{}", user.to_lowercase()),
    ]
}

/// Admits one attempt on all of `keys`; `rate_limited` while any is locked or busy.
fn reserve<'a>(app: &'a Inner, keys: &[String]) -> Result<Attempt<'a>, ApiError> {
    app.backoff
        .reserve(keys, Instant::now())
        .map_err(|wait| ApiError::RateLimited {
            retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
        })
}

/// Opens a login: 200 with the user and CSRF token, and the login cookie.
fn open_login(
    app: &Inner,
    call: &Call,
    user: String,
    email: Option<String>,
    mfa: bool,
) -> Result<Response<Body>, ApiError> {
    let lifetime = Duration::from_secs(call.config.login_lifetime.max(60));
    let (cookie, login) = app.logins.open(user, email, LoginOrigin::Here, lifetime)?;
    tracing::info!(user = %login.user, client.addr = %call.client, mfa, "logged in");
    let method = match (app.open, mfa) {
        (true, _) => "none",
        (false, true) => "password+mfa",
        (false, false) => "password",
    };
    crate::audit::login(&login.user, call.client, method, None);
    let admin = login.is_admin(&call.config);
    let mut r = wire::json(
        StatusCode::OK,
        &json!({ "user": login.user, "admin": admin, "csrf": login.csrf }),
    );
    set_cookie(&mut r, &app.login_cookie(call, &cookie, lifetime.as_secs()));
    Ok(r)
}

/// First factor passed and `check_user_mfa` is on: mails a code and holds the login;
/// 202 `mfa_required` with the pending login's cookie and CSRF token.
async fn send_mfa_code(
    app: &Inner,
    call: &Call,
    user: String,
    email: Option<String>,
) -> Result<Response<Body>, ApiError> {
    let is_address = |e: &str| crate::mail::is_email_address(e);
    let email = email
        .filter(|e| is_address(e))
        .or_else(|| is_address(&user).then(|| user.clone()));
    let Some(email) = email else {
        tracing::warn!(user = %user, "second factor: no e-mail address is known for this user; login refused");
        return Err(ApiError::MfaNoEmail);
    };
    let Some(mailer) = &app.mailer else {
        tracing::warn!(user = %user, "second factor: no mail server is configured (smtp_server); login refused");
        return Err(ApiError::MfaUnavailable);
    };
    let store = app.mfa.as_ref().ok_or(ApiError::Internal)?;
    let code = store.issue(&user)?;
    if let Err(e) = mailer.send_mfa_code(&email, &code).await {
        tracing::warn!(user = %user, to = %email, error = %e, "second factor: cannot send the code");
        return Err(ApiError::MfaMailFailed);
    }
    let (cookie, pending) = app.logins.new_pending(user, Some(email.clone()), MFA_TTL)?;
    tracing::info!(user = %pending.user, to = %email, client.addr = %call.client, "second factor: code sent");
    let mut r = wire::json(
        StatusCode::ACCEPTED,
        &json!({
            "code": "mfa_required",
            "message": format!(
                "A sign-in code was sent to {}. Type it to finish logging in; it works once, within {} minutes.",
                masked(&email),
                MFA_TTL.as_secs() / 60
            ),
            "user": pending.user,
            "csrf": pending.csrf,
            "expires_in": MFA_TTL.as_secs(),
        }),
    );
    set_cookie(&mut r, &app.mfa_cookie(call, &cookie, MFA_TTL.as_secs()));
    Ok(r)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MfaBody {
    code: String,
}

/// `POST /api/login/mfa`: the mailed code opens the pending login of this browser.
pub(super) async fn login_mfa(
    app: &Inner,
    call: &Call,
    body: Incoming,
) -> Result<Response<Body>, ApiError> {
    let form: MfaBody = wire::read_json(&call.headers, body).await?;
    let code = form.code.trim();
    check_code(code)?;
    let (Some(cookie), Some(pending)) = (&call.mfa_cookie, &call.pending) else {
        tracing::info!(client.addr = %call.client, "second factor: no pending login");
        return Err(MfaError::NotPending.into());
    };
    let keys = backoff_keys(call, &pending.user);
    let attempt = match reserve(app, &keys) {
        Ok(attempt) => attempt,
        Err(e) => {
            tracing::info!(user = %pending.user, client.addr = %call.client, "second factor refused: back-off");
            crate::audit::login(&pending.user, call.client, "mfa", Some("back-off"));
            return Err(e);
        }
    };
    let Some(store) = app.mfa.as_ref() else {
        attempt.release();
        return Err(ApiError::Internal);
    };
    match store.verify(&pending.user, code) {
        Ok(()) => {
            attempt.release();
            app.logins.close_pending(cookie);
            app.backoff.success(&keys[1]);
            if let Some(old) = &call.cookie {
                app.logins.close(old);
            }
            let mut r = open_login(app, call, pending.user.clone(), pending.email.clone(), true)?;
            set_cookie(&mut r, &app.mfa_cookie(call, "", 0));
            Ok(r)
        }
        Err(e) => {
            attempt.fail();
            tracing::info!(user = %pending.user, client.addr = %call.client, reason = %e, "second factor refused");
            crate::audit::login(&pending.user, call.client, "mfa", Some(&e.to_string()));
            if matches!(e, MfaError::Wrong { .. }) {
                return Err(e.into());
            }
            // No code left to try: the pending login goes too.
            app.logins.close_pending(cookie);
            let mut r = wire::error(&ApiError::from(e));
            set_cookie(&mut r, &app.mfa_cookie(call, "", 0));
            Ok(r)
        }
    }
}

/// A code as people type it: digits, maybe grouped by spaces or dashes.
fn check_code(code: &str) -> Result<(), ApiError> {
    if code.is_empty() {
        return Err(ApiError::invalid(
            "code",
            "enter the code you received by e-mail",
        ));
    }
    if code.len() > MAX_CODE
        || !code
            .chars()
            .all(|c| c.is_ascii_digit() || c == ' ' || c == '-')
    {
        return Err(ApiError::invalid("code", "the code is made of digits only"));
    }
    Ok(())
}

/// `e***@example.org`: enough for the user to recognise the address.
fn masked(email: &str) -> String {
    match email.rsplit_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "your address".to_owned(),
    }
}

/// The original's character class for form values, and a length bound.
fn check_user_name(user: &str) -> Result<(), ApiError> {
    if user.is_empty() {
        return Err(ApiError::invalid("user", "enter your user name"));
    }
    if user.chars().count() > MAX_USER {
        return Err(ApiError::invalid(
            "user",
            format!("at most {MAX_USER} characters"),
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_.-@: ".contains(c);
    if !user.chars().all(allowed) {
        return Err(ApiError::invalid(
            "user",
            "use only letters, digits, spaces and _ . - @ :",
        ));
    }
    Ok(())
}

/// Mails a one-time login link; 202 `email_sent`.
async fn send_link(app: &Inner, call: &Call, email: String) -> Result<Response<Body>, ApiError> {
    let Some(mailer) = &app.mailer else {
        tracing::warn!("e-mail login asked for, but no mailer is configured");
        return Err(ApiError::MailUnavailable);
    };
    let token = app.logins.new_link(email.clone())?;
    let link = format!(
        "{}/api/login/link?token={token}",
        app.mail_base(&call.config)
    );
    if let Err(e) = mailer.send_login_link(&email, &link).await {
        tracing::warn!(to = %email, error = %e, "cannot send the login link");
        return Err(ApiError::MailFailed);
    }
    tracing::info!(to = %email, client.addr = %call.client, "login link sent");
    Ok(wire::json(
        StatusCode::ACCEPTED,
        &json!({
            "code": "email_sent",
            "message": format!(
                "A login link was sent to {email}. It works once, within {} minutes.",
                LINK_LIFETIME.as_secs() / 60
            ),
        }),
    ))
}

/// `GET /api/login/link?token=T`: opens the login a mailed link stands for, then sends
/// the browser to the landing page. An HTML answer, since a person clicked it.
pub(super) fn login_link(app: &Inner, call: &Call) -> Response<Body> {
    let token = wire::query_id(call.query.as_deref(), "token");
    let email = token.as_deref().and_then(|t| app.logins.take_link(t));
    let Some(email) = email else {
        tracing::info!(client.addr = %call.client, "unknown or expired login link");
        crate::audit::login(
            "",
            call.client,
            "email_link",
            Some("unknown or expired link"),
        );
        return html(
            StatusCode::UNAUTHORIZED,
            &ApiError::LinkInvalid.to_string(),
            None,
        );
    };
    let lifetime = Duration::from_secs(call.config.login_lifetime.max(60));
    let Ok((cookie, login)) =
        app.logins
            .open(email.clone(), Some(email), LoginOrigin::Here, lifetime)
    else {
        return html(
            StatusCode::INTERNAL_SERVER_ERROR,
            &ApiError::Internal.to_string(),
            None,
        );
    };
    tracing::info!(user = %login.user, client.addr = %call.client, "logged in by e-mail link");
    crate::audit::login(&login.user, call.client, "email_link", None);
    // A page on this site moves on to the landing page: a redirect straight from the
    // mail client's navigation would not carry the SameSite=Strict cookie.
    let mut r = html(StatusCode::OK, "You are logged in.", Some("../../"));
    set_cookie(&mut r, &app.login_cookie(call, &cookie, lifetime.as_secs()));
    r
}

/// `POST /api/logout`.
pub(super) fn logout(app: &Inner, call: &Call) -> Response<Body> {
    if let Some(c) = &call.cookie {
        app.logins.close(c);
    }
    if let Some(l) = &call.login {
        tracing::info!(user = %l.user, "logged out");
    }
    let mut r = wire::json(StatusCode::OK, &json!({ "user": null }));
    set_cookie(&mut r, &app.login_cookie(call, "", 0));
    r
}

/// A minimal page with a message and, optionally, a link it moves on to.
fn html(status: StatusCode, message: &str, next: Option<&str>) -> Response<Body> {
    let refresh = next
        .map(|n| format!("<meta http-equiv=\"refresh\" content=\"0; url={n}\">"))
        .unwrap_or_default();
    let link = format!("<a href=\"{}\">Continue</a>", next.unwrap_or("../../"));
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">{refresh}<title>darts</title></head>\
         <body><p>{message}</p><p>{link}</p></body></html>"
    );
    let mut r = Response::new(Full::new(Bytes::from(page)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    wire::secure(h);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_follow_the_originals_character_class() {
        assert!(check_user_name("alice").is_ok());
        assert!(check_user_name("a.b-c_d@example.org").is_ok());
        assert!(check_user_name("").is_err());
        assert!(check_user_name("a/b").is_err());
        assert!(check_user_name("<script>").is_err());
        assert!(check_user_name(&"a".repeat(129)).is_err());
    }

    #[test]
    fn codes_and_masked_addresses() {
        assert!(check_code("12345678").is_ok());
        assert!(check_code("1234 5678").is_ok());
        assert!(check_code("1234-5678").is_ok());
        assert!(check_code("").is_err());
        assert!(check_code("12ab").is_err());
        assert!(check_code(&"1".repeat(33)).is_err());
        assert_eq!(masked("erin@example.org"), "e***@example.org");
        assert_eq!(masked("x"), "your address");
    }

    #[test]
    fn layout_values_are_files_or_html() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("header.html");
        std::fs::write(&f, "<h1>From file</h1>").unwrap();
        assert_eq!(
            file_or_html(f.to_str().unwrap()).as_deref(),
            Some("<h1>From file</h1>")
        );
        assert_eq!(file_or_html(" <b>x</b> ").as_deref(), Some("<b>x</b>"));
        assert_eq!(file_or_html("  "), None);
    }
}
