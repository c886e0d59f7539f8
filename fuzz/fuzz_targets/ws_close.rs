//! Close-frame payloads: `close::parse` on what a browser sends and `close::payload` on
//! what the gateway builds.
//!
//! Input: the bytes as a peer's (unmasked) close payload; the same bytes as a code (first
//! two) and a reason (the rest, as lossy UTF-8) for building one.

#![no_main]

use darts_proxy::ws::close::{self, PeerClose};
use darts_proxy::ws::frame::MAX_CONTROL_PAYLOAD;
use libfuzzer_sys::fuzz_target;

/// Codes an endpoint may put in a close frame (RFC 6455 §7.4.1, §7.4.2).
fn sendable(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

fuzz_target!(|data: &[u8]| {
    match close::parse(data) {
        PeerClose::Valid(None) => assert!(data.is_empty()),
        PeerClose::Valid(Some(code)) => {
            assert!(data.len() >= 2);
            assert_eq!(code, u16::from_be_bytes([data[0], data[1]]));
            assert!(sendable(code), "accepted code {code}");
            assert!(
                std::str::from_utf8(&data[2..]).is_ok(),
                "accepted a non-UTF-8 reason"
            );
        }
        PeerClose::Invalid => assert!(
            data.len() == 1
                || !sendable(u16::from_be_bytes([data[0], data[1]]))
                || std::str::from_utf8(&data[2..]).is_err(),
            "refused a valid close payload {data:02x?}"
        ),
    }

    let (code, reason) = match data {
        [hi, lo, rest @ ..] => (
            u16::from_be_bytes([*hi, *lo]),
            String::from_utf8_lossy(rest),
        ),
        _ => (close::NORMAL, String::from_utf8_lossy(data)),
    };
    let built = close::payload(code, &reason);
    assert!(built.len() <= MAX_CONTROL_PAYLOAD, "{} bytes", built.len());
    assert_eq!(built[..2], code.to_be_bytes());
    let cut = std::str::from_utf8(&built[2..]).expect("reason cut inside a character");
    assert!(
        reason.starts_with(cut),
        "reason is not a prefix of the original"
    );
    let room = MAX_CONTROL_PAYLOAD - 2;
    if reason.len() <= room {
        assert_eq!(cut, reason, "short reason was cut");
    } else {
        assert!(
            cut.len() > room - 4,
            "reason cut more than one character short"
        );
    }
    if sendable(code) {
        assert_eq!(close::parse(&built), PeerClose::Valid(Some(code)));
    }
});
