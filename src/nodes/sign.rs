//! Node-to-node request signatures: HMAC-SHA256 (ring) with the key every node shares.
//!
//! The signature covers the method, the path below the peer's prefix (a reverse proxy
//! may strip or add the prefix, and may rewrite `Host`, so neither is signed), the time, a random nonce, the sender's name, the node it is meant for, the hop list and the digest of the body,
//! so a captured request can be neither altered nor replayed: the receiver accepts it
//! only within [`MAX_SKEW`] of its own clock and only once (nonce cache). TLS between
//! the nodes keeps the request and its answer (which holds session tokens) private.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use http::{HeaderMap, HeaderName, HeaderValue};
use ring::{digest, hmac};

pub const NODE: HeaderName = HeaderName::from_static("x-darts-node");
pub const DATE: HeaderName = HeaderName::from_static("x-darts-date");
pub const NONCE: HeaderName = HeaderName::from_static("x-darts-nonce");
pub const HOPS: HeaderName = HeaderName::from_static("x-darts-hops");
pub const TO: HeaderName = HeaderName::from_static("x-darts-to");
pub const SIGNATURE: HeaderName = HeaderName::from_static("x-darts-signature");

/// Clock difference tolerated between two nodes, seconds.
pub const MAX_SKEW: u64 = 60;
/// Shortest key accepted.
pub const MIN_KEY_LEN: usize = 32;
/// Nonces remembered at once (each for twice [`MAX_SKEW`]); past it, requests are
/// refused until some expire, rather than forgetting nonces that could then be replayed.
const MAX_NONCES: usize = 100_000;

/// Why a key cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("cannot read it: {0}")]
    Read(String),
    #[error("it holds {0} bytes; at least {MIN_KEY_LEN} are needed (e.g. `head -c 48 /dev/urandom | base64`)")]
    TooShort(usize),
}

/// Why a node request was refused. The messages go to the calling node, never to a user.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Rejected {
    #[error("missing or malformed {0} header")]
    Header(&'static str),
    #[error("bad signature")]
    Signature,
    #[error("request time is {0} s away from this node's clock")]
    Stale(u64),
    #[error("request already seen (replay)")]
    Replay,
    #[error("too many node requests at once")]
    Busy,
}

/// The shared secret.
pub struct NodeKey(hmac::Key);

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeKey(…)")
    }
}

impl NodeKey {
    /// The key file's contents, surrounding white space removed.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let bytes = std::fs::read(path).map_err(|e| KeyError::Read(e.to_string()))?;
        Self::from_bytes(bytes.trim_ascii())
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() < MIN_KEY_LEN {
            return Err(KeyError::TooShort(bytes.len()));
        }
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, bytes)))
    }
}

/// What is signed about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub method: &'a str,
    /// Path below the prefix (`/api/nodes/status`).
    pub path: &'a str,
    pub date: u64,
    pub nonce: &'a str,
    pub node: &'a str,
    /// The node the request is meant for; empty for the read-only questions a node asks
    /// a peer whose name it does not know yet (status, list).
    pub to: &'a str,
    /// Nodes the request has been through, the sender last.
    pub hops: &'a [String],
    pub body: &'a [u8],
}

impl Envelope<'_> {
    fn message(&self) -> Vec<u8> {
        let body = digest::digest(&digest::SHA256, self.body);
        let mut m = format!(
            "darts-node-v2\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n",
            self.method,
            self.path,
            self.date,
            self.nonce,
            self.node,
            self.to,
            self.hops.join(",")
        )
        .into_bytes();
        m.extend_from_slice(hex(body.as_ref()).as_bytes());
        m
    }

    /// The headers that carry this envelope and its signature.
    pub fn headers(&self, key: &NodeKey) -> Vec<(HeaderName, String)> {
        let tag = hmac::sign(&key.0, &self.message());
        vec![
            (NODE, self.node.to_owned()),
            (TO, self.to.to_owned()),
            (DATE, self.date.to_string()),
            (NONCE, self.nonce.to_owned()),
            (HOPS, self.hops.join(",")),
            (SIGNATURE, hex(tag.as_ref())),
        ]
    }
}

/// The sender of a verified request and the nodes it went through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub node: String,
    /// The node the sender meant the request for (empty: any).
    pub to: String,
    pub hops: Vec<String>,
}

/// Checks a request's signature, freshness and nonce.
pub fn verify(
    key: &NodeKey,
    nonces: &NonceCache,
    headers: &HeaderMap,
    method: &str,
    path: &str,
    body: &[u8],
    now: u64,
) -> Result<Verified, Rejected> {
    let text = |name: &HeaderName, label: &'static str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or(Rejected::Header(label))
    };
    let node = text(&NODE, "X-Darts-Node")?;
    let date: u64 = text(&DATE, "X-Darts-Date")?
        .parse()
        .map_err(|_| Rejected::Header("X-Darts-Date"))?;
    let nonce = text(&NONCE, "X-Darts-Nonce")?;
    let hops_text = text(&HOPS, "X-Darts-Hops")?;
    let to = text(&TO, "X-Darts-To")?;
    if !to.is_empty() && !valid_name(to) {
        return Err(Rejected::Header("X-Darts-To"));
    }
    let signature = unhex(text(&SIGNATURE, "X-Darts-Signature")?)
        .ok_or(Rejected::Header("X-Darts-Signature"))?;
    if !valid_name(node) || nonce.len() < 16 || nonce.len() > 64 {
        return Err(Rejected::Header("X-Darts-Node or X-Darts-Nonce"));
    }
    let hops = parse_hops(hops_text).ok_or(Rejected::Header("X-Darts-Hops"))?;
    let envelope = Envelope {
        method,
        path,
        date,
        nonce,
        node,
        to,
        hops: &hops,
        body,
    };
    hmac::verify(&key.0, &envelope.message(), &signature).map_err(|_| Rejected::Signature)?;
    // Only a signed request may fill the nonce cache.
    let skew = now.abs_diff(date);
    if skew > MAX_SKEW {
        return Err(Rejected::Stale(skew));
    }
    nonces.first_use(nonce, now)?;
    Ok(Verified {
        node: node.to_owned(),
        to: to.to_owned(),
        hops,
    })
}

/// Node names: letters, digits, `.`, `-`, `_`, 1 to 64 of them (they travel in a
/// comma-separated header).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

fn parse_hops(text: &str) -> Option<Vec<String>> {
    if text.is_empty() {
        return Some(Vec::new());
    }
    let hops: Vec<String> = text.split(',').map(|h| h.trim().to_owned()).collect();
    hops.iter().all(|h| valid_name(h)).then_some(hops)
}

/// Nonces of accepted requests, until they are too old to be accepted anyway.
#[derive(Debug, Default)]
pub struct NonceCache {
    seen: Mutex<HashMap<String, u64>>,
}

impl NonceCache {
    fn first_use(&self, nonce: &str, now: u64) -> Result<(), Rejected> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= MAX_NONCES {
            seen.retain(|_, until| *until > now);
            if seen.len() >= MAX_NONCES {
                return Err(Rejected::Busy);
            }
        }
        if seen.contains_key(nonce) {
            return Err(Rejected::Replay);
        }
        seen.insert(nonce.to_owned(), now + 2 * MAX_SKEW);
        Ok(())
    }
}

/// Adds `headers` to a header map (values that are not valid header text are skipped;
/// every value built here is ASCII).
pub fn apply(map: &mut HeaderMap, headers: Vec<(HeaderName, String)>) {
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            map.insert(name, v);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> NodeKey {
        NodeKey::from_bytes(&[7u8; 32]).unwrap()
    }

    fn signed(hops: &[String], body: &[u8], date: u64, nonce: &str) -> HeaderMap {
        let env = Envelope {
            method: "POST",
            path: "/api/nodes/create",
            date,
            nonce,
            node: "a",
            to: "b",
            hops,
            body,
        };
        let mut h = HeaderMap::new();
        apply(&mut h, env.headers(&key()));
        h
    }

    const NONCE_1: &str = "0123456789abcdef0123";

    #[test]
    fn a_signed_request_verifies_once() {
        let hops = vec!["a".to_owned()];
        let h = signed(&hops, b"{}", 1000, NONCE_1);
        let cache = NonceCache::default();
        let ok = verify(&key(), &cache, &h, "POST", "/api/nodes/create", b"{}", 1010);
        assert_eq!(
            ok,
            Ok(Verified {
                node: "a".into(),
                to: "b".into(),
                hops: hops.clone()
            })
        );
        let again = verify(&key(), &cache, &h, "POST", "/api/nodes/create", b"{}", 1010);
        assert_eq!(again, Err(Rejected::Replay));
    }

    #[test]
    fn any_change_breaks_the_signature() {
        let hops = vec!["a".to_owned()];
        let cache = NonceCache::default();
        let h = signed(&hops, b"{}", 1000, NONCE_1);
        let path = "/api/nodes/create";
        assert_eq!(
            verify(&key(), &cache, &h, "POST", path, b"{\"x\":1}", 1000),
            Err(Rejected::Signature)
        );
        assert_eq!(
            verify(&key(), &cache, &h, "DELETE", path, b"{}", 1000),
            Err(Rejected::Signature)
        );
        assert_eq!(
            verify(&key(), &cache, &h, "POST", "/api/nodes/list", b"{}", 1000),
            Err(Rejected::Signature)
        );
        let mut fewer_hops = h.clone();
        fewer_hops.insert(HOPS, HeaderValue::from_static(""));
        assert_eq!(
            verify(&key(), &cache, &fewer_hops, "POST", path, b"{}", 1000),
            Err(Rejected::Signature)
        );
        // A request meant for node b cannot be passed off as meant for c, or for anyone.
        for to in ["c", ""] {
            let mut elsewhere = h.clone();
            elsewhere.insert(TO, HeaderValue::from_str(to).unwrap());
            assert_eq!(
                verify(&key(), &cache, &elsewhere, "POST", path, b"{}", 1000),
                Err(Rejected::Signature)
            );
        }
        let other_key = NodeKey::from_bytes(&[8u8; 40]).unwrap();
        assert_eq!(
            verify(&other_key, &cache, &h, "POST", path, b"{}", 1000),
            Err(Rejected::Signature)
        );
    }

    #[test]
    fn old_requests_and_bad_headers_are_refused() {
        let cache = NonceCache::default();
        let path = "/api/nodes/create";
        let h = signed(&[], b"", 1000, NONCE_1);
        assert_eq!(
            verify(&key(), &cache, &h, "POST", path, b"", 1000 + MAX_SKEW + 1),
            Err(Rejected::Stale(MAX_SKEW + 1))
        );
        let mut bad = h.clone();
        bad.insert(HOPS, HeaderValue::from_static("a,b c"));
        assert!(matches!(
            verify(&key(), &cache, &bad, "POST", path, b"", 1000),
            Err(Rejected::Header(_))
        ));
        let mut none = h.clone();
        none.remove(SIGNATURE);
        assert!(matches!(
            verify(&key(), &cache, &none, "POST", path, b"", 1000),
            Err(Rejected::Header(_))
        ));
    }

    #[test]
    fn short_keys_and_names() {
        assert_eq!(
            NodeKey::from_bytes(b"short").unwrap_err(),
            KeyError::TooShort(5)
        );
        assert!(valid_name("node-b.example_1"));
        assert!(!valid_name("a,b") && !valid_name("") && !valid_name("é"));
    }
}
