//! What a gateway reads from Redis (written by any node, or by websockify-era tools) and
//! the `token_redis` source syntax: never a panic; with the registry secret, no change to
//! a genuine entry yields anything but that entry's route, and nothing the fuzzer writes
//! passes for an authenticated entry or viewer event; an entry darts encodes decodes to
//! the same route.

#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use darts_proxy::token::redis::value::{decode, encode, parse_websockify, ReadContext};
use darts_proxy::token::redis::{peer, RedisSource, SealKey};
use darts_proxy::token::TokenKey;
use darts_proxy::{Route, Target};
use libfuzzer_sys::fuzz_target;

/// The route behind the genuine entry the fuzzer edits, and that entry.
fn genuine(key: &TokenKey, seal: &SealKey) -> &'static (Route, serde_json::Value) {
    static GENUINE: OnceLock<(Route, serde_json::Value)> = OnceLock::new();
    GENUINE.get_or_init(|| {
        let route = Route::new(Target::Unix("/run/s/vnc.sock".into()))
            .view_only(true)
            .max_clipboard(Some(0))
            .one_shot(true)
            .label("darts-abc")
            .expires_at(UNIX_EPOCH + Duration::from_secs(1_900_000_000));
        let text = encode(key, &route, Some(seal)).expect("the genuine route encodes");
        (route, serde_json::from_str(&text).expect("entries are JSON"))
    })
}

fuzz_target!(|data: &[u8]| {
    let seal = SealKey::from_secret(&[7u8; 32]);
    let _ = peer::decode(data, &seal, SystemTime::now());
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = RedisSource::parse(text);
    let _ = parse_websockify(text);
    let key = TokenKey::of("fuzz");
    let ctx = ReadContext {
        seal: Some(&seal),
        x509_client: None,
    };
    // Read without the secret (Redis trusted), an entry darts writes again with it
    // comes back whole.
    if let Ok(route) = decode(&key, text, ReadContext::default()) {
        let again = encode(&key, &route, Some(&seal)).expect("a decoded route encodes");
        assert_eq!(decode(&key, &again, ctx).expect("an encoded route decodes"), route);
    }
    // With the secret: fields written over a genuine entry change nothing, or refuse it.
    let (route, entry) = genuine(&key, &seal);
    if let Ok(serde_json::Value::Object(fields)) = serde_json::from_str(text) {
        let mut edited = entry.clone();
        for (name, value) in fields {
            edited[name] = value;
        }
        if let Ok(got) = decode(&key, &edited.to_string(), ctx) {
            assert_eq!(&got, route, "an edited entry passed for another route");
        }
    }
    if let Ok(got) = decode(&key, text, ctx) {
        assert_eq!(&got, route, "the fuzzer forged an authenticated entry");
    }
});
