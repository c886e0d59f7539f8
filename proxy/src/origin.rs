//! The `Origin` check on websocket upgrades (cross-site websocket hijacking, as in
//! nova's CVE-2015-0259): a browser page from another site must not open a session.
//!
//! Allowed: no `Origin` header (not a browser; a token is still needed), an origin whose
//! host equals the request's `Host` (ports are not compared, so a TLS-terminating proxy in
//! front does not break it), or an origin on the allow-list (`*` allows all).

use http::{header, HeaderMap};

/// True if the request's origin may open a websocket.
pub fn allowed(headers: &HeaderMap, allow_list: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim().to_ascii_lowercase();
    if allow_list
        .iter()
        .any(|a| a == "*" || normalize(a) == normalize(&origin))
    {
        return true;
    }
    let Some(origin_host) = origin_host(&origin) else {
        return false;
    };
    let request_host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| strip_port(h.trim()).to_ascii_lowercase());
    request_host.as_deref() == Some(origin_host)
}

/// `scheme://host[:port]` with default ports removed and lower case, for comparison.
fn normalize(origin: &str) -> String {
    let o = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    if let Some(rest) = o.strip_prefix("http://") {
        format!("http://{}", rest.strip_suffix(":80").unwrap_or(rest))
    } else if let Some(rest) = o.strip_prefix("https://") {
        format!("https://{}", rest.strip_suffix(":443").unwrap_or(rest))
    } else {
        o
    }
}

/// The host of an `http`/`https` origin; `None` for `null` and other schemes.
fn origin_host(origin: &str) -> Option<&str> {
    let (scheme, rest) = origin.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split('/').next()?;
    let host = strip_port(authority);
    (!host.is_empty()).then_some(host)
}

/// `host:port` → `host`, `[v6]:port` → `[v6]`.
fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.find(']').map_or(authority, |i| &authority[..=i]);
    }
    authority.rsplit_once(':').map_or(authority, |(h, p)| {
        if p.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            authority
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(host: &str, origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        h
    }

    #[test]
    fn same_host_is_allowed_whatever_the_port() {
        assert!(allowed(
            &headers("vm.example.org:6080", Some("http://vm.example.org:6080")),
            &[]
        ));
        assert!(allowed(
            &headers("vm.example.org", Some("https://VM.example.org")),
            &[]
        ));
        assert!(allowed(
            &headers("[::1]:6080", Some("http://[::1]:8080")),
            &[]
        ));
    }

    #[test]
    fn other_sites_are_refused_unless_listed() {
        let h = headers("vm.example.org", Some("https://evil.example"));
        assert!(!allowed(&h, &[]));
        assert!(allowed(&h, &["https://evil.example:443/".into()]));
        assert!(allowed(&h, &["*".into()]));
        assert!(!allowed(&headers("vm.example.org", Some("null")), &[]));
        assert!(!allowed(
            &headers("vm.example.org", Some("file://vm.example.org")),
            &[]
        ));
        assert!(!allowed(
            &headers("vm.example.org.evil", Some("http://vm.example.org")),
            &[]
        ));
    }

    #[test]
    fn requests_without_origin_are_not_browsers() {
        assert!(allowed(&headers("vm.example.org", None), &[]));
    }
}
