//! End to end in a real browser: the vendored noVNC (web/novnc), served by `darts proxy --web`,
//! in headless Chromium driven by tests/e2e/novnc-shot.js (playwright-core), shows the screen
//! of the tiny test guest running in QEMU, and keys typed in the page reach the guest's shell.
//!
//! Needs qemu-system-x86_64, chromium, node with tests/e2e/node/node_modules and the test guest
//! (`bash tests/setup.sh`); fails with a clear message without them. Screenshots are left in
//! target/e2e-artifacts/.

#[path = "support/qemu.rs"]
mod qemu;
mod support;
#[path = "support/vm.rs"]
mod vm;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use qemu::{artifacts_dir, repo_path, script_json, Qemu, RfbOverWs};
use serde_json::Value;
use support::*;
use vm::Vm;

/// `darts proxy --web web/novnc --token-plugin TokenFile --token-source FILE 127.0.0.1:PORT`.
/// Its stderr is drained in the background; the returned log feeds failure messages.
fn start_darts_with_novnc(token_file: &Path) -> (DartsProcess, Arc<Mutex<String>>) {
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let web = repo_path("web/novnc");
    assert!(
        web.join("vnc.html").is_file(),
        "{} has no vnc.html",
        web.display()
    );
    let listen = addr.to_string();
    let mut darts = DartsProcess::start(
        &[
            "proxy",
            "--web",
            web.to_str().expect("utf-8 path"),
            "--token-plugin",
            "TokenFile",
            "--token-source",
            token_file.to_str().expect("utf-8 path"),
            &listen,
        ],
        addr,
    );
    let log = qemu::drain_stderr(&mut darts);
    (darts, log)
}

fn novnc_url(darts: &DartsProcess, token: &str) -> String {
    format!(
        "http://{}/vnc.html?autoconnect=true&path=websockify%3Ftoken%3D{token}",
        darts.addr
    )
}

/// The outcome of one tests/e2e/novnc-shot.js run.
struct Shot {
    ok: bool,
    json: Value,
    stderr: String,
    elapsed: Duration,
}

/// node, Chromium and playwright-core; checked before anything is started.
struct Browser {
    node: PathBuf,
    chromium: PathBuf,
    node_modules: PathBuf,
}

fn browser_tools() -> Browser {
    let (node, chromium) = qemu::browser_tools();
    let node_modules = repo_path("tests/e2e/node/node_modules");
    Browser {
        node,
        chromium,
        node_modules,
    }
}

/// Runs novnc-shot.js on `url`, writing the screenshot to `png`.
fn novnc_shot(b: &Browser, url: &str, png: &Path, extra: &[&str]) -> Shot {
    let _ = std::fs::remove_file(png);
    let started = Instant::now();
    let out = Command::new(&b.node)
        .arg(repo_path("tests/e2e/novnc-shot.js"))
        .arg(url)
        .arg(png)
        .args(extra)
        .env("NODE_PATH", &b.node_modules)
        .env("CHROMIUM", &b.chromium)
        .output()
        .expect("run node");
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = script_json("novnc-shot.js", &out);
    eprintln!("novnc-shot.js ({elapsed:.1?}): {json}");
    Shot {
        ok: out.status.success(),
        json,
        stderr,
        elapsed,
    }
}

fn is_png(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.len() > 1000 && b.starts_with(b"\x89PNG\r\n\x1a\n"))
}

#[test]
fn novnc_shows_the_guest_and_types_into_it() {
    let browser = browser_tools();
    let scratch = Scratch::new("e2e-browser");
    // Type only once the guest's shell runs: the firmware screen alone has pixels too.
    let booting = Instant::now();
    let mut vm = Qemu::guest_unix_booted(&scratch.0, "darts-e2e-browser", Duration::from_secs(60));
    eprintln!("guest ready after {:.1?}", booting.elapsed());
    let tokens = qemu::write_token_file(&scratch.0, &[("desk", vm.vnc.token_target())]);
    let (darts, log) = start_darts_with_novnc(&tokens);

    let png = artifacts_dir().join("novnc-guest.png");
    // $((6*7)) makes the guest's shell compute something the typed text does not contain.
    let shot = novnc_shot(
        &browser,
        &novnc_url(&darts, "desk"),
        &png,
        &[
            "--type",
            "echo darts-e2e-$((6*7)) | tee /dev/ttyS0\n",
            "--expect-text-wait-ms",
            "2500",
            "--timeout",
            "30000",
        ],
    );
    let j = &shot.json;
    assert!(
        shot.ok,
        "noVNC did not show the guest: {j}\nnovnc-shot.js stderr:\n{}\ndarts log:\n{}",
        shot.stderr,
        qemu::tail(&log, 30)
    );
    assert!(j["connected_ms"].is_u64(), "never connected: {j}");
    let status = j["status"].as_str().unwrap_or_default();
    assert!(status.contains("Connected"), "noVNC status {status:?}");
    let nonblack = j["nonblack"].as_f64().expect("nonblack in JSON");
    assert!(nonblack > 0.002, "guest screen nearly black: {j}");
    let after = j["after_type_nonblack"]
        .as_f64()
        .expect("after_type_nonblack in JSON");
    assert!(
        after != nonblack,
        "typing did not change the screen ({nonblack} -> {after})"
    );
    assert!(is_png(&png), "no screenshot at {}", png.display());

    // The keys went browser -> noVNC -> darts -> QEMU -> guest shell, which ran the command.
    let serial = vm.wait_serial("darts-e2e-42", Duration::from_secs(15));
    assert!(serial.contains("E2E-GUEST-READY boot=darts-e2e-browser"));
    eprintln!(
        "browser part took {:.1?}; screenshot: {}",
        shot.elapsed,
        png.display()
    );
}

#[tokio::test]
async fn novnc_with_a_bad_token_does_not_connect() {
    let browser = browser_tools();
    let scratch = Scratch::new("e2e-browser-bad");
    let _vm = Qemu::bios_unix(&scratch.0, "darts-e2e-bad-token");
    let tokens = qemu::write_token_file(&scratch.0, &[("good", _vm.vnc.token_target())]);
    let (darts, log) = start_darts_with_novnc(&tokens);

    // Control: the good token does reach the VNC server through this very gateway.
    let ws = ws_connect(&format!("ws://{}/websockify?token=good", darts.addr), &[])
        .await
        .expect("good token opens a websocket");
    let init = RfbOverWs::new(ws, Duration::from_secs(10))
        .handshake()
        .await;
    assert!(init.name.contains("darts-e2e-bad-token"), "{init:?}");

    let png = artifacts_dir().join("novnc-bad-token.png");
    let url = novnc_url(&darts, "not-a-token");
    let shot = tokio::task::spawn_blocking(move || {
        novnc_shot(&browser, &url, &png, &["--timeout", "15000"])
    })
    .await
    .expect("novnc-shot task");
    let j = &shot.json;
    assert!(!shot.ok, "noVNC must not connect with a bad token: {j}");
    assert!(
        ["websocket refused", "unknown token"]
            .iter()
            .all(|w| qemu::tail(&log, 200).contains(w)),
        "darts logged nothing about the refused token:\n{}",
        qemu::tail(&log, 30)
    );
    assert!(j.get("connected_ms").is_none(), "connected: {j}");
    let status = j["status"].as_str().unwrap_or_default();
    assert!(
        status.contains("Failed to connect"),
        "noVNC should report a failed connection, not time out: {j}"
    );
    assert!(
        shot.elapsed < Duration::from_secs(14),
        "the failure took {:?}",
        shot.elapsed
    );
}

#[test]
fn novnc_shows_an_x509_protected_vm_without_any_password_prompt() {
    let browser = browser_tools();
    let scratch = Scratch::new("e2e-browser-x509");
    let pki = scratch.path("pki");
    let made = Command::new(darts_bin())
        .args(["certs", "init"])
        .arg(&pki)
        .output()
        .expect("darts certs init");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let creds = format!(
        "tls-creds-x509,id=tls0,dir={},endpoint=server,verify-peer=yes",
        pki.join("server").display()
    );
    let vm = Vm::start(
        &scratch.0,
        ",tls-creds=tls0",
        &[
            "-name".into(),
            "darts-e2e-x509".into(),
            "-object".into(),
            creds,
        ],
    );
    let sock = vm.vnc.clone();
    let client = pki.join("client");
    let tokens = scratch.path("tokens.cfg");
    std::fs::write(
        &tokens,
        format!(
            "secure: unix_socket:{} security=x509 ca={} cert={} key={}\n",
            sock.display(),
            client.join("ca-cert.pem").display(),
            client.join("client-cert.pem").display(),
            client.join("client-key.pem").display()
        ),
    )
    .unwrap();
    let (darts, log) = start_darts_with_novnc(&tokens);
    let png = artifacts_dir().join("novnc-x509.png");
    let shot = novnc_shot(
        &browser,
        &novnc_url(&darts, "secure"),
        &png,
        &["--timeout", "30000"],
    );
    drop(vm);
    let j = &shot.json;
    assert!(
        shot.ok,
        "noVNC did not show the x509 VM: {j}\n{}\ndarts log:\n{}",
        shot.stderr,
        qemu::tail(&log, 30)
    );
    assert!(j.get("password_prompt").is_none(), "{j}");
    let status = j["status"].as_str().unwrap_or_default();
    assert!(status.contains("Connected"), "noVNC status {status:?}");
    assert!(
        j["nonblack"].as_f64().unwrap_or(0.0) > 0.0,
        "screen is black: {j}"
    );
    assert!(is_png(&png));
}
