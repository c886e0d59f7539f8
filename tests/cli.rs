//! The `darts` binary as an operator runs it: websockify's command line, signals, errors.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use support::*;

const T: Duration = Duration::from_secs(5);

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[tokio::test]
async fn websockify_command_line_with_token_file_and_sigterm_drain() {
    let backend = echo_backend(b"RFB 003.008\n").await;
    let dir = Scratch::new("cli-tok");
    let tokens = dir.path("tokens");
    std::fs::write(&tokens, format!("vm1: {backend}\n")).unwrap();
    let addr = loopback(free_port());
    let listen = addr.to_string();
    let darts = DartsProcess::start(
        &[
            "proxy",
            "--token-plugin",
            "TokenFile",
            "--token-source",
            tokens.to_str().unwrap(),
            "--heartbeat",
            "30",
            &listen,
        ],
        addr,
    );
    let mut ws = ws_connect(&format!("ws://{addr}/websockify?token=vm1"), &[])
        .await
        .unwrap();
    assert_eq!(read_bytes(&mut ws, 12, T).await, b"RFB 003.008\n");
    darts.signal("TERM");
    assert_eq!(expect_close(&mut ws, T).await, 1001);
    drop(ws);
    let (ok, stderr) = darts.wait_exit(Duration::from_secs(15));
    assert!(ok, "clean exit after SIGTERM; stderr:\n{stderr}");
    assert!(stderr.contains("session closed"), "{stderr}");
    assert!(
        !stderr.contains("vm1"),
        "the token must never reach the log:\n{stderr}"
    );
}

#[tokio::test]
async fn positional_target_and_sighup_certificate_reload() {
    let backend = echo_backend(b"E").await;
    let dir = Scratch::new("cli-tls");
    let a = make_certs(&dir.0, "a", &["localhost"]);
    let addr = loopback(free_port());
    let listen = addr.to_string();
    let target = backend.to_string();
    let darts = DartsProcess::start(
        &[
            "proxy",
            "--raw",
            "--cert",
            a.cert.to_str().unwrap(),
            "--key",
            a.key.to_str().unwrap(),
            &listen,
            &target,
        ],
        addr,
    );
    let url = format!("wss://localhost:{}/websockify", addr.port());
    let mut kept = wss_connect(&url, &a.ca_pem).await.unwrap();
    assert_eq!(read_bytes(&mut kept, 1, T).await, b"E");
    let b = make_certs(&dir.0, "b", &["localhost"]);
    std::fs::copy(&b.key, &a.key).unwrap();
    std::fs::copy(&b.cert, &a.cert).unwrap();
    darts.signal("HUP");
    let mut switched = false;
    for _ in 0..50 {
        if wss_connect(&url, &b.ca_pem).await.is_ok() {
            switched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        switched,
        "SIGHUP made new connections use the new certificate"
    );
    send_binary(&mut kept, b"kept").await;
    assert_eq!(read_bytes(&mut kept, 4, T).await, b"kept");
}

#[test]
fn clear_errors_for_unusable_command_lines() {
    let run = |args: &[&str]| {
        let out = Command::new(darts_bin()).args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = run(&["proxy", "127.0.0.1:0"]);
    assert!(!ok);
    assert!(err.contains("nothing to route to"), "{err}");
    let (ok, err) = run(&[
        "proxy",
        "--token-plugin",
        "JWTTokenApi",
        "--token-source",
        "/tmp",
        "127.0.0.1:0",
    ]);
    assert!(!ok);
    assert!(err.contains("not supported"), "{err}");
    let (ok, err) = run(&[
        "proxy",
        "--token-source",
        "/nonexistent/tokens",
        "127.0.0.1:0",
    ]);
    assert!(!ok);
    assert!(err.contains("/nonexistent/tokens"), "{err}");
    let (ok, err) = run(&[
        "proxy",
        "--cert",
        "/nonexistent/cert.pem",
        "127.0.0.1:0",
        "127.0.0.1:5900",
    ]);
    assert!(!ok);
    assert!(err.contains("cert.pem"), "{err}");
    let (ok, err) = run(&["proxy", "127.0.0.1:0", "not-a-target"]);
    assert!(!ok);
    assert!(err.contains("TARGET_ADDR:PORT"), "{err}");
}

#[test]
fn help_lists_websockify_options() {
    let out = Command::new(darts_bin())
        .args(["proxy", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for opt in [
        "--cert",
        "--key",
        "--ssl-only",
        "--web",
        "--token-plugin",
        "--token-source",
        "--unix-target",
        "--idle-timeout",
        "--heartbeat",
    ] {
        assert!(help.contains(opt), "{opt} missing from help");
    }
}

#[tokio::test]
async fn running_out_of_descriptors_does_not_kill_the_listener() {
    let backend = echo_backend(b"E").await;
    let addr = loopback(free_port());
    let listen = addr.to_string();
    let target = backend.to_string();
    // A tiny open-files limit so that accept fails with EMFILE quickly.
    let mut child = Command::new("prlimit")
        .args(["--nofile=48:48", "--"])
        .arg(darts_bin())
        .args([
            "proxy",
            "--raw",
            "--handshake-timeout",
            "2",
            &listen,
            &target,
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("prlimit (util-linux) runs darts");
    let mut up = false;
    for _ in 0..200 {
        if std::net::TcpStream::connect(addr).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(up, "darts listens");
    let mut flood = Vec::new();
    for _ in 0..120 {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => flood.push(s),
            Err(_) => break,
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(flood);
    // Once descriptors are free again, service resumes.
    let mut served = false;
    for _ in 0..50 {
        if let Ok(mut ws) = ws_connect(&format!("ws://{addr}/"), &[]).await {
            assert_eq!(read_bytes(&mut ws, 1, T).await, b"E");
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        served,
        "gateway serves again after running out of descriptors; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("accept failed"),
        "accept errors were hit and logged:\n{stderr}"
    );
}
