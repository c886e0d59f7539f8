//! The machine catalogue and `darts machines`, against a real HTTPS server on 127.0.0.1
//! (hyper + rustls, with a test CA), a real CONNECT proxy and the real `darts` binary.

mod support;

use std::convert::Infallible;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use darts::catalogue::download::{self, Placed};
use darts::catalogue::store::{self, DisableOutcome, EnableOutcome, EnableRequest, EnableTarget};
use darts::catalogue::{purge, Catalogue, Source};
use darts::fetch::{
    self, Client, DownloadOutcome, FetchError, FetchOptions, Progress, ProxySetting,
};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use support::{darts_bin, make_certs, Scratch};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ETAG: &str = "\"v1\"";
const LAST_MODIFIED: &str = "Tue, 01 Jul 2025 10:00:00 GMT";
const IMAGE_LEN: usize = 3 * 1024 * 1024 + 123;

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: Vec<(String, String)>,
    status: u16,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug)]
struct State {
    body: Bytes,
    /// The next connection gets the full length announced and half the bytes.
    cut_next: AtomicBool,
    ignore_range: AtomicBool,
    seen: Mutex<Vec<Seen>>,
}

/// An HTTPS server on 127.0.0.1 serving one image at any path, with ETag,
/// Last-Modified, conditional requests and ranges.
struct ImageServer {
    rt: tokio::runtime::Runtime,
    addr: std::net::SocketAddr,
    state: Arc<State>,
    ca_file: PathBuf,
}

impl ImageServer {
    fn start(dir: &Scratch) -> Self {
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

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
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

fn client(ca: Option<&Path>, tries: u32) -> Client {
    Client::new(FetchOptions {
        proxy: ProxySetting::Direct,
        ca_file: ca.map(Path::to_owned),
        connect_timeout: Duration::from_secs(10),
        read_timeout: Duration::from_secs(10),
        tries,
        retry_delay: Duration::ZERO,
    })
    .unwrap()
}

/// A catalogue directory pair with one URL machine pointing at `url`.
fn catalogue_with_url(dir: &Scratch, name: &str, url: &str) -> (PathBuf, PathBuf) {
    let etc = dir.path("etc");
    let machines = dir.path("machines");
    fs::create_dir_all(etc.join("config.d")).unwrap();
    fs::write(
        etc.join(format!("config.d/{name}.ini")),
        format!("[{name}]\nurl={url}\ndescription=Test image\n"),
    )
    .unwrap();
    (etc, machines)
}

#[test]
fn download_with_progress_links_the_image_then_revalidates() {
    let dir = Scratch::new("cat-dl");
    let server = ImageServer::start(&dir);
    let url = server.url("/images/test.qcow2");
    let (etc, machines) = catalogue_with_url(&dir, "test.qcow2", &url);
    let cat = Catalogue::load_from(&etc, &machines);
    let machine = cat.get("test.qcow2").unwrap();
    assert_eq!(machine.source, Source::Url(url.clone()));
    assert!(!machine.available);

    let client = client(Some(&server.ca_file), 1);
    let mut seen_progress: Vec<Progress> = Vec::new();
    let mut plain = Vec::new();
    let placed = {
        let mut line = download::ProgressLine::new("test.qcow2", &mut plain, false);
        download::place(machine, &machines, &client, &mut |p| {
            seen_progress.push(*p);
            line.update(p);
        })
        .unwrap()
    };
    assert_eq!(
        placed,
        Placed::Downloaded {
            bytes: IMAGE_LEN as u64,
            resumed_from: 0
        }
    );
    assert!(seen_progress.len() > 2);
    assert_eq!(seen_progress[0].received, 0);
    assert!(seen_progress
        .windows(2)
        .all(|w| w[0].received <= w[1].received));
    let last = seen_progress.last().unwrap();
    assert_eq!(last.received, IMAGE_LEN as u64);
    assert_eq!(last.total, Some(IMAGE_LEN as u64));
    let plain = String::from_utf8(plain).unwrap();
    assert!(
        plain
            .lines()
            .last()
            .unwrap()
            .starts_with("test.qcow2: 100% 3.1 MB of 3.1 MB"),
        "{plain}"
    );

    // dir_machines/<name> -> downloads/<name>/<name>, byte-identical.
    let link = machines.join("test.qcow2");
    assert_eq!(
        fs::read_link(&link).unwrap(),
        Path::new("downloads/test.qcow2/test.qcow2")
    );
    assert_eq!(fs::read(&link).unwrap(), server.state.body.as_ref());
    assert!(!machines
        .join("downloads/test.qcow2/test.qcow2.part")
        .exists());
    let cat = Catalogue::load_from(&etc, &machines);
    assert!(cat.get("test.qcow2").unwrap().available);
    assert!(cat.orphans().is_empty(), "{:?}", cat.orphans());

    // Unchanged on the server: a conditional request, answered 304, no new bytes.
    let before = fs::metadata(&link).unwrap().modified().unwrap();
    let again = download::place(
        cat.get("test.qcow2").unwrap(),
        &machines,
        &client,
        &mut |_| panic!("no body expected"),
    )
    .unwrap();
    assert_eq!(again, Placed::Unchanged);
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].header("if-none-match"), Some(ETAG));
    assert_eq!(seen[1].header("if-modified-since"), Some(LAST_MODIFIED));
    assert_eq!(seen[1].status, 304);
    assert_eq!(seen[0].path, "/images/test.qcow2");
    assert_eq!(fs::metadata(&link).unwrap().modified().unwrap(), before);
}

#[test]
fn interrupted_transfer_resumes_with_a_range_request() {
    let dir = Scratch::new("cat-resume");
    let server = ImageServer::start(&dir);
    server.state.cut_next.store(true, Ordering::SeqCst);
    let url = server.url("/r.iso");
    let dest = dir.path("out/r.iso");
    let part = dir.path("out/r.iso.part");
    let client = client(Some(&server.ca_file), 1);

    let err = client.download(&url, &dest, &mut |_| {}).unwrap_err();
    assert!(matches!(err, FetchError::Incomplete { .. }), "{err}");
    assert!(!dest.exists(), "no final file before every byte arrived");
    let kept = fs::metadata(&part).unwrap().len();
    assert!(kept > 0 && kept < IMAGE_LEN as u64, "kept {kept}");

    let outcome = client.download(&url, &dest, &mut |_| {}).unwrap();
    assert_eq!(
        outcome,
        DownloadOutcome::Downloaded {
            bytes: IMAGE_LEN as u64,
            resumed_from: kept
        }
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].header("range"), None);
    let range = format!("bytes={kept}-");
    assert_eq!(seen[1].header("range"), Some(range.as_str()));
    assert_eq!(seen[1].header("if-range"), Some(ETAG));
    assert_eq!(seen[1].status, 206);
    assert_eq!(fs::read(&dest).unwrap(), server.state.body.as_ref());
    assert!(!part.exists());
}

#[test]
fn server_ignoring_ranges_gets_a_restart_from_zero_within_the_retries() {
    let dir = Scratch::new("cat-norange");
    let server = ImageServer::start(&dir);
    server.state.cut_next.store(true, Ordering::SeqCst);
    server.state.ignore_range.store(true, Ordering::SeqCst);
    let dest = dir.path("n.img");
    let outcome = client(Some(&server.ca_file), 2)
        .download(&server.url("/n.img"), &dest, &mut |_| {})
        .unwrap();
    assert_eq!(
        outcome,
        DownloadOutcome::Downloaded {
            bytes: IMAGE_LEN as u64,
            resumed_from: 0
        }
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert!(
        seen[1].header("range").is_some(),
        "the retry asked for the rest"
    );
    assert_eq!(seen[1].status, 200);
    assert_eq!(fs::read(&dest).unwrap(), server.state.body.as_ref());
}

#[test]
fn certificate_from_an_unknown_ca_is_refused_and_leaves_no_file() {
    let dir = Scratch::new("cat-badca");
    let server = ImageServer::start(&dir);
    // Trust another CA only: the server's must still be refused.
    let other = make_certs(&dir.0, "other", &["127.0.0.1"]);
    let other_ca = dir.path("other-ca.pem");
    fs::write(&other_ca, &other.ca_pem).unwrap();
    let (etc, machines) = catalogue_with_url(&dir, "bad.iso", &server.url("/bad.iso"));
    let cat = Catalogue::load_from(&etc, &machines);
    let err = download::place(
        cat.get("bad.iso").unwrap(),
        &machines,
        &client(Some(&other_ca), 3),
        &mut |_| {},
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            darts::catalogue::CatalogueError::Fetch(FetchError::Certificate { .. })
        ),
        "{text}"
    );
    assert!(
        text.contains("certificate refused") && text.contains("UnknownIssuer"),
        "{text}"
    );
    assert!(
        server.seen().is_empty(),
        "no request after a failed handshake"
    );
    assert!(!machines.join("downloads").exists());
    assert!(fs::symlink_metadata(machines.join("bad.iso")).is_err());

    // The same failure from the small-text API.
    let opts = FetchOptions {
        proxy: ProxySetting::Direct,
        tries: 1,
        ..FetchOptions::default()
    };
    let err = fetch::fetch_text(&server.url("/x"), &opts, 100).unwrap_err();
    assert!(matches!(err, FetchError::Certificate { .. }), "{err}");
}

#[test]
fn fetch_text_reads_small_documents_and_refuses_large_ones() {
    let dir = Scratch::new("cat-text");
    let server = ImageServer::start(&dir);
    let opts = FetchOptions {
        proxy: ProxySetting::Direct,
        ca_file: Some(server.ca_file.clone()),
        ..FetchOptions::default()
    };
    let err = fetch::fetch_text(&server.url("/big"), &opts, 1000).unwrap_err();
    assert!(
        matches!(err, FetchError::TooLarge { max: 1000, .. }),
        "{err}"
    );
    let text = fetch::fetch_text(&server.url("/all"), &opts, IMAGE_LEN).unwrap();
    assert_eq!(
        text,
        String::from_utf8_lossy(&server.state.body).into_owned()
    );
}

/// A CONNECT proxy that records each request line.
async fn connect_proxy() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                continue;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let first = head.lines().next().unwrap_or("").to_owned();
                seen.lock().unwrap().push(first.clone());
                let mut parts = first.split(' ');
                if parts.next() != Some("CONNECT") {
                    let _ = client.write_all(b"HTTP/1.1 405 Only CONNECT\r\n\r\n").await;
                    return;
                }
                let target = parts.next().unwrap_or("").to_owned();
                let Ok(mut upstream) = TcpStream::connect(&target).await else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (addr, log)
}

#[test]
fn download_through_a_connect_proxy() {
    let dir = Scratch::new("cat-proxy");
    let server = ImageServer::start(&dir);
    let (proxy, log) = server.rt.block_on(connect_proxy());
    let client = Client::new(FetchOptions {
        proxy: ProxySetting::Url(format!("http://{proxy}")),
        ca_file: Some(server.ca_file.clone()),
        tries: 1,
        ..FetchOptions::default()
    })
    .unwrap();
    let dest = dir.path("p.vmdk");
    client
        .download(&server.url("/p.vmdk"), &dest, &mut |_| {})
        .unwrap();
    assert_eq!(fs::read(&dest).unwrap(), server.state.body.as_ref());
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0], format!("CONNECT {} HTTP/1.1", server.addr));
    assert_eq!(server.seen().len(), 1);
}

const MAIN_CONF: &str = "\
; Machines offered on the landing page.
; One section per machine.

[slax.iso]
; Slax, a small live system
url=https://example.org/slax.iso   ; official mirror
description=Slax (Debian, [www.slax.org])

;[tinycore.iso]
;url=http://tinycorelinux.net/Core.iso
;description=TinyCore

[debian.qcow2]
description=Debian 12
";

#[test]
fn enable_and_disable_round_trip_on_the_files() {
    let dir = Scratch::new("cat-edit");
    let etc = dir.path("etc");
    let machines = dir.path("machines");
    fs::create_dir_all(etc.join("config.d")).unwrap();
    fs::create_dir_all(&machines).unwrap();
    let main = etc.join("machines.conf");
    fs::write(&main, MAIN_CONF).unwrap();
    let extra = etc.join("config.d/10-extra.ini");
    let extra_text = "# more\n[slax.iso]\ndescription=Slax again\n";
    fs::write(&extra, extra_text).unwrap();

    // Disable comments the block out in every file holding it; comments stay.
    let out = store::disable(&etc, &machines, "slax.iso").unwrap();
    assert_eq!(
        out,
        DisableOutcome::Disabled(vec![main.clone(), extra.clone()])
    );
    let disabled = fs::read_to_string(&main).unwrap();
    assert!(disabled.contains(
        ";[slax.iso]\n;; Slax, a small live system\n;url=https://example.org/slax.iso   ; official mirror\n"
    ), "{disabled}");
    assert!(disabled.starts_with(
        "; Machines offered on the landing page.\n; One section per machine.\n\n;[slax.iso]"
    ));
    assert_eq!(
        fs::read_to_string(&extra).unwrap(),
        "# more\n;[slax.iso]\n;description=Slax again\n"
    );
    let cat = Catalogue::load_from(&etc, &machines);
    assert!(cat.get("slax.iso").is_none());
    assert!(cat.disabled().iter().any(|d| d.name == "slax.iso"));
    assert_eq!(
        store::disable(&etc, &machines, "slax.iso").unwrap(),
        DisableOutcome::AlreadyDisabled
    );
    assert!(store::disable(&etc, &machines, "nothing.iso").is_err());

    // Enabling by name uncomments the first block: machines.conf is back as it was.
    let (name, out) = store::enable(
        &etc,
        &machines,
        &EnableRequest {
            target: EnableTarget::Name("slax.iso".into()),
            description: None,
            link: false,
        },
    )
    .unwrap();
    assert_eq!(name, "slax.iso");
    assert_eq!(out, EnableOutcome::Uncommented(main.clone()));
    assert_eq!(fs::read_to_string(&main).unwrap(), MAIN_CONF);

    // A shipped example block, enabled with a new description.
    let (_, out) = store::enable(
        &etc,
        &machines,
        &EnableRequest {
            target: EnableTarget::Name("tinycore.iso".into()),
            description: Some("Tiny Core 15".into()),
            link: false,
        },
    )
    .unwrap();
    assert_eq!(out, EnableOutcome::Uncommented(main.clone()));
    let cat = Catalogue::load_from(&etc, &machines);
    let tiny = cat.get("tinycore.iso").unwrap();
    assert_eq!(tiny.description, "Tiny Core 15");
    assert_eq!(
        tiny.source,
        Source::Url("http://tinycorelinux.net/Core.iso".into())
    );
    assert!(cat.problems().is_empty(), "{:?}", cat.problems());

    // A URL creates config.d/<name>.ini.
    let (name, out) = store::enable(
        &etc,
        &machines,
        &EnableRequest {
            target: EnableTarget::Url("https://example.org/dl/alpine.iso?mirror=1".into()),
            description: Some("Alpine".into()),
            link: false,
        },
    )
    .unwrap();
    assert_eq!(name, "alpine.iso");
    let created = etc.join("config.d/alpine.iso.ini");
    assert_eq!(out, EnableOutcome::Created(created.clone()));
    assert_eq!(
        fs::read_to_string(&created).unwrap(),
        "[alpine.iso]\nurl=https://example.org/dl/alpine.iso?mirror=1\ndescription=Alpine\n"
    );

    // A local file is copied in; with --link it is symlinked.
    let src = dir.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("local.qcow2"), "disk").unwrap();
    fs::write(src.join("linked.raw"), "raw").unwrap();
    store::enable(
        &etc,
        &machines,
        &EnableRequest {
            target: EnableTarget::File(src.join("local.qcow2")),
            description: None,
            link: false,
        },
    )
    .unwrap();
    let copied = machines.join("local.qcow2");
    assert!(!copied.is_symlink());
    assert_eq!(fs::read_to_string(&copied).unwrap(), "disk");
    store::enable(
        &etc,
        &machines,
        &EnableRequest {
            target: EnableTarget::File(src.join("linked.raw")),
            description: None,
            link: true,
        },
    )
    .unwrap();
    assert_eq!(
        fs::read_link(machines.join("linked.raw")).unwrap(),
        src.join("linked.raw")
    );
    let cat = Catalogue::load_from(&etc, &machines);
    assert!(cat.get("local.qcow2").unwrap().available);
    let linked = cat.get("linked.raw").unwrap();
    assert!(linked.available);
    assert_eq!(linked.source, Source::Path(src.join("linked.raw")));

    // Refusals: unsafe or unknown names, and no change to the files.
    let before = fs::read_to_string(&main).unwrap();
    for bad in ["../x.iso", "x.exe", ".hidden.iso"] {
        assert!(
            store::enable(
                &etc,
                &machines,
                &EnableRequest {
                    target: EnableTarget::Name(bad.into()),
                    description: None,
                    link: false,
                },
            )
            .is_err(),
            "{bad}"
        );
    }
    assert_eq!(fs::read_to_string(&main).unwrap(), before);
}

#[test]
fn purge_deletes_orphans_but_keeps_enabled_and_in_use_images() {
    let dir = Scratch::new("cat-purge");
    let etc = dir.path("etc");
    let machines = dir.path("machines");
    fs::create_dir_all(&etc).unwrap();
    fs::create_dir_all(machines.join("downloads/old.iso")).unwrap();
    fs::create_dir_all(machines.join("downloads/kept.iso")).unwrap();
    fs::write(etc.join("machines.conf"), "[kept.iso]\n;[gone.qcow2]\n").unwrap();
    fs::write(machines.join("downloads/old.iso/old.iso"), "old").unwrap();
    fs::write(machines.join("downloads/kept.iso/kept.iso"), "kept").unwrap();
    std::os::unix::fs::symlink("downloads/kept.iso/kept.iso", machines.join("kept.iso")).unwrap();
    std::os::unix::fs::symlink("downloads/old.iso/old.iso", machines.join("old.iso")).unwrap();
    fs::write(machines.join("gone.qcow2"), "gone").unwrap();
    fs::write(machines.join("running.qcow2"), "running").unwrap();
    let outside = dir.path("outside.img");
    fs::write(&outside, "not ours").unwrap();
    std::os::unix::fs::symlink(&outside, machines.join("outside.img")).unwrap();

    let cat = Catalogue::load_from(&etc, &machines);
    let mut asked = Vec::new();
    let report = purge::purge(&cat, &[machines.join("running.qcow2")], None, &mut |p| {
        asked.push(p.to_owned());
        !p.ends_with("gone.qcow2")
    })
    .unwrap();
    assert_eq!(report.in_use, vec![machines.join("running.qcow2")]);
    assert_eq!(report.declined, vec![machines.join("gone.qcow2")]);
    assert_eq!(
        report.deleted,
        vec![
            machines.join("downloads/old.iso"),
            machines.join("old.iso"),
            machines.join("outside.img"),
        ]
    );
    assert_eq!(asked.len(), 4);
    assert!(machines.join("kept.iso").is_file());
    assert!(machines.join("running.qcow2").exists());
    assert!(outside.exists(), "a link is removed, never followed");
    assert!(!machines.join("downloads/old.iso").exists());
}

fn write_config(dir: &Scratch) -> PathBuf {
    let cfg = dir.path("darts.toml");
    fs::write(
        &cfg,
        format!(
            "dir_etc = {:?}\ndir_machines = {:?}\ndir_cfg = {:?}\n",
            dir.path("etc"),
            dir.path("machines"),
            dir.path("sessions")
        ),
    )
    .unwrap();
    for d in ["etc/config.d", "machines", "sessions"] {
        fs::create_dir_all(dir.path(d)).unwrap();
    }
    cfg
}

fn darts(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(darts_bin())
        .args(args)
        .env_remove("DARTS_YES")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn darts_machines_list_with_a_config_file() {
    let dir = Scratch::new("cat-cli-list");
    let cfg = write_config(&dir);
    fs::write(dir.path("etc/machines.conf"), MAIN_CONF).unwrap();
    fs::write(dir.path("etc/config.d/broken.ini"), "[x.iso]\nurll=typo\n").unwrap();
    fs::write(dir.path("machines/debian.qcow2"), "disk").unwrap();
    fs::write(dir.path("machines/stray.vdi"), "old").unwrap();

    let (ok, stdout, stderr) = darts(&["machines", "list", "-c", cfg.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let line = |needle: &str| {
        stdout
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in:\n{stdout}"))
            .to_owned()
    };
    assert!(line("slax.iso").starts_with("  [x] slax.iso"));
    assert!(line("slax.iso").contains("MISSING"));
    assert!(
        line("slax.iso").contains("Slax (Debian, [www.slax.org])  <- https://example.org/slax.iso")
    );
    assert!(line("debian.qcow2").contains("available"));
    assert!(line("tinycore.iso").starts_with("  [ ] tinycore.iso"));
    assert!(line("] x.iso").starts_with("  [x] x.iso"));
    assert_eq!(line("stray.vdi").trim(), "stray.vdi");
    assert!(line("broken.ini:2").contains("unknown key \"urll\""));
    // qwdctl's default command is the status.
    let (ok, default_out, _) = darts(&["machines", "-c", cfg.to_str().unwrap()]);
    assert!(ok);
    assert_eq!(default_out, stdout);
}

#[test]
fn darts_machines_download_and_purge_from_the_command_line() {
    let dir = Scratch::new("cat-cli-dl");
    let server = ImageServer::start(&dir);
    let cfg = write_config(&dir);
    let cfg = cfg.to_str().unwrap();
    let ca = server.ca_file.to_str().unwrap();
    let url = server.url("/cli.qcow2");

    let (ok, stdout, stderr) = darts(&[
        "machines",
        "enable",
        &url,
        "CLI image",
        "-c",
        cfg,
        "--ca",
        ca,
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("cli.qcow2: enabled in new"), "{stdout}");
    assert!(stdout.contains("cli.qcow2: downloaded 3.1 MB"), "{stdout}");
    // stderr is a pipe: plain progress lines, no carriage returns.
    assert!(
        stderr.contains("cli.qcow2: 100% 3.1 MB of 3.1 MB"),
        "{stderr}"
    );
    assert!(!stderr.contains('\r'));
    assert_eq!(
        fs::read(dir.path("machines/cli.qcow2")).unwrap(),
        server.state.body.as_ref()
    );

    let (ok, stdout, stderr) = darts(&["machines", "download", "-c", cfg, "--ca", ca]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("cli.qcow2: up to date"), "{stdout}");

    // Without the CA: refused, with a hint.
    let (ok, _, stderr) = darts(&["machines", "download", "cli.qcow2", "-c", cfg]);
    assert!(!ok);
    assert!(stderr.contains("certificate refused"), "{stderr}");
    assert!(stderr.contains("--ca FILE"), "{stderr}");

    // Disable, then purge -y: the download goes; an image a session uses stays.
    let (ok, stdout, stderr) = darts(&["machines", "disable", "cli.qcow2", "-c", cfg]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("disabled in"), "{stdout}");
    fs::write(dir.path("machines/busy.iso"), "busy").unwrap();
    fs::write(
        dir.path("sessions/s1.json"),
        format!(
            "{{\"name\":\"s1\",\"machine_path\":{:?}}}",
            dir.path("machines/busy.iso")
        ),
    )
    .unwrap();
    let (ok, stdout, stderr) = darts(&["machines", "purge", "-y", "-c", cfg]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("kept") && stdout.contains("busy.iso (in use)"),
        "{stdout}"
    );
    assert!(!dir.path("machines/cli.qcow2").exists());
    assert!(fs::symlink_metadata(dir.path("machines/cli.qcow2")).is_err());
    assert!(!dir.path("machines/downloads/cli.qcow2").exists());
    assert!(dir.path("machines/busy.iso").exists());

    // Without -y and with no answer on stdin, nothing is deleted.
    fs::write(dir.path("machines/ask.iso"), "x").unwrap();
    let (ok, stdout, stderr) = darts(&["machines", "purge", "-c", cfg]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("ask.iso? [y/N]"), "{stderr}");
    assert!(!stdout.contains("deleted"), "{stdout}");
    assert!(dir.path("machines/ask.iso").exists());
}
