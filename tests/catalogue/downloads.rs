//! Downloads through `darts::fetch` and `darts::catalogue::download`: progress,
//! revalidation, resume, certificates, small documents and a CONNECT proxy.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use darts::catalogue::download::{self, Placed};
use darts::catalogue::{Catalogue, Source};
use darts::fetch::{
    self, Client, DownloadOutcome, FetchError, FetchOptions, Progress, ProxySetting,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::image_server::{ImageServer, ETAG, IMAGE_LEN, LAST_MODIFIED};
use crate::support::{make_certs, Scratch};

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
