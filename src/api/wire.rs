//! The HTTP side of the application: JSON answers with their security headers, strict
//! and bounded request bodies, cookies, the client's address and the public base URL.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use serde::Serialize;

use darts_proxy::forwarded;

use super::error::ApiError;

/// Largest request body.
pub const MAX_BODY: usize = 64 * 1024;
/// How long a whole request body may take to arrive, from the end of its headers: a
/// client trickling bytes cannot hold a handler (and its connection) for longer.
pub const BODY_DEADLINE: Duration = Duration::from_secs(10);

/// Pages may load scripts, styles and data only from this server; operators' headers
/// may show images from any HTTPS site. No inline script, no framing.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data: https:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

pub type Body = Full<Bytes>;

/// Headers every page and API answer carries.
pub fn secure(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
}

/// A JSON answer (never cached: it may hold a CSRF token or session details).
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let body = match serde_json::to_vec(value) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "cannot serialise an answer");
            return error(&ApiError::Internal);
        }
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    secure(h);
    r
}

/// The JSON answer for an error, with `Retry-After` and `Allow` where they apply.
pub fn error(e: &ApiError) -> Response<Body> {
    let mut r = json(e.status(), &e.body());
    let h = r.headers_mut();
    match e {
        ApiError::RateLimited { retry_after } => {
            h.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
        }
        ApiError::MethodNotAllowed { allow } => {
            if let Ok(v) = HeaderValue::from_str(allow) {
                h.insert(header::ALLOW, v);
            }
        }
        // The rest of that body may still be on its way: the connection cannot be reused.
        ApiError::BodyTimeout { .. } => {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        _ => {}
    }
    r
}

/// Reads a JSON body: `application/json`, at most [`MAX_BODY`] bytes, one value with
/// exactly the expected fields. Messages name the field at fault.
pub async fn read_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Incoming,
) -> Result<T, ApiError> {
    parse_json(&read_body(headers, body).await?)
}

/// Reads a JSON body's bytes: `application/json`, at most [`MAX_BODY`] bytes, all of
/// them within [`BODY_DEADLINE`].
pub async fn read_body(headers: &HeaderMap, body: Incoming) -> Result<Bytes, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(ApiError::BodyTooLarge { max: MAX_BODY });
    }
    let collected = tokio::time::timeout(BODY_DEADLINE, Limited::new(body, MAX_BODY).collect())
        .await
        .map_err(|_| {
            tracing::info!(
                deadline_s = BODY_DEADLINE.as_secs(),
                "request body too slow: refused"
            );
            ApiError::BodyTimeout {
                secs: BODY_DEADLINE.as_secs(),
            }
        })?;
    Ok(collected
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                ApiError::BodyTooLarge { max: MAX_BODY }
            } else {
                ApiError::BadJson(format!("cannot read the request body: {e}"))
            }
        })?
        .to_bytes())
}

/// The value of query parameter `name` if it is a name or a token: decoded by the
/// gateway's parser, then kept only if made of letters, digits, `.`, `-`, `_` (the
/// parameters read this way are never free text).
pub fn query_id(query: Option<&str>, name: &str) -> Option<String> {
    darts_proxy::url::query_param(query?, name).filter(|v| {
        !v.is_empty()
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    })
}

/// Strict JSON: one value, then nothing but white space.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadJson("the request body is empty".into()));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || inner.is_syntax() || inner.is_eof() {
            ApiError::BadJson(format!("malformed JSON: {inner}"))
        } else {
            ApiError::BadJson(format!("{path}: {inner}"))
        }
    })?;
    de.end()
        .map_err(|e| ApiError::BadJson(format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// The value of cookie `name`.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Headers a reverse proxy adds to what it forwards.
const FORWARDING_HEADERS: [&str; 5] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-real-ip",
    "via",
];

/// Whether a request may come from another host than this one: its client (after
/// trusted proxies and PROXY headers) is not on loopback, or it carries a proxy's
/// forwarding headers, trusted or not (a proxy on loopback says what it did, and a
/// local user who talks to darts directly sends none).
pub fn maybe_remote(headers: &HeaderMap, client: &forwarded::ClientView) -> bool {
    !client.addr.is_loopback() || FORWARDING_HEADERS.iter().any(|h| headers.contains_key(*h))
}

/// `scheme://host[:port]` as the client addressed the server, if the `Host` header
/// (or a trusted proxy's `X-Forwarded-Host`/`Forwarded: host=`) is a valid authority.
pub fn request_origin(headers: &HeaderMap, https: bool, from_proxy: bool) -> Option<String> {
    let forwarded = from_proxy
        .then(|| forwarded::reported_scheme_and_host(headers).1)
        .flatten();
    let host = match forwarded {
        Some(h) => h,
        None => headers.get(header::HOST)?.to_str().ok()?.to_owned(),
    };
    let authority: http::uri::Authority = host.trim().parse().ok()?;
    if authority.as_str().contains('@') {
        return None;
    }
    Some(format!(
        "{}://{}",
        if https { "https" } else { "http" },
        authority
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Form {
        cpu: u32,
        name: Option<String>,
    }

    #[test]
    fn strict_json_names_the_field() {
        let e = parse_json::<Form>(br#"{"cpu": "four"}"#).unwrap_err();
        assert!(e.to_string().starts_with("cpu: invalid type"), "{e}");
        let e = parse_json::<Form>(br#"{"cpu": 4, "cpus": 4}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `cpus`"), "{e}");
        let e = parse_json::<Form>(br#"{"cpu": 4} {"cpu": 5}"#).unwrap_err();
        assert!(e.to_string().contains("malformed JSON"), "{e}");
        let e = parse_json::<Form>(br#"{"cpu": 4"#).unwrap_err();
        assert!(e.to_string().contains("malformed JSON"), "{e}");
        let e = parse_json::<Form>(b"  ").unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        assert_eq!(parse_json::<Form>(br#" {"cpu": 4} "#).unwrap().cpu, 4);
    }

    #[test]
    fn query_ids_are_decoded_then_checked() {
        assert_eq!(
            query_id(Some("node=b-1.x_y"), "node"),
            Some("b-1.x_y".into())
        );
        assert_eq!(
            query_id(Some("a=1&token=T%2D9"), "token"),
            Some("T-9".into())
        );
        assert_eq!(query_id(None, "token"), None);
        assert_eq!(query_id(Some("token="), "token"), None);
        assert_eq!(query_id(Some("token=a+b"), "token"), None);
        assert_eq!(query_id(Some("token=a%2Fb"), "token"), None);
        assert_eq!(query_id(Some("node=../x"), "node"), None);
    }

    #[test]
    fn cookies_and_forwarded_addresses() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; darts_login=xyz"),
        );
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("10.0.0.9, 192.0.2.7"),
        );
        assert_eq!(cookie(&h, "darts_login"), Some("xyz"));
        assert_eq!(cookie(&h, "darts"), None);
    }

    #[test]
    fn forwarded_or_remote_requests_may_come_from_anywhere() {
        use darts_proxy::forwarded::{resolve, TrustedProxies};
        use std::net::IpAddr;
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let trusted = TrustedProxies::parse(&["127.0.0.0/8"]).unwrap();
        let mut h = HeaderMap::new();
        assert!(!maybe_remote(&h, &resolve(&h, ip("127.0.0.1"), &trusted)));
        assert!(!maybe_remote(&h, &resolve(&h, ip("::1"), &trusted)));
        assert!(maybe_remote(&h, &resolve(&h, ip("192.0.2.1"), &trusted)));
        h.insert("via", HeaderValue::from_static("1.1 proxy"));
        let untrusted = TrustedProxies::default();
        assert!(maybe_remote(&h, &resolve(&h, ip("127.0.0.1"), &untrusted)));
    }

    #[test]
    fn origins_come_from_a_valid_host_only() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("server:8443"));
        assert_eq!(
            request_origin(&h, true, false).as_deref(),
            Some("https://server:8443")
        );
        h.insert(header::HOST, HeaderValue::from_static("evil/path"));
        assert_eq!(request_origin(&h, false, false), None);
        h.insert(header::HOST, HeaderValue::from_static("user@evil"));
        assert_eq!(request_origin(&h, false, false), None);
    }
}
