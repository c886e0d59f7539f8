//! VM launching with real tools: `qemu-img` for session disks, the accelerator probe,
//! and a real QEMU (TCG) started from `vm::cmdline::build` the way sessions start it:
//! daemonized, pidfile, QMP and VNC on unix sockets, over an overlay of the test guest.
//!
//! Needs qemu-system-x86_64, qemu-utils and the test guest (`bash tests/setup.sh`).

#[path = "support/qemu.rs"]
mod qemu;
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use darts::qmp::Qmp;
use darts::vm::{accel, disk, exec, Accel, LaunchSpec, VmError, VncAuth, VncEndpoint};
use serde_json::Value;
use support::Scratch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const START: Duration = Duration::from_secs(60);
const QMP_TIMEOUT: Duration = Duration::from_secs(15);

/// The test guest's raw, BIOS-bootable disk (the "master image").
fn guest_disk() -> PathBuf {
    let disk = qemu::guest().kernel.with_file_name("disk.img");
    assert!(
        disk.is_file(),
        "{} is missing: run `bash tests/setup.sh` (tests/e2e/make-guest.sh builds it)",
        disk.display()
    );
    disk
}

/// `qemu-img info` read here, independently of darts.
fn qemu_img_info(path: &Path) -> Value {
    let out = std::process::Command::new("qemu-img")
        .args(["info", "--output=json", "-U"])
        .arg(path)
        .output()
        .expect("qemu-img runs (bash tests/setup.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `abs` as a path relative to the current directory.
fn relative_from_cwd(abs: &Path) -> PathBuf {
    let cwd = std::env::current_dir().unwrap();
    let up = "../".repeat(cwd.components().count() - 1);
    PathBuf::from(up).join(abs.strip_prefix("/").unwrap())
}

#[tokio::test]
async fn overlay_over_a_raw_master_records_its_absolute_path_and_format() {
    let scratch = Scratch::new("vm-overlay-raw");
    let master = scratch.path("master.img");
    std::fs::copy(guest_disk(), &master).unwrap();
    assert_eq!(qemu_img_info(&master)["format"], "raw");
    let overlay = scratch.path("overlay.qcow2");
    let relative = relative_from_cwd(&master);
    assert!(relative.is_relative() && relative.exists());
    disk::create_overlay(&relative, "raw", &overlay)
        .await
        .unwrap();
    let info = qemu_img_info(&overlay);
    assert_eq!(info["format"], "qcow2");
    let canonical = master.canonicalize().unwrap();
    assert_eq!(info["backing-filename"], canonical.to_str().unwrap());
    assert_eq!(info["backing-filename-format"], "raw");
    assert_eq!(
        info["virtual-size"].as_u64().unwrap(),
        std::fs::metadata(&master).unwrap().len()
    );
    assert_eq!(qemu_img_info(&overlay)["format"], "qcow2");
}

#[tokio::test]
async fn overlay_over_a_qcow2_master() {
    let scratch = Scratch::new("vm-overlay-qcow2");
    let master = scratch.path("master.qcow2");
    disk::create_blank(&master, 1).await.unwrap();
    let format = "qcow2";
    disk::check_master(&master, format, scratch.path(".").as_path())
        .await
        .unwrap();
    let overlay = scratch.path("overlay.qcow2");
    disk::create_overlay(&master, format, &overlay)
        .await
        .unwrap();
    let info = qemu_img_info(&overlay);
    let canonical = master.canonicalize().unwrap();
    assert_eq!(info["backing-filename"], canonical.to_str().unwrap());
    assert_eq!(info["backing-filename-format"], "qcow2");
    assert_eq!(info["virtual-size"].as_u64().unwrap(), 1 << 30);
}

#[tokio::test]
async fn blank_disk_has_the_requested_size_and_is_never_overwritten() {
    let scratch = Scratch::new("vm-blank");
    let path = scratch.path("blank.qcow2");
    disk::create_blank(&path, 3).await.unwrap();
    let info = qemu_img_info(&path);
    assert_eq!(info["format"], "qcow2");
    assert_eq!(info["virtual-size"].as_u64().unwrap(), 3 << 30);
    assert!(info.get("backing-filename").is_none());

    let e = disk::create_blank(&path, 1).await.unwrap_err();
    assert!(matches!(e, VmError::Exists { .. }), "{e}");
    assert_eq!(
        qemu_img_info(&path)["virtual-size"].as_u64().unwrap(),
        3 << 30
    );
}

#[tokio::test]
async fn a_missing_master_is_named() {
    let scratch = Scratch::new("vm-missing-master");
    let master = scratch.path("no-such-master.qcow2");
    let overlay = scratch.path("overlay.qcow2");
    let e = disk::create_overlay(&master, "qcow2", &overlay)
        .await
        .unwrap_err();
    match &e {
        VmError::Io { path, source } => {
            assert_eq!(path, &master);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected a missing master, got {other}"),
    }
    assert!(!overlay.exists(), "a failed overlay must not stay behind");
    let e = disk::check_master(&master, "qcow2", Path::new("/"))
        .await
        .unwrap_err();
    match &e {
        VmError::QemuImg { op, stderr, .. } => {
            assert_eq!(*op, "info");
            assert!(stderr.contains("no-such-master.qcow2"), "{stderr}");
        }
        other => panic!("expected qemu-img's message, got {other}"),
    }
}

#[tokio::test]
async fn a_failing_qemu_img_leaves_nothing_and_says_why() {
    // The master exists but is not in the format given: qemu-img refuses.
    let scratch = Scratch::new("vm-bad-format");
    let master = scratch.path("master.img");
    std::fs::write(&master, vec![0u8; 1 << 20]).unwrap();
    let overlay = scratch.path("overlay.qcow2");
    let e = disk::create_overlay(&master, "qcow2", &overlay)
        .await
        .unwrap_err();
    match &e {
        VmError::QemuImg { op, stderr, .. } => {
            assert_eq!(*op, "create");
            assert!(stderr.contains("not in qcow2 format"), "{stderr}");
        }
        other => panic!("expected a qemu-img error, got {other}"),
    }
    assert!(!overlay.exists(), "a failed overlay must not stay behind");
}

/// A 1 MiB tmpfs mounted on a scratch directory, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: PathBuf) -> Result<Self, String> {
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1M", "tmpfs"])
            .arg(&dir)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(Self(dir))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_is_reported_as_no_space_and_leaves_no_file() {
    let scratch = Scratch::new("vm-nospace");
    let mnt = scratch.path("small");
    std::fs::create_dir(&mnt).unwrap();
    let tmpfs = match Tmpfs::mount(mnt.clone()) {
        Ok(t) => t,
        Err(reason) => {
            eprintln!("SKIPPED: cannot mount a tmpfs here: {reason}");
            return;
        }
    };
    // Fill it: the write stops at ENOSPC, which is the point.
    let filled = std::fs::write(mnt.join("filler"), vec![0u8; 2 << 20]);
    assert!(filled.is_err(), "the 1 MiB tmpfs took 2 MiB");

    let overlay = mnt.join("overlay.qcow2");
    let e = disk::create_overlay(&guest_disk(), "raw", &overlay)
        .await
        .unwrap_err();
    assert!(matches!(e, VmError::NoSpace { .. }), "{e}");
    assert!(e.to_string().contains("No space left"), "{e}");
    assert!(!overlay.exists());

    let blank = mnt.join("blank.qcow2");
    let e = disk::create_blank(&blank, 10).await.unwrap_err();
    assert!(matches!(e, VmError::NoSpace { .. }), "{e}");
    assert!(!blank.exists());
    drop(tmpfs);
}

#[tokio::test]
async fn the_probe_runs_its_guest_to_the_end_under_tcg() {
    let exec = exec::resolve_exec("auto").unwrap();
    let outcome = accel::probe(&exec, Accel::Tcg, Duration::from_secs(120)).await;
    assert_eq!(outcome, accel::ProbeOutcome::Works);
    // An accelerator this host lacks makes QEMU fail instead: the probe tells them apart.
    let outcome = accel::probe(&exec, Accel::Hvf, Duration::from_secs(120)).await;
    assert!(
        matches!(&outcome, accel::ProbeOutcome::Exited { code: Some(c), .. } if *c != accel::PROBE_EXIT_CODE),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn auto_gives_kvm_only_when_a_kvm_guest_really_runs() {
    let exec = exec::resolve_exec("auto").unwrap();
    match accel::choose("auto", &exec).await {
        Accel::Kvm => {
            let outcome = accel::probe(&exec, Accel::Kvm, Duration::from_secs(30)).await;
            assert!(outcome.works(), "auto chose KVM but {outcome:?}");
        }
        other => assert_eq!(other, Accel::Tcg),
    }
}

#[tokio::test]
async fn auto_machine_options_on_this_host() {
    let exec = exec::resolve_exec("auto").unwrap();
    let options = exec::resolve_options("auto", &exec).await.unwrap();
    assert_eq!(options[..2], ["-M", "pc"]);
    let display = &options[2..];
    assert!(
        display == ["-vga", "virtio"]
            || display == ["-vga", "qxl"]
            || display == ["-device", "ramfb"],
        "{options:?}"
    );
    assert!(!options.iter().any(|o| o.contains("accel") || o == "-cpu"));
    // Asked again: the same answer, from the cache.
    assert_eq!(exec::resolve_options("auto", &exec).await.unwrap(), options);
}

/// A session's spec in `dir`, under TCG, as the session manager builds it.
async fn spec(dir: &Path, name: &str, disk: PathBuf, disk_format: &str) -> LaunchSpec {
    let exec = exec::resolve_exec("auto").unwrap();
    let exec_options = exec::resolve_options("auto", &exec).await.unwrap();
    LaunchSpec {
        exec,
        exec_options,
        accel: Accel::Tcg,
        name: name.to_owned(),
        user: "tester".into(),
        machine: "disk.img".into(),
        cpu: 1,
        memory_mb: 256,
        disk,
        disk_format: disk_format.to_owned(),
        cdrom: None,
        gpu: None,
        mounts: Vec::new(),
        extra_args: Vec::new(),
        vnc: VncEndpoint::Unix(dir.join("vnc.sock")),
        vnc_auth: VncAuth::Password,
        qmp_socket: dir.join("qmp.sock"),
        pidfile: dir.join("qemu.pid"),
        clipboard: false,
    }
}

/// Kills a daemonized QEMU left running by a failed test (only if it is still ours).
struct KillOnDrop {
    pid: u32,
    name: String,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if cmdline_of(self.pid).contains(&self.name) {
            if let Some(pid) = rustix::process::Pid::from_raw(self.pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

fn cmdline_of(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// State and parent pid from `/proc/PID/stat`.
fn stat_of(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Pids whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| cmdline_of(*pid).contains(needle))
        .collect()
}

/// Waits for `pid` to exit (it is not our child: a pidfd tells when it is gone).
async fn wait_gone(pid: u32, within: Duration) -> bool {
    use rustix::process::{pidfd_open, Pid, PidfdFlags};
    let Some(p) = Pid::from_raw(pid as i32) else {
        return true;
    };
    let fd = match pidfd_open(p, PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::SRCH) => return true,
        Err(e) => panic!("pidfd_open({pid}): {e}"),
    };
    // `AsyncFd::register` is the unsafe successor; an owned pidfd is exactly what `new` needs.
    #[allow(deprecated)]
    let fd = tokio::io::unix::AsyncFd::new(fd).unwrap();
    tokio::time::timeout(within, fd.readable()).await.is_ok()
}

/// The unix socket `spec` puts QEMU's VNC server on.
fn vnc_socket(spec: &LaunchSpec) -> &Path {
    match &spec.vnc {
        VncEndpoint::Unix(path) => path,
        VncEndpoint::Tcp(addr) => panic!("VNC on TCP {addr}, not a unix socket"),
    }
}

async fn rfb_greeting(socket: &Path) -> (tokio::net::UnixStream, Vec<u8>) {
    let mut s = tokio::net::UnixStream::connect(socket).await.unwrap();
    let mut version = vec![0u8; 12];
    tokio::time::timeout(QMP_TIMEOUT, s.read_exact(&mut version))
        .await
        .expect("VNC greeting in time")
        .unwrap();
    (s, version)
}

/// Polls the guest's serial log for `marker` (the guest has no other way to say it is up).
async fn wait_serial(path: &Path, marker: &str, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        let text = std::fs::read(path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        if text.contains(marker) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(text);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launched_vm_daemonizes_and_answers_on_qmp_and_vnc() {
    let scratch = Scratch::new("vm-launch");
    // A comma in every socket, disk and folder path and in the name: QEMU itself checks
    // the escaping.
    let dir = scratch.path("s,1");
    std::fs::create_dir(&dir).unwrap();
    let master = guest_disk();
    let format = "raw";
    let overlay = dir.join("disk.qcow2");
    disk::create_overlay(&master, format, &overlay)
        .await
        .unwrap();
    let share = dir.join("share,d");
    std::fs::create_dir(&share).unwrap();
    let serial = scratch.path("serial.log");

    let name = format!("vmlaunch,{}", std::process::id());
    let mut spec = spec(&dir, &name, overlay.clone(), "qcow2").await;
    spec.mounts = vec![share, dir.join("missing")];
    spec.clipboard = true;
    spec.extra_args = vec!["-serial".into(), format!("file:{}", serial.display())];

    let pid = exec::launch(&spec, START).await.unwrap();
    let _guard = KillOnDrop {
        pid,
        name: name.replace(',', ",,"),
    };

    // Daemonized: the VM runs on after its foreground process exited, and is not our child.
    let (state, ppid) = stat_of(pid).expect("QEMU runs after launch returned");
    assert_ne!(state, 'Z');
    assert_ne!(ppid, std::process::id());
    let recorded: u32 = std::fs::read_to_string(&spec.pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(recorded, pid);
    assert!(cmdline_of(pid).contains("-daemonize"));

    let mut qmp = Qmp::connect(&spec.qmp_socket, QMP_TIMEOUT).await.unwrap();
    let status = qmp.query_status().await.unwrap();
    assert!(status.running, "{status:?}");
    assert_eq!(status.status, "running");
    let qname = qmp.execute("query-name", None).await.unwrap();
    assert_eq!(qname["name"], format!("{name}:tester:disk.img"));
    // No human monitor on a virtual console (VNC users could switch to it): the only
    // monitor is QMP on its socket.
    let chardevs = qmp.execute("query-chardev", None).await.unwrap();
    let chardevs = chardevs.as_array().unwrap();
    let monitors: Vec<&str> = chardevs
        .iter()
        .filter(|c| c["label"].as_str().unwrap().contains("monitor"))
        .map(|c| c["filename"].as_str().unwrap())
        .collect();
    assert_eq!(monitors.len(), 1, "{chardevs:?}");
    assert!(monitors[0].starts_with("unix:"), "{chardevs:?}");
    let labels: Vec<&str> = chardevs
        .iter()
        .filter_map(|c| c["label"].as_str())
        .collect();
    assert!(
        labels.contains(&"ch1"),
        "clipboard agent missing: {labels:?}"
    );
    let blocks = qmp.execute("query-block", None).await.unwrap();
    let disk = blocks
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["inserted"]["file"] == overlay.to_str().unwrap())
        .unwrap_or_else(|| panic!("overlay not attached: {blocks}"));
    assert_eq!(disk["inserted"]["drv"], "qcow2");

    let (_vnc, version) = rfb_greeting(vnc_socket(&spec)).await;
    assert_eq!(version, b"RFB 003.008\n");
    let vnc = qmp.query_vnc().await.unwrap();
    assert_eq!(vnc["auth"], "vnc", "{vnc}");

    // The tiny guest boots from the overlay with TCG's `-cpu max`.
    if let Err(text) = wait_serial(&serial, "E2E-GUEST-READY", Duration::from_secs(240)).await {
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        panic!(
            "the guest did not boot; serial (newest first):\n{}",
            tail.join("\n")
        );
    }

    qmp.quit().await.unwrap();
    assert!(
        wait_gone(pid, Duration::from_secs(30)).await,
        "QEMU still runs after quit"
    );
    assert!(
        !spec.pidfile.exists(),
        "QEMU removes its pidfile when it quits"
    );
}

#[tokio::test]
async fn x509_vnc_offers_vencrypt() {
    let scratch = Scratch::new("vm-x509");
    let dir = scratch.path("s");
    std::fs::create_dir(&dir).unwrap();
    let certs = scratch.path("certs");
    darts::certs::init(&darts::certs::Request {
        dir: certs.clone(),
        server_names: vec!["localhost".into()],
        client_name: "darts".into(),
        days: 1,
        crl: false,
        force: false,
    })
    .unwrap();
    let blank = dir.join("disk.qcow2");
    disk::create_blank(&blank, 1).await.unwrap();
    let name = format!("vmx509-{}", std::process::id());
    let mut spec = spec(&dir, &name, blank, "qcow2").await;
    spec.vnc_auth = VncAuth::X509 {
        dir: certs.join("server"),
        password: true,
    };
    let pid = exec::launch(&spec, START).await.unwrap();
    let _guard = KillOnDrop {
        pid,
        name: name.clone(),
    };

    let (mut vnc, version) = rfb_greeting(vnc_socket(&spec)).await;
    assert_eq!(version, b"RFB 003.008\n");
    vnc.write_all(b"RFB 003.008\n").await.unwrap();
    let n = vnc.read_u8().await.unwrap();
    let mut types = vec![0u8; usize::from(n)];
    vnc.read_exact(&mut types).await.unwrap();
    assert_eq!(types, [19], "VeNCrypt only");
    let mut qmp = Qmp::connect(&spec.qmp_socket, QMP_TIMEOUT).await.unwrap();
    let info = qmp.query_vnc().await.unwrap();
    assert_eq!(info["auth"], "vencrypt+x509+vnc", "{info}");
    qmp.quit().await.unwrap();
    assert!(wait_gone(pid, Duration::from_secs(30)).await);
}

#[tokio::test]
async fn a_wrong_option_fails_the_launch_with_qemus_message() {
    let scratch = Scratch::new("vm-bad-option");
    let dir = scratch.path("s");
    std::fs::create_dir(&dir).unwrap();
    let name = format!("vmbadopt-{}", std::process::id());
    let mut spec = spec(&dir, &name, guest_disk(), "raw").await;
    spec.extra_args = vec!["-no-such-option-darts".into()];
    let e = exec::launch(&spec, START).await.unwrap_err();
    match &e {
        VmError::Launch { stderr, .. } => {
            assert!(stderr.contains("-no-such-option-darts"), "{stderr}")
        }
        other => panic!("expected a launch error, got {other}"),
    }
    assert!(!spec.pidfile.exists());
    assert!(processes_with(&name).is_empty());
}

#[tokio::test]
async fn an_error_after_daemonizing_began_still_reaches_the_caller() {
    // The disk is opened by the daemon, before it detaches: its error must come back too.
    let scratch = Scratch::new("vm-bad-disk");
    let dir = scratch.path("s");
    std::fs::create_dir(&dir).unwrap();
    let name = format!("vmbaddisk-{}", std::process::id());
    let missing = dir.join("missing.qcow2");
    let spec = spec(&dir, &name, missing, "qcow2").await;
    let e = exec::launch(&spec, START).await.unwrap_err();
    match &e {
        VmError::Launch { stderr, .. } => assert!(stderr.contains("missing.qcow2"), "{stderr}"),
        other => panic!("expected a launch error, got {other}"),
    }
    assert!(processes_with(&name).is_empty(), "a failed VM stays behind");
}
