//! Faults around sessions of a real `darts serve` (QEMU under TCG): a VM killed under
//! its viewer, darts killed in the middle of a reload or of a creation, and the state
//! disk (`dir_cfg`) full. Each fault gives a clear error, loses no other session and
//! leaves nothing half-made.
//!
//! Needs qemu-system-x86_64 and the demo machine (`bash tests/setup.sh`); the full-disk
//! test mounts a small tmpfs (the tests run as root).

#[path = "support/qemu.rs"]
mod qemu;
#[path = "support/service.rs"]
mod service;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use qemu::RfbOverWs;
use service::Service;
use support::*;
use tokio_tungstenite::tungstenite::Message;

const RFB_TIMEOUT: Duration = Duration::from_secs(20);

/// A viewer past the RFB handshake, with one full frame received.
async fn viewer(svc: &Service, token: &str) -> RfbOverWs {
    let ws = ws_connect(&svc.ws_url(token), &[])
        .await
        .unwrap_or_else(|s| panic!("websocket refused with {s}; log:\n{}", svc.log()));
    let mut rfb = RfbOverWs::new(ws, RFB_TIMEOUT);
    rfb.handshake().await;
    rfb.set_raw_rgb32().await;
    assert!(rfb.full_frame(20).await.bytes > 0);
    rfb
}

fn names(svc: &Service) -> Vec<String> {
    let mut n: Vec<String> = svc
        .sessions()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    n.sort();
    n
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// QEMU processes of sessions under the scratch directory, as session names.
fn vms(svc: &Service) -> Vec<String> {
    let snapshots = svc.scratch.0.join("snapshots");
    let mut found: Vec<String> = service::pids_mentioning(&snapshots)
        .into_iter()
        .filter_map(|pid| {
            let cmd = text(&std::fs::read(format!("/proc/{pid}/cmdline")).ok()?);
            let rest = cmd.split(snapshots.to_str()?).nth(1)?;
            Some(rest.trim_start_matches('/').split('/').next()?.to_owned())
        })
        .collect();
    found.sort();
    found.dedup();
    found
}

/// Exactly `keep` is left: listed, its files, its VM; nothing else in state or snapshots.
fn only(svc: &Service, keep: &[&str], also_in_state: &[&str]) {
    let keep: Vec<String> = sorted(keep.iter().map(|s| s.to_string()).collect());
    assert_eq!(names(svc), keep, "sessions listed; log:\n{}", svc.log());
    assert_eq!(
        sorted(svc.entries("snapshots")),
        keep,
        "session directories; log:\n{}",
        svc.log()
    );
    let mut state: Vec<String> = keep.iter().map(|n| format!("{n}.json")).collect();
    state.extend(also_in_state.iter().map(|s| s.to_string()));
    assert_eq!(
        sorted(svc.entries("state")),
        sorted(state),
        "session records"
    );
    assert_eq!(vms(svc), keep, "QEMU processes");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_vm_closes_its_viewer_frees_its_slot_and_spares_the_other_session() {
    let svc = Service::start("resilience-vm-killed", "service_max_session_nb = 2");
    let doomed = svc.start_session(&[]);
    let other = svc.start_session(&[]);
    let doomed_view = viewer(&svc, &doomed.token).await;
    let mut other_view = viewer(&svc, &other.token).await;
    let full = svc.cli(&["start", "demo.img"]);
    assert!(text(&full.stderr).contains("Too many active sessions 2. Max 2."));

    let dir = svc.scratch.0.join("snapshots").join(&doomed.name);
    let pids = service::pids_mentioning(&dir);
    assert_eq!(pids.len(), 1);
    let killed = Command::new("kill")
        .args(["-9", &pids[0].to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    // The viewer is told why its screen went away.
    let mut ws = doomed_view.into_ws();
    let (code, reason) = loop {
        match tokio::time::timeout(RFB_TIMEOUT, ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(f))))) => break (u16::from(f.code), f.reason),
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    // End of stream from QEMU's socket, or a reset when QEMU died with input unread.
    assert!(
        matches!(
            (code, reason.as_str()),
            (1000, "target closed the connection") | (1011, "target connection failed")
        ),
        "closed with {code} {reason:?}"
    );

    // The session is gone from the list, its files and its link too; audited as such.
    svc.wait_sessions("the killed session removed", Duration::from_secs(30), |s| {
        s.len() == 1 && s[0]["name"] == other.name.as_str()
    });
    only(&svc, &[&other.name], &[]);
    assert_eq!(
        ws_connect(&svc.ws_url(&doomed.token), &[]).await.err(),
        Some(404)
    );
    // The audit writer flushes in batches: wait for the line.
    let audit_log = svc.scratch.0.join("service/audit.log");
    let deadline = Instant::now() + Duration::from_secs(20);
    let end = loop {
        let audit = std::fs::read_to_string(&audit_log).unwrap_or_default();
        let end = audit
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|e| e["event"] == "session_end" && e["session"] == doomed.name.as_str());
        if let Some(end) = end {
            break end;
        }
        assert!(
            Instant::now() < deadline,
            "no session_end audited:\n{audit}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(end["how"], "vm_exit", "{end}");
    assert_eq!(end["reason"], "the VM exited", "{end}");
    let log = svc.log();
    assert!(
        log.lines().any(|l| l.contains("session ended")
            && l.contains(&doomed.name)
            && l.contains("the VM exited")),
        "{log}"
    );

    // The other session streams on, and the freed slot takes a new session.
    assert!(other_view.full_frame(20).await.bytes > 0);
    let again = svc.start_session(&[]);
    viewer(&svc, &again.token).await;
}

/// Replaces the line starting with `key =` in the configuration file.
fn set_key(config: &Path, key: &str, value: &str) {
    let text = std::fs::read_to_string(config).unwrap();
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with(&format!("{key} =")))
        .map(str::to_owned)
        .collect();
    lines.push(format!("{key} = {value}"));
    let tmp = config.with_extension("new");
    std::fs::write(&tmp, lines.join("\n") + "\n").unwrap();
    std::fs::rename(&tmp, config).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn darts_killed_during_a_reload_restarts_with_the_files_configuration_and_every_session() {
    let mut svc = Service::start(
        "resilience-reload-kill",
        "service_max_session_nb = 5\nlayout_title = \"start\"",
    );
    let sessions = [svc.start_session(&[]), svc.start_session(&[])];
    let expected: Vec<String> = sorted(sessions.iter().map(|s| s.name.clone()).collect());
    // Killed at once, while the new file is being read and checked, while it is applied,
    // and once the watcher had time to see it too.
    for (round, delay_ms) in [0u64, 5, 40, 300, 1500].into_iter().enumerate() {
        let max = if round % 2 == 0 { 1 } else { 2 };
        let title = format!("\"round {round}\"");
        set_key(&svc.config, "service_max_session_nb", &max.to_string());
        set_key(&svc.config, "layout_title", &title);
        svc.darts.as_ref().unwrap().signal("HUP");
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        svc.kill_darts();
        svc.launch();

        assert_eq!(names(&svc), expected, "round {round}; log:\n{}", svc.log());
        for s in &sessions {
            viewer(&svc, &s.token).await;
        }
        // Both changed keys are the file's: the limit and the title.
        let refused = svc.cli(&["start", "demo.img"]);
        assert!(
            text(&refused.stderr).contains(&format!("Too many active sessions 2. Max {max}.")),
            "round {round}: {}",
            text(&refused.stderr)
        );
        let (status, _, body) = http_get(svc.addr, "/darts/api/config", "").await;
        assert_eq!(status, 200);
        let cfg: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(cfg["title"], format!("round {round}"));
    }
    only(&svc, &[&sessions[0].name, &sessions[1].name], &[]);
}

/// How far a creation got, seen from outside darts.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Its record is written.
    Record,
    /// Its overlay disk exists.
    Disk,
    /// Its QEMU process runs.
    Qemu,
    /// QEMU's VNC socket exists: darts is waiting for QMP and VNC to answer.
    Vnc,
}

/// The name of a session being created (its record or directory), other than `keep`.
fn newcomer(svc: &Service, keep: &str) -> Option<String> {
    svc.entries("state")
        .into_iter()
        .chain(svc.entries("snapshots"))
        .map(|e| {
            e.trim_start_matches('.')
                .trim_end_matches(".tmp")
                .trim_end_matches(".json")
                .to_owned()
        })
        .find(|n| n.starts_with("darts-") && n != keep)
}

fn reached(svc: &Service, name: &str, phase: Phase) -> bool {
    let dir: PathBuf = svc.scratch.0.join("snapshots").join(name);
    match phase {
        Phase::Record => svc.scratch.0.join(format!("state/{name}.json")).exists(),
        Phase::Disk => dir.join("disk.qcow2").exists(),
        Phase::Qemu => !service::pids_mentioning(&dir).is_empty(),
        Phase::Vnc => dir.join("vnc.sock").exists(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn darts_killed_during_a_creation_leaves_nothing_after_its_restart() {
    let mut svc = Service::start("resilience-create-kill", "");
    let keep = svc.start_session(&[]);
    for phase in [Phase::Record, Phase::Disk, Phase::Qemu, Phase::Vnc] {
        let creation = svc.spawn_start("demo.img");
        let deadline = Instant::now() + Duration::from_secs(60);
        let name = loop {
            if let Some(n) = newcomer(&svc, &keep.name) {
                if reached(&svc, &n, phase) {
                    break n;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{phase:?} never reached; log:\n{}",
                svc.log()
            );
            std::thread::sleep(Duration::from_millis(1));
        };
        svc.kill_darts();
        let out = creation.wait_with_output().unwrap();
        svc.launch();
        if out.status.success() {
            // It finished just before the kill: then it must have been re-adopted whole.
            let started = service::parse_started(&text(&out.stdout));
            assert_eq!(started.name, name);
            viewer(&svc, &started.token).await;
            assert!(svc.cli(&["stop", &name]).status.success());
        } else {
            assert!(
                text(&out.stderr).contains("closed the connection before answering"),
                "{phase:?}: {}",
                text(&out.stderr)
            );
        }
        only(&svc, &[&keep.name], &[]);
        assert!(
            svc.log().contains(&name) || out.status.success(),
            "{phase:?}: the restart said nothing about {name}"
        );
    }
    // The surviving session kept its link, and the user can create again.
    viewer(&svc, &keep.token).await;
    let again = svc.start_session(&[]);
    viewer(&svc, &again.token).await;
}

/// Unmounts on drop, lazily: darts may still hold files there when a test fails.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .unwrap()
            .success();
        assert!(
            ok,
            "mounting a small tmpfs needs root (the tests run as root)"
        );
        Self(dir.to_owned())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_state_disk_refuses_creations_clearly_and_keeps_the_running_session() {
    let mut svc = Service::configure("resilience-state-full", "");
    let state = svc.scratch.0.join("state");
    let _mount = Mount::tmpfs(&state, "64k");
    svc.launch();
    let keep = svc.start_session(&[]);
    let mut view = viewer(&svc, &keep.token).await;
    // Fill the state disk to the last block.
    {
        use std::io::Write;
        let mut filler = std::fs::File::create(state.join("filler")).unwrap();
        while filler.write_all(&[0u8; 4096]).is_ok() {}
    }

    let out = svc.cli(&["start", "demo.img"]);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("session state") && err.contains(state.to_str().unwrap()),
        "the error names the state directory: {err}"
    );
    assert!(err.contains("No space left on device"), "{err}");
    only(&svc, &[&keep.name], &["filler"]);

    // The running session is untouched, and stopping it still works on the full disk.
    assert!(view.full_frame(20).await.bytes > 0);
    let stop = svc.cli(&["stop", &keep.name]);
    assert!(stop.status.success(), "{}", text(&stop.stderr));
    only(&svc, &[], &["filler"]);
    svc.kill_darts();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_whose_log_pipe_is_closed_creates_stops_and_exits_on_sigterm() {
    let mut svc = Service::configure("resilience-closed-log", "");
    // stdout and stderr to a pipe whose reader is gone, as `darts serve 2>&1 | head`
    // once `head` has exited: every log line darts writes fails with EPIPE.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let err = writer.try_clone().unwrap();
    svc.launch_with_output(Stdio::from(writer), Stdio::from(err));
    let s = svc.start_session(&[]);
    let mut rfb = viewer(&svc, &s.token).await;
    assert!(rfb.full_frame(20).await.bytes > 0);
    drop(rfb);
    let running = |svc: &Service| vms(svc).contains(&s.name) || names(svc).contains(&s.name);
    assert!(vms(&svc).contains(&s.name), "the session's QEMU runs");
    let stop = svc.cli(&["stop", &s.name]);
    assert!(
        stop.status.success(),
        "stop: {}{}",
        String::from_utf8_lossy(&stop.stdout),
        String::from_utf8_lossy(&stop.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while running(&svc) {
        assert!(Instant::now() < deadline, "the session's QEMU still runs");
        std::thread::sleep(Duration::from_millis(200));
    }
    // A second creation still works after all that logging into the void.
    let again = svc.start_session(&[]);
    assert_eq!(names(&svc), vec![again.name.clone()]);
    assert_eq!(vms(&svc), vec![again.name.clone()]);
    let darts = svc.darts.take().unwrap();
    darts.signal("TERM");
    let (ok, _) = darts.wait_exit(Duration::from_secs(30));
    assert!(ok, "darts did not exit cleanly on SIGTERM");
}

/// Starts `darts start demo.img` in the background and returns it with the new
/// session's name, once that session has its record (it is being created). The caller
/// waits for the child.
#[allow(clippy::zombie_processes)]
fn creation_under_way(svc: &Service) -> (std::process::Child, String) {
    let creation = svc.spawn_start("demo.img");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(n) = newcomer(svc, "") {
            if reached(svc, &n, Phase::Record) {
                return (creation, n);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no creation; log:\n{}",
            svc.log()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until `name` is gone from the list and no QEMU of it runs, at most `wait`.
fn gone_within(svc: &Service, name: &str, wait: Duration) -> bool {
    let dir = svc.scratch.0.join("snapshots").join(name);
    let deadline = Instant::now() + wait;
    loop {
        let listed = svc.sessions().iter().any(|s| s["name"] == name);
        if !listed && service::pids_mentioning(&dir).is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A stop (or purge) sent while the session is being created ends it, and its answer
/// says "stopped" only if the session is gone by then.
#[tokio::test(flavor = "multi_thread")]
async fn stop_and_purge_sent_during_a_creation_end_the_session() {
    let svc = Service::start("resilience-stop-creating", "");
    for command in [&["stop", ""][..], &["purge"][..]] {
        let (creation, name) = creation_under_way(&svc);
        let args: Vec<&str> = command
            .iter()
            .map(|a| if a.is_empty() { name.as_str() } else { a })
            .collect();
        let out = svc.cli(&args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        let said = text(&out.stdout);
        let dir = svc.scratch.0.join("snapshots").join(&name);
        if said.starts_with("stopped") && !said.contains("stopping") {
            // "stopped" means gone, now.
            assert!(
                !svc.sessions().iter().any(|s| s["name"] == name.as_str()),
                "{args:?} said {said:?} but {name} is listed"
            );
            assert!(
                service::pids_mentioning(&dir).is_empty(),
                "{args:?} said {said:?} but the VM of {name} runs"
            );
        }
        let _ = creation.wait_with_output().unwrap();
        assert!(
            gone_within(&svc, &name, Duration::from_secs(20)),
            "{args:?} ({said:?}) during the creation: {name} still runs; log:\n{}",
            svc.log()
        );
    }
}

/// A QEMU that answers nothing (SIGSTOPped) is stopped within about twice
/// `session_stop_grace`, not after QMP's own timeouts.
#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_qemu_is_killed_within_twice_the_grace() {
    // The harness sets session_stop_grace = 3.
    let svc = Service::start("resilience-stop-hung", "");
    let s = svc.start_session(&[]);
    let dir = svc.scratch.0.join("snapshots").join(&s.name);
    let pid = service::pids_mentioning(&dir)[0];
    assert!(Command::new("kill")
        .args(["-STOP", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let asked = Instant::now();
    let out = svc.cli(&["stop", &s.name]);
    let took = asked.elapsed();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), format!("stopped {}", s.name));
    assert!(service::pids_mentioning(&dir).is_empty(), "QEMU still runs");
    // 2 x 3 s, plus the clean-up's margin: generous for CI, far below QMP's 30 s.
    assert!(
        took < Duration::from_secs(12),
        "the stop of a hung QEMU took {took:?}"
    );
}
