//! `darts config show`: every effective value and where it came from, as TOML an operator
//! can paste back, secrets hidden.

use super::keys::KEYS;
use super::layers::Loaded;

/// What a hidden secret prints as.
pub const HIDDEN: &str = "\"********\"";

/// Whether a key holds a secret by its name: `email_passwd`, and any key whose name says
/// passwd, password, secret or key.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["passwd", "password", "secret", "key"]
        .iter()
        .any(|w| key.contains(w))
}

/// The text to show instead of `value` when it is a secret: a secret key's value that is
/// not empty and not a file path (`certificate_key = "/etc/ssl/private/x.key"` is shown).
pub fn redacted(key: &str, value: &toml::Value) -> Option<&'static str> {
    if key == "token_redis" {
        return value
            .as_str()
            .is_some_and(redis_source_has_password)
            .then_some(HIDDEN);
    }
    if !is_secret_key(key) {
        return None;
    }
    match value {
        toml::Value::String(s) if s.is_empty() || is_path(s) => None,
        _ => Some(HIDDEN),
    }
}

/// A Redis source with a password: `redis://user:pw@host` or websockify's
/// `host:port:db:password[:namespace]`.
fn redis_source_has_password(s: &str) -> bool {
    if s.contains("://") {
        return s.contains('@');
    }
    s.split(':').nth(3).is_some_and(|pw| !pw.is_empty())
}

fn is_path(s: &str) -> bool {
    s.starts_with('/') && !s.contains(['\n', '\r'])
}

/// The whole listing: one `key = value  # origin` line per key, in the table's order.
pub fn render(loaded: &Loaded) -> String {
    let table = loaded.config.to_table();
    let mut out = String::new();
    out.push_str("# Effective configuration of darts. Read from:\n");
    if loaded.files.is_empty() {
        out.push_str("#   (no file: defaults and command line)\n");
    }
    for f in &loaded.files {
        out.push_str(&format!("#   {}\n", f.display()));
    }
    let lines: Vec<(String, String)> = KEYS
        .iter()
        .filter_map(|k| {
            let value = table.get(k.name)?;
            let shown = redacted(k.name, value).map_or_else(|| value.to_string(), str::to_owned);
            Some((
                format!("{} = {shown}", k.name),
                loaded.origin(k.name).to_string(),
            ))
        })
        .collect();
    let width = lines
        .iter()
        .map(|(l, _)| l.chars().count())
        .filter(|w| *w <= 60)
        .max()
        .unwrap_or(0);
    for (line, origin) in lines {
        let pad = width.saturating_sub(line.chars().count());
        out.push_str(&format!("{line}{}  # {origin}\n", " ".repeat(pad)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_sources_are_hidden_when_they_hold_a_password() {
        let s = |v: &str| toml::Value::String(v.into());
        assert_eq!(
            redacted("token_redis", &s("r.example:6379:0:pw")),
            Some(HIDDEN)
        );
        assert_eq!(
            redacted("token_redis", &s("redis://:pw@r.example/0")),
            Some(HIDDEN)
        );
        assert_eq!(redacted("token_redis", &s("r.example:6379:0::ns")), None);
        assert_eq!(redacted("token_redis", &s("redis://r.example/0")), None);
    }

    #[test]
    fn secrets_by_name_unless_a_path_or_empty() {
        let s = |v: &str| toml::Value::String(v.into());
        assert_eq!(redacted("email_passwd", &s("hunter2")), Some(HIDDEN));
        assert_eq!(redacted("ldap_bind_password", &s("x")), Some(HIDDEN));
        assert_eq!(redacted("api_secret", &s("x")), Some(HIDDEN));
        assert_eq!(
            redacted("certificate_key", &s("/etc/ssl/private/d.key")),
            None
        );
        assert_eq!(
            redacted("certificate_key", &s("-----BEGIN PRIVATE KEY-----\nMII")),
            Some(HIDDEN)
        );
        assert_eq!(redacted("email_passwd", &s("")), None);
        assert_eq!(redacted("email_from", &s("darts@example.org")), None);
    }

    #[test]
    fn debug_of_config_hides_the_mail_password() {
        let c = crate::config::Config {
            email_passwd: "hunter2".into(),
            email_from: "darts@example.org".into(),
            ..Default::default()
        };
        let d = format!("{c:?}");
        assert!(!d.contains("hunter2"), "{d}");
        assert!(d.contains("email_passwd: \"********\""), "{d}");
        assert!(d.contains("darts@example.org"), "{d}");
        assert!(d.contains("service_max_session_nb: 10"), "{d}");
    }
}
