//! The websocket opening handshake (RFC 6455 §4.2) on an HTTP/1.1 request.
//!
//! `check` decides whether a request is a valid upgrade and, if so, what the `101`
//! response must carry. It works on `http` types so it can be tested and fuzzed without
//! a socket.

use http::{header, HeaderMap, HeaderValue, Method, Version};
use ring::digest;

const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// The subprotocol noVNC and websockify use for raw binary RFB.
pub const BINARY_PROTOCOL: &str = "binary";

/// What the `101 Switching Protocols` response must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accept {
    /// `Sec-WebSocket-Accept`, derived from the browser's key.
    pub accept_key: HeaderValue,
    /// `Some("binary")` when the browser offered it; `None` when it offered nothing.
    pub protocol: Option<HeaderValue>,
}

/// Why an upgrade request is refused; each maps to an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// Not a `GET`; answered `405`.
    NotGet,
    /// Not HTTP/1.1.
    NotHttp11,
    /// `Connection` does not list `upgrade`.
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Key` missing, or not 16 bytes in base64.
    BadKey,
    /// Version other than 13; answered `426` with `Sec-WebSocket-Version: 13`.
    UnsupportedVersion,
    /// Subprotocols offered, none of them `binary` (websockify dropped `base64` in 0.9).
    UnsupportedSubprotocol,
}

impl HandshakeError {
    /// The HTTP status the refusal is answered with.
    pub fn status(self) -> http::StatusCode {
        match self {
            Self::NotGet => http::StatusCode::METHOD_NOT_ALLOWED,
            Self::UnsupportedVersion => http::StatusCode::UPGRADE_REQUIRED,
            _ => http::StatusCode::BAD_REQUEST,
        }
    }

    /// Short text for the response body.
    pub fn reason(self) -> &'static str {
        match self {
            Self::NotGet => "websocket upgrade must use GET",
            Self::NotHttp11 => "websocket upgrade needs HTTP/1.1",
            Self::MissingConnectionUpgrade => "missing 'Connection: Upgrade'",
            Self::BadKey => "missing or malformed Sec-WebSocket-Key",
            Self::UnsupportedVersion => "only websocket version 13 is supported",
            Self::UnsupportedSubprotocol => {
                "no supported subprotocol offered (use 'binary' or none)"
            }
        }
    }
}

/// True when the request asks for a websocket (`Upgrade: websocket`), valid or not.
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    header_has_token(headers, header::UPGRADE, "websocket")
}

/// Validates an upgrade request and computes the response headers.
pub fn check(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
) -> Result<Accept, HandshakeError> {
    if method != Method::GET {
        return Err(HandshakeError::NotGet);
    }
    if version != Version::HTTP_11 {
        return Err(HandshakeError::NotHttp11);
    }
    if !header_has_token(headers, header::CONNECTION, "upgrade") {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(HandshakeError::UnsupportedVersion);
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or(HandshakeError::BadKey)?;
    // The key is 16 random bytes in base64: 24 characters ending in "==".
    let raw = key.as_bytes();
    if raw.len() != 24
        || !raw.ends_with(b"==")
        || !raw[..22]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
    {
        return Err(HandshakeError::BadKey);
    }
    let protocol = choose_protocol(headers)?;
    Ok(Accept {
        accept_key: accept_key(raw),
        protocol,
    })
}

/// `base64(SHA-1(key + GUID))`, the value of `Sec-WebSocket-Accept`.
pub fn accept_key(key: &[u8]) -> HeaderValue {
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key);
    ctx.update(ACCEPT_GUID);
    let encoded = base64_encode(ctx.finish().as_ref());
    HeaderValue::from_str(&encoded).expect("base64 is a valid header value")
}

fn choose_protocol(headers: &HeaderMap) -> Result<Option<HeaderValue>, HandshakeError> {
    let mut offered = false;
    for value in headers.get_all(header::SEC_WEBSOCKET_PROTOCOL) {
        let Ok(list) = value.to_str() else {
            return Err(HandshakeError::UnsupportedSubprotocol);
        };
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if name == BINARY_PROTOCOL {
                return Ok(Some(HeaderValue::from_static(BINARY_PROTOCOL)));
            }
            offered = true;
        }
    }
    if offered {
        Err(HandshakeError::UnsupportedSubprotocol)
    } else {
        Ok(None)
    }
}

/// Whether a comma-separated header contains `token` (case-insensitive).
fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| {
                s.split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
            .unwrap_or(false)
    })
}

fn base64_encode(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(extra: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        h.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        for (k, v) in extra {
            h.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn rfc_example_accept_key() {
        let a = check(&Method::GET, Version::HTTP_11, &request(&[])).unwrap();
        assert_eq!(a.accept_key, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(a.protocol, None);
    }

    #[test]
    fn binary_subprotocol_is_answered_and_others_refused() {
        let a = check(
            &Method::GET,
            Version::HTTP_11,
            &request(&[("sec-websocket-protocol", "base64, binary")]),
        )
        .unwrap();
        assert_eq!(a.protocol.unwrap(), "binary");
        let e = check(
            &Method::GET,
            Version::HTTP_11,
            &request(&[("sec-websocket-protocol", "base64")]),
        );
        assert_eq!(e, Err(HandshakeError::UnsupportedSubprotocol));
    }

    #[test]
    fn refuses_bad_requests_with_the_right_status() {
        assert_eq!(
            check(&Method::POST, Version::HTTP_11, &request(&[]))
                .unwrap_err()
                .status(),
            405
        );
        let mut h = request(&[]);
        h.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("8"));
        assert_eq!(
            check(&Method::GET, Version::HTTP_11, &h)
                .unwrap_err()
                .status(),
            426
        );
        let mut h = request(&[]);
        h.insert(header::SEC_WEBSOCKET_KEY, HeaderValue::from_static("short"));
        assert_eq!(
            check(&Method::GET, Version::HTTP_11, &h),
            Err(HandshakeError::BadKey)
        );
        let mut h = request(&[]);
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        assert_eq!(
            check(&Method::GET, Version::HTTP_11, &h),
            Err(HandshakeError::MissingConnectionUpgrade)
        );
    }

    #[test]
    fn base64_matches_known_vectors() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
    }
}
