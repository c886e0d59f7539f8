//! Client-to-server payload unmasking (RFC 6455 §5.3), in place and resumable.
//!
//! The pump unmasks a frame's payload chunk by chunk as it arrives, so the function takes
//! the offset of the chunk within the payload: byte `i` of the payload is XORed with
//! `key[i % 4]`. The bulk is done eight bytes at a time on native words, which the
//! compiler turns into vector instructions; no `unsafe` is needed.

/// XORs `buf` with `key`, where `buf[0]` is byte number `offset` of the frame's payload.
pub fn apply(buf: &mut [u8], key: [u8; 4], offset: u64) {
    // Rotate the key so that it starts at this chunk's phase.
    let phase = (offset % 4) as usize;
    let key = [
        key[phase],
        key[(phase + 1) % 4],
        key[(phase + 2) % 4],
        key[(phase + 3) % 4],
    ];
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut words = buf.chunks_exact_mut(8);
    for word in &mut words {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(word);
        word.copy_from_slice(&(u64::from_ne_bytes(raw) ^ wide).to_ne_bytes());
    }
    // The tail starts at a multiple of 8 bytes into the chunk, so the phase is unchanged.
    for (i, byte) in words.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(buf: &mut [u8], key: [u8; 4], offset: u64) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= key[((offset + i as u64) % 4) as usize];
        }
    }

    #[test]
    fn matches_the_bytewise_definition_at_every_length_and_phase() {
        let key = [0x12, 0x34, 0x56, 0x78];
        for len in 0..40 {
            for offset in 0..9u64 {
                let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
                let mut fast = data.clone();
                let mut slow = data.clone();
                apply(&mut fast, key, offset);
                reference(&mut slow, key, offset);
                assert_eq!(fast, slow, "len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn chunked_unmasking_equals_whole_unmasking() {
        let key = [9, 8, 7, 6];
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let mut whole = data.clone();
        apply(&mut whole, key, 0);
        let mut chunked = data;
        let mut pos = 0;
        for size in [1usize, 3, 17, 64, 5, 910] {
            apply(&mut chunked[pos..pos + size], key, pos as u64);
            pos += size;
        }
        assert_eq!(whole, chunked);
    }
}
