//! The QMP client against a real QEMU (TCG, no disk): commands, VNC password, errors,
//! events and timeouts.

mod support;
#[path = "support/vm.rs"]
mod vm;

use std::path::Path;
use std::time::{Duration, Instant};

use darts::qmp::{Qmp, QmpError};
use support::Scratch;
use vm::Vm;

const T: Duration = Duration::from_secs(10);

fn start_vm(dir: &Path) -> Vm {
    Vm::start(dir, ",password=on", &[])
}

#[tokio::test]
async fn commands_password_and_status() {
    let dir = Scratch::new("qmp");
    let vm = start_vm(&dir.0);
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
    let mut vm = start_vm(&dir.0);
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
        if vm.has_exited() {
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
