//! An HTTP/1.1 upgrade request as the gateway sees it: `ws::handshake::check`,
//! `url::token_from_query`, `url::strip_prefix` and `origin::allowed`.
//!
//! Input: a prefix selector, an allow-list selector, then the raw request (parsed with
//! `httparse`, as bytes off the socket would be; inputs it refuses are skipped).

#![no_main]

use base64::Engine as _;
use darts_fuzz::input::Input;
use darts_proxy::ws::handshake::{self, HandshakeError, BINARY_PROTOCOL};
use darts_proxy::{origin, url};
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Uri, Version};
use libfuzzer_sys::fuzz_target;

struct Request {
    method: Method,
    version: Version,
    target: String,
    headers: HeaderMap,
}

fn parse_request(raw: &[u8]) -> Option<Request> {
    let mut storage = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut storage);
    let httparse::Status::Complete(_) = req.parse(raw).ok()? else {
        return None;
    };
    let method = Method::from_bytes(req.method?.as_bytes()).ok()?;
    let version = match req.version? {
        1 => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    let mut headers = HeaderMap::new();
    for h in req.headers.iter() {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) {
            headers.append(name, value);
        }
    }
    Some(Request {
        method,
        version,
        target: req.path?.to_owned(),
        headers,
    })
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

fn check_handshake(r: &Request) {
    let result = handshake::check(&r.method, r.version, &r.headers);
    assert_eq!(result, handshake::check(&r.method, r.version, &r.headers));
    match &result {
        Ok(accept) => {
            assert_eq!(r.method, Method::GET);
            assert_eq!(r.version, Version::HTTP_11);
            assert!(has_token(&r.headers, header::CONNECTION, "upgrade"));
            assert_eq!(r.headers[header::SEC_WEBSOCKET_VERSION], "13");
            let key = r.headers[header::SEC_WEBSOCKET_KEY].as_bytes();
            // Browsers send canonical base64, but the gateway need not insist on it.
            let lenient = base64::engine::GeneralPurpose::new(
                &base64::alphabet::STANDARD,
                base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
            );
            let decoded = lenient.decode(key).expect("accepted key is base64");
            assert_eq!(decoded.len(), 16, "accepted key is not 16 bytes");
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
            ctx.update(key);
            ctx.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
            let want = base64::engine::general_purpose::STANDARD.encode(ctx.finish());
            assert_eq!(accept.accept_key, want.as_str(), "Sec-WebSocket-Accept");
            match &accept.protocol {
                Some(p) => {
                    assert_eq!(*p, BINARY_PROTOCOL);
                    assert!(has_token(
                        &r.headers,
                        header::SEC_WEBSOCKET_PROTOCOL,
                        "binary"
                    ));
                }
                None => assert!(r
                    .headers
                    .get_all(header::SEC_WEBSOCKET_PROTOCOL)
                    .iter()
                    .all(|v| v
                        .as_bytes()
                        .split(|&b| b == b',')
                        .all(|t| t.trim_ascii().is_empty()))),
            }
        }
        Err(e) => {
            if r.method != Method::GET {
                assert_eq!(*e, HandshakeError::NotGet);
            } else if r.version != Version::HTTP_11 {
                assert_eq!(*e, HandshakeError::NotHttp11);
            }
            assert!([400, 405, 426].contains(&e.status().as_u16()));
            assert!(!e.reason().is_empty());
        }
    }
}

fn fold_slashes(path: &str) -> String {
    let mut out = String::new();
    for c in path.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

fn check_url(uri: &Uri, prefix_sel: u8) {
    let token = url::token_from_query(uri.query());
    if let Some(t) = &token {
        assert!(!t.is_empty(), "empty token");
        assert!(
            !t.ends_with(['\n', '\r']),
            "token keeps a trailing new line"
        );
        let query = uri.query().unwrap_or_default();
        let decoded = String::from_utf8_lossy(&url::percent_decode(query, true)).into_owned();
        assert!(query.contains("token") || decoded.contains("token"));
    }
    // A plain first `token=` parameter is taken as it is.
    if let Some(rest) = uri.query().and_then(|q| q.strip_prefix("token=")) {
        let value = rest.split('&').next().unwrap_or_default();
        if !value.is_empty()
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            assert_eq!(token.as_deref(), Some(value));
        }
    }

    let path = uri.path();
    let folded = fold_slashes(path);
    // Prefixes as the gateway passes them: no trailing slash, "" for the root.
    let prefix = if prefix_sel & 0x80 != 0 {
        let mut end = usize::from(prefix_sel & 0x3F).min(folded.len());
        while !folded.is_char_boundary(end) {
            end -= 1;
        }
        folded[..end].trim_end_matches('/').to_owned()
    } else {
        ["", "/darts", "/vnc", "/a/b"][usize::from(prefix_sel % 4)].to_owned()
    };
    let stripped = url::strip_prefix(path, &prefix);
    match &stripped {
        Some(rel) => {
            // Origin-form targets stay absolute (`OPTIONS *` has the path `*`).
            let origin_form = path.is_empty() || path.starts_with('/');
            assert!(
                !origin_form || rel.starts_with('/'),
                "{rel:?} is not absolute"
            );
            assert!(!rel.contains("//"), "{rel:?} keeps a doubled slash");
            let joined = format!("{prefix}{rel}");
            assert!(joined == folded || (rel == "/" && folded == prefix));
        }
        None => {
            assert!(!prefix.is_empty(), "no prefix refuses nothing");
            assert!(folded != prefix && !folded.starts_with(&format!("{prefix}/")));
        }
    }
}

fn check_origin(r: &Request, allow_sel: u8) {
    let mut allow: Vec<String> = match allow_sel % 4 {
        0 => vec![],
        1 => vec!["*".into()],
        2 => vec!["https://allowed.example".into()],
        _ => vec!["http://allowed.example:80/".into(), "null".into()],
    };
    let wildcard = allow.iter().any(|a| a == "*");
    let ok = origin::allowed(&r.headers, &allow);
    match r.headers.get(header::ORIGIN) {
        None => assert!(ok, "requests without Origin are not browsers"),
        // An Origin that is not even a visible-ASCII string is refused whatever the list.
        Some(o) if o.to_str().is_err() => assert!(!ok, "malformed origin allowed"),
        Some(_) if wildcard => assert!(ok, "* allows every origin"),
        Some(o) if o.as_bytes().trim_ascii().eq_ignore_ascii_case(b"null") => {
            assert_eq!(ok, allow.iter().any(|a| a == "null"), "null origin");
        }
        Some(_) => {}
    }
    // The request's own simple host, from another port, is allowed; a look-alike is not.
    let host = r.headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let Some(host) = host.map(str::trim).filter(|h| {
        !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    }) else {
        return;
    };
    allow.retain(|a| a != "*");
    let mut headers = r.headers.clone();
    let with_origin = |headers: &mut HeaderMap, o: String| {
        let value = HeaderValue::from_str(&o).expect("simple host");
        headers.insert(header::ORIGIN, value);
    };
    with_origin(
        &mut headers,
        format!("https://{}:8443", host.to_ascii_uppercase()),
    );
    assert!(origin::allowed(&headers, &allow), "own host refused");
    with_origin(&mut headers, format!("https://{host}.evil.invalid"));
    assert!(
        !origin::allowed(&headers, &allow),
        "look-alike host allowed"
    );
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let prefix_sel = input.byte();
    let allow_sel = input.byte();
    let Some(request) = parse_request(input.rest()) else {
        return;
    };
    let _ = handshake::is_upgrade_request(&request.headers);
    check_handshake(&request);
    if let Ok(uri) = request.target.parse::<Uri>() {
        check_url(&uri, prefix_sel);
    }
    check_origin(&request, allow_sel);
});
