//! `darts doctor` as an operator runs it, on scratch configurations: one with a missing
//! machines directory, an expired certificate (made with rcgen) and an IMAP server that
//! refuses connections, each reported as FAIL with its fix and a failing exit status;
//! and a sound one, which passes.
//!
//! Needs qemu-system-x86_64 and qemu-img (`bash tests/setup.sh qemu`).

#[path = "support/qemu.rs"]
mod qemu;
mod support;

use std::path::Path;
use std::process::Command;

use qemu::repo_path;
use time::{Duration, OffsetDateTime};

/// Writes a configuration in `dir` (plus `extra` lines) with every directory present.
fn config(dir: &Path, extra: &str) -> std::path::PathBuf {
    for d in ["machines", "snapshots", "state", "service", "etc", "log"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    let file = dir.join("config.toml");
    std::fs::write(
        &file,
        format!(
            r#"dir_machines = "{root}/machines"
dir_snapshots = "{root}/snapshots"
dir_cfg = "{root}/state"
dir_service = "{root}/service"
dir_etc = "{root}/etc"
dir_novnc = "{novnc}"
dir_html = "{html}"
service_logfile = "{root}/log/audit.log"
service_port = {port}
qemu_accel = "tcg"
{extra}
"#,
            root = dir.display(),
            novnc = repo_path("web/novnc").display(),
            html = repo_path("web/app").display(),
            port = support::free_port(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        dir.join("state"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    file
}

/// Runs the doctor (permissions judged for root, who owns the scratch files); returns
/// (success, its lines).
fn doctor(config: &Path) -> (bool, Vec<String>) {
    let out = Command::new(support::darts_bin())
        .args(["doctor", "--user", "root", "--timeout", "3", "-c"])
        .arg(config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (
        out.status.success(),
        text.lines().map(str::to_owned).collect(),
    )
}

/// The line of check `name` with `status`; panics with the whole report otherwise.
fn line<'a>(lines: &'a [String], status: &str, name: &str) -> &'a str {
    let prefix = format!("{status:<4} {name}: ");
    lines
        .iter()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{}", lines.join("\n")))
}

#[test]
fn broken_set_ups_are_failures_with_their_fix() {
    let dir = tempfile::tempdir().unwrap();
    // An expired certificate and its key.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(400);
    params.not_after = now - Duration::days(3);
    let cert = params.self_signed(&key).unwrap();
    let (crt, pem_key) = (dir.path().join("old.crt"), dir.path().join("old.key"));
    std::fs::write(&crt, cert.pem()).unwrap();
    std::fs::write(&pem_key, key.serialize_pem()).unwrap();
    // A port nobody listens on.
    let closed = support::free_port();
    let file = config(
        dir.path(),
        &format!(
            "certificate_crt = {crt:?}\ncertificate_key = {pem_key:?}\ncheck_user_with_imap = true\nimap_server = \"127.0.0.1\"\nimap_port = {closed}\n"
        ),
    );
    std::fs::remove_dir(dir.path().join("machines")).unwrap();

    let (ok, lines) = doctor(&file);
    assert!(!ok, "the doctor must fail:\n{}", lines.join("\n"));

    let machines = line(&lines, "FAIL", "dir_machines");
    assert!(machines.contains("does not exist"), "{machines}");
    assert!(
        machines.contains(&format!(
            "-> install -d -o root -g root -m 0750 {}/machines",
            dir.path().display()
        )),
        "{machines}"
    );

    let cert = line(&lines, "FAIL", "certificate_crt");
    assert!(cert.contains("expired on"), "{cert}");
    assert!(
        cert.contains("-> put a renewed certificate in place"),
        "{cert}"
    );

    let imap = line(&lines, "FAIL", "imap_server");
    assert!(
        imap.contains(&format!("cannot reach 127.0.0.1:{closed}")),
        "{imap}"
    );
    assert!(imap.contains("-> check imap_server and its port"), "{imap}");

    // What is sound stays OK, and the summary counts the failures.
    line(&lines, "OK", "dir_novnc");
    line(&lines, "OK", "dir_snapshots");
    assert_eq!(lines.iter().filter(|l| l.starts_with("FAIL")).count(), 3);
    assert!(
        lines.last().unwrap().ends_with(" 3 FAIL"),
        "{}",
        lines.join("\n")
    );
}

#[test]
fn a_sound_set_up_passes() {
    let dir = tempfile::tempdir().unwrap();
    // A reachable IMAP port and a machine in the catalogue.
    let imap = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = imap.local_addr().unwrap().port();
    let file = config(
        dir.path(),
        &format!("check_user_with_imap = true\nimap_server = \"127.0.0.1\"\nimap_port = {port}\n"),
    );
    std::fs::write(dir.path().join("machines/tiny.qcow2"), b"").unwrap();
    std::fs::write(
        dir.path().join("etc/machines.conf"),
        "[tiny.qcow2]\ndescription=Tiny\n",
    )
    .unwrap();

    let (ok, lines) = doctor(&file);
    assert!(ok, "{}", lines.join("\n"));
    assert!(
        !lines.iter().any(|l| l.starts_with("FAIL")),
        "{}",
        lines.join("\n")
    );
    for name in [
        "qemu",
        "qemu-img",
        "kvm",
        "dir_novnc",
        "dir_html",
        "dir_cfg",
        "dir_machines",
        "certificate_crt",
        "port",
        "imap_server",
        "gpu",
    ] {
        line(&lines, "OK", name);
    }
    assert!(line(&lines, "OK", "catalogue").contains("tiny.qcow2"));
    assert!(line(&lines, "OK", "service_logfile").contains("log/audit.log"));
}
