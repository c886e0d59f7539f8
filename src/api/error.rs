//! Errors of the JSON API: each has a stable `code`, an HTTP status and a message meant
//! for the person using the page. The body is `{"code": "...", "message": "..."}`, plus
//! `field` for a refused form field and `needs_fallback` for refusals from the manager.

use http::StatusCode;
use serde_json::{json, Value};

use crate::auth::mfa::MfaError;
use crate::session::SessionError;

/// The one message every failed login gets, whatever failed.
pub const INVALID_CREDENTIALS: &str = "Invalid user name or password.";

/// Why an API request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadJson(String),
    #[error("{field}: {message}")]
    InvalidField {
        field: &'static str,
        message: String,
    },
    #[error("the request body is larger than {max} bytes")]
    BodyTooLarge { max: usize },
    #[error("the request body did not arrive within {secs} s")]
    BodyTimeout { secs: u64 },
    #[error("send the request body as application/json")]
    UnsupportedMediaType,
    #[error("log in first")]
    LoginRequired,
    #[error("{INVALID_CREDENTIALS}")]
    InvalidCredentials,
    #[error("too many failed logins: try again in {retry_after} s")]
    RateLimited { retry_after: u64 },
    #[error("refused: missing or wrong X-CSRF-Token, or a request from another site")]
    Csrf,
    #[error("only administrators may do this")]
    AdminOnly,
    /// No authentication is configured and the request came through a reverse proxy,
    /// so it may come from anywhere (`allow_open_access` lifts this).
    #[error("this server has no authentication configured, so it only serves its own host; a request forwarded by a proxy is refused (the operator can set allow_open_access)")]
    OpenAccessForwarded,
    #[error("a one-shot session has a single connection, and it is already open")]
    OneShotInUse,
    #[error("this login link is not valid (it may have been used or have expired)")]
    LinkInvalid,
    #[error("e-mail login is not available on this server")]
    MailUnavailable,
    #[error("the login link could not be sent; try again later")]
    MailFailed,
    /// `check_user_mfa` is on, but the proven user has no known e-mail address.
    #[error("a sign-in code must be mailed to you, but no e-mail address is known for your account; ask the administrators")]
    MfaNoEmail,
    /// `check_user_mfa` is on, but no mail server is configured.
    #[error("a sign-in code must be mailed to you, but this server cannot send mail; ask the administrators")]
    MfaUnavailable,
    #[error("the sign-in code could not be sent; try again later")]
    MfaMailFailed,
    /// The second factor was refused (wrong, expired, used up, none pending).
    #[error(transparent)]
    Mfa(#[from] MfaError),
    #[error("no such page or endpoint")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed { allow: String },
    #[error(transparent)]
    Session(#[from] SessionError),
    /// This node lacks room and no peer (`fallback_servers`) took the session either.
    #[error("{local} No other server could take it ({}).", tried.iter().map(|t| format!("{}: {}", t.peer, t.reason)).collect::<Vec<_>>().join("; "))]
    NoRoomAnywhere {
        local: SessionError,
        tried: Vec<crate::nodes::place::Skipped>,
    },
    /// A node request without a valid signature (wrong key, replay, clock skew).
    #[error("node request refused: {0}")]
    NodeRefused(String),
    /// A node not in `fallback_accept_from`.
    #[error("node {0} may not use this server (fallback_accept_from)")]
    NodeNotAllowed(String),
    /// The request already went through this node (or through too many nodes).
    #[error("this request already went through node {0}: refused to avoid a loop")]
    NodeLoop(String),
    /// The peer holding a session did not answer.
    #[error("the server holding this session did not answer: {0}")]
    PeerUnavailable(String),
    #[error("internal error; the server's log has the details")]
    Internal,
}

impl ApiError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidField {
            field,
            message: message.into(),
        }
    }

    /// The stable identifier scripts test against.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadJson(_) => "bad_json",
            Self::InvalidField { .. } => "invalid_field",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::BodyTimeout { .. } => "body_timeout",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::LoginRequired => "login_required",
            Self::InvalidCredentials => "invalid_credentials",
            Self::RateLimited { .. } => "rate_limited",
            Self::Csrf => "csrf",
            Self::AdminOnly => "forbidden",
            Self::OpenAccessForwarded => "open_access_forwarded",
            Self::OneShotInUse => "oneshot_in_use",
            Self::LinkInvalid => "link_invalid",
            Self::MailUnavailable => "mail_unavailable",
            Self::MailFailed | Self::MfaMailFailed => "mail_failed",
            Self::MfaNoEmail => "mfa_no_email",
            Self::MfaUnavailable => "mfa_unavailable",
            Self::Mfa(e) => mfa_code(e),
            Self::NotFound => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::Session(e) | Self::NoRoomAnywhere { local: e, .. } => e.code(),
            Self::NodeRefused(_) => "node_refused",
            Self::NodeNotAllowed(_) => "node_not_allowed",
            Self::NodeLoop(_) => "loop_detected",
            Self::PeerUnavailable(_) => "peer_unavailable",
            Self::Internal => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadJson(_) | Self::InvalidField { .. } => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::LoginRequired | Self::InvalidCredentials | Self::LinkInvalid => {
                StatusCode::UNAUTHORIZED
            }
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Csrf | Self::AdminOnly | Self::OpenAccessForwarded => StatusCode::FORBIDDEN,
            Self::OneShotInUse => StatusCode::CONFLICT,
            Self::MailUnavailable
            | Self::MailFailed
            | Self::MfaUnavailable
            | Self::MfaMailFailed => StatusCode::SERVICE_UNAVAILABLE,
            Self::MfaNoEmail => StatusCode::FORBIDDEN,
            Self::Mfa(MfaError::Full) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Mfa(MfaError::Random) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Mfa(_) => StatusCode::UNAUTHORIZED,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Session(e) => session_status(e),
            Self::NoRoomAnywhere { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::NodeRefused(_) => StatusCode::UNAUTHORIZED,
            Self::NodeNotAllowed(_) => StatusCode::FORBIDDEN,
            Self::NodeLoop(_) => StatusCode::LOOP_DETECTED,
            Self::PeerUnavailable(_) => StatusCode::BAD_GATEWAY,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let message = match self {
            // Failures of the machinery: the details (paths, QEMU's words) go to the log.
            Self::Session(SessionError::Store(_) | SessionError::Internal(_))
            | Self::Mfa(MfaError::Random) => Self::Internal.to_string(),
            other => other.to_string(),
        };
        let mut body = json!({ "code": self.code(), "message": message });
        match self {
            Self::InvalidField { field, .. } => body["field"] = json!(field),
            Self::Session(e) => body["needs_fallback"] = json!(e.needs_fallback()),
            Self::NoRoomAnywhere { .. } => body["needs_fallback"] = json!(true),
            Self::RateLimited { retry_after } => body["retry_after"] = json!(retry_after),
            Self::Mfa(MfaError::Wrong { remaining }) => body["remaining"] = json!(remaining),
            _ => {}
        }
        body
    }
}

/// Stable codes of second-factor refusals.
fn mfa_code(e: &MfaError) -> &'static str {
    match e {
        MfaError::NotPending => "mfa_not_pending",
        MfaError::Expired => "mfa_expired",
        MfaError::Wrong { .. } => "mfa_wrong_code",
        MfaError::TooManyAttempts => "mfa_too_many_attempts",
        MfaError::Full => "mfa_busy",
        MfaError::Random => "internal",
    }
}

/// HTTP status of a manager's answer: lack of room here is 503 (another node might take
/// it), a quota or state conflict 409, a permission 403.
fn session_status(e: &SessionError) -> StatusCode {
    match e {
        SessionError::Refused(_) if e.needs_fallback() => StatusCode::SERVICE_UNAVAILABLE,
        SessionError::Refused(_) | SessionError::ExtendLimit => StatusCode::CONFLICT,
        SessionError::UnknownMachine(_) => StatusCode::BAD_REQUEST,
        SessionError::MachineMissing(_) => StatusCode::SERVICE_UNAVAILABLE,
        SessionError::NotFound => StatusCode::NOT_FOUND,
        SessionError::Forbidden | SessionError::MasterNotAllowed => StatusCode::FORBIDDEN,
        SessionError::Disk(_)
        | SessionError::Script(_)
        | SessionError::Qemu(_)
        | SessionError::Store(_)
        | SessionError::Blocking { .. }
        | SessionError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Refusal;

    #[test]
    fn manager_refusals_keep_their_code_message_and_fallback_hint() {
        let busy = ApiError::from(SessionError::Refused(vec![Refusal::TooManySessions {
            active: 3,
            max: 3,
        }]));
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = busy.body();
        assert_eq!(body["code"], "too_many_sessions");
        assert_eq!(body["needs_fallback"], true);
        assert!(body["message"]
            .as_str()
            .unwrap()
            .starts_with("Too many active sessions 3. Max 3."));

        let quota = ApiError::from(SessionError::Refused(vec![Refusal::TooManyUserSessions {
            sessions: 3,
            max: 3,
        }]));
        assert_eq!(quota.status(), StatusCode::CONFLICT);
        assert_eq!(quota.body()["needs_fallback"], false);
        assert_eq!(
            ApiError::from(SessionError::Forbidden).status(),
            StatusCode::FORBIDDEN
        );
    }

    #[test]
    fn internal_details_stay_in_the_log() {
        let e = ApiError::from(SessionError::Internal("/var/lib/darts: EACCES".into()));
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!e.body()["message"].as_str().unwrap().contains("/var/lib"));
    }

    #[test]
    fn second_factor_refusals_have_their_own_codes() {
        let wrong = ApiError::from(MfaError::Wrong { remaining: 3 });
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(wrong.body()["code"], "mfa_wrong_code");
        assert_eq!(wrong.body()["remaining"], 3);
        for (e, code) in [
            (MfaError::NotPending, "mfa_not_pending"),
            (MfaError::Expired, "mfa_expired"),
            (MfaError::TooManyAttempts, "mfa_too_many_attempts"),
        ] {
            let e = ApiError::from(e);
            assert_eq!((e.status(), e.code()), (StatusCode::UNAUTHORIZED, code));
        }
        assert_eq!(
            ApiError::MfaUnavailable.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(ApiError::MfaNoEmail.code(), "mfa_no_email");
        let random = ApiError::from(MfaError::Random);
        assert_eq!(random.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(random.body()["message"], ApiError::Internal.to_string());
    }

    #[test]
    fn field_errors_name_the_field() {
        let e = ApiError::invalid("cpu", "must be one of 2, 4, 8");
        assert_eq!(e.body()["field"], "cpu");
        assert_eq!(e.body()["message"], "cpu: must be one of 2, 4, 8");
    }
}
