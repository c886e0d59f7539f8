//! Static files (the noVNC client) from a directory, with no way out of it.
//!
//! A request path is decoded, split into segments, and refused if any segment is `..`
//! or holds a NUL or backslash; the result is then resolved through symlinks and must
//! still lie under the root.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::Full;

use crate::url::percent_decode;

/// Files larger than this are not served (the noVNC client's largest is under 1 MiB).
const MAX_FILE: u64 = 64 * 1024 * 1024;

/// The directory static files are served from, canonical so that resolved paths can be
/// checked against it.
#[derive(Debug, Clone)]
pub struct StaticFiles {
    root: PathBuf,
}

/// What a static request resolves to.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolved {
    /// A regular file under the root (a directory's `index.html` included).
    File(PathBuf),
    /// A directory without `index.html` that holds noVNC's `vnc.html`.
    RedirectTo(&'static str),
    /// Nothing servable: missing, outside the root, or refused.
    NotFound,
}

impl StaticFiles {
    /// Serves `root`; `None` unless it resolves to a directory.
    pub fn new(root: &Path) -> Option<Self> {
        let root = root.canonicalize().ok()?;
        root.is_dir().then_some(Self { root })
    }

    /// The canonical root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Maps a path relative to the prefix (starting with `/`) to a file under the root.
    pub fn resolve(&self, rel: &str) -> Resolved {
        let decoded = percent_decode(rel, false);
        let Ok(decoded) = std::str::from_utf8(&decoded) else {
            return Resolved::NotFound;
        };
        let mut path = self.root.clone();
        for segment in decoded.split('/') {
            match segment {
                "" | "." => {}
                ".." => return Resolved::NotFound,
                s if s.contains(['\0', '\\']) => return Resolved::NotFound,
                s => path.push(s),
            }
        }
        let Ok(real) = path.canonicalize() else {
            return Resolved::NotFound;
        };
        if !real.starts_with(&self.root) {
            return Resolved::NotFound;
        }
        if real.is_dir() {
            let index = real.join("index.html");
            if index.is_file() {
                return Resolved::File(index);
            }
            if real == self.root && real.join("vnc.html").is_file() {
                return Resolved::RedirectTo("vnc.html");
            }
            return Resolved::NotFound;
        }
        if real.is_file() {
            Resolved::File(real)
        } else {
            Resolved::NotFound
        }
    }

    /// Answers a GET or HEAD for `rel`; `path` is the request's own path (for redirects).
    pub async fn respond(
        &self,
        rel: &str,
        path: &str,
        head: bool,
        request: &HeaderMap,
    ) -> Response<Full<Bytes>> {
        match self.resolve(rel) {
            Resolved::NotFound => text_response(StatusCode::NOT_FOUND, "not found\n"),
            Resolved::RedirectTo(target) => {
                let mut r = text_response(StatusCode::FOUND, "");
                // Relative, so that it also works behind a proxy that rewrites the prefix.
                let location = if path.ends_with('/') {
                    target.to_owned()
                } else {
                    format!("{}/{target}", path.rsplit('/').next().unwrap_or(""))
                };
                if let Ok(v) = HeaderValue::from_str(&location) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                r
            }
            Resolved::File(path) => serve_file(&path, head, request).await,
        }
    }
}

async fn serve_file(path: &Path, head: bool, request: &HeaderMap) -> Response<Full<Bytes>> {
    let meta = match tokio::fs::metadata(path).await {
        Ok(m) if m.len() <= MAX_FILE => m,
        _ => return text_response(StatusCode::NOT_FOUND, "not found\n"),
    };
    let modified = meta.modified().ok().map(http_date);
    if let (Some(m), Some(since)) = (&modified, request.get(header::IF_MODIFIED_SINCE)) {
        if since.as_bytes() == m.as_bytes() {
            let mut r = text_response(StatusCode::NOT_MODIFIED, "");
            r.headers_mut().remove(header::CONTENT_TYPE);
            return r;
        }
    }
    let body = if head {
        Bytes::new()
    } else {
        match tokio::fs::read(path).await {
            Ok(data) => Bytes::from(data),
            Err(_) => return text_response(StatusCode::NOT_FOUND, "not found\n"),
        }
    };
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let mut r = Response::new(Full::new(body));
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(mime.as_ref()) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if head {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.len()));
    }
    if let Some(m) = modified.and_then(|m| HeaderValue::from_str(&m).ok()) {
        h.insert(header::LAST_MODIFIED, m);
    }
    r
}

/// A small plain-text response.
pub fn text_response(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// RFC 7231 IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
fn http_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let name = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(month - 1) as usize];
    format!(
        "{weekday}, {day:02} {name} {year} {:02}:{:02}:{:02} GMT",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_http_dates() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(
            http_date(SystemTime::UNIX_EPOCH),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
    }

    #[test]
    fn refuses_every_way_out_of_the_root() {
        let dir = std::env::temp_dir().join(format!("darts-static-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("app")).unwrap();
        std::fs::write(dir.join("vnc.html"), "x").unwrap();
        std::fs::write(dir.join("app/ui.js"), "x").unwrap();
        let _ = std::os::unix::fs::symlink("/etc", dir.join("escape"));
        let files = StaticFiles::new(&dir).unwrap();
        assert!(matches!(files.resolve("/vnc.html"), Resolved::File(_)));
        assert!(matches!(files.resolve("/app/./ui.js"), Resolved::File(_)));
        assert_eq!(files.resolve("/"), Resolved::RedirectTo("vnc.html"));
        for bad in [
            "/../etc/passwd",
            "/app/../../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/escape/passwd",
            "/app%5c..%5cvnc.html",
            "/nope",
            "/vnc.html%00",
        ] {
            assert_eq!(files.resolve(bad), Resolved::NotFound, "{bad}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
