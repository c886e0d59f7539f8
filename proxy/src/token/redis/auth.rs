//! Authentication of what gateways write to Redis for each other (entries, events): an
//! HMAC-SHA256 tag, under a key derived from the registry secret (`token_redis_key`) for
//! each purpose, over a canonical encoding of every field. The encoding starts with the
//! purpose and a version byte; each field is length-prefixed, so no two sets of fields
//! encode alike and a field cannot borrow bytes from its neighbour. Tags are checked in
//! constant time.

use ring::hmac;

use super::seal::{from_hex, SealKey};

/// A canonical encoding of the fields a tag covers.
#[derive(Debug, Clone)]
pub(crate) struct Canonical(Vec<u8>);

impl Canonical {
    pub(crate) fn new(purpose: &str, version: u8) -> Self {
        let mut c = Self(Vec::with_capacity(256));
        c.push(purpose.as_bytes());
        c.0.push(version);
        c
    }

    fn push(&mut self, bytes: &[u8]) {
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(bytes);
    }

    pub(crate) fn bytes(mut self, bytes: &[u8]) -> Self {
        self.push(bytes);
        self
    }

    pub(crate) fn str(self, s: &str) -> Self {
        self.bytes(s.as_bytes())
    }

    pub(crate) fn bool(mut self, b: bool) -> Self {
        self.0.push(u8::from(b));
        self
    }

    pub(crate) fn u64(mut self, n: u64) -> Self {
        self.0.extend_from_slice(&n.to_be_bytes());
        self
    }

    /// An absent field encodes apart from every present one.
    pub(crate) fn opt_str(mut self, s: Option<&str>) -> Self {
        match s {
            None => self.0.push(0),
            Some(s) => {
                self.0.push(1);
                self.push(s.as_bytes());
            }
        }
        self
    }

    pub(crate) fn opt_u64(mut self, n: Option<u64>) -> Self {
        match n {
            None => self.0.push(0),
            Some(n) => {
                self.0.push(1);
                self.0.extend_from_slice(&n.to_be_bytes());
            }
        }
        self
    }
}

/// Signs and checks one purpose's tags.
#[derive(Clone)]
pub(crate) struct Authenticator(hmac::Key);

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator(***)")
    }
}

impl Authenticator {
    /// `label` names the purpose and its version (e.g. `darts token-redis entry v2`).
    pub(crate) fn new(secret: &SealKey, label: &[u8]) -> Self {
        Self(secret.derive(label))
    }

    /// The tag of `fields`, in hex.
    pub(crate) fn sign(&self, fields: &Canonical) -> String {
        hmac::sign(&self.0, &fields.0)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Whether `tag` (hex) is the tag of `fields`; constant time in the tag's content.
    pub(crate) fn verify(&self, fields: &Canonical, tag: &str) -> bool {
        match from_hex(tag) {
            Some(tag) => hmac::verify(&self.0, &fields.0, &tag).is_ok(),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_cover_every_field_and_its_boundaries() {
        let secret = SealKey::from_secret(&[5u8; 32]);
        let auth = Authenticator::new(&secret, b"test v1\0");
        let fields = Canonical::new("p", 1).str("ab").str("c").opt_u64(Some(3));
        let tag = auth.sign(&fields);
        assert!(auth.verify(&fields, &tag));
        // Bytes moved across a field boundary, another version, an absent field.
        for other in [
            Canonical::new("p", 1).str("a").str("bc").opt_u64(Some(3)),
            Canonical::new("p", 2).str("ab").str("c").opt_u64(Some(3)),
            Canonical::new("p", 1).str("ab").str("c").opt_u64(None),
        ] {
            assert!(!auth.verify(&other, &tag));
        }
        // Another purpose's key, a damaged or truncated tag.
        assert!(!Authenticator::new(&secret, b"test v2\0").verify(&fields, &tag));
        assert!(!auth.verify(&fields, &tag[..62]));
        assert!(!auth.verify(&fields, "zz"));
        let mut flipped = tag.clone().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        assert!(!auth.verify(&fields, std::str::from_utf8(&flipped).unwrap()));
    }
}
