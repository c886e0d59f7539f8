//! VNC passwords published in Redis are sealed (ChaCha20-Poly1305) under a key that only
//! gateways hold: HMAC-SHA256 of the registry secret (`token_redis_key`) over a label and
//! the token's digest. So each entry has its own key, Redis alone reveals no password,
//! and a sealed password copied under another token's key does not open.
//!
//! Why the secret and not the token itself: the node that publishes a route often no
//! longer has the token. The session manager keeps only digests, re-registers routes
//! from them after a restart (re-adoption), on extension and on every re-publication
//! after Redis lost its data. A key derived from the token could be computed only at the
//! moment a link is minted, and the route could never be published again afterwards.

use std::fmt;
use std::path::Path;

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::route::TokenKey;

/// Shortest registry secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 32;
/// Label mixed into every derived key, with the format version.
const LABEL: &[u8] = b"darts token-redis vnc password v1\0";
/// Prefix of a sealed value, naming its format.
const FORMAT: &str = "v1.";

/// Sealing or opening failed. Never carries the secret or the plaintext.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The secret file could not be read.
    #[error("cannot read the registry secret {path}: {source}")]
    Read {
        /// The secret file.
        path: String,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The secret is shorter than [`MIN_SECRET_LEN`].
    #[error("the registry secret {path} holds {len} bytes; at least {MIN_SECRET_LEN} are needed")]
    TooShort {
        /// The secret file.
        path: String,
        /// Its length, line end excluded.
        len: usize,
    },
    /// No nonce: the system random generator failed.
    #[error("the system random generator failed")]
    Random,
    /// Not a `v1.` value, bad hex, too short, or it fails authentication.
    #[error("sealed password malformed or tampered with")]
    Broken,
}

/// The secret every gateway of one registry shares.
#[derive(Clone)]
pub struct SealKey(hmac::Key);

impl SealKey {
    /// Reads the secret from `path` (trailing line ends ignored).
    pub fn from_file(path: &Path) -> Result<Self, SealError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| SealError::Read {
            path: shown.clone(),
            source,
        })?;
        let trimmed = trim_line_end(&bytes);
        if trimmed.len() < MIN_SECRET_LEN {
            return Err(SealError::TooShort {
                path: shown,
                len: trimmed.len(),
            });
        }
        Ok(Self::from_secret(trimmed))
    }

    /// From the secret's bytes (tests; callers check the length).
    pub fn from_secret(secret: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// A key of its own for one use of the secret (`label` names the use and its
    /// version), so a tag made for one purpose never stands for another.
    pub(crate) fn derive(&self, label: &[u8]) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, hmac::sign(&self.0, label).as_ref())
    }

    fn entry_key(&self, token: &TokenKey) -> Result<LessSafeKey, SealError> {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(LABEL);
        ctx.update(token.as_bytes());
        let tag = ctx.sign();
        // HMAC-SHA256 gives exactly the 32 bytes ChaCha20-Poly1305 takes.
        let unbound =
            UnboundKey::new(&CHACHA20_POLY1305, tag.as_ref()).map_err(|_| SealError::Broken)?;
        Ok(LessSafeKey::new(unbound))
    }

    /// Seals `plain` for the entry of `token`; `purpose` (e.g. the security mode) is
    /// authenticated too. Returns `v1.` and hex of nonce, ciphertext and tag.
    pub fn seal(&self, token: &TokenKey, purpose: &str, plain: &[u8]) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SealError::Random)?;
        let mut data = plain.to_vec();
        self.entry_key(token)?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(purpose.as_bytes()),
                &mut data,
            )
            .map_err(|_| SealError::Broken)?;
        let mut out = String::with_capacity(FORMAT.len() + 2 * (NONCE_LEN + data.len()));
        out.push_str(FORMAT);
        for b in nonce.iter().chain(data.iter()) {
            out.push_str(&format!("{b:02x}"));
        }
        Ok(out)
    }

    /// Opens what `seal` made for the same token and purpose.
    pub fn open(
        &self,
        token: &TokenKey,
        purpose: &str,
        sealed: &str,
    ) -> Result<Vec<u8>, SealError> {
        let hex = sealed.strip_prefix(FORMAT).ok_or(SealError::Broken)?;
        let mut bytes = from_hex(hex).ok_or(SealError::Broken)?;
        if bytes.len() < NONCE_LEN + aead::MAX_TAG_LEN {
            return Err(SealError::Broken);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[..NONCE_LEN]);
        let body = &mut bytes[NONCE_LEN..];
        let plain = self
            .entry_key(token)?
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(purpose.as_bytes()),
                body,
            )
            .map_err(|_| SealError::Broken)?;
        Ok(plain.to_vec())
    }
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKey(***)")
    }
}

fn trim_line_end(bytes: &[u8]) -> &[u8] {
    let mut end = bytes.len();
    while end > 0 && matches!(bytes[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    &bytes[..end]
}

pub(crate) fn from_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SealKey {
        SealKey::from_secret(&[7u8; 32])
    }

    #[test]
    fn round_trip() {
        let t = TokenKey::of("tok");
        let sealed = key().seal(&t, "vnc-password", b"s3cret").unwrap();
        assert!(sealed.starts_with("v1."));
        assert!(!sealed.contains("s3cret"));
        assert_eq!(key().open(&t, "vnc-password", &sealed).unwrap(), b"s3cret");
        // A fresh nonce each time.
        assert_ne!(sealed, key().seal(&t, "vnc-password", b"s3cret").unwrap());
    }

    #[test]
    fn tampering_and_misuse_are_detected() {
        let t = TokenKey::of("tok");
        let sealed = key().seal(&t, "vnc-password", b"s3cret").unwrap();
        // One flipped hex digit in the ciphertext.
        let mut chars: Vec<char> = sealed.chars().collect();
        let i = chars.len() - 40;
        chars[i] = if chars[i] == '0' { '1' } else { '0' };
        let flipped: String = chars.into_iter().collect();
        assert!(key().open(&t, "vnc-password", &flipped).is_err());
        // Another token's entry, another purpose, another secret, truncation, junk.
        assert!(key()
            .open(&TokenKey::of("other"), "vnc-password", &sealed)
            .is_err());
        assert!(key().open(&t, "x509+password", &sealed).is_err());
        assert!(SealKey::from_secret(&[8u8; 32])
            .open(&t, "vnc-password", &sealed)
            .is_err());
        assert!(key().open(&t, "vnc-password", &sealed[..20]).is_err());
        assert!(key().open(&t, "vnc-password", "v1.zz").is_err());
        assert!(key().open(&t, "vnc-password", "s3cret").is_err());
    }

    #[test]
    fn secret_files_must_be_long_enough() {
        let dir = std::env::temp_dir().join(format!("darts-seal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let short = dir.join("short");
        std::fs::write(&short, b"too short\n").unwrap();
        assert!(matches!(
            SealKey::from_file(&short),
            Err(SealError::TooShort { len: 9, .. })
        ));
        let good = dir.join("good");
        std::fs::write(&good, [b'k'; 40]).unwrap();
        let k = SealKey::from_file(&good).unwrap();
        assert_eq!(format!("{k:?}"), "SealKey(***)");
        assert!(matches!(
            SealKey::from_file(&dir.join("missing")),
            Err(SealError::Read { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
