//! darts as the RFB security proxy, against real QEMU: VNC passwords and VeNCrypt x509
//! answered by darts while the browser gets security None, clear refusals when darts
//! cannot authenticate, and view-only viewers whose input never reaches the VM.

#[path = "support/qemu.rs"]
mod qemu;
mod support;
#[path = "support/vm.rs"]
mod vm;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use darts::qmp::Qmp;
use darts_proxy::rfb::BackendSecurity;
use darts_proxy::tls::{client_config, CertPaths};
use darts_proxy::{Route, Target, TokenMap};
use darts_vnc::vnc_auth::Password;
use qemu::RfbOverWs;
use rustls::pki_types::ServerName;
use support::*;
use vm::Vm;

const T: Duration = Duration::from_secs(20);

async fn gateway(routes: Vec<(&str, Route)>) -> TestGateway {
    let tokens = TokenMap::new();
    for (tok, route) in routes {
        tokens.insert(tok, route);
    }
    TestGateway::start(TestGateway::rfb_config(), tokens).await
}

async fn viewer(gw: &TestGateway, token: &str) -> RfbOverWs {
    let ws = ws_connect(&gw.ws_url(&format!("/websockify?token={token}")), &[])
        .await
        .unwrap();
    RfbOverWs::new(ws, T)
}

/// Expects the RFB refusal (zero security types) and returns its reason.
async fn refusal(v: &mut RfbOverWs) -> String {
    assert_eq!(v.read(12).await, b"RFB 003.008\n");
    v.send(b"RFB 003.008\n").await;
    assert_eq!(v.u8().await, 0, "zero security types means refused");
    let len = v.u32().await as usize;
    String::from_utf8(v.read(len).await).unwrap()
}

#[tokio::test]
async fn vnc_password_is_answered_by_darts() {
    let dir = Scratch::new("sec-pw");
    let vm = Vm::start(&dir.0, ",password=on", &[]);
    let mut qmp = Qmp::connect(&vm.qmp, T).await.unwrap();
    qmp.set_vnc_password("s3cret12").await.unwrap();
    let gw = gateway(vec![
        (
            "good",
            Route::new(vm.target())
                .security(BackendSecurity::VncPassword(Password::new("s3cret12"))),
        ),
        (
            "bad",
            Route::new(vm.target())
                .security(BackendSecurity::VncPassword(Password::new("wrong-pw"))),
        ),
        ("none", Route::new(vm.target())),
    ])
    .await;

    let mut v = viewer(&gw, "good").await;
    let init = v.handshake().await; // asserts the browser is offered None
    assert!(init.width > 0 && init.height > 0);
    v.set_raw_rgb32().await;
    let frame = v.full_frame(40).await;
    assert_eq!(frame.area, u64::from(v.width) * u64::from(v.height));

    let mut v = viewer(&gw, "bad").await;
    let reason = refusal(&mut v).await;
    assert!(reason.contains("could not authenticate"), "{reason}");
    assert_eq!(v.expect_close(T).await, 1011);

    // Without darts' password the browser would be asked for one (passthrough).
    let mut v = viewer(&gw, "none").await;
    assert_eq!(v.read(12).await, b"RFB 003.008\n");
    v.send(b"RFB 003.008\n").await;
    let n = v.u8().await as usize;
    assert_eq!(
        v.read(n).await,
        vec![2],
        "QEMU itself asks for VNC authentication"
    );
    let (_, _, body) = http_get(gw.addr, "/metrics", "").await;
    assert!(String::from_utf8(body)
        .unwrap()
        .contains("darts_session_ends_total{reason=\"target_refused\"} 1"));
}

fn make_ca(dir: &Path, name: &str) -> PathBuf {
    let out = dir.join(name);
    let ok = Command::new("bash")
        .arg(qemu::repo_path("certs/gen-test-ca.sh"))
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .expect("openssl via certs/gen-test-ca.sh")
        .success();
    assert!(ok, "certificate generation failed");
    out
}

fn x509(ca_dir: &Path, client_dir: Option<&Path>, password: Option<&str>) -> BackendSecurity {
    let client = client_dir.map(|d| CertPaths {
        cert: d.join("client/client-cert.pem"),
        key: Some(d.join("client/client-key.pem")),
    });
    BackendSecurity::X509 {
        tls: client_config(&ca_dir.join("client/ca-cert.pem"), client.as_ref()).unwrap(),
        server_name: ServerName::try_from("localhost").unwrap(),
        password: password.map(Password::new),
    }
}

#[tokio::test]
async fn vencrypt_x509_with_client_certificate() {
    let dir = Scratch::new("sec-x509");
    let good = make_ca(&dir.0, "pki");
    let other = make_ca(&dir.0, "other");
    let creds = format!(
        "tls-creds-x509,id=tls0,dir={},endpoint=server,verify-peer=yes",
        good.join("server").display()
    );
    let vm = Vm::start(&dir.0, ",tls-creds=tls0", &["-object".into(), creds]);
    let gw = gateway(vec![
        (
            "ok",
            Route::new(vm.target()).security(x509(&good, Some(&good), None)),
        ),
        (
            "nocert",
            Route::new(vm.target()).security(x509(&good, None, None)),
        ),
        (
            "othercert",
            Route::new(vm.target()).security(x509(&good, Some(&other), None)),
        ),
        (
            "wrongca",
            Route::new(vm.target()).security(x509(&other, Some(&good), None)),
        ),
        ("plain", Route::new(vm.target())),
    ])
    .await;

    // QEMU with x509 needs up to a second before it answers the first time.
    let mut v = viewer(&gw, "ok").await;
    v.handshake().await;
    v.set_raw_rgb32().await;
    let frame = v.full_frame(40).await;
    assert_eq!(frame.area, u64::from(v.width) * u64::from(v.height));

    for token in ["nocert", "othercert", "wrongca"] {
        let mut v = viewer(&gw, token).await;
        let reason = refusal(&mut v).await;
        assert!(
            reason.contains("could not authenticate"),
            "{token}: {reason}"
        );
        assert_eq!(v.expect_close(T).await, 1011, "{token}");
    }
    // A browser reaching QEMU directly sees only VeNCrypt, which noVNC cannot do over TLS.
    let mut v = viewer(&gw, "plain").await;
    assert_eq!(v.read(12).await, b"RFB 003.008\n");
    v.send(b"RFB 003.008\n").await;
    let n = v.u8().await as usize;
    assert_eq!(v.read(n).await, vec![19]);
}

#[tokio::test]
async fn x509_plus_password() {
    let dir = Scratch::new("sec-x509pw");
    let pki = make_ca(&dir.0, "pki");
    let creds = format!(
        "tls-creds-x509,id=tls0,dir={},endpoint=server,verify-peer=yes",
        pki.join("server").display()
    );
    let vm = Vm::start(
        &dir.0,
        ",tls-creds=tls0,password=on",
        &["-object".into(), creds],
    );
    let mut qmp = Qmp::connect(&vm.qmp, T).await.unwrap();
    qmp.set_vnc_password("pw4x509").await.unwrap();
    let gw = gateway(vec![
        (
            "ok",
            Route::new(vm.target()).security(x509(&pki, Some(&pki), Some("pw4x509"))),
        ),
        (
            "badpw",
            Route::new(vm.target()).security(x509(&pki, Some(&pki), Some("nope"))),
        ),
    ])
    .await;
    let mut v = viewer(&gw, "ok").await;
    v.handshake().await;
    v.set_raw_rgb32().await;
    v.full_frame(40).await;
    let mut v = viewer(&gw, "badpw").await;
    assert!(refusal(&mut v).await.contains("could not authenticate"));
}

#[tokio::test]
async fn targets_that_are_not_vnc_servers_are_refused_clearly() {
    let http = echo_backend(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
    let closed = {
        tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let tcp = |a: std::net::SocketAddr| Target::Tcp {
        host: a.ip().to_string(),
        port: a.port(),
    };
    let gw = gateway(vec![
        ("http", Route::new(tcp(http))),
        ("closed", Route::new(tcp(closed))),
    ])
    .await;
    let mut v = viewer(&gw, "http").await;
    assert!(refusal(&mut v).await.contains("not a VNC server"));
    assert_eq!(v.expect_close(T).await, 1011);
    let mut v = viewer(&gw, "closed").await;
    assert!(refusal(&mut v).await.contains("not answering"));
}

/// `text` as RFB KeyEvents (press and release), with Shift held around the characters
/// that need it on a US keyboard (QEMU maps keysyms to keys of its `en-us` layout).
fn key_events(text: &str) -> Vec<u8> {
    const SHIFT: u32 = 0xffe1;
    let mut out = Vec::new();
    let mut key = |sym: u32, down: u8| {
        out.extend_from_slice(&[4, down, 0, 0]);
        out.extend_from_slice(&sym.to_be_bytes());
    };
    for c in text.chars() {
        let sym: u32 = if c == '\n' { 0xff0d } else { c as u32 };
        let shifted = c.is_ascii_uppercase() || "~!@#$%^&*()_+{}|:\"<>?".contains(c);
        if shifted {
            key(SHIFT, 1);
        }
        key(sym, 1);
        key(sym, 0);
        if shifted {
            key(SHIFT, 0);
        }
    }
    out
}

/// Types `text` as RFB key events, one message at a time.
async fn type_keys(v: &mut RfbOverWs, text: &str) {
    for m in key_events(text).chunks(8) {
        v.send(m).await;
    }
}

/// The test guest booted with its shell on the screen; the serial port written to
/// `serial.txt` in `dir`.
async fn booted_guest(dir: &Scratch, tag: &str) -> (Vm, PathBuf) {
    let g = qemu::guest();
    let serial = dir.path("serial.txt");
    let vm = Vm::start(
        &dir.0,
        "",
        &[
            "-kernel".into(),
            g.kernel.display().to_string(),
            "-initrd".into(),
            g.initrd.display().to_string(),
            "-append".into(),
            format!("console=tty0 quiet e2e.boot={tag}"),
            "-serial".into(),
            format!("file:{}", serial.display()),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    while !std::fs::read_to_string(&serial)
        .unwrap_or_default()
        .contains("E2E-GUEST-READY")
    {
        assert!(Instant::now() < deadline, "guest did not boot");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    (vm, serial)
}

#[tokio::test]
async fn view_only_input_never_reaches_the_vm() {
    let dir = Scratch::new("sec-viewonly");
    let (vm, _serial) = booted_guest(&dir, "viewonly").await;
    let gw = gateway(vec![
        ("full", Route::new(vm.target())),
        ("view", Route::new(vm.target()).view_only(true)),
    ])
    .await;
    let mut full = viewer(&gw, "full").await;
    full.handshake().await;
    full.set_raw_rgb32().await;
    let mut view = viewer(&gw, "view").await;
    view.handshake().await;
    view.set_raw_rgb32().await;
    let before = full.full_frame(40).await.nonblack;

    type_keys(&mut view, "echo view-only-viewer-typed-this\n").await;
    let pointer = [5u8, 1, 0, 100, 0, 100];
    view.send(&pointer).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_view = full.full_frame(40).await.nonblack;
    // The view-only viewer still gets the screen.
    assert!(view.full_frame(40).await.nonblack > 0);

    type_keys(&mut full, "echo full-control-viewer-typed-this\n").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_full = full.full_frame(40).await.nonblack;
    let delta_view = after_view.abs_diff(before);
    let delta_full = after_full.abs_diff(after_view);
    assert!(
        delta_view < 200,
        "view-only typing changed {delta_view} pixels"
    );
    assert!(
        delta_full > 1000,
        "full-control typing changed only {delta_full} pixels"
    );
}

/// One message the gateway frames as a harmless SetEncodings, which QEMU, left 6 bytes
/// short of the end of a FramebufferUpdateRequest, reads as that request's end, then
/// key events typing `text`, then a whole request: both end on the same boundary.
fn smuggled_keys(text: &str) -> Vec<u8> {
    let keys = key_events(text);
    let count = 3 + keys.len() / 4;
    let mut m = vec![2, 0];
    m.extend_from_slice(&u16::try_from(count).unwrap().to_be_bytes());
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(&keys);
    m.extend_from_slice(&[3, 1, 0, 0, 0, 0, 0, 16, 0, 16]);
    assert_eq!(m.len(), 4 + 4 * count);
    m
}

/// The confirmed view-only exploit against real QEMU: ClientInit and the first 4 bytes
/// of a FramebufferUpdateRequest in one frame, then messages that QEMU would read as key
/// events. Neither the guest's screen nor its serial console may change; the same
/// command typed by the owner reaches both.
#[tokio::test]
async fn view_only_smuggling_after_client_init_never_reaches_the_vm() {
    let dir = Scratch::new("sec-smuggle");
    let (vm, serial) = booted_guest(&dir, "smuggle").await;
    let gw = gateway(vec![
        ("full", Route::new(vm.target())),
        ("view", Route::new(vm.target()).view_only(true)),
    ])
    .await;
    let mut full = viewer(&gw, "full").await;
    full.handshake().await;
    full.set_raw_rgb32().await;
    let before = full.full_frame(40).await.nonblack;

    let mut view = viewer(&gw, "view").await;
    view.handshake_then(&[3, 1, 0, 0]).await;
    for _ in 0..3 {
        view.send(&smuggled_keys("echo SMUGGLED-$((6*7)) > /dev/ttyS0\n"))
            .await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after_view = full.full_frame(40).await.nonblack;
    let serial_text = std::fs::read_to_string(&serial).unwrap_or_default();
    assert!(
        !serial_text.contains("SMUGGLED-42"),
        "the view-only viewer's keys ran in the guest: {serial_text}"
    );
    assert!(
        after_view.abs_diff(before) < 200,
        "the view-only viewer changed {} pixels",
        after_view.abs_diff(before)
    );

    type_keys(&mut full, "echo OWNER-$((6*7)) > /dev/ttyS0\n").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&serial)
        .unwrap_or_default()
        .contains("OWNER-42")
    {
        assert!(Instant::now() < deadline, "the owner's command never ran");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!std::fs::read_to_string(&serial)
        .unwrap()
        .contains("SMUGGLED-42"));
}

#[tokio::test]
async fn darts_certs_init_makes_material_qemu_and_darts_accept() {
    use std::os::unix::fs::PermissionsExt;
    let dir = Scratch::new("sec-certs");
    let pki = dir.path("pki");
    let out = Command::new(darts_bin())
        .args(["certs", "init"])
        .arg(&pki)
        .arg("--crl")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = |rel: &str| {
        std::fs::metadata(pki.join(rel))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("ca/ca-key.pem"), 0o600);
    assert_eq!(mode("server/server-key.pem"), 0o640);
    assert_eq!(mode("client/client-key.pem"), 0o600);
    assert_eq!(mode("server"), 0o750);
    assert_eq!(mode("server/server-cert.pem"), 0o644);
    assert!(pki.join("server/ca-crl.pem").is_file());
    // A second init refuses to overwrite the CA.
    let again = Command::new(darts_bin())
        .args(["certs", "init"])
        .arg(&pki)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));

    let creds = format!(
        "tls-creds-x509,id=tls0,dir={},endpoint=server,verify-peer=yes",
        pki.join("server").display()
    );
    let vm = Vm::start(&dir.0, ",tls-creds=tls0", &["-object".into(), creds]);
    let gw = gateway(vec![(
        "ok",
        Route::new(vm.target()).security(x509(&pki, Some(&pki), None)),
    )])
    .await;
    let mut v = viewer(&gw, "ok").await;
    v.handshake().await;
    v.set_raw_rgb32().await;
    v.full_frame(40).await;
}

#[tokio::test]
async fn token_file_options_configure_security_through_darts_proxy() {
    let dir = Scratch::new("sec-tokfile");
    let pki = dir.path("pki");
    assert!(Command::new(darts_bin())
        .args(["certs", "init"])
        .arg(&pki)
        .output()
        .unwrap()
        .status
        .success());
    let creds = format!(
        "tls-creds-x509,id=tls0,dir={},endpoint=server,verify-peer=yes",
        pki.join("server").display()
    );
    let vm = Vm::start(&dir.0, ",tls-creds=tls0", &["-object".into(), creds]);
    let c = pki.join("client");
    let tokens = dir.path("tokens.cfg");
    std::fs::write(
        &tokens,
        format!(
            "vm1: unix_socket:{sock} security=x509 ca={ca} cert={cert} key={key}\nvm1-view: unix_socket:{sock} security=x509 ca={ca} cert={cert} key={key} view-only\n",
            sock = vm.vnc.display(),
            ca = c.join("ca-cert.pem").display(),
            cert = c.join("client-cert.pem").display(),
            key = c.join("client-key.pem").display(),
        ),
    )
    .unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let listen = addr.to_string();
    let _darts = DartsProcess::start(
        &[
            "proxy",
            "--token-plugin",
            "TokenFile",
            "--token-source",
            tokens.to_str().unwrap(),
            &listen,
        ],
        addr,
    );
    for token in ["vm1", "vm1-view"] {
        let ws = ws_connect(&format!("ws://{addr}/websockify?token={token}"), &[])
            .await
            .unwrap();
        let mut v = RfbOverWs::new(ws, T);
        v.handshake().await;
        v.set_raw_rgb32().await;
        v.full_frame(40).await;
    }
}
