//! `mask::apply` at arbitrary offsets and split points.
//!
//! Input: 4 key bytes, 8 offset bytes, a split count, that many split bytes, then the
//! payload. Unmasking in chunks (each at its offset in the payload) must equal unmasking
//! the whole buffer, which must equal the byte-at-a-time definition of RFC 6455 §5.3;
//! applying the mask twice gives the data back.

#![no_main]

use darts_fuzz::input::Input;
use darts_proxy::ws::mask;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let key: [u8; 4] = input.array();
    // Offsets within one frame's payload, which the parser bounds below 2^63.
    let offset = u64::from_le_bytes(input.array()) >> 1;
    let splits = usize::from(input.byte() % 16);
    let cuts: Vec<u8> = input.take(splits).to_vec();
    let payload = input.rest();

    let reference: Vec<u8> = payload
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ key[((offset % 4) as usize + i) % 4])
        .collect();

    let mut whole = payload.to_vec();
    mask::apply(&mut whole, key, offset);
    assert_eq!(whole, reference, "whole-buffer unmasking");

    let mut bounds: Vec<usize> = cuts
        .iter()
        .map(|&c| usize::from(c) * (payload.len() + 1) / 256)
        .collect();
    bounds.push(0);
    bounds.push(payload.len());
    bounds.sort_unstable();
    let mut chunked = payload.to_vec();
    for pair in bounds.windows(2) {
        let (start, end) = (pair[0], pair[1]);
        mask::apply(&mut chunked[start..end], key, offset + start as u64);
    }
    assert_eq!(chunked, whole, "chunked unmasking at {bounds:?}");

    mask::apply(&mut whole, key, offset);
    assert_eq!(whole, payload, "masking twice is the identity");
});
