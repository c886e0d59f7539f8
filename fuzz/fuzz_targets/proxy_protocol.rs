//! `proxy_protocol::parse` on arbitrary connection starts: never panics, never claims
//! more bytes than it was given or than the specification allows, asks for more only
//! while the header is unfinished, and reads the same header from exactly its own bytes.

#![no_main]

use darts_proxy::proxy_protocol::{parse, Parsed, MAX_V2_PAYLOAD, V1_MAX};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(Parsed::Complete { header, len }) => {
            assert!(len <= data.len());
            if data.starts_with(b"PROXY ") {
                assert!(len <= V1_MAX && data[..len].ends_with(b"\r\n"));
            } else {
                assert!(len <= 16 + MAX_V2_PAYLOAD);
            }
            // The header alone gives the same answer; any shorter prefix is unfinished.
            assert_eq!(
                parse(&data[..len]),
                Ok(Parsed::Complete { header, len })
            );
            if len > 0 {
                match parse(&data[..len - 1]) {
                    Ok(Parsed::Incomplete { need }) => assert!(need >= 1),
                    other => panic!("prefix of a header: {other:?}"),
                }
            }
        }
        Ok(Parsed::Incomplete { need }) => {
            assert!(need >= 1);
            assert!(data.len() + need <= 16 + MAX_V2_PAYLOAD);
        }
        Err(_) => {}
    }
});
