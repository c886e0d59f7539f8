//! A node request's signature headers from anyone on the network: never a panic, and
//! nothing but a request signed with the key is accepted.

#![no_main]

use darts::nodes::sign::{verify, NodeKey, NonceCache};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let body = lines.next().unwrap_or_default();
    let mut headers = HeaderMap::new();
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            if let (Ok(k), Ok(v)) = (
                HeaderName::try_from(k.trim()),
                HeaderValue::from_str(v.trim()),
            ) {
                headers.insert(k, v);
            }
        }
    }
    let key = NodeKey::from_bytes(&[9u8; 32]).expect("a 32-byte key");
    let nonces = NonceCache::default();
    // Forging an HMAC-SHA256 tag is out of the fuzzer's reach: anything it builds fails.
    assert!(verify(
        &key,
        &nonces,
        &headers,
        "POST",
        "/api/nodes/create",
        body.as_bytes(),
        1_800_000_000
    )
    .is_err());
});
