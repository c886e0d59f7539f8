//! The node's view of its peers, built from the configuration: its name, the shared key,
//! the peers' URLs, who may call it, the TLS roots for peers and the time bounds. The
//! same checks feed `darts config check`, so a configuration the service would not use
//! is refused before it runs.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use darts_proxy::forwarded::TrustedProxies;
use rustls::ClientConfig;

use super::sign::{valid_name, NodeKey};
use crate::auth::tls::AuthTls;
use crate::config::Config;
use crate::net::is_loopback_host;

/// One peer, as listed in `fallback_servers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// `scheme://authority/prefix`, no trailing slash: the base of the peer's pages.
    pub url: String,
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// `/darts`, or `""` at the root.
    pub prefix: String,
}

impl Peer {
    /// Parses an entry: a URL (`https://b.example/darts`) or a bare host name, which
    /// gets `https://` and this node's own prefix (nodes usually share their layout).
    /// Plain HTTP is accepted only towards loopback: node requests carry session tokens.
    pub fn parse(entry: &str, own_prefix: &str) -> Result<Self, String> {
        let entry = entry.trim();
        let with_scheme = if entry.contains("://") {
            entry.to_owned()
        } else {
            format!("https://{entry}")
        };
        let uri: http::Uri = with_scheme
            .parse()
            .map_err(|e| format!("{entry:?} is not a URL: {e}"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("{entry:?}: use https://")),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| format!("{entry:?} has no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!("{entry:?}: user names do not belong in a peer URL"));
        }
        if uri.query().is_some() {
            return Err(format!("{entry:?}: a peer URL has no query"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        if !https && !is_loopback_host(&host) {
            return Err(format!(
                "{entry:?}: plain http is allowed only on loopback; node requests carry session links, use https://"
            ));
        }
        let path = uri.path().trim_end_matches('/');
        let prefix = if entry.contains("://") && uri.path() != "/" {
            path.to_owned()
        } else {
            own_prefix.trim_end_matches('/').to_owned()
        };
        let shown_host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        let url = format!(
            "{}://{shown_host}:{port}{prefix}",
            if https { "https" } else { "http" }
        );
        Ok(Self {
            url,
            https,
            host,
            port,
            prefix,
        })
    }
}

/// Who may call this node: node names, or addresses and networks.
#[derive(Debug, Clone, Default)]
pub struct AcceptFrom {
    names: Vec<String>,
    networks: TrustedProxies,
}

impl AcceptFrom {
    fn parse(entries: &[String]) -> Result<Self, String> {
        let mut names = Vec::new();
        let mut networks = Vec::new();
        for e in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            let first = e.split('/').next().unwrap_or_default();
            if first.parse::<IpAddr>().is_ok() {
                networks.push(e.to_owned());
            } else if valid_name(e) {
                names.push(e.to_owned());
            } else {
                return Err(format!("{e:?} is neither a node name nor an address"));
            }
        }
        let networks = TrustedProxies::parse(&networks).map_err(|e| e.to_string())?;
        Ok(Self { names, networks })
    }

    /// Whether node `name`, calling from `addr`, may use this node.
    pub fn allows(&self, name: &str, addr: IpAddr) -> bool {
        if self.names.is_empty() && self.networks.is_empty() {
            return true;
        }
        self.names.iter().any(|n| n == name) || self.networks.contains(addr)
    }
}

/// Everything about peers, from one configuration.
pub struct Settings {
    pub name: String,
    /// `None`: this node neither forwards nor accepts node requests.
    pub key: Option<Arc<NodeKey>>,
    pub peers: Vec<Peer>,
    pub accept_from: AcceptFrom,
    pub tls: Option<AuthTls>,
    pub timeout: Duration,
    pub create_timeout: Duration,
    pub status_cache: Duration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("name", &self.name)
            .field("key", &self.key.is_some())
            .field("peers", &self.peers)
            .field("accept_from", &self.accept_from)
            .finish_non_exhaustive()
    }
}

/// A problem with the peer settings: the key at fault and what is wrong.
pub type Problem = (&'static str, String);

impl Settings {
    /// Builds the settings; every problem is returned (the caller decides whether they
    /// stop it). `own_prefix` is this node's URL prefix.
    pub fn build(config: &Config, own_prefix: &str) -> (Self, Vec<Problem>) {
        let mut problems = Vec::new();
        let name = if config.node_name.trim().is_empty() {
            host_name()
        } else {
            config.node_name.trim().to_owned()
        };
        if !valid_name(&name) {
            problems.push((
                "node_name",
                format!("{name:?}: use letters, digits, '.', '-' or '_' (64 at most)"),
            ));
        }
        let key = if config.fallback_key.trim().is_empty() {
            None
        } else {
            match NodeKey::from_file(Path::new(config.fallback_key.trim())) {
                Ok(k) => Some(Arc::new(k)),
                Err(e) => {
                    problems.push(("fallback_key", format!("{}: {e}", config.fallback_key)));
                    None
                }
            }
        };
        let mut peers = Vec::new();
        for entry in config
            .fallback_servers
            .iter()
            .filter(|e| !e.trim().is_empty())
        {
            match Peer::parse(entry, own_prefix) {
                Ok(p) => peers.push(p),
                Err(e) => problems.push(("fallback_servers", e)),
            }
        }
        if !peers.is_empty() && config.fallback_key.trim().is_empty() {
            problems.push((
                "fallback_key",
                "fallback_servers is set but fallback_key is not: every node needs the same key file to sign its requests".into(),
            ));
        }
        let accept_from = AcceptFrom::parse(&config.fallback_accept_from).unwrap_or_else(|e| {
            problems.push(("fallback_accept_from", e));
            AcceptFrom::default()
        });
        let ca = config.fallback_ca.trim();
        let tls = match AuthTls::new((!ca.is_empty()).then(|| Path::new(ca)), &[]) {
            Ok(t) => Some(t),
            Err(e) => {
                problems.push(("fallback_ca", e.to_string()));
                None
            }
        };
        for (key, value) in [
            ("fallback_timeout", config.fallback_timeout),
            ("fallback_create_timeout", config.fallback_create_timeout),
        ] {
            if value == 0 || value > 3600 {
                problems.push((key, format!("{value}: use 1 to 3600 seconds")));
            }
        }
        let settings = Self {
            name,
            key,
            peers,
            accept_from,
            tls,
            timeout: Duration::from_secs(config.fallback_timeout.clamp(1, 3600)),
            create_timeout: Duration::from_secs(config.fallback_create_timeout.clamp(1, 3600)),
            status_cache: Duration::from_secs(config.fallback_status_cache.min(3600)),
        };
        (settings, problems)
    }

    /// TLS settings for peers (absent only when `fallback_ca` is unreadable).
    pub fn client_tls(&self, host: &str) -> Option<Arc<ClientConfig>> {
        self.tls.as_ref().map(|t| t.client_config(host))
    }
}

/// The kernel's host name, made a valid node name.
fn host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(64)
        .collect();
    if name.is_empty() {
        "darts".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_urls() {
        let p = Peer::parse("https://b.example/darts/", "/darts").unwrap();
        assert_eq!(p.url, "https://b.example:443/darts");
        assert_eq!(
            (p.host.as_str(), p.port, p.prefix.as_str()),
            ("b.example", 443, "/darts")
        );
        let bare = Peer::parse("c.example:8443", "/darts").unwrap();
        assert_eq!(bare.url, "https://c.example:8443/darts");
        let root = Peer::parse("https://[::1]:9000", "/darts").unwrap();
        assert_eq!(
            (root.host.as_str(), root.prefix.as_str()),
            ("::1", "/darts")
        );
        assert_eq!(root.url, "https://[::1]:9000/darts");
        let local = Peer::parse("http://127.0.0.1:6081/x", "/darts").unwrap();
        assert!(!local.https);
        assert_eq!(local.prefix, "/x");
        assert!(Peer::parse("http://b.example/darts", "/darts")
            .unwrap_err()
            .contains("plain http"));
        assert!(Peer::parse("ftp://b", "/darts").is_err());
        assert!(Peer::parse("https://u@b/darts", "/darts").is_err());
    }

    #[test]
    fn accept_lists() {
        let open = AcceptFrom::parse(&[]).unwrap();
        assert!(open.allows("x", "192.0.2.1".parse().unwrap()));
        let some =
            AcceptFrom::parse(&["a".into(), "10.0.0.0/8".into(), "192.0.2.7".into()]).unwrap();
        assert!(some.allows("a", "198.51.100.1".parse().unwrap()));
        assert!(some.allows("z", "10.1.2.3".parse().unwrap()));
        assert!(some.allows("z", "192.0.2.7".parse().unwrap()));
        assert!(!some.allows("z", "192.0.2.8".parse().unwrap()));
        assert!(AcceptFrom::parse(&["a b".into()]).is_err());
    }

    #[test]
    fn problems_name_their_key() {
        let config = Config {
            fallback_servers: vec!["https://b".into(), "http://c.example".into()],
            node_name: "a,b".into(),
            ..Config::default()
        };
        let (s, problems) = Settings::build(&config, "/darts");
        let keys: Vec<&str> = problems.iter().map(|p| p.0).collect();
        assert_eq!(keys, ["node_name", "fallback_servers", "fallback_key"]);
        assert_eq!(s.peers.len(), 1);
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, "x".repeat(40)).unwrap();
        let config = Config {
            fallback_servers: vec!["https://b".into()],
            fallback_key: key.display().to_string(),
            node_name: "a".into(),
            ..Config::default()
        };
        let (s, problems) = Settings::build(&config, "/darts");
        assert!(problems.is_empty(), "{problems:?}");
        assert!(s.key.is_some() && s.tls.is_some());
    }
}
