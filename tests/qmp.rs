//! The QMP client against a real QEMU (TCG, no disk): commands, VNC password, errors,
//! events and timeouts.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use darts::qmp::{Qmp, QmpError};
use support::Scratch;

const T: Duration = Duration::from_secs(10);

/// A QEMU with a QMP socket and a password-protected VNC socket; killed on drop.
struct Vm {
    child: Child,
    qmp: PathBuf,
    vnc: PathBuf,
}

impl Vm {
    fn start(dir: &Path) -> Self {
        let qmp = dir.join("qmp.sock");
        let vnc = dir.join("vnc.sock");
        let child = Command::new("qemu-system-x86_64")
            .args([
                "-accel",
                "tcg",
                "-nodefaults",
                "-vga",
                "std",
                "-display",
                "none",
                "-m",
                "64",
                "-qmp",
            ])
            .arg(format!("unix:{},server=on,wait=off", qmp.display()))
            .arg("-vnc")
            .arg(format!("unix:{},password=on", vnc.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("qemu-system-x86_64 runs (install with tests/setup.sh)");
        let deadline = Instant::now() + T;
        while !(qmp.exists() && vnc.exists()) {
            assert!(Instant::now() < deadline, "QEMU sockets did not appear");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, qmp, vnc }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn commands_password_and_status() {
    let dir = Scratch::new("qmp");
    let vm = Vm::start(&dir.0);
    let mut qmp = Qmp::connect(&vm.qmp, T).await.unwrap();
    assert!(
        qmp.version.chars().next().unwrap().is_ascii_digit(),
        "version {}",
        qmp.version
    );
    let status = qmp.query_status().await.unwrap();
    assert!(status.running);
    assert_eq!(status.status, "running");
    let vnc = qmp.query_vnc().await.unwrap();
    assert_eq!(vnc["enabled"], true);
    assert_eq!(vnc["auth"], "vnc");
    qmp.set_vnc_password("s3cret12").await.unwrap();
    qmp.expire_vnc_password("never").await.unwrap();
    assert!(vm.vnc.exists());
    match qmp.execute("no-such-command", None).await {
        Err(QmpError::Command { class, .. }) => assert_eq!(class, "CommandNotFound"),
        other => panic!("expected a command error, got {other:?}"),
    }
    // The session is still usable after an error.
    assert!(qmp.query_status().await.unwrap().running);
}

#[tokio::test]
async fn quit_emits_shutdown_and_ends_qemu() {
    let dir = Scratch::new("qmp-quit");
    let mut vm = Vm::start(&dir.0);
    let mut qmp = Qmp::connect(&vm.qmp, T).await.unwrap();
    qmp.quit().await.unwrap();
    let mut saw_shutdown = false;
    while let Ok(Some(e)) = qmp.next_event(Duration::from_secs(5)).await {
        if e.name == "SHUTDOWN" {
            saw_shutdown = true;
            break;
        }
    }
    assert!(saw_shutdown, "SHUTDOWN event");
    let deadline = Instant::now() + T;
    loop {
        if vm.child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "QEMU still running after quit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn silent_or_missing_sockets_fail_in_time() {
    let dir = Scratch::new("qmp-silent");
    let path = dir.path("silent.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let started = Instant::now();
    let err = Qmp::connect(&path, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, QmpError::Timeout(..)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
    let err = Qmp::connect(&dir.path("absent.sock"), Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, QmpError::Io(_)), "{err}");
}
