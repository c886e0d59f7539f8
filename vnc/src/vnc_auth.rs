//! VNC authentication (RFC 6143 §7.2.2): the client DES-encrypts the server's 16-byte
//! challenge with the password as key. Only the first 8 bytes of a password count, and
//! each key byte is used with its bits reversed (a quirk of the original implementation).

use des::cipher::generic_array::GenericArray;
use des::cipher::{BlockEncrypt, KeyInit};

/// Length of the challenge and of the response.
pub const CHALLENGE_LEN: usize = 16;
/// Bytes of a password VNC authentication uses.
pub const MAX_PASSWORD: usize = 8;

/// A password that never prints itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Vec<u8>);

impl Password {
    /// Wraps the password's bytes; longer than 8 bytes is allowed (see `is_truncated`).
    pub fn new(password: impl Into<Vec<u8>>) -> Self {
        Self(password.into())
    }

    /// True if VNC authentication would ignore part of it.
    pub fn is_truncated(&self) -> bool {
        self.0.len() > MAX_PASSWORD
    }

    /// The password's bytes, for the few places that must use them (authentication,
    /// sealing); named so that each such use stands out.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

/// The response to `challenge` for `password`.
pub fn response(challenge: &[u8; CHALLENGE_LEN], password: &Password) -> [u8; CHALLENGE_LEN] {
    let mut key = [0u8; MAX_PASSWORD];
    for (k, p) in key.iter_mut().zip(password.0.iter()) {
        *k = p.reverse_bits();
    }
    let cipher = des::Des::new(GenericArray::from_slice(&key));
    let mut out = *challenge;
    for block in out.chunks_exact_mut(8) {
        cipher.encrypt_block(GenericArray::from_mut_slice(block));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn matches_vectors_accepted_by_qemu() {
        // Vectors from an independent implementation whose answers QEMU accepted.
        let challenge: [u8; 16] = core::array::from_fn(|i| i as u8);
        let r = response(&challenge, &Password::new("password"));
        assert_eq!(r.to_vec(), hex("b866924125c8eebb9debc1db61c538e2"));
        let r = response(&[0xAA; 16], &Password::new("s3cret12"));
        assert_eq!(r.to_vec(), hex("fae90b847360a13cfae90b847360a13c"));
    }

    #[test]
    fn only_eight_bytes_count_and_debug_hides_it() {
        let c = [7u8; 16];
        assert_eq!(
            response(&c, &Password::new("12345678")),
            response(&c, &Password::new("12345678-ignored"))
        );
        assert_ne!(
            response(&c, &Password::new("12345678")),
            response(&c, &Password::new("12345679"))
        );
        assert!(Password::new("123456789").is_truncated());
        assert_eq!(format!("{:?}", Password::new("secret")), "Password(***)");
    }
}
