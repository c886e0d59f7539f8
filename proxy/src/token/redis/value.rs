//! The values of registry entries.
//!
//! websockify's `TokenRedis` reads `{"host": "h:p"}` or plain `h:p`; darts also takes
//! `unix_socket:/path` and a JSON string. darts' own entries are the same JSON object
//! (so the `host` field stays readable by websockify-era tooling) with darts' fields
//! beside it: `darts` (format version, which also marks the entry as darts'), expiry,
//! one-shot flag, label, view-only, clipboard cap, security mode, the server name for
//! x509, and the VNC password sealed (see `seal`). A darts entry is only ever taken from
//! a digest key: found under a plain key it is refused, so a digest cannot stand in for
//! the token it was made from.
//!
//! With the registry secret, every field of darts' entry is authenticated (`mac`, see
//! `auth`), together with the digest it is stored under: a gateway that has the secret
//! refuses an entry changed in any way, copied under another token's key, or written
//! without the secret (websockify's format, or darts' without `mac`). Without the
//! secret a gateway trusts Redis, as websockify does, and can check nothing.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use darts_vnc::vnc_auth::Password;
use rustls::pki_types::ServerName;
use serde::{Deserialize, Serialize};

use super::auth::{Authenticator, Canonical};
use super::seal::{SealError, SealKey};
use crate::rfb::BackendSecurity;
use crate::route::{Route, TokenKey};
use crate::target::Target;

/// Version of darts' entry format (2: every field authenticated).
const FORMAT: u8 = 2;
/// Names the entry tag's key and the canonical encoding it covers.
const MAC_LABEL: &[u8] = b"darts token-redis entry v2\0";

/// Why an entry cannot be used. Never holds a token or a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// The value (or a darts entry's `host`) is not a target.
    #[error("not a target: expected {{\"host\": \"h:p\"}}, h:p or unix_socket:/path")]
    Target,
    /// A darts entry found under a websockify plain-token key.
    #[error("a darts entry under a plain token key is ignored")]
    DartsUnderPlainKey,
    /// Not darts' entry JSON, or fields that contradict each other.
    #[error("malformed darts entry: {0}")]
    Malformed(String),
    /// Written by a newer darts in a format this gateway cannot read.
    #[error("darts entry format {0} is newer than this gateway's")]
    Format(u8),
    /// A `security` value this gateway does not know.
    #[error("unknown security mode {0:?}")]
    Security(String),
    /// A VNC password to seal or open, and no registry secret.
    #[error("the entry's VNC password is sealed and no registry secret (token_redis_key) is set")]
    NoSealKey,
    /// An x509 entry, and this gateway has no VNC client certificate.
    #[error("the entry needs x509 and this gateway has no VNC client certificate")]
    NoClientCertificate,
    /// The x509 server name is not a valid DNS name or IP address.
    #[error("x509 server name {0:?} is not valid")]
    ServerName(String),
    /// The tag is missing or does not verify with the registry secret.
    #[error("entry not authenticated by token_redis_key (changed, copied from another token, or written without the secret)")]
    Unauthenticated,
    /// Sealing or opening the VNC password failed.
    #[error(transparent)]
    Seal(#[from] SealError),
}

impl ValueError {
    /// The entry is fine but this gateway lacks what it needs to use it: the answer is
    /// "unavailable", not "unknown token".
    pub fn is_configuration(&self) -> bool {
        matches!(self, Self::NoSealKey | Self::NoClientCertificate)
    }
}

/// What a gateway brings to read darts' entries.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadContext<'a> {
    /// The registry secret: entries must verify, and sealed passwords can be opened.
    pub seal: Option<&'a SealKey>,
    /// This gateway's VNC client certificate, for x509 entries.
    pub x509_client: Option<&'a Arc<rustls::ClientConfig>>,
}

/// darts' own entry.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DartsEntry {
    host: String,
    darts: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "is_false")]
    one_shot: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    label: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    view_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_clipboard: Option<u32>,
    #[serde(default, skip_serializing_if = "is_false")]
    view_only_clipboard: bool,
    security: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    server_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password: Option<String>,
    /// The tag over every other field and the digest (`canonical`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mac: Option<String>,
}

impl DartsEntry {
    /// Every field but `mac`, bound to the digest the entry is stored under.
    fn canonical(&self, key: &TokenKey) -> Canonical {
        Canonical::new("darts-entry", self.darts)
            .bytes(key.as_bytes())
            .str(&self.host)
            .opt_u64(self.expires_ms)
            .bool(self.one_shot)
            .opt_str(self.label.as_deref())
            .bool(self.view_only)
            .opt_u64(self.max_clipboard.map(u64::from))
            .bool(self.view_only_clipboard)
            .str(&self.security)
            .opt_str(self.server_name.as_deref())
            .opt_str(self.password.as_deref())
    }

    /// Refuses the entry unless its tag is the secret's for these fields and `key`.
    fn authenticate(&self, key: &TokenKey, seal: &SealKey) -> Result<(), ValueError> {
        let genuine = self.darts == FORMAT
            && self.mac.as_deref().is_some_and(|tag| {
                Authenticator::new(seal, MAC_LABEL).verify(&self.canonical(key), tag)
            });
        if genuine {
            Ok(())
        } else {
            Err(ValueError::Unauthenticated)
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The target of an entry found under a plain token (websockify's key).
pub fn parse_websockify(value: &str) -> Result<Target, ValueError> {
    let text = value.trim();
    if !text.starts_with(['{', '"']) {
        return Target::parse(text).ok_or(ValueError::Target);
    }
    match serde_json::from_str::<serde_json::Value>(text).map_err(|_| ValueError::Target)? {
        serde_json::Value::String(s) => Target::parse(&s).ok_or(ValueError::Target),
        serde_json::Value::Object(fields) => {
            if fields.contains_key("darts") {
                return Err(ValueError::DartsUnderPlainKey);
            }
            let host = fields
                .get("host")
                .and_then(|h| h.as_str())
                .ok_or(ValueError::Target)?;
            // websockify's JSON token API spells the port apart; accept it here too.
            let port = match fields.get("port") {
                None => None,
                Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(_) => return Err(ValueError::Target),
            };
            match port {
                Some(p) if !host.contains(':') || host.starts_with('[') => {
                    Target::parse(&format!("{host}:{p}"))
                }
                _ => Target::parse(host),
            }
            .ok_or(ValueError::Target)
        }
        _ => Err(ValueError::Target),
    }
}

/// darts' entry for `route` under the digest `key`: the password sealed, x509 material
/// left out (each gateway brings its own client certificate), every field authenticated
/// when there is a secret.
pub fn encode(key: &TokenKey, route: &Route, seal: Option<&SealKey>) -> Result<String, ValueError> {
    let mode = route.security.name();
    let (password, server_name) = match &route.security {
        BackendSecurity::None => (None, None),
        BackendSecurity::VncPassword(p) => (Some(p), None),
        BackendSecurity::X509 {
            server_name,
            password,
            ..
        } => (password.as_ref(), Some(server_name.to_str().into_owned())),
    };
    let password = match password {
        None => None,
        Some(p) => Some(
            seal.ok_or(ValueError::NoSealKey)?
                .seal(key, mode, p.expose())?,
        ),
    };
    let mut entry = DartsEntry {
        host: route.target.to_string(),
        darts: FORMAT,
        expires_ms: route.expires_at.map(unix_ms),
        one_shot: route.one_shot,
        label: route.label.as_deref().map(str::to_owned),
        view_only: route.view_only,
        max_clipboard: route.max_clipboard,
        view_only_clipboard: route.view_only_clipboard,
        security: mode.to_owned(),
        server_name,
        password,
        mac: None,
    };
    if let Some(seal) = seal {
        entry.mac = Some(Authenticator::new(seal, MAC_LABEL).sign(&entry.canonical(key)));
    }
    serde_json::to_string(&entry).map_err(|e| ValueError::Malformed(e.to_string()))
}

/// The route of darts' entry found under the digest `key`; with a secret, only if the
/// entry is authenticated, checked before any field is used.
pub fn decode(key: &TokenKey, value: &str, ctx: ReadContext<'_>) -> Result<Route, ValueError> {
    let entry: DartsEntry =
        serde_json::from_str(value).map_err(|e| ValueError::Malformed(e.to_string()))?;
    if entry.darts > FORMAT {
        return Err(ValueError::Format(entry.darts));
    }
    if let Some(seal) = ctx.seal {
        entry.authenticate(key, seal)?;
    }
    let target = Target::parse(&entry.host).ok_or(ValueError::Target)?;
    let password = |mode: &str| -> Result<Option<Password>, ValueError> {
        match &entry.password {
            None => Ok(None),
            Some(sealed) => {
                let seal = ctx.seal.ok_or(ValueError::NoSealKey)?;
                Ok(Some(Password::new(seal.open(key, mode, sealed)?)))
            }
        }
    };
    let security = match entry.security.as_str() {
        "none" => BackendSecurity::None,
        mode @ "vnc-password" => BackendSecurity::VncPassword(
            password(mode)?.ok_or_else(|| ValueError::Malformed("no password".into()))?,
        ),
        mode @ ("x509" | "x509+password") => {
            let tls = ctx
                .x509_client
                .ok_or(ValueError::NoClientCertificate)?
                .clone();
            let name = entry
                .server_name
                .clone()
                .unwrap_or_else(|| "localhost".into());
            let server_name =
                ServerName::try_from(name.clone()).map_err(|_| ValueError::ServerName(name))?;
            let password = password(mode)?;
            if (mode == "x509+password") != password.is_some() {
                return Err(ValueError::Malformed("password and mode disagree".into()));
            }
            BackendSecurity::X509 {
                tls,
                server_name,
                password,
            }
        }
        other => return Err(ValueError::Security(other.to_owned())),
    };
    let mut route = Route::new(target)
        .security(security)
        .view_only(entry.view_only)
        .max_clipboard(entry.max_clipboard)
        .view_only_clipboard(entry.view_only_clipboard)
        .one_shot(entry.one_shot);
    if let Some(label) = entry.label {
        route = route.label(label);
    }
    if let Some(ms) = entry.expires_ms {
        route = route.expires_at(UNIX_EPOCH + Duration::from_millis(ms));
    }
    Ok(route)
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn tcp(host: &str, port: u16) -> Target {
        Target::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn websockify_values() {
        assert_eq!(
            parse_websockify(r#"{"host":"127.0.0.1:5901"}"#).unwrap(),
            tcp("127.0.0.1", 5901)
        );
        assert_eq!(
            parse_websockify("vnc.example:5900\n").unwrap(),
            tcp("vnc.example", 5900)
        );
        assert_eq!(
            parse_websockify(r#""10.0.0.2:5902""#).unwrap(),
            tcp("10.0.0.2", 5902)
        );
        assert_eq!(
            parse_websockify(r#"{"host":"h","port":5903}"#).unwrap(),
            tcp("h", 5903)
        );
        assert_eq!(
            parse_websockify("unix_socket:/run/vnc.sock").unwrap(),
            Target::Unix(PathBuf::from("/run/vnc.sock"))
        );
        assert_eq!(
            parse_websockify(r#"{"host":"unix_socket:/run/v.sock"}"#).unwrap(),
            Target::Unix(PathBuf::from("/run/v.sock"))
        );
        for bad in [
            "",
            "nohost",
            r#"{"port":1}"#,
            "[1,2]",
            "{broken",
            r#"{"host":7}"#,
        ] {
            assert!(parse_websockify(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            parse_websockify(r#"{"host":"h:1","darts":1,"security":"none"}"#),
            Err(ValueError::DartsUnderPlainKey)
        ));
    }

    #[test]
    fn darts_entries_round_trip_with_a_sealed_password() {
        let key = TokenKey::of("tok");
        let seal = SealKey::from_secret(&[1u8; 32]);
        let expires = UNIX_EPOCH + Duration::from_millis(1_900_000_000_123);
        let route = Route::new(Target::Unix("/s/vnc.sock".into()))
            .security(BackendSecurity::VncPassword(Password::new(*b"pw123456")))
            .view_only(true)
            .max_clipboard(Some(0))
            .one_shot(true)
            .label("darts-abc")
            .view_only_clipboard(true)
            .expires_at(expires);
        let text = encode(&key, &route, Some(&seal)).unwrap();
        assert!(!text.contains("pw123456"), "{text}");
        // websockify-era tooling still finds the target.
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["host"], "unix_socket:/s/vnc.sock");
        let ctx = ReadContext {
            seal: Some(&seal),
            x509_client: None,
        };
        assert_eq!(decode(&key, &text, ctx).unwrap(), route);
        // Without the secret, or for another digest, the password does not open.
        assert!(matches!(
            decode(&key, &text, ReadContext::default()),
            Err(ValueError::NoSealKey)
        ));
        assert!(decode(&TokenKey::of("other"), &text, ctx).is_err());
        // A tampered field fails closed.
        let tampered = text.replace("vnc-password", "x509+password");
        assert!(decode(&key, &tampered, ctx).is_err());
        // Not publishable without the secret.
        assert!(matches!(
            encode(&key, &route, None),
            Err(ValueError::NoSealKey)
        ));
    }

    #[test]
    fn with_the_secret_every_field_is_authenticated() {
        let key = TokenKey::of("tok");
        let seal = SealKey::from_secret(&[1u8; 32]);
        let ctx = ReadContext {
            seal: Some(&seal),
            x509_client: None,
        };
        let route = Route::new(tcp("10.0.0.1", 5901))
            .view_only(true)
            .max_clipboard(Some(0))
            .one_shot(true)
            .label("darts-abc")
            .expires_at(UNIX_EPOCH + Duration::from_millis(1_900_000_000_000));
        let text = encode(&key, &route, Some(&seal)).unwrap();
        assert_eq!(decode(&key, &text, ctx).unwrap(), route);
        let genuine: serde_json::Value = serde_json::from_str(&text).unwrap();
        let changes: [(&str, serde_json::Value); 9] = [
            ("host", "10.6.6.6:5901".into()),
            ("view_only", false.into()),
            ("one_shot", false.into()),
            ("expires_ms", 1_900_000_999_000u64.into()),
            ("label", "darts-other".into()),
            ("max_clipboard", 1_000_000.into()),
            ("view_only_clipboard", true.into()),
            ("darts", 1.into()),
            ("mac", "00".repeat(32).into()),
        ];
        for (field, value) in changes {
            let mut e = genuine.clone();
            e[field] = value;
            let err = decode(&key, &e.to_string(), ctx).unwrap_err();
            assert!(matches!(err, ValueError::Unauthenticated), "{field}: {err}");
        }
        let mut e = genuine.clone();
        e.as_object_mut().unwrap().remove("mac");
        assert!(matches!(
            decode(&key, &e.to_string(), ctx),
            Err(ValueError::Unauthenticated)
        ));
        // Copied under another token's digest, or signed with another secret.
        assert!(decode(&TokenKey::of("other"), &text, ctx).is_err());
        let other = SealKey::from_secret(&[2u8; 32]);
        let forged = encode(&key, &route, Some(&other)).unwrap();
        assert!(decode(&key, &forged, ctx).is_err());
        // Unknown fields are not silently carried.
        let mut e = genuine;
        e["extra"] = 1.into();
        assert!(decode(&key, &e.to_string(), ctx).is_err());
    }

    #[test]
    fn x509_entries_use_the_reading_gateways_certificate() {
        let key = TokenKey::of("tok");
        let seal = SealKey::from_secret(&[1u8; 32]);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        );
        let route = Route::new(tcp("10.1.1.1", 5901)).security(BackendSecurity::X509 {
            tls: tls.clone(),
            server_name: ServerName::try_from("vnc.example").unwrap(),
            password: Some(Password::new(*b"x")),
        });
        let text = encode(&key, &route, Some(&seal)).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["security"], "x509+password");
        assert_eq!(json["server_name"], "vnc.example");
        let no_cert = ReadContext {
            seal: Some(&seal),
            x509_client: None,
        };
        let err = decode(&key, &text, no_cert).unwrap_err();
        assert!(err.is_configuration(), "{err}");
        let with_cert = ReadContext {
            seal: Some(&seal),
            x509_client: Some(&tls),
        };
        // Same Arc: the gateway's own configuration is used.
        assert_eq!(decode(&key, &text, with_cert).unwrap(), route);
    }

    #[test]
    fn malformed_darts_entries_are_refused() {
        let key = TokenKey::of("tok");
        for bad in [
            "h:1",
            r#"{"host":"h:1"}"#,
            r#"{"host":"h:1","darts":1,"security":"telepathy"}"#,
            r#"{"host":"h:1","darts":9,"security":"none"}"#,
            r#"{"host":"h:1","darts":2,"security":"none","sneaky":1}"#,
            r#"{"host":"nope","darts":1,"security":"none"}"#,
            r#"{"host":"h:1","darts":1,"security":"vnc-password"}"#,
        ] {
            assert!(decode(&key, bad, ReadContext::default()).is_err(), "{bad}");
        }
        let ok = r#"{"host":"h:1","darts":1,"security":"none"}"#;
        assert_eq!(
            decode(&key, ok, ReadContext::default()).unwrap(),
            Route::new(tcp("h", 1))
        );
    }
}
