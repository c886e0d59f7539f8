//! Sessions with real QEMU (TCG) behind `darts serve`: create, view, reconnect, one-shot,
//! expiry, guest power-off, restart of darts with re-adoption, failed creations leaving
//! nothing behind, and limits under concurrent creations.
//!
//! Needs qemu-system-x86_64 and the test guest (`bash tests/setup.sh`).

#[path = "support/qemu.rs"]
mod qemu;
#[path = "support/service.rs"]
mod service;
mod support;

use std::time::{Duration, Instant};

use qemu::RfbOverWs;
use service::{certs_init, screen_lit, Service};
use support::*;

/// Types `text` on the guest's keyboard (X keysyms for ASCII, Return for '\n').
async fn type_text(rfb: &mut RfbOverWs, text: &str) {
    for c in text.chars() {
        let keysym: u32 = if c == '\n' { 0xff0d } else { c as u32 };
        for down in [1u8, 0] {
            let mut m = vec![4, down, 0, 0];
            m.extend_from_slice(&keysym.to_be_bytes());
            rfb.send(&m).await;
        }
    }
}

/// The websocket for `token` is refused (404 for an unknown or expired token).
async fn refused(svc: &Service, token: &str) -> bool {
    ws_connect(&svc.ws_url(token), &[]).await.is_err()
}

fn gone(svc: &Service, name: &str) -> bool {
    !svc.entries("snapshots").iter().any(|e| e == name)
        && !svc.entries("state").iter().any(|e| e.starts_with(name))
}

#[tokio::test(flavor = "multi_thread")]
async fn create_view_reconnect_share_and_stop() {
    let svc = Service::start("sessions-basic", "");
    let s = svc.start_session(&[]);
    assert!(
        s.url
            .contains("/darts/vnc.html?resize=remote&autoconnect=true&path=?token="),
        "{}",
        s.url
    );

    // The browser side reaches the guest's screen through darts.
    let (mut rfb, desktop) = svc.view(&s.token).await;
    assert!(desktop.contains(&s.name), "desktop name {desktop:?}");
    assert!(screen_lit(&mut rfb).await > 100);

    // A second viewer (reconnectable session) and a view-only share at the same time.
    let (mut second, _) = svc.view(&s.token).await;
    assert!(second.full_frame(20).await.bytes > 0);
    let view_token = s.view_token.clone().expect("a view-only link");
    let (mut watcher, _) = svc.view(&view_token).await;
    assert!(watcher.full_frame(20).await.bytes > 0);
    svc.wait_sessions("three viewers counted", Duration::from_secs(10), |s| {
        s.len() == 1 && s[0]["viewers"] == 3
    });
    drop((rfb, second, watcher));

    // Reconnect after closing every viewer.
    let (mut again, _) = svc.view(&s.token).await;
    assert!(again.full_frame(20).await.bytes > 0);
    drop(again);

    // The state file is private and holds no token in clear.
    let state = svc.scratch.0.join(format!("state/{}.json", s.name));
    let text = std::fs::read_to_string(&state).unwrap();
    assert!(!text.contains(&s.token) && !text.contains(&view_token));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&state).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Stop: the VM is gone, files and tokens too.
    let vm_pids = service::pids_mentioning(&svc.scratch.0.join("snapshots").join(&s.name));
    assert_eq!(vm_pids.len(), 1, "one QEMU for the session");
    let out = svc.cli(&["stop", &s.name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(svc.sessions().is_empty());
    assert!(
        gone(&svc, &s.name),
        "files left: {:?} {:?}",
        svc.entries("snapshots"),
        svc.entries("state")
    );
    // (A zombie waiting for init to reap it has an empty command line and does not count.)
    assert!(
        service::pids_mentioning(&svc.scratch.0.join("snapshots").join(&s.name)).is_empty(),
        "QEMU still runs"
    );
    assert!(
        refused(&svc, &s.token).await,
        "token still routes after stop"
    );
    assert!(refused(&svc, &view_token).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_shot_session_ends_when_its_connection_closes() {
    let svc = Service::start("sessions-oneshot", "");
    let s = svc.start_session(&["--oneshot"]);
    assert!(
        s.view_token.is_none(),
        "one-shot sessions have a single link"
    );
    let (mut rfb, _) = svc.view(&s.token).await;
    assert!(rfb.full_frame(20).await.bytes > 0);
    // The link is single-use while the connection is open.
    assert!(refused(&svc, &s.token).await);
    drop(rfb);
    svc.wait_sessions("one-shot session ended", Duration::from_secs(30), |s| {
        s.is_empty()
    });
    assert!(gone(&svc, &s.name));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_timer_ends_a_session_at_the_end_of_its_lifetime() {
    let svc = Service::start("sessions-expiry", "");
    let s = svc.start_session(&["--snapshot_lifetime=4"]);
    let (mut rfb, _) = svc.view(&s.token).await;
    assert!(rfb.full_frame(20).await.bytes > 0);
    // No request arrives: the timer alone ends it.
    svc.wait_sessions("expired session removed", Duration::from_secs(40), |s| {
        s.is_empty()
    });
    assert!(gone(&svc, &s.name));
    assert!(refused(&svc, &s.token).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_that_powers_off_frees_its_slot() {
    let svc = Service::start("sessions-poweroff", "service_max_session_nb = 1");
    let s = svc.start_session(&[]);
    let (mut rfb, _) = svc.view(&s.token).await;
    screen_lit(&mut rfb).await;
    // The only slot is taken.
    let out = svc.cli(&["start", "demo.img"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Too many active sessions"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The guest powers itself off from its own shell. Its shell comes up some seconds after
    // the first pixels, and keys typed before are lost, so the command is typed again until
    // the session is gone.
    let deadline = Instant::now() + Duration::from_secs(90);
    while !svc.sessions().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the guest did not power off; log:\n{}",
            svc.log()
        );
        type_text(&mut rfb, "poweroff -f\n").await;
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    assert!(gone(&svc, &s.name));
    // Its slot is free again.
    let again = svc.start_session(&[]);
    assert_ne!(again.name, s.name);
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_survive_a_killed_darts_and_keep_their_links() {
    let mut svc = Service::start("sessions-restart", "");
    let started: Vec<_> = (0..3).map(|_| svc.start_session(&[])).collect();
    svc.kill_darts();
    // The VMs outlive darts.
    for s in &started {
        let pids = service::pids_mentioning(&svc.scratch.0.join("snapshots").join(&s.name));
        assert_eq!(pids.len(), 1, "QEMU of {} still runs", s.name);
    }
    svc.launch();
    let names: Vec<String> = svc
        .sessions()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    for s in &started {
        assert!(
            names.contains(&s.name),
            "{} not re-adopted: {names:?}\n{}",
            s.name,
            svc.log()
        );
        let (mut rfb, desktop) = svc.view(&s.token).await;
        assert!(desktop.contains(&s.name));
        assert!(rfb.full_frame(20).await.bytes > 0);
    }
    // After a restart the sessions are still fully managed: stop works.
    let out = svc.cli(&["stop", "--all"]);
    assert!(out.status.success());
    assert!(svc.sessions().is_empty());
    for s in &started {
        assert!(gone(&svc, &s.name));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_vms_and_half_made_sessions_are_cleaned_up_at_start() {
    let mut svc = Service::start("sessions-cleanup", "");
    let alive = svc.start_session(&[]);
    let dead = svc.start_session(&[]);
    svc.kill_darts();
    // One VM dies while darts is down.
    for pid in service::pids_mentioning(&svc.scratch.0.join("snapshots").join(&dead.name)) {
        std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
    }
    // A creation cut short: a record in phase "creating" and its directory.
    let half = "darts-halfhalfhalf";
    let mut rec: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(svc.scratch.0.join(format!("state/{}.json", alive.name))).unwrap(),
    )
    .unwrap();
    rec["name"] = half.into();
    rec["phase"] = "creating".into();
    rec["pid"] = serde_json::Value::Null;
    rec["dir"] = svc
        .scratch
        .0
        .join("snapshots")
        .join(half)
        .to_str()
        .unwrap()
        .into();
    std::fs::write(
        svc.scratch.0.join(format!("state/{half}.json")),
        rec.to_string(),
    )
    .unwrap();
    std::fs::create_dir_all(svc.scratch.0.join("snapshots").join(half)).unwrap();
    std::fs::write(
        svc.scratch
            .0
            .join("snapshots")
            .join(half)
            .join(".darts-session"),
        half,
    )
    .unwrap();
    // Files darts does not own stay.
    std::fs::write(svc.scratch.0.join("state/notes.json"), "{}").unwrap();
    std::fs::create_dir_all(svc.scratch.0.join("snapshots/keep-me")).unwrap();

    svc.launch();
    let names: Vec<String> = svc
        .sessions()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, vec![alive.name.clone()], "{}", svc.log());
    assert!(gone(&svc, &dead.name));
    assert!(gone(&svc, half));
    assert!(svc.entries("state").contains(&"notes.json".to_owned()));
    assert!(svc.entries("snapshots").contains(&"keep-me".to_owned()));
    assert!(refused(&svc, &dead.token).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_creations_explain_and_leave_nothing_behind() {
    let svc = Service::start("sessions-failures", "");
    let check_clean = |what: &str| {
        assert!(svc.sessions().is_empty(), "{what}: a session is listed");
        assert!(
            svc.entries("snapshots").is_empty() && svc.entries("state").is_empty(),
            "{what}: left {:?} {:?}",
            svc.entries("snapshots"),
            svc.entries("state")
        );
    };
    // A catalogue entry whose image is missing.
    let out = svc.cli(&["start", "absent.qcow2"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("missing"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_clean("missing image");
    // A machine not in the catalogue.
    let out = svc.cli(&["start", "nope.iso"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("Can not find virtual machine nope.iso"));
    check_clean("unknown machine");
}

#[tokio::test(flavor = "multi_thread")]
async fn qemu_failing_to_start_leaves_nothing_behind() {
    let svc = Service::start(
        "sessions-qemu-fails",
        "qemu_exec_options = \"-no-such-option\"",
    );
    let out = svc.cli(&["start", "demo.img"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("QEMU") && err.contains("no-such-option"),
        "{err}"
    );
    assert!(svc.sessions().is_empty());
    assert!(
        svc.entries("snapshots").is_empty(),
        "{:?}",
        svc.entries("snapshots")
    );
    assert!(
        svc.entries("state").is_empty(),
        "{:?}",
        svc.entries("state")
    );
    assert!(service::pids_mentioning(&svc.scratch.0.join("snapshots")).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_gives_a_clear_error_and_leaves_nothing_behind() {
    let svc = Service::configure("sessions-full-disk", "");
    let snapshots = svc.scratch.0.join("snapshots");
    std::fs::create_dir_all(&snapshots).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&snapshots)
        .status()
        .unwrap()
        .success();
    assert!(
        mounted,
        "mounting a small tmpfs needs root (the tests run as root)"
    );
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(snapshots.clone());
    // Fill it but for a few KiB, so the directory and marker fit and the disk does not.
    let _ = std::fs::write(snapshots.join("filler"), vec![0u8; 60 * 1024]);
    let mut svc = svc;
    svc.launch();
    let out = svc.cli(&["start", "demo.img"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.to_lowercase().contains("space"), "{err}");
    assert!(svc.sessions().is_empty());
    assert_eq!(svc.entries("snapshots"), vec!["filler".to_owned()]);
    assert!(svc.entries("state").is_empty());
    svc.kill_darts();
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_creations_stop_exactly_at_the_limit() {
    let svc = Service::start(
        "sessions-limits",
        "service_max_session_nb = 3\nservice_max_session_nb_per_user = 10",
    );
    let cfg = svc.config.clone();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let cfg = cfg.clone();
            std::thread::spawn(move || {
                std::process::Command::new(darts_bin())
                    .args(["start", "demo.img", "-c"])
                    .arg(&cfg)
                    .output()
                    .unwrap()
            })
        })
        .collect();
    let outs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ok = outs.iter().filter(|o| o.status.success()).count();
    assert_eq!(
        ok,
        3,
        "{:?}",
        outs.iter()
            .map(|o| String::from_utf8_lossy(&o.stderr).to_string())
            .collect::<Vec<_>>()
    );
    let refused: Vec<_> = outs.iter().filter(|o| !o.status.success()).collect();
    assert!(String::from_utf8_lossy(&refused[0].stderr).contains("Too many active sessions"));
    assert_eq!(svc.sessions().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_x509_session_is_reached_without_any_password_in_the_browser() {
    let certs = certs_init("sessions-x509-certs", &[]);
    let svc = Service::start(
        "sessions-x509",
        &format!(
            "qemu_vnc_security = \"x509\"\nqemu_vnc_x509_dir = \"{}\"",
            certs.0.display()
        ),
    );
    let s = svc.start_session(&[]);
    // QEMU offers only VeNCrypt: a plain RFB client on its socket gets no None/VNC auth.
    let sock = svc
        .scratch
        .0
        .join("snapshots")
        .join(&s.name)
        .join("vnc.sock");
    let mut raw = tokio::net::UnixStream::connect(&sock).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut version = [0u8; 12];
    raw.read_exact(&mut version).await.unwrap();
    raw.write_all(b"RFB 003.008\n").await.unwrap();
    let n = raw.read_u8().await.unwrap() as usize;
    let mut types = vec![0u8; n];
    raw.read_exact(&mut types).await.unwrap();
    assert_eq!(types, vec![19], "QEMU offers VeNCrypt only");
    drop(raw);
    // Through darts the browser side gets None and the screen.
    let (mut rfb, desktop) = svc.view(&s.token).await;
    assert!(desktop.contains(&s.name));
    assert!(screen_lit(&mut rfb).await > 100);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_iso_boots_from_the_cd_with_a_blank_disk() {
    let svc = Service::configure("sessions-iso", "snapshot_alloc_disk = 2");
    let iso = svc.scratch.0.join("machines/live.iso");
    std::fs::copy(svc.scratch.0.join("machines/demo.img"), &iso).unwrap();
    std::fs::write(
        svc.scratch.0.join("etc/machines.conf"),
        "[demo.img]\n\n[live.iso]\ndescription=A live CD\n",
    )
    .unwrap();
    let mut svc = svc;
    svc.launch();
    let out = svc.cli(&["start", "live.iso"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started = service::parse_started(&String::from_utf8_lossy(&out.stdout));
    let dir = svc.scratch.0.join("snapshots").join(&started.name);
    let info = std::process::Command::new("qemu-img")
        .args(["info", "-U", "--output=json"])
        .arg(dir.join("disk.qcow2"))
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(
        info["virtual-size"],
        2u64 << 30,
        "blank disk of snapshot_alloc_disk GB"
    );
    assert!(
        info.get("backing-filename").is_none(),
        "not an overlay of the ISO"
    );
    let pid = service::pids_mentioning(&dir)[0];
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    // Read as raw and read-only: QEMU neither probes nor writes the ISO.
    assert!(
        args.iter().any(|a| a.starts_with("file=")
            && a.ends_with("live.iso,format=raw,readonly=on,index=2,media=cdrom")),
        "{args:?}"
    );
    assert!(args.windows(2).any(|w| w[0] == "-boot" && w[1] == "d"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_master_image_is_used_in_place_only_when_asked() {
    let svc = Service::configure("sessions-master", "");
    // A private copy: this session writes to its master.
    let master = svc.scratch.0.join("machines/demo.img");
    let target = std::fs::read_link(&master).unwrap();
    std::fs::remove_file(&master).unwrap();
    std::fs::copy(&target, &master).unwrap();
    let mut svc = svc;
    svc.launch();
    let s = svc.start_session(&["--snapshot_use_master=1"]);
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(svc.scratch.0.join(format!("state/{}.json", s.name))).unwrap(),
    )
    .unwrap();
    assert_eq!(state["use_master"], true);
    assert_eq!(state["disk"], master.to_str().unwrap());
    assert!(!svc
        .scratch
        .0
        .join("snapshots")
        .join(&s.name)
        .join("disk.qcow2")
        .exists());
    svc.cli(&["stop", &s.name]);
    // The master survives the session's clean-up.
    assert!(master.is_file());
    // Without the option the same machine gets an overlay.
    let s = svc.start_session(&[]);
    assert!(svc
        .scratch
        .0
        .join("snapshots")
        .join(&s.name)
        .join("disk.qcow2")
        .exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn boot_script_qemu_options_reach_the_vm_and_conditions_select_them() {
    let svc = Service::start(
        "sessions-scripts",
        "config_script = [\"if(\\\"@VM@\\\" =~ /demo/): qemu: -device virtio-rng-pci,id=darts-rng\", \"if(\\\"@VM@\\\" =~ /other/): qemu: -device virtio-rng-pci,id=never\"]",
    );
    let s = svc.start_session(&[]);
    let dir = svc.scratch.0.join("snapshots").join(&s.name);
    let pid = service::pids_mentioning(&dir)[0];
    let cmdline = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap())
        .replace('\0', " ");
    assert!(cmdline.contains("virtio-rng-pci,id=darts-rng"), "{cmdline}");
    assert!(!cmdline.contains("id=never"), "{cmdline}");
}

/// A `qemu-img` command that must succeed.
fn qemu_img(args: &[&std::ffi::OsStr]) {
    let out = std::process::Command::new("qemu-img")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn crafted_image_headers_never_open_files_of_the_host() {
    let svc = Service::configure("sessions-crafted", "");
    let machines = svc.scratch.0.join("machines");
    // A file of the host that no guest may read, outside dir_machines.
    let secret = svc.scratch.0.join("secret.bin");
    std::fs::write(&secret, vec![0x5a; 1 << 20]).unwrap();
    // `evil.img` is raw by its name, but holds a qcow2 header naming the secret as its
    // backing file: what a guest running on a raw master (snapshot_use_master) can write.
    let evil = machines.join("evil.img");
    qemu_img(&[
        "create".as_ref(),
        "-q".as_ref(),
        "-f".as_ref(),
        "qcow2".as_ref(),
        "-F".as_ref(),
        "raw".as_ref(),
        "-b".as_ref(),
        secret.as_os_str(),
        evil.as_os_str(),
        "1M".as_ref(),
    ]);
    // `outside.qcow2` is a qcow2 by name, and its backing file leaves dir_machines.
    let outside = machines.join("outside.qcow2");
    std::fs::copy(&evil, &outside).unwrap();
    std::fs::write(
        svc.scratch.0.join("etc/machines.conf"),
        "[demo.img]\n\n[evil.img]\n\n[outside.qcow2]\n",
    )
    .unwrap();
    let mut svc = svc;
    svc.launch();

    // The raw image is read as raw: its session runs, and neither qemu-img's overlay
    // nor QEMU ever opens the secret.
    let out = svc.cli(&["start", "evil.img"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started = service::parse_started(&String::from_utf8_lossy(&out.stdout));
    let dir = svc.scratch.0.join("snapshots").join(&started.name);
    let chain = std::process::Command::new("qemu-img")
        .args(["info", "-U", "--backing-chain", "--output=json"])
        .arg(dir.join("disk.qcow2"))
        .output()
        .unwrap();
    let chain: serde_json::Value = serde_json::from_slice(&chain.stdout).unwrap();
    let chain: Vec<(String, String)> = chain
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["filename"].to_string(), i["format"].to_string()))
        .collect();
    assert_eq!(chain.len(), 2, "overlay over the master only: {chain:?}");
    assert_eq!(chain[1].1, "\"raw\"", "{chain:?}");
    let pid = service::pids_mentioning(&dir)[0];
    let open: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.unwrap().path()).ok())
        .collect();
    assert!(
        open.iter().any(|p| p.ends_with("evil.img")),
        "QEMU has its master open: {open:?}"
    );
    assert!(
        !open.iter().any(|p| p == &secret),
        "QEMU opened the host's file through the image's header: {open:?}"
    );
    svc.cli(&["stop", &started.name]);

    // A qcow2 whose backing file leaves dir_machines is refused, saying why.
    let out = svc.cli(&["start", "outside.qcow2"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing the image") && err.contains("outside dir_machines"),
        "{err}"
    );
    assert!(
        svc.entries("state").is_empty(),
        "{:?}",
        svc.entries("state")
    );
}

/// The pages' unauthenticated catalogue reads cost no file reads: `darts serve` reads
/// the catalogue once, and again only when it changes on disk, which it picks up
/// without a restart.
#[tokio::test(flavor = "multi_thread")]
async fn the_catalogue_is_read_once_and_again_only_when_it_changes() {
    let svc = Service::start("sessions-catalogue-cache", "");
    let loads = |svc: &Service| svc.log().matches("catalogue loaded").count();
    let machines = |body: &[u8]| -> Vec<String> {
        let j: serde_json::Value = serde_json::from_slice(body).unwrap();
        j["machines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap().to_owned())
            .collect()
    };
    for _ in 0..100 {
        for path in ["/darts/api/machines", "/darts/api/config"] {
            let (status, _, _) = http_get(svc.addr, path, "").await;
            assert_eq!(status, 200, "{path}");
        }
    }
    // Past a few checks of the files: still the one read at start.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(loads(&svc), 1, "log:\n{}", svc.log());

    // A machine added to the catalogue, with its image: listed without a restart.
    std::fs::copy(
        svc.scratch.0.join("machines/demo.img"),
        svc.scratch.0.join("machines/second.img"),
    )
    .unwrap();
    std::fs::write(
        svc.scratch.0.join("etc/machines.conf"),
        "[demo.img]\n\n[second.img]\ndescription=Second\n",
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, _, body) = http_get(svc.addr, "/darts/api/machines", "").await;
        if machines(&body).contains(&"second.img".to_owned()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new machine never appeared: {}",
            String::from_utf8_lossy(&body)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, _, body) = http_get(svc.addr, "/darts/api/machines", "").await;
    assert_eq!(machines(&body), ["demo.img", "second.img"]);
    let after = loads(&svc);
    assert!(
        (2..=3).contains(&after),
        "read {after} times; log:\n{}",
        svc.log()
    );
}

/// `/api/machines` as `name=description` lines.
async fn listed(svc: &Service) -> Vec<String> {
    let (status, _, body) = http_get(svc.addr, "/darts/api/machines", "").await;
    assert_eq!(status, 200);
    let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
    j["machines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let (name, description) = (&m["name"], &m["description"]);
            format!(
                "{}={}",
                name.as_str().unwrap(),
                description.as_str().unwrap()
            )
        })
        .collect()
}

/// Polls `/api/machines` until it lists `want` (bounded).
async fn wait_listed(svc: &Service, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = listed(svc).await;
        if now == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "machines are {now:?}, not {want:?}; log:\n{}",
            svc.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A catalogue edit that loses something (a broken line, an unreadable file) is not
/// served: the last good catalogue stays, the log says why, and the fixed file is taken.
#[tokio::test(flavor = "multi_thread")]
async fn a_broken_catalogue_edit_keeps_the_last_good_one() {
    let svc = Service::start("sessions-catalogue-broken", "");
    let conf = svc.scratch.0.join("etc/machines.conf");
    std::fs::copy(
        svc.scratch.0.join("machines/demo.img"),
        svc.scratch.0.join("machines/second.img"),
    )
    .unwrap();
    std::fs::write(
        &conf,
        "[demo.img]\ndescription=Test guest\n\n[second.img]\ndescription=Second\n",
    )
    .unwrap();
    let good = ["demo.img=Test guest", "second.img=Second"];
    wait_listed(&svc, &good).await;

    // A lost bracket: read as is, second.img would vanish and its description would
    // become demo.img's.
    std::fs::write(
        &conf,
        "[demo.img]\ndescription=Test guest\n\n[second.img\ndescription=Second\n",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !svc.log().contains("catalogue edit refused") {
        assert!(
            Instant::now() < deadline,
            "no refusal logged; machines are {:?}; log:\n{}",
            listed(&svc).await,
            svc.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = svc.log();
    let refusal = log
        .lines()
        .find(|l| l.contains("catalogue edit refused"))
        .unwrap();
    assert!(refusal.contains("machines.conf"), "{refusal}");
    assert!(
        log.contains("[second.img"),
        "the problem is not logged:\n{log}"
    );
    // Past a few more checks: still the last good catalogue.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(listed(&svc).await, good);

    // Fixed: taken without a restart.
    std::fs::write(&conf, "[second.img]\ndescription=Second, fixed\n").unwrap();
    wait_listed(&svc, &["second.img=Second, fixed"]).await;
}
