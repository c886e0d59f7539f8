//! Random names, tokens and passwords, from the operating system's generator (ring).

use ring::rand::{SecureRandom, SystemRandom};

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// `len` characters drawn uniformly from `alphabet` (rejection sampling, no modulo bias).
fn draw(alphabet: &[u8], len: usize) -> Result<String, ring::error::Unspecified> {
    let rng = SystemRandom::new();
    let limit = 256 - (256 % alphabet.len());
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        rng.fill(&mut buf)?;
        for &b in &buf {
            if (b as usize) < limit && out.len() < len {
                out.push(alphabet[b as usize % alphabet.len()] as char);
            }
        }
    }
    Ok(out)
}

/// A session name: `darts-` and 12 lowercase letters or digits.
pub fn session_name() -> Result<String, ring::error::Unspecified> {
    Ok(format!("darts-{}", draw(LOWER, 12)?))
}

/// An access token: 32 letters and digits (190 bits), URL-safe as is.
pub fn token() -> Result<String, ring::error::Unspecified> {
    draw(ALNUM, 32)
}

/// A VNC password for QEMU. Only darts ever uses it; VNC authentication reads 8 bytes.
pub fn vnc_password() -> Result<String, ring::error::Unspecified> {
    draw(ALNUM, 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_uniqueness() {
        let a = token().unwrap();
        let b = token().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert!(super::super::record::is_session_name(
            &session_name().unwrap()
        ));
        assert_eq!(vnc_password().unwrap().len(), 8);
    }
}
