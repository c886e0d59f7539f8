//! TCP ports for the sessions' VNC servers (`qemu_vnc_listen`), from the original's range
//! `[service_port_vnc, service_port_vnc + service_max_session_nb - 1]`.
//!
//! A port is chosen under the manager's admission lock among those no live session holds
//! (sessions being created count) and that nobody has bound: darts binds it for a moment,
//! which is what QEMU will do. A program may still take it in between; QEMU then fails to
//! start with "Address already in use" and the creation tries another port, a bounded
//! number of times ([`launch_retrying`]).

use std::collections::HashSet;
use std::future::Future;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::ops::RangeInclusive;
use std::path::Path;

use ring::rand::{SecureRandom, SystemRandom};

use super::manager::{lock, Manager, SessionError};
use crate::config::Config;
use crate::vm::cmdline::VNC_BASE_PORT;
use crate::vm::{VmError, VncEndpoint};

/// QEMU starts tried per creation when other programs keep taking the chosen port.
pub const BIND_TRIES: usize = 5;

/// Why no TCP endpoint could be given to a session.
#[derive(Debug, thiserror::Error)]
pub enum VncPortError {
    #[error("qemu_vnc_listen {0:?} is not an IP address")]
    NotAnAddress(String),
    #[error("no free VNC port in service_port_vnc's range {first}-{last} on {ip}: sessions and other programs hold them all")]
    NoFreePort { ip: IpAddr, first: u16, last: u16 },
    #[error("no free VNC port in service_port_vnc's range {first}-{last} on {ip}: other programs took {tries} ports before QEMU could listen on them")]
    Raced {
        ip: IpAddr,
        first: u16,
        last: u16,
        tries: usize,
    },
    #[error("cannot listen on {ip} (qemu_vnc_listen): {source}")]
    Address { ip: IpAddr, source: std::io::Error },
    #[error("the system random generator failed")]
    Random,
}

impl From<VncPortError> for SessionError {
    fn from(e: VncPortError) -> Self {
        SessionError::Qemu(e.to_string())
    }
}

/// The address of `qemu_vnc_listen` (brackets around IPv6 allowed); `None` when empty
/// (a unix socket per session).
pub fn listen_ip(config: &Config) -> Result<Option<IpAddr>, VncPortError> {
    let text = config.qemu_vnc_listen.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    bare.parse()
        .map(Some)
        .map_err(|_| VncPortError::NotAnAddress(text.to_owned()))
}

/// `service_port_vnc` and the `service_max_session_nb - 1` ports after it (up to 65535
/// when there is no session limit), cut at 65535.
pub fn port_range(config: &Config) -> RangeInclusive<u16> {
    let first = config.service_port_vnc;
    let last = match config.service_max_session_nb {
        0 => u16::MAX,
        n => {
            let span = u16::try_from(n - 1).unwrap_or(u16::MAX);
            first.saturating_add(span)
        }
    };
    first..=last
}

/// A port of `range` that is not in `taken`, at least 5900 (QEMU counts displays from
/// there), and free on `ip` now. The search starts at a random place (the original
/// shuffled the range), so concurrent services on one host rarely race for one port.
pub fn choose_port(
    ip: IpAddr,
    range: RangeInclusive<u16>,
    taken: &HashSet<u16>,
) -> Result<u16, VncPortError> {
    let mut seed = [0u8; 4];
    SystemRandom::new()
        .fill(&mut seed)
        .map_err(|_| VncPortError::Random)?;
    let (first, last) = (*range.start(), *range.end());
    let offset = u32::from_le_bytes(seed) as usize;
    first_free(ip, rotated(range, offset), taken)
        .map_err(|source| VncPortError::Address { ip, source })?
        .ok_or(VncPortError::NoFreePort { ip, first, last })
}

/// The ports of `range` from the `offset`-th (modulo its length), wrapping around.
fn rotated(range: RangeInclusive<u16>, offset: usize) -> impl Iterator<Item = u16> {
    let len = range.clone().count();
    let skip = if len == 0 { 0 } else { offset % len };
    range.clone().skip(skip).chain(range.take(skip))
}

/// The first candidate that is usable and can be bound on `ip`. An address that is not
/// this host's fails every port alike: that is an error, not a full range.
fn first_free(
    ip: IpAddr,
    candidates: impl Iterator<Item = u16>,
    taken: &HashSet<u16>,
) -> Result<Option<u16>, std::io::Error> {
    for port in candidates {
        if port < VNC_BASE_PORT || taken.contains(&port) {
            continue;
        }
        match TcpListener::bind(SocketAddr::new(ip, port)) {
            Ok(_) => return Ok(Some(port)),
            Err(e) if e.kind() == ErrorKind::AddrNotAvailable => return Err(e),
            Err(_) => continue,
        }
    }
    Ok(None)
}

impl Manager {
    /// Where a new session's VNC server listens: a unix socket in `dir`, or a free port
    /// on `qemu_vnc_listen` other than `avoid`. Call with the admission lock held, and
    /// put the session in `sessions` before releasing it, so that no other creation
    /// takes the same port.
    pub(super) fn vnc_endpoint(
        &self,
        config: &Config,
        dir: &Path,
        avoid: &[u16],
    ) -> Result<VncEndpoint, VncPortError> {
        let Some(ip) = listen_ip(config)? else {
            return Ok(VncEndpoint::Unix(dir.join("vnc.sock")));
        };
        let mut taken = self.vnc_ports_in_use();
        taken.extend(avoid);
        let port = choose_port(ip, port_range(config), &taken)?;
        Ok(VncEndpoint::Tcp(SocketAddr::new(ip, port)))
    }

    /// TCP ports held by live sessions, including those being created.
    fn vnc_ports_in_use(&self) -> HashSet<u16> {
        lock(&self.sessions)
            .values()
            .filter_map(|l| match &lock(&l.record).vnc {
                VncEndpoint::Tcp(addr) => Some(addr.port()),
                VncEndpoint::Unix(_) => None,
            })
            .collect()
    }
}

/// Starts QEMU with `launch` on `first`. When QEMU reports the TCP VNC port taken (by a
/// program that bound it after it was chosen), `rechoose` gets every port tried so far
/// and returns another endpoint, and QEMU is started again: [`BIND_TRIES`] starts at
/// most. Returns QEMU's pid and the endpoint it listens on.
pub(super) async fn launch_retrying<L, LF, C, CF>(
    first: VncEndpoint,
    range: RangeInclusive<u16>,
    mut launch: L,
    mut rechoose: C,
) -> Result<(u32, VncEndpoint), SessionError>
where
    L: FnMut(VncEndpoint) -> LF,
    LF: Future<Output = Result<u32, VmError>>,
    C: FnMut(Vec<u16>) -> CF,
    CF: Future<Output = Result<VncEndpoint, SessionError>>,
{
    let mut vnc = first;
    let mut tried = Vec::new();
    loop {
        let e = match launch(vnc.clone()).await {
            Ok(pid) => return Ok((pid, vnc)),
            Err(e) => e,
        };
        let VncEndpoint::Tcp(addr) = &vnc else {
            return Err(SessionError::Qemu(e.to_string()));
        };
        if !e.vnc_address_in_use() {
            return Err(SessionError::Qemu(e.to_string()));
        }
        tried.push(addr.port());
        if tried.len() >= BIND_TRIES {
            return Err(VncPortError::Raced {
                ip: addr.ip(),
                first: *range.start(),
                last: *range.end(),
                tries: tried.len(),
            }
            .into());
        }
        tracing::info!(
            port = addr.port(),
            "VNC port taken by another program; trying another"
        );
        vnc = rechoose(tried.clone()).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(listen: &str, first: u16, max: u32) -> Config {
        Config {
            qemu_vnc_listen: listen.into(),
            service_port_vnc: first,
            service_max_session_nb: max,
            ..Config::default()
        }
    }

    #[test]
    fn the_range_is_the_originals() {
        assert_eq!(port_range(&Config::default()), 5901..=5910);
        assert_eq!(port_range(&config("", 6000, 1)), 6000..=6000);
        // No session limit: up to the last port; a range past 65535 is cut.
        assert_eq!(port_range(&config("", 5901, 0)), 5901..=65535);
        assert_eq!(port_range(&config("", 65530, 10)), 65530..=65535);
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(listen_ip(&config("", 5901, 1)).unwrap(), None);
        assert_eq!(listen_ip(&config("  ", 5901, 1)).unwrap(), None);
        assert_eq!(
            listen_ip(&config("127.0.0.1", 5901, 1)).unwrap(),
            Some(IpAddr::from([127, 0, 0, 1]))
        );
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(listen_ip(&config("::1", 5901, 1)).unwrap(), Some(v6));
        assert_eq!(listen_ip(&config("[::1]", 5901, 1)).unwrap(), Some(v6));
        assert!(matches!(
            listen_ip(&config("vnc.example.org", 5901, 1)),
            Err(VncPortError::NotAnAddress(_))
        ));
    }

    #[test]
    fn rotation_covers_every_port_once() {
        let all: Vec<u16> = rotated(10..=14, 7).collect();
        assert_eq!(all, vec![12, 13, 14, 10, 11]);
        assert_eq!(
            rotated(10..=14, 0).collect::<Vec<_>>(),
            vec![10, 11, 12, 13, 14]
        );
        assert_eq!(rotated(10..=10, 99).collect::<Vec<_>>(), vec![10]);
    }

    /// A port nobody holds right now (the system's pick, released).
    fn released_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[test]
    fn taken_bound_and_low_ports_are_skipped() {
        let lo = IpAddr::from([127, 0, 0, 1]);
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let bound = held.local_addr().unwrap().port();
        let session = released_port();
        let free = released_port();
        let taken = HashSet::from([session]);
        let candidates = [5899, bound, session, free];
        assert_eq!(
            first_free(lo, candidates.into_iter(), &taken).unwrap(),
            Some(free)
        );
        assert_eq!(
            first_free(lo, [5899, bound, session].into_iter(), &taken).unwrap(),
            None
        );
        // The whole range held: the message names the key and the range.
        let e = choose_port(lo, bound..=bound, &HashSet::new()).unwrap_err();
        assert!(matches!(e, VncPortError::NoFreePort { .. }));
        assert_eq!(
            e.to_string(),
            format!("no free VNC port in service_port_vnc's range {bound}-{bound} on 127.0.0.1: sessions and other programs hold them all")
        );
        assert_eq!(choose_port(lo, free..=free, &HashSet::new()).unwrap(), free);
        drop(held);
    }

    #[test]
    fn an_address_of_another_host_is_an_error() {
        // TEST-NET-1: never an address of this host. Binding sends nothing.
        let e =
            choose_port(IpAddr::from([192, 0, 2, 1]), 5901..=5910, &HashSet::new()).unwrap_err();
        assert!(matches!(e, VncPortError::Address { .. }), "{e}");
        assert!(e.to_string().contains("qemu_vnc_listen"), "{e}");
    }

    fn in_use() -> VmError {
        VmError::Launch {
            status: "exit status: 1".into(),
            stderr: "qemu-system-x86_64: -vnc 127.0.0.1:1,password=on: Failed to find an available port: Address already in use".into(),
        }
    }

    fn tcp(port: u16) -> VncEndpoint {
        VncEndpoint::Tcp(SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port))
    }

    #[tokio::test]
    async fn a_port_taken_before_qemu_binds_it_is_replaced() {
        // QEMU finds 5901 and 5902 taken, then starts on 5903.
        let mut launched = Vec::new();
        let mut asked = Vec::new();
        let (pid, vnc) = launch_retrying(
            tcp(5901),
            5901..=5910,
            |vnc| {
                launched.push(vnc.clone());
                let port = match vnc {
                    VncEndpoint::Tcp(a) => a.port(),
                    VncEndpoint::Unix(_) => 0,
                };
                async move {
                    if port < 5903 {
                        Err(in_use())
                    } else {
                        Ok(42)
                    }
                }
            },
            |tried: Vec<u16>| {
                let next = tcp(tried.last().unwrap() + 1);
                asked.push(tried);
                async move { Ok(next) }
            },
        )
        .await
        .unwrap();
        assert_eq!((pid, vnc), (42, tcp(5903)));
        assert_eq!(launched, vec![tcp(5901), tcp(5902), tcp(5903)]);
        assert_eq!(asked, vec![vec![5901], vec![5901, 5902]]);
    }

    #[tokio::test]
    async fn retries_are_bounded_and_say_why() {
        let mut starts = 0;
        let e = launch_retrying(
            tcp(5901),
            5901..=5910,
            |_| {
                starts += 1;
                async { Err::<u32, _>(in_use()) }
            },
            |tried: Vec<u16>| async move { Ok(tcp(5901 + tried.len() as u16)) },
        )
        .await
        .unwrap_err();
        assert_eq!(starts, BIND_TRIES);
        let msg = e.to_string();
        assert!(
            msg.contains("no free VNC port in service_port_vnc's range 5901-5910 on 127.0.0.1"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn other_failures_are_not_retried() {
        for first in [tcp(5901), VncEndpoint::Unix("/s/vnc.sock".into())] {
            let mut starts = 0;
            let e = launch_retrying(
                first,
                5901..=5910,
                |_| {
                    starts += 1;
                    async {
                        Err::<u32, _>(VmError::Launch {
                            status: "exit status: 1".into(),
                            stderr: "qemu-system-x86_64: -no-such-option: invalid option".into(),
                        })
                    }
                },
                |_: Vec<u16>| async { panic!("no other port is asked for") },
            )
            .await
            .unwrap_err();
            assert_eq!(starts, 1);
            assert!(e.to_string().contains("no-such-option"), "{e}");
        }
    }
}
