use std::fs;

use super::download::{parse_content_range, Version};
use super::*;

#[test]
fn content_range_forms() {
    assert_eq!(
        parse_content_range("bytes 100-199/200"),
        Some((100, Some(200)))
    );
    assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
    assert_eq!(parse_content_range("bytes 9-5/10"), None);
    assert_eq!(parse_content_range("items 1-2/3"), None);
}

#[test]
fn only_http_urls() {
    assert!(check_url("HTTPS://example.org/a.iso").is_ok());
    assert!(check_url("http://example.org/").is_ok());
    assert!(matches!(
        check_url("ftp://example.org/a.iso"),
        Err(FetchError::BadUrl { .. })
    ));
    assert!(check_url("/etc/passwd").is_err());
}

#[test]
fn errors_never_show_credentials() {
    assert_eq!(
        shown("https://user:secret@h.example:8443/a/b.sh?token=T#f"),
        "https://h.example:8443/a/b.sh"
    );
    assert_eq!(shown("http://h/x"), "http://h/x");
    let e = check_url("ftp://u:p@h/x?t=1").unwrap_err().to_string();
    assert!(!e.contains("u:p@"), "{e}");
    assert!(!e.contains("t=1"), "{e}");
}

#[test]
fn transient_errors() {
    let url = String::from("u");
    assert!(FetchError::Status {
        url: url.clone(),
        status: 503
    }
    .is_transient());
    assert!(!FetchError::Status {
        url: url.clone(),
        status: 404
    }
    .is_transient());
    assert!(!FetchError::Certificate {
        url,
        reason: String::new()
    }
    .is_transient());
}

#[test]
fn if_range_prefers_strong_etags() {
    let mut v = Version {
        url: "u".into(),
        etag: Some("W/\"x\"".into()),
        last_modified: Some("Tue, 01 Jul 2025 10:00:00 GMT".into()),
        length: None,
    };
    assert_eq!(v.if_range(), Some("Tue, 01 Jul 2025 10:00:00 GMT"));
    v.etag = Some("\"x\"".into());
    assert_eq!(v.if_range(), Some("\"x\""));
}

#[test]
fn proxy_from_config() {
    assert_eq!(proxy_setting(""), ProxySetting::Environment);
    assert_eq!(
        proxy_setting(" http://p:3128 "),
        ProxySetting::Url("http://p:3128".into())
    );
}

#[test]
fn ca_file_without_certificates_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("ca.pem");
    fs::write(&f, "not a certificate\n").unwrap();
    let e = Client::new(FetchOptions {
        ca_file: Some(f),
        ..FetchOptions::default()
    })
    .unwrap_err();
    assert!(matches!(e, FetchError::CaFile { .. }), "{e}");
}
