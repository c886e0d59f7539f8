//! The whole-connection `ClientFilter` against a reference model of QEMU's own
//! client-message reader (`darts_vnc::qemu_reader`, written in the shape of QEMU's
//! `protocol_client_msg`).
//!
//! Input: `flags, clipboard cap, cuts…, 0xFF, stream…`: flags bit 0 = view-only, bits 1-2
//! the clipboard policy (none, disabled, capped), bit 3 lets a view-only viewer receive
//! the guest's clipboard; each cut byte is the length of the next piece fed to the
//! filter (the browser's bytes arrive cut by the handshake, frames and socket reads).
//!
//! * However the stream is cut, one filter forwards the same bytes as when given the
//!   whole stream.
//! * QEMU frames the forwarded bytes exactly as the filter did, message for message,
//!   until QEMU itself would drop the client: no message boundary is ever shifted.
//! * For a view-only viewer QEMU acts on no input (key, pointer, clipboard, desktop
//!   size, xvp, QEMU key events), and becomes no clipboard peer unless allowed.

#![no_main]

use darts_fuzz::input::Input;
use darts_vnc::client_filter::{ClientFilter, Policy};
use darts_vnc::client_msg::frame;
use darts_vnc::qemu_reader::QemuReader;
use libfuzzer_sys::fuzz_target;

/// Message lengths of `bytes` as the filter's framing sees them (whole messages only).
fn lengths(mut bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    while let Some(len) = (1..=bytes.len().min(12)).find_map(|k| match frame(&bytes[..k]) {
        Ok(Some(f)) => Some(f.len),
        _ => None,
    }) {
        let Ok(len) = usize::try_from(len) else { break };
        if len > bytes.len() {
            break;
        }
        out.push(len);
        bytes = &bytes[len..];
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let flags = input.byte();
    let cap = input.byte();
    let mut cuts = Vec::new();
    loop {
        match input.byte() {
            0xFF => break,
            c => cuts.push(usize::from(c)),
        }
        if cuts.len() > 64 {
            break;
        }
    }
    let stream = input.rest();
    let policy = Policy {
        view_only: flags & 1 != 0,
        max_clipboard: match (flags >> 1) & 3 {
            0 => None,
            1 => Some(0),
            _ => Some(u32::from(cap)),
        },
        view_only_clipboard: flags & 8 != 0,
    };

    let mut whole = Vec::new();
    let whole_ok = ClientFilter::new(policy).filter(stream, &mut whole).is_ok();
    let mut filter = ClientFilter::new(policy);
    let mut out = Vec::new();
    let mut rest = stream;
    let mut cut_ok = true;
    for &c in cuts.iter().cycle().take(if cuts.is_empty() { 0 } else { 4096 }) {
        if rest.is_empty() {
            break;
        }
        let n = c.min(rest.len());
        cut_ok &= filter.filter(&rest[..n], &mut out).is_ok();
        rest = &rest[n..];
        if !cut_ok {
            break;
        }
    }
    if cut_ok && !rest.is_empty() {
        cut_ok = filter.filter(rest, &mut out).is_ok();
    }
    assert_eq!(cut_ok, whole_ok, "cuts changed whether the stream is valid");
    if whole_ok {
        assert_eq!(out, whole, "cuts changed what reaches the server");
    } else {
        assert!(whole.starts_with(&out) || out.starts_with(&whole));
    }

    let mut qemu = QemuReader::new();
    let actions = qemu.feed_framed(&whole);
    let ours = lengths(&whole);
    for (i, (action, len)) in actions.iter().enumerate() {
        if qemu.disconnected() && i == actions.len() - 1 {
            break; // QEMU dropped the client: nothing after this is read
        }
        assert_eq!(Some(len), ours.get(i), "QEMU framed message {i} ({action:?}) otherwise");
        if policy.view_only {
            assert!(!action.is_input(), "view-only input reached QEMU: {action:?}");
        }
    }
    if policy.view_only && !policy.view_only_clipboard || policy.max_clipboard == Some(0) {
        assert!(!qemu.clipboard_peer(), "QEMU would send this viewer the guest's clipboard");
    }
});
