//! An HTTPS image server on 127.0.0.1 for the download tests.

use std::convert::Infallible;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{make_certs, Scratch};

pub const ETAG: &str = "\"v1\"";
pub const LAST_MODIFIED: &str = "Tue, 01 Jul 2025 10:00:00 GMT";
pub const IMAGE_LEN: usize = 3 * 1024 * 1024 + 123;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub status: u16,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug)]
pub struct State {
    pub body: Bytes,
    /// The next connection gets the full length announced and half the bytes.
    pub cut_next: AtomicBool,
    pub ignore_range: AtomicBool,
    pub seen: Mutex<Vec<Seen>>,
}

/// An HTTPS server on 127.0.0.1 serving one image at any path, with ETag,
/// Last-Modified, conditional requests and ranges.
pub struct ImageServer {
    pub rt: tokio::runtime::Runtime,
    pub addr: std::net::SocketAddr,
    pub state: Arc<State>,
    pub ca_file: PathBuf,
}

impl ImageServer {
    pub fn start(dir: &Scratch) -> Self {
        let certs = make_certs(&dir.0, "server", &["127.0.0.1", "localhost"]);
        let ca_file = dir.path("server-ca.pem");
        fs::write(&ca_file, &certs.ca_pem).unwrap();
        let tls = server_tls(&certs.cert, &certs.key);
        let state = Arc::new(State {
            body: Bytes::from(image_bytes(IMAGE_LEN, 7)),
            cut_next: AtomicBool::new(false),
            ignore_range: AtomicBool::new(false),
            seen: Mutex::new(Vec::new()),
        });
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(serve(
            listener,
            tokio_rustls::TlsAcceptor::from(tls),
            state.clone(),
        ));
        Self {
            rt,
            addr,
            state,
            ca_file,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }
}

fn image_bytes(len: usize, seed: u64) -> Vec<u8> {
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

fn server_tls(cert: &Path, key: &Path) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap(),
    )
}

async fn serve(listener: TcpListener, acceptor: tokio_rustls::TlsAcceptor, state: Arc<State>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let state = state.clone();
        tokio::spawn(async move {
            // A client that refuses our certificate ends here.
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            if state.cut_next.swap(false, Ordering::SeqCst) {
                cut_response(tls, &state).await;
                return;
            }
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(respond(&state, &req)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        });
    }
}

fn respond(
    state: &State,
    req: &hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let get = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let len = state.body.len();
    let builder = hyper::Response::builder()
        .header("etag", ETAG)
        .header("last-modified", LAST_MODIFIED);
    let not_modified = match get("if-none-match") {
        Some(tag) => tag == ETAG,
        None => get("if-modified-since") == Some(LAST_MODIFIED),
    };
    let range_start = get("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|_| !state.ignore_range.load(Ordering::SeqCst))
        .filter(|_| get("if-range").is_none_or(|v| v == ETAG || v == LAST_MODIFIED));
    let (status, resp) = if not_modified {
        (304, builder.status(304).body(Full::new(Bytes::new())))
    } else if let Some(start) = range_start.filter(|&s| s < len) {
        (
            206,
            builder
                .status(206)
                .header("content-range", format!("bytes {start}-{}/{len}", len - 1))
                .body(Full::new(state.body.slice(start..))),
        )
    } else {
        (200, builder.status(200).body(Full::new(state.body.clone())))
    };
    state.seen.lock().unwrap().push(Seen {
        path: req.uri().path().to_owned(),
        headers,
        status,
    });
    resp.unwrap()
}

/// Reads the request head by hand, announces the whole image and sends half of it, then
/// closes: an interrupted transfer.
async fn cut_response(mut tls: tokio_rustls::server::TlsStream<TcpStream>, state: &State) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if tls.read(&mut byte).await.unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.lines();
    let path = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("")
        .to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    state.seen.lock().unwrap().push(Seen {
        path,
        headers,
        status: 200,
    });
    let len = state.body.len();
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {len}\r\netag: {ETAG}\r\nlast-modified: {LAST_MODIFIED}\r\n\r\n"
    );
    tls.write_all(response.as_bytes()).await.unwrap();
    tls.write_all(&state.body[..len / 2]).await.unwrap();
    tls.flush().await.unwrap();
    let _ = tls.shutdown().await;
}
