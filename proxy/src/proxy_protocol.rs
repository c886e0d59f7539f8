//! The PROXY protocol (HAProxy's, versions 1 and 2): a TCP proxy in front of darts (nginx
//! `stream` with `proxy_protocol on`, HAProxy `send-proxy`) prefixes each connection with
//! the client's address. Read only from trusted proxies, and only when
//! `service_proxy_protocol` is on; everyone else's bytes are HTTP or TLS as usual.
//!
//! [`parse`] is sans-IO and bounded: a v1 line is at most 107 bytes, a v2 payload at most
//! [`MAX_V2_PAYLOAD`]; nothing is allocated from a length the peer announced.
//! [`read_header`] drives it on a socket, reading exactly the header's bytes so that what
//! follows (the HTTP request or the TLS ClientHello) stays in the socket.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The v2 signature.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
const V1_PREFIX: &[u8] = b"PROXY ";
/// Longest v1 line, CRLF included (the specification's bound).
pub const V1_MAX: usize = 107;
/// Shortest v1 line (`PROXY UNKNOWN\r\n`); also no v2 header is shorter.
const V1_MIN: usize = 15;
const V2_FIXED: usize = 16;
/// Largest v2 address block plus TLVs accepted (addresses take at most 216 bytes).
pub const MAX_V2_PAYLOAD: usize = 1024;

/// What a PROXY header said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The client, or `None` for `UNKNOWN`/`LOCAL`/non-IP connections (the proxy's own
    /// health checks): the connection is then the proxy's.
    pub source: Option<SocketAddr>,
    /// The address the client connected to, at the proxy.
    pub destination: Option<SocketAddr>,
}

/// A PROXY header that cannot be used; the connection is closed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyProtocolError {
    /// Neither signature: [`parse`] was given something else.
    #[error("the connection does not start with a PROXY protocol header")]
    NotProxy,
    /// No CRLF within [`V1_MAX`] bytes.
    #[error("PROXY v1 line longer than 107 bytes")]
    V1TooLong,
    /// A v1 line that is not UTF-8, or has an unknown protocol, a bad address or port, or
    /// the wrong number of fields.
    #[error("malformed PROXY v1 line")]
    V1Malformed,
    /// The v2 version/command byte: a version other than 2, or neither LOCAL nor PROXY.
    #[error("unsupported PROXY v2 version or command {0:#04x}")]
    V2Command(u8),
    /// A v2 address family/protocol byte this parser does not know.
    #[error("unsupported PROXY v2 address family {0:#04x}")]
    V2Family(u8),
    /// A v2 payload longer than [`MAX_V2_PAYLOAD`].
    #[error("PROXY v2 payload of {0} bytes is too long")]
    V2TooLong(usize),
    /// A v2 payload too short for the addresses its family announces.
    #[error("PROXY v2 addresses do not fit in the {0}-byte payload")]
    V2Short(usize),
    /// The socket failed or closed before the header was complete.
    #[error("reading the PROXY header: {0}")]
    Io(String),
}

/// Where parsing stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// At least `need` more bytes are needed (never more than the header has).
    Incomplete {
        /// Bytes to read before parsing again.
        need: usize,
    },
    /// A header of `len` bytes.
    Complete {
        /// What it said.
        header: ProxyHeader,
        /// Its length, to consume before what follows.
        len: usize,
    },
}

/// What the first bytes of a connection are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// A PROXY signature (`PROXY ` or the v2 one).
    Proxy,
    /// Something else: HTTP (`POST` starts with `P` too) or TLS.
    Other,
    /// Too few bytes to tell.
    Undecided,
}

/// Tells a PROXY header from anything else by its signature.
pub fn detect(buf: &[u8]) -> Start {
    for sig in [&V2_SIGNATURE[..], V1_PREFIX] {
        let n = buf.len().min(sig.len());
        if buf[..n] == sig[..n] {
            return if n == sig.len() {
                Start::Proxy
            } else {
                Start::Undecided
            };
        }
    }
    Start::Other
}

/// Parses the start of a connection. Bytes after the header are not looked at.
pub fn parse(buf: &[u8]) -> Result<Parsed, ProxyProtocolError> {
    let probe = buf.len().min(V2_SIGNATURE.len());
    if buf[..probe] == V2_SIGNATURE[..probe] {
        return parse_v2(buf);
    }
    let probe = buf.len().min(V1_PREFIX.len());
    if buf[..probe] == V1_PREFIX[..probe] {
        return parse_v1(buf);
    }
    Err(ProxyProtocolError::NotProxy)
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, ProxyProtocolError> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(cr) = window.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() >= V1_MAX {
            return Err(ProxyProtocolError::V1TooLong);
        }
        // The line ends with CRLF; until then one byte at a time, never past the line.
        let need = V1_MIN.saturating_sub(buf.len()).max(1);
        return Ok(Parsed::Incomplete { need });
    };
    let line = std::str::from_utf8(&window[V1_PREFIX.len()..cr])
        .map_err(|_| ProxyProtocolError::V1Malformed)?;
    let mut fields = line.split(' ');
    let proto = fields.next().ok_or(ProxyProtocolError::V1Malformed)?;
    let header = match proto {
        // Whatever follows UNKNOWN is to be ignored.
        "UNKNOWN" => ProxyHeader {
            source: None,
            destination: None,
        },
        "TCP4" | "TCP6" => {
            let parts: Vec<&str> = fields.collect();
            let [src, dst, sport, dport] = parts[..] else {
                return Err(ProxyProtocolError::V1Malformed);
            };
            let ip = |s: &str| -> Result<IpAddr, ProxyProtocolError> {
                let ip = if proto == "TCP4" {
                    s.parse::<Ipv4Addr>().map(IpAddr::V4)
                } else {
                    s.parse::<Ipv6Addr>().map(IpAddr::V6)
                };
                ip.map_err(|_| ProxyProtocolError::V1Malformed)
            };
            let port = |s: &str| -> Result<u16, ProxyProtocolError> {
                if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(ProxyProtocolError::V1Malformed);
                }
                s.parse().map_err(|_| ProxyProtocolError::V1Malformed)
            };
            ProxyHeader {
                source: Some(SocketAddr::new(ip(src)?, port(sport)?)),
                destination: Some(SocketAddr::new(ip(dst)?, port(dport)?)),
            }
        }
        _ => return Err(ProxyProtocolError::V1Malformed),
    };
    Ok(Parsed::Complete {
        header,
        len: cr + 2,
    })
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, ProxyProtocolError> {
    if buf.len() < V2_FIXED {
        let need = if buf.len() < V1_MIN {
            V1_MIN - buf.len()
        } else {
            V2_FIXED - buf.len()
        };
        return Ok(Parsed::Incomplete { need });
    }
    let ver_cmd = buf[12];
    let family = buf[13];
    let payload = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if ver_cmd >> 4 != 2 || ver_cmd & 0x0f > 1 {
        return Err(ProxyProtocolError::V2Command(ver_cmd));
    }
    if payload > MAX_V2_PAYLOAD {
        return Err(ProxyProtocolError::V2TooLong(payload));
    }
    let len = V2_FIXED + payload;
    if buf.len() < len {
        return Ok(Parsed::Incomplete {
            need: len - buf.len(),
        });
    }
    let body = &buf[V2_FIXED..len];
    let local = ver_cmd & 0x0f == 0;
    let none = ProxyHeader {
        source: None,
        destination: None,
    };
    let header = match family {
        // LOCAL (the proxy's own connection) ignores the family; so do UNSPEC and UNIX.
        _ if local => none,
        0x00 | 0x31 | 0x32 => none,
        0x11 | 0x12 => {
            let a = body.get(..12).ok_or(ProxyProtocolError::V2Short(payload))?;
            let ip = |o: usize| IpAddr::V4(Ipv4Addr::new(a[o], a[o + 1], a[o + 2], a[o + 3]));
            ProxyHeader {
                source: Some(SocketAddr::new(ip(0), u16::from_be_bytes([a[8], a[9]]))),
                destination: Some(SocketAddr::new(ip(4), u16::from_be_bytes([a[10], a[11]]))),
            }
        }
        0x21 | 0x22 => {
            let a = body.get(..36).ok_or(ProxyProtocolError::V2Short(payload))?;
            let ip = |o: usize| {
                let mut b = [0u8; 16];
                b.copy_from_slice(&a[o..o + 16]);
                IpAddr::V6(Ipv6Addr::from(b))
            };
            ProxyHeader {
                source: Some(SocketAddr::new(ip(0), u16::from_be_bytes([a[32], a[33]]))),
                destination: Some(SocketAddr::new(ip(16), u16::from_be_bytes([a[34], a[35]]))),
            }
        }
        f => return Err(ProxyProtocolError::V2Family(f)),
    };
    Ok(Parsed::Complete { header, len })
}

/// Reads the PROXY header `stream` starts with, consuming exactly its bytes; `None`, with
/// nothing consumed, when the connection starts with something else. The caller bounds
/// the time it may take.
pub async fn read_header(
    stream: &mut TcpStream,
) -> Result<Option<ProxyHeader>, ProxyProtocolError> {
    let io = |e: std::io::Error| ProxyProtocolError::Io(e.to_string());
    // Usually the whole header is there already: one peek, one read.
    let mut peeked = [0u8; 256];
    let n = loop {
        let n = stream.peek(&mut peeked).await.map_err(io)?;
        if n == 0 {
            return Err(ProxyProtocolError::Io("connection closed".into()));
        }
        match detect(&peeked[..n]) {
            Start::Proxy => break n,
            Start::Other => return Ok(None),
            // A few bytes of a signature so far: peeking again would return at once.
            Start::Undecided => tokio::time::sleep(std::time::Duration::from_millis(2)).await,
        }
    };
    if let Parsed::Complete { header, len } = parse(&peeked[..n])? {
        stream.read_exact(&mut peeked[..len]).await.map_err(io)?;
        return Ok(Some(header));
    }
    // Otherwise exactly as many bytes as the parser asks for, so none past the header.
    let mut buf = Vec::with_capacity(V1_MAX);
    loop {
        match parse(&buf)? {
            Parsed::Complete { header, .. } => return Ok(Some(header)),
            Parsed::Incomplete { need } => {
                let start = buf.len();
                buf.resize(start + need, 0);
                stream.read_exact(&mut buf[start..]).await.map_err(io)?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn complete(buf: &[u8]) -> (ProxyHeader, usize) {
        match parse(buf).unwrap() {
            Parsed::Complete { header, len } => (header, len),
            p => panic!("incomplete: {p:?}"),
        }
    }

    /// A v2 header for `src` → `dst` (same family), with `extra` TLV bytes.
    fn v2(cmd: u8, src: SocketAddr, dst: SocketAddr, extra: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        let fam = match (src.ip(), dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                body.extend_from_slice(&s.octets());
                body.extend_from_slice(&d.octets());
                0x11
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                body.extend_from_slice(&s.octets());
                body.extend_from_slice(&d.octets());
                0x21
            }
            _ => unreachable!(),
        };
        body.extend_from_slice(&src.port().to_be_bytes());
        body.extend_from_slice(&dst.port().to_be_bytes());
        body.extend_from_slice(extra);
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | cmd);
        out.push(fam);
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn v1_lines() {
        let line = b"PROXY TCP4 192.0.2.7 127.0.0.1 51234 8080\r\nGET / HTTP/1.1\r\n";
        let (h, len) = complete(line);
        assert_eq!(h.source, Some(sa("192.0.2.7:51234")));
        assert_eq!(h.destination, Some(sa("127.0.0.1:8080")));
        assert_eq!(&line[len..len + 3], b"GET");
        let (h, _) = complete(b"PROXY TCP6 2001:db8::1 ::1 4711 443\r\n");
        assert_eq!(h.source, Some(sa("[2001:db8::1]:4711")));
        let (h, len) = complete(b"PROXY UNKNOWN\r\n");
        assert_eq!((h.source, len), (None, 15));
        let (h, _) = complete(b"PROXY UNKNOWN ffff:f::1 ffff:f::2 1 2\r\n");
        assert_eq!(h.source, None);
    }

    #[test]
    fn v1_refusals() {
        for bad in [
            &b"PROXY TCP4 192.0.2.7 127.0.0.1 51234\r\n"[..],
            b"PROXY TCP4 ::1 127.0.0.1 1 2\r\n",
            b"PROXY TCP6 192.0.2.7 ::1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7 127.0.0.1 65536 2\r\n",
            b"PROXY TCP4 192.0.2.7 127.0.0.1 +1 2\r\n",
            b"PROXY TCP4  192.0.2.7 127.0.0.1 1 2\r\n",
            b"PROXY UDP4 192.0.2.7 127.0.0.1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7 127.0.0.1 1 2 3\r\n",
        ] {
            assert_eq!(
                parse(bad),
                Err(ProxyProtocolError::V1Malformed),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 120]].concat();
        assert_eq!(parse(&long), Err(ProxyProtocolError::V1TooLong));
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\n"),
            Err(ProxyProtocolError::NotProxy)
        );
        assert_eq!(parse(&[0x16, 3, 1]), Err(ProxyProtocolError::NotProxy));
    }

    #[test]
    fn partial_input_asks_for_no_more_than_the_header() {
        let line = b"PROXY TCP4 192.0.2.7 127.0.0.1 51234 8080\r\n";
        let header = v2(1, sa("192.0.2.7:1"), sa("127.0.0.1:2"), &[]);
        for full in [&line[..], &header[..]] {
            let mut buf = Vec::new();
            let len = loop {
                match parse(&buf).unwrap() {
                    Parsed::Incomplete { need } => {
                        assert!(need >= 1 && buf.len() + need <= full.len());
                        buf.extend_from_slice(&full[buf.len()..buf.len() + need]);
                    }
                    Parsed::Complete { len, .. } => break len,
                }
            };
            assert_eq!(len, full.len());
        }
    }

    #[test]
    fn v2_headers() {
        let tlv = [0x04, 0x00, 0x03, b'a', b'b', b'c'];
        let bytes = v2(1, sa("192.0.2.7:51234"), sa("127.0.0.1:8080"), &tlv);
        let (h, len) = complete(&[bytes.as_slice(), b"GET /"].concat());
        assert_eq!(len, bytes.len());
        assert_eq!(h.source, Some(sa("192.0.2.7:51234")));
        assert_eq!(h.destination, Some(sa("127.0.0.1:8080")));
        let (h, _) = complete(&v2(1, sa("[2001:db8::9]:1"), sa("[::1]:2"), &[]));
        assert_eq!(h.source, Some(sa("[2001:db8::9]:1")));
        // LOCAL: the proxy's own connection, addresses ignored.
        let (h, _) = complete(&v2(0, sa("192.0.2.7:1"), sa("127.0.0.1:2"), &[]));
        assert_eq!(h.source, None);
        // UNSPEC with an empty payload.
        let mut unspec = V2_SIGNATURE.to_vec();
        unspec.extend_from_slice(&[0x21, 0x00, 0, 0]);
        assert_eq!(complete(&unspec).0.source, None);
    }

    #[test]
    fn v2_refusals() {
        let good = v2(1, sa("192.0.2.7:1"), sa("127.0.0.1:2"), &[]);
        let mut bad = good.clone();
        bad[12] = 0x11; // version 1
        assert_eq!(parse(&bad), Err(ProxyProtocolError::V2Command(0x11)));
        bad[12] = 0x22; // command 2
        assert_eq!(parse(&bad), Err(ProxyProtocolError::V2Command(0x22)));
        let mut bad = good.clone();
        bad[13] = 0x41;
        assert_eq!(parse(&bad), Err(ProxyProtocolError::V2Family(0x41)));
        let mut bad = good.clone();
        bad[14..16].copy_from_slice(&4u16.to_be_bytes());
        assert_eq!(parse(&bad[..20]), Err(ProxyProtocolError::V2Short(4)));
        let mut bad = good;
        bad[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(parse(&bad), Err(ProxyProtocolError::V2TooLong(65535)));
    }

    #[tokio::test]
    async fn reads_exactly_the_header_from_a_socket() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            // In pieces, so that the slow path runs too.
            let line = b"PROXY TCP4 192.0.2.7 127.0.0.1 51234 8080\r\n";
            s.write_all(&line[..9]).await.unwrap();
            s.flush().await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            s.write_all(&line[9..]).await.unwrap();
            s.write_all(b"HELLO").await.unwrap();
            s
        });
        let (mut server, _) = listener.accept().await.unwrap();
        let h = read_header(&mut server).await.unwrap().unwrap();
        assert_eq!(h.source, Some(sa("192.0.2.7:51234")));
        let mut rest = [0u8; 5];
        server.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"HELLO");
        drop(client.await.unwrap());
    }

    #[tokio::test]
    async fn other_connections_are_left_untouched() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"PO").await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
            s.write_all(b"ST /darts/api/login HTTP/1.1\r\n")
                .await
                .unwrap();
            s
        });
        let (mut server, _) = listener.accept().await.unwrap();
        assert_eq!(read_header(&mut server).await, Ok(None));
        let mut start = [0u8; 4];
        server.read_exact(&mut start).await.unwrap();
        assert_eq!(&start, b"POST");
        drop(client.await.unwrap());
    }

    #[test]
    fn signatures() {
        assert_eq!(detect(b""), Start::Undecided);
        assert_eq!(detect(b"PRO"), Start::Undecided);
        assert_eq!(detect(b"PROXY "), Start::Proxy);
        assert_eq!(detect(b"POST /"), Start::Other);
        assert_eq!(detect(b"PROXYX"), Start::Other);
        assert_eq!(detect(&V2_SIGNATURE[..5]), Start::Undecided);
        assert_eq!(detect(&V2_SIGNATURE), Start::Proxy);
        assert_eq!(detect(&[0x16, 3, 1]), Start::Other);
    }
}
