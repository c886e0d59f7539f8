//! A slow disk under a real `darts serve`: creations stuck writing to the state
//! directory must not hold the async workers, which also carry every viewer's traffic.
//!
//! The disk that hangs is made with a FIFO: a stand-in for QEMU "starts" the VM, then
//! leaves the session record's temporary file as a FIFO nobody reads, so darts' next
//! write of that record (QEMU's pid) waits for ever, as on a hung disk. The viewer is a
//! websocket through the same darts to an echo server, routed by the shared registry.
//!
//! Needs qemu-img and redis-server (`bash tests/setup.sh redis`).

#[path = "support/qemu.rs"]
mod qemu;
#[path = "support/redis.rs"]
mod redis;
#[path = "support/service.rs"]
mod service;
mod support;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use darts_proxy::token::redis::{RedisSource, RegistryConfig, SealKey};
use darts_proxy::{Route, Target, TokenMap};
use redis::Redis;
use service::Service;
use support::*;

const NS: &str = "slowdisk";
/// Round trips measured while the creations are stuck.
const ECHOES: usize = 50;
/// A worker blocked on the disk would hold an echo for as long as the disk hangs
/// (for ever here); a free one answers in well under a millisecond.
const WORST_ECHO: Duration = Duration::from_millis(500);

/// The stand-in for QEMU: writes a pid, turns the record's temporary file into a FIFO
/// and reports success, as a daemonized QEMU would. The pidfile is
/// `ROOT/snapshots/NAME/qemu.pid`, the records are in `ROOT/state`.
fn fake_qemu(dir: &Path) -> PathBuf {
    let path = dir.join("fake-qemu");
    std::fs::write(
        &path,
        r#"#!/bin/sh
while [ $# -gt 0 ]; do
    [ "$1" = -pidfile ] && pidfile="$2"
    shift
done
session=$(dirname "$pidfile")
root=$(dirname "$(dirname "$session")")
mkfifo "$root/state/.$(basename "$session").tmp"
echo $$ > "$pidfile"
"#,
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn fifos(state: &Path) -> usize {
    std::fs::read_dir(state)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_fifo()))
                .count()
        })
        .unwrap_or(0)
}

/// One websocket round trip: `n` bytes out, the same back.
async fn echo(ws: &mut Ws, n: u8) -> Duration {
    let data: Vec<u8> = (0..16).map(|i| n.wrapping_add(i)).collect();
    let sent = Instant::now();
    send_binary(ws, &data).await;
    let back = read_bytes(ws, data.len(), Duration::from_secs(30)).await;
    assert_eq!(back, data, "echo {n}");
    sent.elapsed()
}

struct Creations(Vec<Child>);

impl Drop for Creations {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_creation_stuck_on_a_slow_disk_does_not_delay_a_websocket_echo() {
    let redis = Redis::tcp("slow-disk");
    let secret = redis.scratch.path("registry.key");
    std::fs::write(&secret, format!("{}\n", "k".repeat(48))).unwrap();
    let qemu = fake_qemu(&redis.scratch.0);
    let mut svc = Service::configure_empty(
        "slow-disk",
        &format!(
            "qemu_exec = \"{}\"\nqemu_exec_options = \"\"\n\
             service_max_session_nb = 100\nservice_max_session_nb_per_user = 100\n\
             token_redis = \"{}\"\ntoken_redis_key = \"{}\"\n",
            qemu.display(),
            redis.url(NS),
            secret.display()
        ),
    );
    let state = svc.scratch.path("state");
    let made = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(svc.scratch.path("machines/slow.qcow2"))
        .arg("16M")
        .status()
        .expect("qemu-img runs (install qemu-utils)");
    assert!(made.success());
    std::fs::write(svc.scratch.path("etc/machines.conf"), "[slow.qcow2]\n").unwrap();
    svc.launch();
    let addr = svc.addr;

    // The viewer's route, published in the registry as another darts would.
    let backend = echo_backend(b"RFB 003.008\n").await;
    let mut registry = RegistryConfig::new(RedisSource::parse(&redis.source(NS)).unwrap());
    registry.seal = Some(SealKey::from_file(&secret).unwrap());
    let routes = TokenMap::new().with_registry(registry).unwrap();
    routes.insert(
        "echo",
        Route::new(Target::Tcp {
            host: "127.0.0.1".into(),
            port: backend.port(),
        }),
    );
    let url = format!("ws://{addr}/darts/vnc.html?token=echo");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut ws = loop {
        match ws_connect(&url, &[]).await {
            Ok(ws) => break ws,
            Err(status) => assert!(
                Instant::now() < deadline,
                "the echo route never opened ({status}); log:\n{}",
                svc.log()
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        read_bytes(&mut ws, 12, Duration::from_secs(10)).await,
        b"RFB 003.008\n"
    );
    for n in 0..5 {
        echo(&mut ws, n).await;
    }

    // More stuck creations than darts has async workers (one per core).
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let stuck = cores + 1;
    let mut creations = Creations(Vec::new());
    for _ in 0..stuck {
        creations.0.push(svc.spawn_start("slow.qcow2"));
    }
    // The first creation reaches the FIFO; the others follow it there or queue behind
    // it. Give them time to get stuck.
    let deadline = Instant::now() + Duration::from_secs(60);
    while fifos(&state) == 0 {
        assert!(
            Instant::now() < deadline,
            "no creation reached the slow disk; log:\n{}",
            svc.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let settle = Instant::now() + Duration::from_secs(5);
    while fifos(&state) < stuck && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The catalogue's disk hangs too: its file changes into a FIFO nobody writes, and the
    // refresher (once a second) gets stuck reading it.
    let catalogue = svc.scratch.path("etc/machines.conf");
    std::fs::remove_file(&catalogue).unwrap();
    let made = Command::new("mkfifo").arg(&catalogue).status().unwrap();
    assert!(made.success());
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let mut worst = Duration::ZERO;
    for n in 0..ECHOES {
        let took = tokio::time::timeout(Duration::from_secs(10), echo(&mut ws, n as u8))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "echo {n} got no answer within 10 s while {stuck} creations are stuck \
                     ({} at the FIFO)",
                    fifos(&state)
                )
            });
        worst = worst.max(took);
    }
    assert!(
        worst < WORST_ECHO,
        "the slowest of {ECHOES} echoes took {worst:?} while creations were stuck"
    );
    // Still stuck: the echoes were measured while the disk hung.
    for c in &mut creations.0 {
        assert!(c.try_wait().unwrap().is_none(), "a creation ended");
    }
    assert!(fifos(&state) >= 1);

    // And darts still stops when asked, the disk still hung.
    let darts = svc.darts.take().unwrap();
    darts.signal("TERM");
    let (stopped, log) = darts.wait_exit(Duration::from_secs(30));
    assert!(stopped, "darts did not stop cleanly; log:\n{log}");
}
