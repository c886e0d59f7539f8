//! Shared helpers for integration tests: start the gateway (in process or as the `darts`
//! binary) on a free loopback port, fake VNC backends, a websocket client, test certificates.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use darts_proxy::{Gateway, GatewayConfig, GatewayHandle, TokenMap};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A gateway running in this process.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub handle: GatewayHandle,
    pub stop: CancellationToken,
    pub done: tokio::task::JoinHandle<bool>,
}

impl TestGateway {
    /// A config listening on 127.0.0.1 with an OS-chosen port, relaying raw bytes (the
    /// fake targets of most tests do not speak RFB).
    pub fn config() -> GatewayConfig {
        let mut c = GatewayConfig::new("127.0.0.1:0".parse().unwrap());
        c.rfb_check = false;
        c
    }

    /// Same, with the RFB check on, as `darts proxy` runs by default.
    pub fn rfb_config() -> GatewayConfig {
        GatewayConfig::new("127.0.0.1:0".parse().unwrap())
    }

    pub async fn start(config: GatewayConfig, tokens: TokenMap) -> Self {
        let gw = Gateway::bind(config, Arc::new(tokens))
            .await
            .expect("gateway binds");
        let addr = gw.local_addr();
        let handle = gw.handle();
        let stop = CancellationToken::new();
        let done = tokio::spawn(gw.run(stop.clone()));
        Self {
            addr,
            handle,
            stop,
            done,
        }
    }

    pub fn ws_url(&self, path_and_query: &str) -> String {
        format!("ws://{}{}", self.addr, path_and_query)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

/// A unique scratch directory, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "darts-test-{name}-{}-{}",
            std::process::id(),
            rand_u64()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish()
}

/// A backend that sends `greeting`, then echoes everything back.
pub async fn echo_backend(greeting: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                if s.write_all(greeting).await.is_err() {
                    return;
                }
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// A backend that records what each connection sent (until EOF) into the channel.
pub async fn recording_backend() -> (SocketAddr, tokio::sync::mpsc::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut all = Vec::new();
                let _ = s.read_to_end(&mut all).await;
                let _ = tx.send(all).await;
            });
        }
    });
    (addr, rx)
}

/// Opens a websocket with optional extra headers; returns the HTTP error status on refusal.
pub async fn ws_connect(url: &str, headers: &[(&str, &str)]) -> Result<Ws, u16> {
    let mut req = url.into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("websocket connect failed unexpectedly: {e}"),
    }
}

/// Reads binary messages until `n` bytes arrived; panics after `timeout`.
pub async fn read_bytes(ws: &mut Ws, n: usize, timeout: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while got.len() < n {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => got.extend_from_slice(&b),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            other => panic!(
                "expected binary data, got {other:?} after {} bytes",
                got.len()
            ),
        }
    }
    got
}

/// Waits for the close frame; returns its code.
pub async fn expect_close(ws: &mut Ws, timeout: Duration) -> u16 {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => return u16::from(frame.code),
            Ok(Some(Ok(Message::Close(None)))) => return 1005,
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

pub async fn send_binary(ws: &mut Ws, data: &[u8]) {
    ws.send(Message::binary(data.to_vec())).await.unwrap();
}

/// Test CA plus a server certificate for 127.0.0.1/localhost, written as PEM files.
pub struct TestCerts {
    pub ca_pem: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Generates a CA and a leaf for `names` signed by it, into `dir` with file prefix `stem`.
pub fn make_certs(dir: &Path, stem: &str, names: &[&str]) -> TestCerts {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("darts test CA {stem}"));
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("darts test {stem}"));
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let cert_path = dir.join(format!("{stem}.crt"));
    let key_path = dir.join(format!("{stem}.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    TestCerts {
        ca_pem: ca.pem(),
        cert: cert_path,
        key: key_path,
    }
}

/// A rustls client config trusting exactly `ca_pem`.
pub fn client_tls(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile_certs(ca_pem) {
        roots.add(cert).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn rustls_pemfile_certs(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.unwrap())
        .collect()
}

/// Opens a wss:// connection trusting `ca_pem`.
pub async fn wss_connect(url: &str, ca_pem: &str) -> Result<Ws, String> {
    let connector = tokio_tungstenite::Connector::Rustls(client_tls(ca_pem));
    tokio_tungstenite::connect_async_tls_with_config(url, None, false, Some(connector))
        .await
        .map(|(ws, _)| ws)
        .map_err(|e| e.to_string())
}

/// Plain HTTP/1.1 GET; returns (status, headers text, body).
pub async fn http_get(addr: SocketAddr, path: &str, extra: &str) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response has a header block");
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head, buf[split + 4..].to_vec())
}

/// The `darts` binary of this build.
pub fn darts_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_darts"))
}

/// A free loopback port (bound then released; fine for tests that start a process on it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `darts` process, killed on drop. Its stderr is read continuously (so a chatty
/// process never blocks on a full pipe) into `log`.
pub struct DartsProcess {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl DartsProcess {
    /// Starts `darts ARGS...` and waits until `addr` accepts connections.
    pub fn start(args: &[&str], addr: SocketAddr) -> Self {
        Self::start_with_output(args, addr, Stdio::null(), Stdio::piped())
    }

    /// Same, with stdout and stderr where the caller says (only a piped stderr is read
    /// into `log`).
    pub fn start_with_output(args: &[&str], addr: SocketAddr, out: Stdio, err: Stdio) -> Self {
        let child = Command::new(darts_bin())
            .args(args)
            .env("RUST_LOG", "debug")
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("darts starts");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut child = child;
        if let Some(mut err) = child.stderr.take() {
            let sink = log.clone();
            std::thread::spawn(move || {
                use std::io::Read;
                let mut chunk = [0u8; 8192];
                while let Ok(n) = err.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&chunk[..n]));
                }
            });
        }
        let mut p = Self { child, addr, log };
        p.wait_ready();
        p
    }

    /// Everything darts wrote to stderr so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(self.addr).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("darts exited early with {status}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("darts did not listen on {} within 10 s", self.addr);
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for exit; returns (success, stderr).
    pub fn wait_exit(mut self, timeout: Duration) -> (bool, String) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Give the reader thread a moment to collect the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return (status.success(), self.log_text());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("darts did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for DartsProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
