//! The Debian package and the systemd unit (debian/, `[package.metadata.deb]`).
//!
//! - The shipped `/etc/darts/config.toml` lists every configuration key, commented out,
//!   with its real default.
//! - The package is built with cargo-deb from this build's `darts` binary (the one cargo
//!   built for these tests, so it is never stale), installed with `dpkg -i` on this
//!   machine (as root; systemd does not run here, so the maintainer scripts must not
//!   need it), `darts doctor` runs from the installed `/usr/bin/darts`, the installed unit
//!   passes `systemd-analyze verify` and an offline security review, QEMU daemonizes
//!   under the unit's `NoNewPrivileges` as the service user, and `dpkg --purge` removes
//!   it all. The user and groups the package made are removed afterwards.
//!
//! Needs root, cargo-deb and systemd-analyze (`bash tests/setup.sh deb`), and the
//! reverse-proxy snippets in deploy/ (packaged with a glob).

#[path = "support/qemu.rs"]
mod qemu;
mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use qemu::repo_path;

const UNIT: &str = "/usr/lib/systemd/system/darts.service";

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(out.status.success(), "{cmd:?} failed:\n{}", text(&out));
    text(&out)
}

fn getent(db: &str, name: &str) -> Option<String> {
    let out = run(Command::new("getent").args([db, name]));
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[test]
fn the_default_configuration_lists_every_key_with_its_default() {
    let file = std::fs::read_to_string(repo_path("debian/config.toml")).unwrap();
    // As shipped, everything is commented out: the defaults apply.
    let table: toml::Table = file.parse().unwrap();
    assert!(table.is_empty(), "uncommented keys: {table:?}");
    darts::config::Config::parse(&file).unwrap();
    // Uncommented, every `#key = value` line is a real key holding its default.
    let defaults = darts::config::keys::defaults();
    let mut seen = Vec::new();
    for line in file.lines() {
        let Some(assignment) = line.strip_prefix('#') else {
            continue;
        };
        let Some((key, _)) = assignment.split_once(" = ") else {
            continue;
        };
        if !key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            continue;
        }
        let parsed: toml::Table = assignment.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
        let value = &parsed[key];
        let default = defaults
            .get(key)
            .unwrap_or_else(|| panic!("{key} is not a configuration key"));
        assert_eq!(
            value, default,
            "{key}: the file says {value}, darts {default}"
        );
        seen.push(key.to_owned());
    }
    let missing: Vec<&str> = darts::config::keys::KEYS
        .iter()
        .map(|k| k.name)
        .filter(|k| !seen.iter().any(|s| s == k))
        .collect();
    assert!(
        missing.is_empty(),
        "debian/config.toml lacks {missing:?}: add each, commented, with its default"
    );
}

/// Undoes what installing did, whatever happened in between.
struct Installed {
    made_user: bool,
    made_group: bool,
    made_kvm: bool,
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = run(Command::new("dpkg").args(["--purge", "darts"]));
        if self.made_user {
            let _ = run(Command::new("userdel").arg("darts"));
        }
        if self.made_group && getent("group", "darts").is_some() {
            let _ = run(Command::new("groupdel").arg("darts"));
        }
        if self.made_kvm {
            let _ = run(Command::new("groupdel").arg("kvm"));
        }
    }
}

/// Builds the .deb into `out` from this test build's binary; returns its path.
fn build_deb(scratch: &Path) -> PathBuf {
    // cargo-deb takes `target/release/darts` from CARGO_TARGET_DIR: point it at a copy of
    // the binary cargo built for this test run.
    let target = scratch.join("target");
    std::fs::create_dir_all(target.join("release")).unwrap();
    std::fs::copy(support::darts_bin(), target.join("release/darts")).unwrap();
    let out = scratch.join("deb");
    ok(Command::new("cargo")
        .args([
            "deb",
            "--no-build",
            "--strip",
            "--no-dbgsym",
            "--fast",
            "-p",
            "darts",
        ])
        .arg("--manifest-path")
        .arg(repo_path("Cargo.toml"))
        .arg("--output")
        .arg(&out)
        .env("CARGO_TARGET_DIR", &target));
    let debs: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "{debs:?}");
    debs[0].clone()
}

#[test]
fn the_package_builds_installs_runs_the_doctor_and_purges() {
    assert!(
        rustix::process::geteuid().is_root(),
        "installing a package needs root"
    );
    for (tool, args) in [
        ("cargo", &["deb", "--version"][..]),
        ("systemd-analyze", &["--version"][..]),
        ("dpkg", &["--version"][..]),
    ] {
        assert!(
            run(Command::new(tool).args(args)).status.success(),
            "{tool} is missing: run `bash tests/setup.sh deb`"
        );
    }
    assert!(
        repo_path("deploy").is_dir(),
        "deploy/ (the Apache and nginx snippets) is packaged and must exist"
    );
    let status = run(Command::new("dpkg-query").args(["-W", "-f=${Status}", "darts"]));
    assert!(
        !String::from_utf8_lossy(&status.stdout).contains("installed"),
        "a darts package is already installed here; this test would replace it"
    );

    let scratch = tempfile::tempdir().unwrap();
    let deb = build_deb(scratch.path());
    let info = ok(Command::new("dpkg-deb").arg("--info").arg(&deb));
    for dep in [
        "qemu-system-x86 | qemu-system",
        "qemu-utils",
        "libpam0g",
        "adduser",
    ] {
        assert!(info.contains(dep), "Depends lacks {dep}:\n{info}");
    }
    let contents = ok(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    for file in [
        "./usr/bin/darts",
        "./usr/lib/systemd/system/darts.service",
        "./usr/share/darts/novnc/vnc.html",
        "./usr/share/darts/novnc/core/rfb.js",
        "./usr/share/darts/html/index.html",
        "./usr/share/darts/html/assets/",
        "./usr/share/darts/deploy/",
        "./etc/darts/config.toml",
    ] {
        assert!(contents.contains(file), "{file} is not in the package");
    }

    let guard = Installed {
        made_user: getent("passwd", "darts").is_none(),
        made_group: getent("group", "darts").is_none(),
        made_kvm: getent("group", "kvm").is_none(),
    };
    ok(Command::new("dpkg").arg("-i").arg(&deb));

    // The user, its groups and directories.
    let kvm = getent("group", "kvm").expect("group kvm");
    assert!(
        kvm.rsplit(':')
            .next()
            .unwrap()
            .split(',')
            .any(|m| m == "darts"),
        "{kvm}"
    );
    let darts_uid: u32 = getent("passwd", "darts")
        .expect("user darts")
        .split(':')
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    for (dir, mode) in [
        ("/var/lib/darts", 0o750),
        ("/var/lib/darts/machines", 0o750),
        ("/var/lib/darts/snapshots", 0o750),
        ("/var/lib/darts/sessions", 0o700),
        ("/var/log/darts", 0o750),
    ] {
        let m = std::fs::metadata(dir).unwrap_or_else(|e| panic!("{dir}: {e}"));
        assert_eq!((m.uid(), m.mode() & 0o7777), (darts_uid, mode), "{dir}");
    }
    let conf = std::fs::metadata("/etc/darts/config.toml").unwrap();
    assert_eq!(conf.permissions().mode() & 0o777, 0o640);
    let conffiles = ok(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "darts"]));
    assert!(conffiles.contains("/etc/darts/config.toml"), "{conffiles}");

    // The doctor, from the installed binary and configuration.
    let doctor = run(Command::new("/usr/bin/darts").arg("doctor"));
    let report = text(&doctor);
    assert!(doctor.status.success(), "darts doctor failed:\n{report}");
    for expected in [
        "OK   config: /etc/darts/config.toml",
        "OK   service user: darts",
        "OK   dir_novnc: /usr/share/darts/novnc",
        "OK   dir_html: /usr/share/darts/html",
        "OK   dir_cfg: /var/lib/darts/sessions (darts:darts 0700)",
        "OK   service_logfile: /var/log/darts/audit.log",
    ] {
        assert!(report.contains(expected), "no `{expected}` in:\n{report}");
    }

    // The unit as installed.
    let verify = run(Command::new("systemd-analyze").args(["verify", UNIT]));
    let said = text(&verify);
    assert!(verify.status.success(), "systemd-analyze verify:\n{said}");
    assert!(
        !said.lines().any(|l| l.contains("darts.service")),
        "systemd-analyze has remarks on the unit:\n{said}"
    );
    let security = text(&run(Command::new("systemd-analyze").args([
        "security",
        "--offline=true",
        UNIT,
    ])));
    let exposure: f64 = security
        .lines()
        .find_map(|l| l.split("Overall exposure level for darts.service: ").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{security}"));
    assert!(exposure < 5.0, "exposure {exposure}:\n{security}");

    // QEMU daemonizes under NoNewPrivileges as the service user, as under the unit.
    qemu_daemonizes_as_the_service_user();

    ok(Command::new("dpkg").args(["--purge", "darts"]));
    for gone in [
        "/usr/bin/darts",
        UNIT,
        "/usr/share/darts",
        "/etc/darts",
        "/var/lib/darts",
        "/var/log/darts",
    ] {
        assert!(!Path::new(gone).exists(), "{gone} is left after purge");
    }
    // The guard removes the user and groups the package made.
    drop(guard);
}

fn qemu_daemonizes_as_the_service_user() {
    let pidfile = "/var/lib/darts/snapshots/nnp-probe.pid";
    ok(Command::new("setpriv")
        .args([
            "--no-new-privs",
            "--reuid",
            "darts",
            "--regid",
            "darts",
            "--init-groups",
        ])
        .args([
            "qemu-system-x86_64",
            "-nodefaults",
            "-machine",
            "none",
            "-accel",
            "tcg",
        ])
        .args(["-display", "none", "-daemonize", "-pidfile", pidfile]));
    let pid = std::fs::read_to_string(pidfile).unwrap().trim().to_owned();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_default()
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(field("NoNewPrivs:"), "1");
    let uid = getent("passwd", "darts").unwrap();
    assert_eq!(field("Uid:"), uid.split(':').nth(2).unwrap());
    ok(Command::new("kill").arg(&pid));
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}/cmdline")).exists()
        && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
    {
        assert!(Instant::now() < deadline, "QEMU {pid} did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_file(pidfile);
}
