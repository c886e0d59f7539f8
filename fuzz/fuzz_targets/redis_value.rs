//! What a gateway reads from Redis (written by any node, or by websockify-era tools) and
//! the `token_redis` source syntax: never a panic; darts' own entries decode only with
//! their seal, and an entry darts encodes decodes to the same route.

#![no_main]

use darts_proxy::token::redis::value::{decode, encode, parse_websockify, ReadContext};
use darts_proxy::token::redis::{RedisSource, SealKey};
use darts_proxy::token::TokenKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = RedisSource::parse(text);
    let _ = parse_websockify(text);
    let key = TokenKey::of("fuzz");
    let seal = SealKey::from_secret(&[7u8; 32]);
    let ctx = ReadContext {
        seal: Some(&seal),
        x509_client: None,
    };
    if let Ok(route) = decode(&key, text, ctx) {
        let again = encode(&key, &route, Some(&seal)).expect("a decoded route encodes");
        let round = decode(&key, &again, ctx).expect("an encoded route decodes");
        assert_eq!(round.target, route.target);
        assert_eq!(round.one_shot, route.one_shot);
        assert_eq!(round.view_only, route.view_only);
    }
});
