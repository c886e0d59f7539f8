//! Host names as written in settings: one answer to "is this host on loopback?", which
//! decides where plain (unencrypted) connections are allowed.

use std::net::IpAddr;

/// Whether `host` names this machine's loopback: `localhost` (any case), an IPv4 address
/// in 127.0.0.0/8, or `::1`, bare or in brackets (`[::1]`), with surrounding white space
/// ignored. `::ffff:127.0.0.1` is not loopback here (as `Ipv6Addr::is_loopback` says). A host with a port (`localhost:25`) is not recognised: callers pass the host
/// alone.
pub fn is_loopback_host(host: &str) -> bool {
    // Brackets are trimmed, not matched: every former copy accepted what this accepts.
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::is_loopback_host;

    #[test]
    fn loopback_names() {
        assert!(
            is_loopback_host("127.0.0.1")
                && is_loopback_host("localhost")
                && is_loopback_host("[::1]")
        );
        assert!(!is_loopback_host("ldap.example.org") && !is_loopback_host("192.0.2.1"));
    }

    #[test]
    fn loopback_names_and_addresses() {
        for host in [
            "localhost",
            "LocalHost",
            " localhost ",
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
            "0:0:0:0:0:0:0:1",
        ] {
            assert!(is_loopback_host(host), "{host:?}");
        }
    }

    #[test]
    fn other_hosts_are_not_loopback() {
        for host in [
            "",
            "ldap.example.org",
            "localhost.example.org",
            "192.0.2.1",
            "128.0.0.1",
            "::2",
            "::ffff:127.0.0.1",
            "[192.0.2.1]",
            "localhost:25",
            "127.0.0.1:389",
            "[::1]:25",
        ] {
            assert!(!is_loopback_host(host), "{host:?}");
        }
    }
}
