//! Browser→server RFB messages: `client_msg::frame` and the pump's `ClientFilter`.
//!
//! Input: `flags, clipboard cap, chunk size, stream…`; flags bit 0 = view-only, bits 1-2
//! pick the clipboard policy (none, disabled, capped at the cap byte), bit 3 lets a
//! view-only viewer receive the guest's clipboard.
//!
//! * `frame` decides from at most 12 bytes, never reports a message shorter than the
//!   bytes it looked at, and more bytes never change a decision.
//! * The filter fed in arbitrary chunks produces exactly what a message-by-message walk
//!   of the whole stream keeps (whole messages, view-only input and over-long pastes
//!   dropped, SetEncodings without the extended clipboard for viewers who may not
//!   receive it), counts the drops, fails where the walk fails, and without a policy
//!   passes the stream through unchanged (but for a trailing incomplete header).

#![no_main]

use darts_fuzz::input::Input;
use darts_vnc::client_filter::{self, ClientFilter, EXTENDED_CLIPBOARD};
use darts_vnc::client_msg::{frame, Frame, Kind};
use libfuzzer_sys::fuzz_target;

/// The filter's header buffer: `frame` must decide within this many bytes.
const MAX_HEADER: usize = 12;

/// The shortest prefix of `buf` on which `frame` decides, with the decision.
fn decide(buf: &[u8]) -> Option<(usize, Result<Frame, ()>)> {
    (1..=buf.len().min(MAX_HEADER)).find_map(|k| match frame(&buf[..k]) {
        Ok(None) => None,
        Ok(Some(f)) => Some((k, Ok(f))),
        Err(_) => Some((k, Err(()))),
    })
}

fn check_frame(buf: &[u8]) {
    let head = &buf[..buf.len().min(MAX_HEADER)];
    let verdict = frame(head);
    assert_eq!(
        frame(buf),
        verdict,
        "bytes after the header changed the verdict"
    );
    match decide(buf) {
        Some((k, Ok(f))) => {
            assert!(
                f.len >= k as u64,
                "{f:?} shorter than the {k} bytes it needed"
            );
            assert_eq!(verdict, Ok(Some(f)));
        }
        Some((_, Err(()))) => assert!(verdict.is_err()),
        None => {
            assert_eq!(verdict, Ok(None));
            let mut padded = buf.to_vec();
            padded.resize(MAX_HEADER, 0xFF);
            assert!(frame(&padded) != Ok(None), "12 bytes must decide");
        }
    }
}

struct Policy {
    view_only: bool,
    max_clipboard: Option<u32>,
    view_only_clipboard: bool,
}

impl Policy {
    fn strips_clipboard(&self) -> bool {
        self.max_clipboard == Some(0) || (self.view_only && !self.view_only_clipboard)
    }

    fn keeps(&self, f: Frame) -> bool {
        if self.view_only && f.kind.is_input() {
            return false;
        }
        match (f.kind, self.max_clipboard) {
            (Kind::CutText, Some(max)) => max > 0 && f.len - 8 <= u64::from(max),
            _ => true,
        }
    }
}

/// Walks the whole stream message by message: kept bytes, drops, and whether it failed.
fn walk(policy: &Policy, mut stream: &[u8]) -> (Vec<u8>, u64, bool) {
    let (mut kept, mut dropped) = (Vec::new(), 0);
    while !stream.is_empty() {
        let f = match decide(stream) {
            None if stream.len() >= MAX_HEADER => return (kept, dropped, true),
            None => break,
            Some((_, Err(()))) => return (kept, dropped, true),
            Some((_, Ok(f))) => f,
        };
        let n = usize::try_from(f.len).map_or(stream.len(), |l| l.min(stream.len()));
        if policy.keeps(f) && f.kind == Kind::SetEncodings && policy.strips_clipboard() {
            if (f.len - 4) / 4 > client_filter::MAX_REWRITTEN_ENCODINGS {
                return (kept, dropped, true);
            }
            if n < 4 || (n as u64) < f.len {
                break; // held until it is whole
            }
            let list: Vec<[u8; 4]> = stream[4..n]
                .chunks_exact(4)
                .map(|c| [c[0], c[1], c[2], c[3]])
                .filter(|e| i32::from_be_bytes(*e) != EXTENDED_CLIPBOARD)
                .collect();
            kept.extend_from_slice(&stream[..2]);
            kept.extend_from_slice(&(list.len() as u16).to_be_bytes());
            kept.extend(list.into_iter().flatten());
        } else if policy.keeps(f) {
            kept.extend_from_slice(&stream[..n]);
        } else {
            dropped += 1;
        }
        stream = &stream[n..];
    }
    (kept, dropped, false)
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let flags = input.byte();
    let cap = input.byte();
    let chunk = 1 + usize::from(input.byte());
    let stream = input.rest();
    check_frame(stream);

    let policy = Policy {
        view_only: flags & 1 != 0,
        max_clipboard: match (flags >> 1) & 3 {
            0 => None,
            1 => Some(0),
            _ => Some(u32::from(cap)),
        },
        view_only_clipboard: flags & 8 != 0,
    };
    let mut filter = ClientFilter::new(client_filter::Policy {
        view_only: policy.view_only,
        max_clipboard: policy.max_clipboard,
        view_only_clipboard: policy.view_only_clipboard,
    });
    let mut out = Vec::new();
    let failed = stream
        .chunks(chunk)
        .any(|c| filter.filter(c, &mut out).is_err());
    let (kept, dropped, walk_failed) = walk(&policy, stream);
    assert_eq!(failed, walk_failed, "filter and walk disagree on failure");
    assert!(
        out[..] == kept[..],
        "filter kept {} bytes, walk {}",
        out.len(),
        kept.len()
    );
    if !failed {
        assert_eq!(filter.dropped(), dropped, "dropped message count");
        if !policy.view_only && policy.max_clipboard.is_none() {
            // Everything passes, except the start of a header still being read.
            assert!(stream.starts_with(&out), "no policy must pass everything");
            assert!(
                stream.len() - out.len() < MAX_HEADER,
                "held back more than a header"
            );
        }
    }
});
