//! Boot scripts end to end: scripts served by a real HTTP server on 127.0.0.1, fetched,
//! filtered by their conditions, and written as virt-customize's input files.

use std::collections::HashMap;
use std::convert::Infallible;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use darts::script::{plan, virt_customize_argv, Customize, Plan, Vars};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A plain HTTP/1.1 server with fixed pages; remembers the paths asked for.
struct ScriptServer {
    addr: SocketAddr,
    asked: Arc<Mutex<Vec<String>>>,
}

impl ScriptServer {
    async fn start(pages: &[(&str, &str)]) -> Self {
        let pages: Arc<HashMap<String, String>> = Arc::new(
            pages
                .iter()
                .map(|(p, b)| (p.to_string(), b.to_string()))
                .collect(),
        );
        let asked = Arc::new(Mutex::new(Vec::new()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = asked.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (pages, log) = (pages.clone(), log.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let path = req.uri().path().to_owned();
                        log.lock().unwrap().push(path.clone());
                        let response = match pages.get(&path) {
                            Some(body) => Response::new(Full::new(Bytes::from(body.clone()))),
                            None => Response::builder()
                                .status(StatusCode::NOT_FOUND)
                                .body(Full::new(Bytes::from_static(b"not found")))
                                .unwrap(),
                        };
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        ScriptServer { addr, asked }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

/// A minimal HTTP/1.0 GET for `http://host:port/path`: the body of a 200, else an error.
fn http_get(url: &str) -> Result<String, String> {
    let rest = url.strip_prefix("http://").ok_or("not http")?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = TcpStream::connect(host).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8(raw).map_err(|e| e.to_string())?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no header end")?;
    let status = head.lines().next().unwrap_or_default();
    if status.split(' ').nth(1) != Some("200") {
        return Err(status.to_owned());
    }
    Ok(body.to_owned())
}

/// `plan` off the async threads, as darts calls it (downloads block).
async fn plan_for(scripts: Vec<String>, vars: Vars) -> Plan {
    tokio::task::spawn_blocking(move || plan(&scripts, &vars, 65535, &http_get).unwrap())
        .await
        .unwrap()
}

fn vars(vm: &str) -> Vars {
    Vars {
        user: "alice".into(),
        session_name: "s-0042".into(),
        vm: vm.into(),
    }
}

const DEBIAN_SCRIPT: &str =
    "#!/bin/sh\necho \"caf\u{e9} for @USER@ in @SESSION_NAME@\" > /etc/motd\n";
const GUARDED_SCRIPT: &str = "if(\"@VM@\" =~ /debian/i):\n#!/bin/sh\ntouch /root/debian-only\n";

async fn server() -> ScriptServer {
    ScriptServer::start(&[
        ("/debian/alice.sh", DEBIAN_SCRIPT),
        ("/guarded.sh", GUARDED_SCRIPT),
    ])
    .await
}

fn config(server: &ScriptServer) -> Vec<String> {
    vec![
        format!(
            "if(\"@VM@\" =~ /debian/i): {}",
            server.url("/debian/@USER@.sh")
        ),
        server.url("/guarded.sh"),
        server.url("/missing.sh"),
        "virt-customize: run-command echo @VM@ > /etc/darts-vm".into(),
        "qemu: -smp 2 -name \"desktop of @USER@\"".into(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_scripts_become_private_virt_customize_files() {
    let server = server().await;
    let plan = plan_for(config(&server), vars("Debian12.qcow2")).await;

    assert_eq!(
        server.asked(),
        ["/debian/alice.sh", "/guarded.sh", "/missing.sh"]
    );
    assert_eq!(plan.qemu_args, ["-smp", "2", "-name", "desktop of alice"]);
    let motd = "#!/bin/sh\necho \"caf for alice in s-0042\" > /etc/motd\n";
    let guarded = "#!/bin/sh\ntouch /root/debian-only\n";
    let commands = "run-command echo Debian12.qcow2 > /etc/darts-vm";
    assert_eq!(
        plan.customize,
        vec![
            Customize::FirstBoot(motd.into()),
            Customize::FirstBoot(guarded.into()),
            Customize::CommandsFromFile(commands.into()),
        ]
    );

    let dir = tempfile::tempdir().unwrap();
    let overlay = dir.path().join("overlay.qcow2");
    let argv = virt_customize_argv(&plan, &overlay, dir.path())
        .unwrap()
        .unwrap();
    let file = |n: usize| dir.path().join(format!("configuration_script_{n}"));
    let expected: Vec<OsString> = vec![
        "virt-customize".into(),
        "-a".into(),
        overlay.clone().into(),
        "--firstboot".into(),
        file(0).into(),
        "--firstboot".into(),
        file(1).into(),
        "--commands-from-file".into(),
        file(2).into(),
    ];
    assert_eq!(argv, expected);
    for (n, content) in [motd, guarded, commands].into_iter().enumerate() {
        assert_eq!(std::fs::read_to_string(file(n)).unwrap(), content);
        let mode = std::fs::metadata(file(n)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "configuration_script_{n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_decide_what_is_fetched_and_kept() {
    let server = server().await;
    let plan = plan_for(config(&server), vars("ubuntu-24.04.qcow2")).await;

    // The Debian URL is never requested; the guarded script is fetched, and its own
    // condition drops it.
    assert_eq!(server.asked(), ["/guarded.sh", "/missing.sh"]);
    assert_eq!(
        plan.customize,
        vec![Customize::CommandsFromFile(
            "run-command echo ubuntu-24.04.qcow2 > /etc/darts-vm".into()
        )]
    );
    assert_eq!(plan.qemu_args, ["-smp", "2", "-name", "desktop of alice"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_to_customise_writes_nothing() {
    let server = server().await;
    let scripts = vec![
        format!(
            "if(\"@VM@\" =~ /debian/i): {}",
            server.url("/debian/alice.sh")
        ),
        "qemu: -usb".into(),
    ];
    let plan = plan_for(scripts, vars("fedora.qcow2")).await;
    assert!(server.asked().is_empty());
    let dir = tempfile::tempdir().unwrap();
    let argv = virt_customize_argv(&plan, &dir.path().join("o.qcow2"), dir.path()).unwrap();
    assert_eq!(argv, None);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    assert_eq!(plan.qemu_args, ["-usb"]);
}
