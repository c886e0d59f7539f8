//! `darts_vnc::version::parse` on arbitrary bytes.
//!
//! A version is reported only for `RFB ddd.ddd\n` and prints back to the same 12 bytes;
//! "need more" only for a consistent prefix shorter than 12 bytes, which a well-formed
//! completion turns into a version; a refusal only when one of the first 12 bytes breaks
//! the pattern, whatever follows.

#![no_main]

use darts_vnc::version::{parse, VersionError, LEN};
use libfuzzer_sys::fuzz_target;

const PATTERN: &[u8; 12] = b"RFB ddd.ddd\n";

fn fits(b: u8, p: u8) -> bool {
    if p == b'd' {
        b.is_ascii_digit()
    } else {
        b == p
    }
}

fuzz_target!(|buf: &[u8]| {
    assert_eq!(LEN, PATTERN.len());
    let head = &buf[..buf.len().min(LEN)];
    let consistent = head.iter().zip(PATTERN).all(|(&b, &p)| fits(b, p));
    match parse(buf) {
        Ok(Some(v)) => {
            assert!(consistent && buf.len() >= LEN);
            let printed = format!("RFB {:03}.{:03}\n", v.major, v.minor);
            assert_eq!(printed.as_bytes(), head, "version does not print back");
        }
        Ok(None) => {
            assert!(consistent && buf.len() < LEN);
            let mut completed = buf.to_vec();
            completed.extend_from_slice(&b"RFB 003.008\n"[buf.len()..]);
            assert!(
                matches!(parse(&completed), Ok(Some(_))),
                "prefix cannot complete"
            );
        }
        Err(e) => {
            assert_eq!(e, VersionError::NotRfb);
            assert!(!consistent, "refused a well-formed prefix");
            assert!(!e.to_string().is_empty());
            let mut longer = head.to_vec();
            longer.extend_from_slice(b"RFB 003.008\n");
            assert_eq!(parse(&longer), Err(e), "later bytes changed the verdict");
        }
    }
});
