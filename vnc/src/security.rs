//! Security types (RFC 6143 §7.1.2, §7.2) and VeNCrypt sub-types.

/// RFB security types darts knows.
pub mod kind {
    /// Sent instead of a list when the server refuses the connection; a reason follows.
    pub const INVALID: u8 = 0;
    /// No authentication.
    pub const NONE: u8 = 1;
    /// DES challenge-response with a password of up to 8 bytes (see `vnc_auth`).
    pub const VNC_AUTH: u8 = 2;
    /// TLS first, then a sub-type (see `vencrypt`).
    pub const VENCRYPT: u8 = 19;
}

/// VeNCrypt sub-types. QEMU offers X509None with `tls-creds-x509`, X509Vnc with a
/// password as well, and TLSNone/TLSVnc with anonymous `tls-creds-anon`.
pub mod vencrypt {
    /// Anonymous TLS, no authentication inside.
    pub const TLS_NONE: u32 = 257;
    /// Anonymous TLS, then VNC authentication.
    pub const TLS_VNC: u32 = 258;
    /// TLS with the server's x509 certificate, no authentication inside.
    pub const X509_NONE: u32 = 260;
    /// TLS with the server's x509 certificate, then VNC authentication.
    pub const X509_VNC: u32 = 261;
}

/// Longest failure reason accepted from a peer.
pub const MAX_REASON: u32 = 4096;

/// What the client side requires of the server's security.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// No TLS: security None or VNC authentication.
    Plain,
    /// VeNCrypt with x509 certificates (X509None or X509Vnc). Never falls back to plain.
    X509,
    /// VeNCrypt with anonymous TLS (TLSNone or TLSVnc). Never falls back to plain.
    AnonTls,
}

/// Human name of a security type for logs.
pub fn name(kind: u32) -> &'static str {
    match kind {
        0 => "Invalid",
        1 => "None",
        2 => "VNC authentication",
        19 => "VeNCrypt",
        257 => "VeNCrypt TLSNone",
        258 => "VeNCrypt TLSVnc",
        260 => "VeNCrypt X509None",
        261 => "VeNCrypt X509Vnc",
        _ => "other",
    }
}
