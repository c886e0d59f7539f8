//! Where the shared registry lives. Two spellings:
//!
//! - websockify's `TokenRedis` source, `host[:port[:db[:password[:namespace]]]]`: empty
//!   fields take their default (6379, database 0, no password, no namespace), a field
//!   holding `:` is quoted with `'` or `"`, and fields past the fifth belong to the
//!   namespace (`host::::app:tokens`). darts also takes `[v6]` hosts.
//! - a URL, as the `redis` crate reads it: `redis://[user][:password@]host[:port][/db]`,
//!   `rediss://…` (TLS, system roots), `redis+unix:///path?db=N&pass=…` or `unix:/path`;
//!   darts adds `?namespace=NAME`.
//!
//! The namespace prefixes every key with `NAME:`, as websockify does.

use std::fmt;

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};

const DEFAULT_PORT: u16 = 6379;

/// A source string that cannot be used; the message never repeats a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// Nothing but white space.
    #[error(
        "empty Redis source: expected host[:port[:db[:password[:namespace]]]] or a redis:// URL"
    )]
    Empty,
    /// An empty host, or a malformed `[v6]` host.
    #[error("Redis source has no host")]
    NoHost,
    /// The host field holds a `/`: a socket path in the wrong spelling.
    #[error("Redis host {0:?} is a path: a unix socket is unix:PATH or redis+unix://PATH")]
    Path(String),
    /// A quote left open.
    #[error("unbalanced quote in the Redis source")]
    Quote,
    /// The port is not a number from 1 to 65535.
    #[error("Redis port {0:?} is not a number from 1 to 65535")]
    Port(String),
    /// The database is not a non-negative number.
    #[error("Redis database {0:?} is not a number")]
    Database(String),
    /// The `redis` crate refused the URL or address.
    #[error("Redis URL refused: {0}")]
    Url(String),
}

/// A parsed registry source: how to connect, and the key namespace.
#[derive(Clone)]
pub struct RedisSource {
    info: ConnectionInfo,
    namespace: String,
}

impl RedisSource {
    /// Reads either spelling (see the module documentation).
    pub fn parse(source: &str) -> Result<Self, SourceError> {
        let source = source.trim();
        if source.is_empty() {
            return Err(SourceError::Empty);
        }
        if source.contains("://") || source.starts_with("unix:") {
            Self::parse_url(source)
        } else {
            Self::parse_websockify(source)
        }
    }

    /// The namespace, without the `:` that joins it to keys; empty for none.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// What every key starts with: `NAME:`, or nothing.
    pub fn key_prefix(&self) -> String {
        if self.namespace.is_empty() {
            String::new()
        } else {
            format!("{}:", self.namespace)
        }
    }

    pub(crate) fn connection_info(&self) -> ConnectionInfo {
        self.info.clone()
    }

    fn parse_websockify(source: &str) -> Result<Self, SourceError> {
        let fields = match source.strip_prefix('[') {
            Some(inner) => {
                let (host, rest) = inner.split_once(']').ok_or(SourceError::NoHost)?;
                let mut fields = vec![host.to_owned()];
                match rest.strip_prefix(':') {
                    Some(rest) => fields.extend(split_fields(rest)?),
                    None if rest.is_empty() => {}
                    None => return Err(SourceError::NoHost),
                }
                fields
            }
            None => split_fields(source)?,
        };
        let field = |i: usize| fields.get(i).map(String::as_str).unwrap_or("");
        let host = field(0).to_owned();
        if host.is_empty() {
            return Err(SourceError::NoHost);
        }
        if host.contains('/') {
            return Err(SourceError::Path(host));
        }
        let port = match field(1) {
            "" => DEFAULT_PORT,
            p => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| SourceError::Port(p.to_owned()))?,
        };
        let db = match field(2) {
            "" => 0,
            d => d
                .parse::<i64>()
                .ok()
                .filter(|d| *d >= 0)
                .ok_or_else(|| SourceError::Database(d.to_owned()))?,
        };
        let mut settings = RedisConnectionInfo::default().set_db(db);
        if !field(3).is_empty() {
            settings = settings.set_password(field(3));
        }
        let namespace = fields.get(4..).map(|f| f.join(":")).unwrap_or_default();
        let info = ConnectionAddr::Tcp(host, port)
            .into_connection_info()
            .map_err(|e| SourceError::Url(e.to_string()))?
            .set_redis_settings(settings);
        Ok(Self { info, namespace })
    }

    fn parse_url(source: &str) -> Result<Self, SourceError> {
        let (url, namespace) = take_namespace(source);
        let info = url
            .as_str()
            .into_connection_info()
            .map_err(|e| SourceError::Url(e.to_string()))?;
        Ok(Self { info, namespace })
    }
}

/// The URL without its `namespace=` query parameter, and that parameter's value.
fn take_namespace(url: &str) -> (String, String) {
    let (before_fragment, fragment) = match url.split_once('#') {
        Some((u, f)) => (u, Some(f)),
        None => (url, None),
    };
    let Some((base, query)) = before_fragment.split_once('?') else {
        return (url.to_owned(), String::new());
    };
    let mut namespace = String::new();
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.split_once('=') {
            Some(("namespace", value)) => {
                namespace = value.to_owned();
                false
            }
            _ => !pair.is_empty(),
        })
        .collect();
    let mut out = base.to_owned();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    (out, namespace)
}

/// Splits at every `:` outside quotes; a field quoted whole loses its quotes.
fn split_fields(s: &str) -> Result<Vec<String>, SourceError> {
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => current.push(c),
            (None, '\'' | '"') => quote = Some(c),
            (None, ':') => fields.push(std::mem::take(&mut current)),
            (None, c) => current.push(c),
        }
    }
    if quote.is_some() {
        return Err(SourceError::Quote);
    }
    fields.push(current);
    Ok(fields)
}

impl fmt::Display for RedisSource {
    /// Address, database and namespace; never the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.info.addr() {
            ConnectionAddr::TcpTls { .. } => "rediss",
            ConnectionAddr::Unix(_) => "redis+unix",
            _ => "redis",
        };
        write!(
            f,
            "{scheme}://{}/{}",
            self.info.addr(),
            self.info.redis_settings().db()
        )?;
        if !self.namespace.is_empty() {
            write!(f, " namespace={}", self.namespace)?;
        }
        Ok(())
    }
}

impl fmt::Debug for RedisSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisSource({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(s: &RedisSource) -> (String, u16) {
        match s.info.addr() {
            ConnectionAddr::Tcp(h, p) => (h.clone(), *p),
            other => panic!("not TCP: {other:?}"),
        }
    }

    #[test]
    fn websockify_sources_with_defaults() {
        let s = RedisSource::parse("redis.example").unwrap();
        assert_eq!(tcp(&s), ("redis.example".into(), 6379));
        assert_eq!(s.info.redis_settings().db(), 0);
        assert_eq!(s.info.redis_settings().password(), None);
        assert_eq!(s.key_prefix(), "");

        let s = RedisSource::parse("10.0.0.5:6380:3:s3cret:apps").unwrap();
        assert_eq!(tcp(&s), ("10.0.0.5".into(), 6380));
        assert_eq!(s.info.redis_settings().db(), 3);
        assert_eq!(s.info.redis_settings().password(), Some("s3cret"));
        assert_eq!(s.namespace(), "apps");
        assert_eq!(s.key_prefix(), "apps:");

        // Empty fields keep their defaults; websockify's own examples.
        let s = RedisSource::parse("my-redis-host:::verysecretpass").unwrap();
        assert_eq!(tcp(&s).1, 6379);
        assert_eq!(s.info.redis_settings().password(), Some("verysecretpass"));
        let s = RedisSource::parse("my-redis-host::::my-app:first:second").unwrap();
        assert_eq!(s.namespace(), "my-app:first:second");
        assert_eq!(s.info.redis_settings().password(), None);
    }

    #[test]
    fn quoted_fields_may_hold_colons() {
        let s = RedisSource::parse("h:6379:0:'pa:ss':\"ns:x\"").unwrap();
        assert_eq!(s.info.redis_settings().password(), Some("pa:ss"));
        assert_eq!(s.namespace(), "ns:x");
        assert_eq!(
            RedisSource::parse("h:6379:0:'open").unwrap_err(),
            SourceError::Quote
        );
    }

    #[test]
    fn bracketed_ipv6_hosts() {
        let s = RedisSource::parse("[::1]:7000").unwrap();
        assert_eq!(tcp(&s), ("::1".into(), 7000));
        assert!(RedisSource::parse("[::1]x").is_err());
    }

    #[test]
    fn bad_websockify_sources_are_explained() {
        assert_eq!(RedisSource::parse("  ").unwrap_err(), SourceError::Empty);
        assert_eq!(
            RedisSource::parse(":6379").unwrap_err(),
            SourceError::NoHost
        );
        assert_eq!(
            RedisSource::parse("/run/redis.sock").unwrap_err(),
            SourceError::Path("/run/redis.sock".into())
        );
        assert_eq!(
            RedisSource::parse("h:port").unwrap_err(),
            SourceError::Port("port".into())
        );
        assert_eq!(
            RedisSource::parse("h:0").unwrap_err(),
            SourceError::Port("0".into())
        );
        assert_eq!(
            RedisSource::parse("h:6379:x").unwrap_err(),
            SourceError::Database("x".into())
        );
    }

    #[test]
    fn urls_with_and_without_namespace() {
        let s = RedisSource::parse("redis://:pw@127.0.0.1:6390/2?namespace=darts").unwrap();
        assert_eq!(tcp(&s), ("127.0.0.1".into(), 6390));
        assert_eq!(s.info.redis_settings().db(), 2);
        assert_eq!(s.info.redis_settings().password(), Some("pw"));
        assert_eq!(s.key_prefix(), "darts:");

        let s = RedisSource::parse("redis+unix:///run/redis/r.sock?db=1&namespace=n").unwrap();
        assert!(matches!(s.info.addr(), ConnectionAddr::Unix(p) if p.ends_with("r.sock")));
        assert_eq!(s.info.redis_settings().db(), 1);
        assert_eq!(s.namespace(), "n");

        let s = RedisSource::parse("unix:/tmp/r.sock").unwrap();
        assert!(matches!(s.info.addr(), ConnectionAddr::Unix(_)));

        let s = RedisSource::parse("rediss://cache.example:6380").unwrap();
        assert!(matches!(s.info.addr(), ConnectionAddr::TcpTls { .. }));

        assert!(matches!(
            RedisSource::parse("http://x"),
            Err(SourceError::Url(_))
        ));
        assert!(matches!(
            RedisSource::parse("redis://h/notadb"),
            Err(SourceError::Url(_))
        ));
    }

    #[test]
    fn shown_forms_hide_the_password() {
        for src in ["h:6379:0:hunter2:ns", "redis://:hunter2@h:6379/0"] {
            let s = RedisSource::parse(src).unwrap();
            let shown = format!("{s} {s:?}");
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("h:6379"), "{shown}");
        }
    }
}
