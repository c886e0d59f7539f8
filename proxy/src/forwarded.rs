//! What a reverse proxy says about the client: `X-Forwarded-For`/`Forwarded` (address),
//! `X-Forwarded-Proto` (scheme) and `X-Forwarded-Host` (the host the browser used).
//! Believed only when the connection comes from a trusted proxy; from anyone else these
//! headers are the client's own words and are ignored.
//!
//! The address is found from the right: the last entry was appended by the proxy that
//! connected to us; while the address in hand is itself a trusted proxy, the entry before
//! it is believed too. The first untrusted address is the client. Entries further left
//! were written by the client and never count.
//!
//! `X-Forwarded-For` wins over `Forwarded` when both are present: Apache, nginx, HAProxy
//! and most others append the former and pass the latter through untouched.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use http::HeaderMap;

/// An entry of `service_trusted_proxies` that is neither an address nor a network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or network (such as 127.0.0.1, ::1 or 10.0.0.0/8)")]
pub struct BadProxyEntry(pub String);

/// A network: an address and how many leading bits must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Net {
    addr: IpAddr,
    bits: u8,
}

impl Net {
    fn parse(s: &str) -> Option<Self> {
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let addr = canonical(addr.trim().parse::<IpAddr>().ok()?);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            Some(b) => b.trim().parse::<u8>().ok().filter(|&b| b <= max)?,
            None => max,
        };
        Some(Self { addr, bits })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                prefix_eq(u32::from(n).into(), u32::from(a).into(), self.bits, 32)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                prefix_eq(u128::from(n), u128::from(a), self.bits, 128)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, bits: u8, width: u32) -> bool {
    let shift = width - u32::from(bits);
    shift >= width || (a >> shift) == (b >> shift)
}

/// An IPv4 client seen through an IPv6 socket (`::ffff:a.b.c.d`) is that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The reverse proxies whose forwarding headers (and PROXY protocol headers) are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<Net>,
}

impl TrustedProxies {
    /// Addresses (`127.0.0.1`, `::1`) or networks (`10.0.0.0/8`).
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, BadProxyEntry> {
        entries
            .iter()
            .map(|e| Net::parse(e.as_ref()).ok_or_else(|| BadProxyEntry(e.as_ref().to_owned())))
            .collect::<Result<Vec<_>, _>>()
            .map(|nets| Self { nets })
    }

    /// Like [`parse`](Self::parse), leaving out entries that are not valid (for callers
    /// that cannot report them; the service refuses them at start).
    pub fn parse_valid<S: AsRef<str>>(entries: &[S]) -> Self {
        Self {
            nets: entries
                .iter()
                .filter_map(|e| Net::parse(e.as_ref()))
                .collect(),
        }
    }

    /// No proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` is one of the trusted addresses or in one of the trusted networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(ip))
    }
}

/// The client as far as it can be believed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientView {
    /// The client's address: the peer's, or the one its trusted proxies name.
    pub addr: IpAddr,
    /// The peer is a trusted proxy (its scheme and host headers count).
    pub via_proxy: bool,
    /// The scheme the browser used, when a trusted proxy says it.
    pub https: Option<bool>,
    /// The `host[:port]` the browser used, when a trusted proxy says it.
    pub host: Option<String>,
}

/// Resolves the client of a request that arrived from `peer`.
pub fn resolve(headers: &HeaderMap, peer: IpAddr, trusted: &TrustedProxies) -> ClientView {
    let peer = canonical(peer);
    if !trusted.contains(peer) {
        return ClientView {
            addr: peer,
            via_proxy: false,
            https: None,
            host: None,
        };
    }
    let xff = header_values(headers, "x-forwarded-for");
    let elements = forwarded_elements(headers);
    let chain: Vec<&str> = if xff.is_empty() {
        elements.iter().filter_map(|e| param(e, "for")).collect()
    } else {
        xff
    };
    let mut addr = peer;
    for entry in chain.iter().rev() {
        if !trusted.contains(addr) {
            break;
        }
        match parse_node(entry) {
            Some(ip) => addr = canonical(ip),
            // `unknown`, an obfuscated name: the proxy knows no more than itself.
            None => break,
        }
    }
    let (https, host) = reported_scheme_and_host(headers);
    ClientView {
        addr,
        via_proxy: true,
        https,
        host,
    }
}

/// Whether the browser used HTTPS, and the `host[:port]` it addressed, as a proxy reports
/// them (the last value: the one the proxy next to us wrote). Only for a trusted peer.
pub fn reported_scheme_and_host(headers: &HeaderMap) -> (Option<bool>, Option<String>) {
    let elements = forwarded_elements(headers);
    let last = elements.last();
    let proto = header_values(headers, "x-forwarded-proto")
        .last()
        .copied()
        .or_else(|| last.and_then(|e| param(e, "proto")));
    let host = header_values(headers, "x-forwarded-host")
        .last()
        .copied()
        .or_else(|| last.and_then(|e| param(e, "host")))
        .filter(|h| !h.is_empty());
    (
        proto.map(|p| p.eq_ignore_ascii_case("https") || p.eq_ignore_ascii_case("wss")),
        host.map(str::to_owned),
    )
}

/// Every comma-separated value of every `name` header, trimmed, empty ones left out.
fn header_values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect()
}

/// The elements of `Forwarded` (RFC 7239), each `key=value;key=value`. Commas inside
/// quoted strings do not split.
fn forwarded_elements(headers: &HeaderMap) -> Vec<&str> {
    let mut out = Vec::new();
    for value in headers
        .get_all("forwarded")
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        let mut start = 0;
        let mut quoted = false;
        for (i, c) in value.char_indices() {
            match c {
                '"' => quoted = !quoted,
                ',' if !quoted => {
                    out.push(value[start..i].trim());
                    start = i + 1;
                }
                _ => {}
            }
        }
        out.push(value[start..].trim());
    }
    out.retain(|e| !e.is_empty());
    out
}

/// The value of `key` in one `Forwarded` element, unquoted.
fn param<'a>(element: &'a str, key: &str) -> Option<&'a str> {
    element.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(key)
            .then(|| v.trim().trim_matches('"'))
    })
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:4711`.
fn parse_node(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    let inner = s.strip_prefix('[')?.split(']').next()?;
    inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_static(v));
        }
        m
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trusted(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(list).unwrap()
    }

    #[test]
    fn networks_and_addresses() {
        let t = trusted(&["127.0.0.2", "10.0.0.0/8", "fd00::/8"]);
        assert!(t.contains(ip("127.0.0.2")));
        assert!(!t.contains(ip("127.0.0.1")));
        assert!(t.contains(ip("10.200.3.4")));
        assert!(!t.contains(ip("11.0.0.1")));
        assert!(t.contains(ip("fd12::1")));
        assert!(!t.contains(ip("fe80::1")));
        assert!(t.contains(ip("::ffff:127.0.0.2")), "IPv4-mapped");
        assert!(trusted(&["0.0.0.0/0"]).contains(ip("192.0.2.1")));
        assert!(!trusted(&["0.0.0.0/0"]).contains(ip("::1")));
        assert_eq!(
            TrustedProxies::parse(&["10.0.0.0/33"]).unwrap_err(),
            BadProxyEntry("10.0.0.0/33".into())
        );
        assert!(TrustedProxies::parse(&["proxy.example"]).is_err());
        assert_eq!(
            TrustedProxies::parse_valid(&["x", "::1"]),
            trusted(&["::1"])
        );
    }

    #[test]
    fn headers_from_an_untrusted_peer_are_ignored() {
        let headers = h(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
        ]);
        let v = resolve(&headers, ip("127.0.0.1"), &trusted(&["127.0.0.2"]));
        assert_eq!(
            v,
            ClientView {
                addr: ip("127.0.0.1"),
                via_proxy: false,
                https: None,
                host: None
            }
        );
    }

    #[test]
    fn the_proxys_own_entry_names_the_client() {
        // The client forged an entry; the proxy appended the real address.
        let headers = h(&[
            ("x-forwarded-for", "203.0.113.9, 198.51.100.7"),
            ("x-forwarded-host", "forged.example, darts.example:8443"),
            ("x-forwarded-proto", "https"),
        ]);
        let v = resolve(&headers, ip("127.0.0.2"), &trusted(&["127.0.0.2"]));
        assert_eq!(v.addr, ip("198.51.100.7"));
        assert!(v.via_proxy);
        assert_eq!(v.https, Some(true));
        assert_eq!(v.host.as_deref(), Some("darts.example:8443"));
    }

    #[test]
    fn chains_of_trusted_proxies_are_followed() {
        let headers = h(&[
            ("x-forwarded-for", "203.0.113.9, 192.0.2.50"),
            ("x-forwarded-for", "10.1.1.1"),
        ]);
        let t = trusted(&["127.0.0.2", "10.0.0.0/8"]);
        assert_eq!(
            resolve(&headers, ip("127.0.0.2"), &t).addr,
            ip("192.0.2.50")
        );
        // Every entry trusted: the leftmost one is the client.
        let headers = h(&[("x-forwarded-for", "10.9.9.9, 10.1.1.1")]);
        assert_eq!(resolve(&headers, ip("127.0.0.2"), &t).addr, ip("10.9.9.9"));
    }

    #[test]
    fn forwarded_as_rfc_7239_writes_it() {
        let headers = h(&[(
            "forwarded",
            "for=203.0.113.9, for=\"[2001:db8::7]:4711\";proto=https;host=\"darts.example\"",
        )]);
        let v = resolve(&headers, ip("::1"), &trusted(&["::1"]));
        assert_eq!(v.addr, ip("2001:db8::7"));
        assert_eq!(v.https, Some(true));
        assert_eq!(v.host.as_deref(), Some("darts.example"));
        // X-Forwarded-For wins: the proxy appended it and passed `Forwarded` through.
        let headers = h(&[
            ("forwarded", "for=203.0.113.9"),
            ("x-forwarded-for", "192.0.2.1:5555"),
        ]);
        assert_eq!(
            resolve(&headers, ip("127.0.0.2"), &trusted(&["127.0.0.2"])).addr,
            ip("192.0.2.1")
        );
    }

    #[test]
    fn unusable_entries_leave_the_proxy_as_the_client() {
        let t = trusted(&["127.0.0.2"]);
        for value in ["unknown", "_hidden", "not an address", ""] {
            let mut headers = HeaderMap::new();
            headers.insert("x-forwarded-for", HeaderValue::from_str(value).unwrap());
            assert_eq!(
                resolve(&headers, ip("127.0.0.2"), &t).addr,
                ip("127.0.0.2"),
                "{value:?}"
            );
        }
        let v = resolve(&HeaderMap::new(), ip("127.0.0.2"), &t);
        assert_eq!((v.addr, v.https, v.host), (ip("127.0.0.2"), None, None));
        let headers = h(&[("x-forwarded-proto", "http")]);
        assert_eq!(resolve(&headers, ip("127.0.0.2"), &t).https, Some(false));
    }

    #[test]
    fn node_forms() {
        assert_eq!(parse_node("192.0.2.1"), Some(ip("192.0.2.1")));
        assert_eq!(parse_node("192.0.2.1:80"), Some(ip("192.0.2.1")));
        assert_eq!(parse_node("2001:db8::1"), Some(ip("2001:db8::1")));
        assert_eq!(parse_node("[2001:db8::1]"), Some(ip("2001:db8::1")));
        assert_eq!(parse_node("\"[2001:db8::1]:9\""), Some(ip("2001:db8::1")));
        assert_eq!(parse_node("[nope]"), None);
    }
}
