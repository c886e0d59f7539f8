//! The pages (`/`, `/connect/<name>`, `/manage`) and their assets (`/assets/<file>`),
//! static files from `dir_html`. They are plain HTML that draw themselves from the API,
//! so they need no templating and carry no inline script.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;

use super::routes::Endpoint;
use super::wire::{self, Body};
use super::Call;
use crate::session::record::is_session_name;

/// Largest asset served.
const MAX_FILE: u64 = 4 * 1024 * 1024;

/// Answers a page or asset request.
pub(super) async fn serve(
    call: &Call,
    endpoint: Endpoint,
    head: bool,
    raw_path: &str,
) -> Response<Body> {
    let file = match endpoint {
        Endpoint::Landing if !raw_path.ends_with('/') => {
            // `/darts` → `/darts/`, so that the pages' relative links resolve.
            let last = raw_path.rsplit('/').next().unwrap_or("");
            return redirect(&format!("{last}/"));
        }
        Endpoint::Landing => "index.html".to_owned(),
        Endpoint::ManagePage => "manage.html".to_owned(),
        Endpoint::ConnectPage => match call.param.as_deref() {
            Some(n) if is_session_name(n) => "connect.html".to_owned(),
            _ => return not_found(),
        },
        Endpoint::Asset => match call.param.as_deref() {
            Some(f) if is_asset_name(f) => format!("assets/{f}"),
            _ => return not_found(),
        },
        _ => return not_found(),
    };
    let Some(mime) = content_type(&file) else {
        return not_found();
    };
    let path = call.config.dir_html.join(&file);
    let meta = match tokio::fs::metadata(&path).await {
        Ok(m) if m.is_file() && m.len() <= MAX_FILE => m,
        _ => {
            tracing::debug!(file = %path.display(), "page not found in dir_html");
            return not_found();
        }
    };
    let body = if head {
        Bytes::new()
    } else {
        match tokio::fs::read(&path).await {
            Ok(b) => Bytes::from(b),
            Err(_) => return not_found(),
        }
    };
    let mut r = Response::new(Full::new(body));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if head {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.len()));
    }
    wire::secure(h);
    r
}

/// An asset's file name: letters, digits, `.`, `-`, `_`, not starting with a dot.
fn is_asset_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// The types the pages use; anything else is not served.
fn content_type(file: &str) -> Option<&'static str> {
    let ext = file.rsplit_once('.').map(|(_, e)| e)?;
    Some(match ext {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        _ => return None,
    })
}

/// 404 for a page.
pub(super) fn not_found() -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(b"not found\n")));
    *r.status_mut() = StatusCode::NOT_FOUND;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    wire::secure(h);
    r
}

fn redirect(location: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    wire::secure(h);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_asset_names_and_known_types() {
        assert!(is_asset_name("darts.css"));
        assert!(is_asset_name("common-1.js"));
        assert!(!is_asset_name(".htaccess"));
        assert!(!is_asset_name("..%2fx"));
        assert!(!is_asset_name("a/b"));
        assert!(!is_asset_name(""));
        assert_eq!(content_type("x.js"), Some("text/javascript; charset=utf-8"));
        assert_eq!(content_type("x.sh"), None);
        assert_eq!(content_type("noext"), None);
    }
}
