//! The pump over real sockets: the splice path against the copy path.

use std::future::poll_fn;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UnixListener, UnixStream};

use super::*;
use crate::rfb::Policy;

/// A directory for the test's unix sockets, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("darts-pump-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The gateway's end and the VNC server's end of a unix connection.
async fn target_pair(dir: &TempDir) -> (UnixStream, UnixStream) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let path = dir
        .0
        .join(format!("vnc{}.sock", NEXT.fetch_add(1, Ordering::Relaxed)));
    let listener = UnixListener::bind(&path).unwrap();
    let (gw, vnc) = tokio::join!(UnixStream::connect(&path), listener.accept());
    (gw.unwrap(), vnc.unwrap().0)
}

/// The gateway's end and the browser's end of a TCP connection. The gateway's send
/// buffer is small, so a browser that reads slowly pushes back within a few kilobytes.
async fn client_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(4096).unwrap();
    let (gw, browser) = tokio::join!(socket.connect(addr), listener.accept());
    (gw.unwrap(), browser.unwrap().0)
}

fn limits(read_chunk: usize) -> Limits {
    Limits {
        read_chunk,
        max_frame: 1 << 20,
        max_message: 1 << 22,
    }
}

fn pump<C, B>(client: C, target: B, read_chunk: usize) -> Pump<C, B>
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    Pump::new(
        client,
        target,
        Bytes::new(),
        limits(read_chunk),
        Arc::new(Metrics::default()),
    )
}

fn view_only() -> Option<Box<ClientFilter>> {
    Some(Box::new(ClientFilter::new(Policy {
        view_only: true,
        max_clipboard: None,
        view_only_clipboard: false,
    })))
}

/// Polls the pump once; ready if the session ended.
async fn poll_once<C, B>(pump: &mut Pump<C, B>) -> Poll<SessionEnd>
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    poll_fn(|cx| Poll::Ready(pump.poll(cx))).await
}

/// Deterministic bytes, so a case needs no large generated vector.
fn stream_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// What the browser saw, de-framed.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    payload: Vec<u8>,
    /// The payload of the last frame, which must be the only close frame.
    close: Vec<u8>,
    /// The pump's count of bytes written to the browser equals what arrived.
    counted_written: bool,
}

/// De-frames server frames: binary payloads joined, then exactly one close frame last.
fn deframe(mut wire: &[u8], read_chunk: usize) -> (Vec<u8>, Vec<u8>) {
    let mut payload = Vec::new();
    loop {
        assert!(wire.len() >= 2, "stream ended without a close frame");
        assert_eq!(wire[0] & 0xF0, 0x80, "unfragmented, no RSV bits");
        assert_eq!(wire[1] & 0x80, 0, "server frames are not masked");
        let (len, at) = match wire[1] & 0x7F {
            126 => (usize::from(u16::from_be_bytes([wire[2], wire[3]])), 4),
            127 => (
                usize::try_from(u64::from_be_bytes(wire[2..10].try_into().unwrap())).unwrap(),
                10,
            ),
            n => (usize::from(n), 2),
        };
        let body = &wire[at..at + len];
        match wire[0] & 0x0F {
            0x2 => {
                assert!(len > 0 && len <= read_chunk, "frame of {len} bytes");
                payload.extend_from_slice(body);
            }
            0x8 => {
                assert_eq!(at + len, wire.len(), "bytes after the close frame");
                return (payload, body.to_vec());
            }
            op => panic!("unexpected opcode {op:#x}"),
        }
        wire = &wire[at + len..];
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Splice,
    Copy,
    /// Splice asked for, but the session filters browser input.
    Filtered,
}

/// Relays `chunks` from a unix-socket target to a TCP browser, the target closing after
/// the last (dropping its socket, or with `half_close` only shutting its write side).
async fn relay(chunks: Vec<Vec<u8>>, read_chunk: usize, path: Path, half_close: bool) -> Seen {
    let dir = TempDir::new();
    let (client_gw, mut browser) = client_pair().await;
    let (target_gw, mut vnc) = target_pair(&dir).await;
    let mut pump = match path {
        Path::Splice => pump(client_gw, target_gw, read_chunk).with_splice(true),
        Path::Copy => pump(client_gw, target_gw, read_chunk).with_splice(false),
        Path::Filtered => pump(client_gw, target_gw, read_chunk)
            .with_filter(view_only())
            .with_splice(true),
    };
    assert_eq!(pump.splicing(), path == Path::Splice);
    let session = tokio::spawn(async move {
        let end = poll_fn(|cx| pump.poll(cx)).await;
        // Still on the splice path: it never fell back to copying.
        assert_eq!(pump.splicing(), path == Path::Splice);
        (end, pump.client_traffic().1)
    });
    let target = tokio::spawn(async move {
        for chunk in chunks {
            vnc.write_all(&chunk).await.unwrap();
            // Let the pump run between writes, so cuts often are reads.
            tokio::task::yield_now().await;
        }
        if half_close {
            vnc.shutdown().await.unwrap();
            // Keep the read side until the pump shuts its write side after the browser.
            let mut rest = Vec::new();
            let _ = vnc.read_to_end(&mut rest).await;
        }
    });
    let mut wire = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), browser.read_to_end(&mut wire));
    read.await.expect("browser stream did not end").unwrap();
    // The browser goes too: the pump then ends.
    drop(browser);
    let (end, written) = tokio::time::timeout(Duration::from_secs(20), session)
        .await
        .expect("pump did not end")
        .unwrap();
    target.await.unwrap();
    assert_eq!(end, SessionEnd::Closed);
    let (payload, close) = deframe(&wire, read_chunk);
    Seen {
        payload,
        close,
        counted_written: written == wire.len() as u64,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// For any chunking of the target's stream and any point where the target closes,
    /// the browser gets the same bytes, in frames no larger than a read, and the same
    /// close frame, whether the payload is spliced or copied.
    #[test]
    fn splice_and_copy_deliver_the_same_stream(
        len in 0usize..300_000,
        seed in any::<u64>(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..24),
        close_at in any::<prop::sample::Index>(),
        read_chunk in prop::sample::select(vec![1024usize, 4096, 10_000, 65_536, 200_000]),
        half_close in any::<bool>(),
    ) {
        let data = stream_bytes(len, seed);
        let sent = &data[..close_at.index(len + 1)];
        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(sent.len() + 1)).collect();
        at.extend([0, sent.len()]);
        at.sort_unstable();
        at.dedup();
        let chunks: Vec<Vec<u8>> = at.windows(2).map(|w| sent[w[0]..w[1]].to_vec()).collect();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let spliced = rt.block_on(relay(chunks.clone(), read_chunk, Path::Splice, half_close));
        let copied = rt.block_on(relay(chunks, read_chunk, Path::Copy, half_close));
        prop_assert!(spliced.payload == sent, "spliced payload differs from what the target sent");
        prop_assert!(spliced.counted_written);
        prop_assert_eq!(&spliced, &copied);
        prop_assert_eq!(&spliced.close, &close::payload(close::NORMAL, "target closed the connection")[..]);
    }
}

#[tokio::test]
async fn an_idle_session_holds_no_pipe_and_a_stream_releases_its_pipe() {
    const TOTAL: usize = 1 << 20;
    let dir = TempDir::new();
    let (client_gw, mut browser) = client_pair().await;
    let (target_gw, mut vnc) = target_pair(&dir).await;
    let mut pump = pump(client_gw, target_gw, 65_536).with_splice(true);
    assert!(pump.splicing());
    assert!(poll_once(&mut pump).await.is_pending());
    assert!(!pump.holds_pipe(), "an idle session made a pipe");

    // The target streams; the browser does not read yet, so spliced bytes wait in the pipe.
    let data = stream_bytes(TOTAL, 7);
    let sent = data.clone();
    let target = tokio::spawn(async move {
        vnc.write_all(&sent).await.unwrap();
        vnc
    });
    let mut waited = 0;
    while !pump.holds_pipe() {
        assert!(poll_once(&mut pump).await.is_pending());
        tokio::time::sleep(Duration::from_millis(1)).await;
        waited += 1;
        assert!(waited < 5_000, "the pump never spliced");
    }
    assert!(
        pump.counts.to_client < TOTAL as u64,
        "the browser took it all without reading"
    );

    // The browser reads everything; once the target has nothing more, the pipe goes.
    let mut wire = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    while pump.counts.to_client < TOTAL as u64 || (wire.len() as u64) < pump.counts.client_written {
        assert!(poll_once(&mut pump).await.is_pending());
        match browser.try_read(&mut buf) {
            Ok(n) => wire.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let vnc = target.await.unwrap();
    assert!(poll_once(&mut pump).await.is_pending());
    assert!(!pump.holds_pipe(), "the pipe outlived the stream");
    assert_eq!(pump.counts.client_written, wire.len() as u64);

    // The target closes: the close frame follows the spliced frames.
    drop(vnc);
    let mut rest = Vec::new();
    let drain = async {
        loop {
            if pump.down_state == DownState::Done {
                break;
            }
            let _ = poll_once(&mut pump).await;
            match browser.try_read(&mut buf) {
                Ok(n) => rest.extend_from_slice(&buf[..n]),
                Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
        browser.read_to_end(&mut rest).await.unwrap();
    };
    tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .unwrap();
    wire.extend_from_slice(&rest);
    let (payload, _) = deframe(&wire, 65_536);
    assert!(payload == data, "spliced bytes differ");
    assert!(!pump.holds_pipe());
}

#[tokio::test]
async fn a_filtered_session_copies_and_still_delivers() {
    let data = stream_bytes(100_000, 3);
    let chunks: Vec<Vec<u8>> = data.chunks(7_000).map(<[u8]>::to_vec).collect();
    let filtered = relay(chunks.clone(), 4096, Path::Filtered, false).await;
    assert!(filtered.payload == data);
    assert_eq!(filtered, relay(chunks, 4096, Path::Splice, false).await);
    // The order of the builders does not matter.
    let dir = TempDir::new();
    let (client, _browser) = client_pair().await;
    let (target, _vnc) = target_pair(&dir).await;
    let p = pump(client, target, 4096)
        .with_splice(true)
        .with_filter(view_only());
    assert!(!p.splicing());
}

impl RawSocket for tokio::io::DuplexStream {
    fn raw_socket(&self) -> Option<splice::SocketRef<'_>> {
        None
    }
}

#[tokio::test]
async fn streams_that_are_not_sockets_are_copied() {
    let (client, _browser) = tokio::io::duplex(1024);
    let (target, _vnc) = tokio::io::duplex(1024);
    assert!(!pump(client, target, 4096).with_splice(true).splicing());
}

#[tokio::test]
async fn a_tls_browser_is_copied_to() {
    use crate::client::ClientIo;
    use crate::target::Backend;

    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let der = cert.cert.der().clone();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let (gw, browser) = client_pair().await;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let (tls, _browser) = tokio::join!(
        tokio_rustls::TlsAcceptor::from(Arc::new(server)).accept(gw),
        tokio_rustls::TlsConnector::from(Arc::new(client)).connect(name, browser),
    );
    let dir = TempDir::new();
    let (target, _vnc) = target_pair(&dir).await;
    let tls_pump = pump(
        ClientIo::Tls(Box::new(tls.unwrap())),
        Backend::Unix(target),
        4096,
    );
    assert!(!tls_pump.with_splice(true).splicing());

    // The same target behind a plain browser connection is spliced.
    let (gw, _browser) = client_pair().await;
    let (target, _vnc) = target_pair(&dir).await;
    assert!(pump(ClientIo::Plain(gw), Backend::Unix(target), 4096)
        .with_splice(true)
        .splicing());
}
