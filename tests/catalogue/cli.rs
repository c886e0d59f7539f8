//! The `darts machines` command, run as the real binary.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use crate::image_server::ImageServer;
use crate::support::{darts_bin, Scratch};
use crate::MAIN_CONF;

fn write_config(dir: &Scratch) -> PathBuf {
    let cfg = dir.path("darts.toml");
    fs::write(
        &cfg,
        format!(
            "dir_etc = {:?}\ndir_machines = {:?}\ndir_cfg = {:?}\n",
            dir.path("etc"),
            dir.path("machines"),
            dir.path("sessions")
        ),
    )
    .unwrap();
    for d in ["etc/config.d", "machines", "sessions"] {
        fs::create_dir_all(dir.path(d)).unwrap();
    }
    cfg
}

fn darts(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(darts_bin())
        .args(args)
        .env_remove("DARTS_YES")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn darts_machines_list_with_a_config_file() {
    let dir = Scratch::new("cat-cli-list");
    let cfg = write_config(&dir);
    fs::write(dir.path("etc/machines.conf"), MAIN_CONF).unwrap();
    fs::write(dir.path("etc/config.d/broken.ini"), "[x.iso]\nurll=typo\n").unwrap();
    fs::write(dir.path("machines/debian.qcow2"), "disk").unwrap();
    fs::write(dir.path("machines/stray.vdi"), "old").unwrap();

    let (ok, stdout, stderr) = darts(&["machines", "list", "-c", cfg.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let line = |needle: &str| {
        stdout
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in:\n{stdout}"))
            .to_owned()
    };
    assert!(line("slax.iso").starts_with("  [x] slax.iso"));
    assert!(line("slax.iso").contains("MISSING"));
    assert!(
        line("slax.iso").contains("Slax (Debian, [www.slax.org])  <- https://example.org/slax.iso")
    );
    assert!(line("debian.qcow2").contains("available"));
    assert!(line("tinycore.iso").starts_with("  [ ] tinycore.iso"));
    assert!(line("] x.iso").starts_with("  [x] x.iso"));
    assert_eq!(line("stray.vdi").trim(), "stray.vdi");
    assert!(line("broken.ini:2").contains("unknown key \"urll\""));
    // qwdctl's default command is the status.
    let (ok, default_out, _) = darts(&["machines", "-c", cfg.to_str().unwrap()]);
    assert!(ok);
    assert_eq!(default_out, stdout);
}

#[test]
fn darts_machines_download_and_purge_from_the_command_line() {
    let dir = Scratch::new("cat-cli-dl");
    let server = ImageServer::start(&dir);
    let cfg = write_config(&dir);
    let cfg = cfg.to_str().unwrap();
    let ca = server.ca_file.to_str().unwrap();
    let url = server.url("/cli.qcow2");

    let (ok, stdout, stderr) = darts(&[
        "machines",
        "enable",
        &url,
        "CLI image",
        "-c",
        cfg,
        "--ca",
        ca,
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("cli.qcow2: enabled in new"), "{stdout}");
    assert!(stdout.contains("cli.qcow2: downloaded 3.1 MB"), "{stdout}");
    // stderr is a pipe: plain progress lines, no carriage returns.
    assert!(
        stderr.contains("cli.qcow2: 100% 3.1 MB of 3.1 MB"),
        "{stderr}"
    );
    assert!(!stderr.contains('\r'));
    assert_eq!(
        fs::read(dir.path("machines/cli.qcow2")).unwrap(),
        server.state.body.as_ref()
    );

    let (ok, stdout, stderr) = darts(&["machines", "download", "-c", cfg, "--ca", ca]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("cli.qcow2: up to date"), "{stdout}");

    // Without the CA: refused, with a hint.
    let (ok, _, stderr) = darts(&["machines", "download", "cli.qcow2", "-c", cfg]);
    assert!(!ok);
    assert!(stderr.contains("certificate refused"), "{stderr}");
    assert!(stderr.contains("--ca FILE"), "{stderr}");

    // Disable, then purge -y: the download goes; an image a session uses stays.
    let (ok, stdout, stderr) = darts(&["machines", "disable", "cli.qcow2", "-c", cfg]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("disabled in"), "{stdout}");
    fs::write(dir.path("machines/busy.iso"), "busy").unwrap();
    fs::write(
        dir.path("sessions/s1.json"),
        format!(
            "{{\"name\":\"s1\",\"machine_path\":{:?}}}",
            dir.path("machines/busy.iso")
        ),
    )
    .unwrap();
    let (ok, stdout, stderr) = darts(&["machines", "purge", "-y", "-c", cfg]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("kept") && stdout.contains("busy.iso (in use)"),
        "{stdout}"
    );
    assert!(!dir.path("machines/cli.qcow2").exists());
    assert!(fs::symlink_metadata(dir.path("machines/cli.qcow2")).is_err());
    assert!(!dir.path("machines/downloads/cli.qcow2").exists());
    assert!(dir.path("machines/busy.iso").exists());

    // Without -y and with no answer on stdin, nothing is deleted.
    fs::write(dir.path("machines/ask.iso"), "x").unwrap();
    let (ok, stdout, stderr) = darts(&["machines", "purge", "-c", cfg]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("ask.iso? [y/N]"), "{stderr}");
    assert!(!stdout.contains("deleted"), "{stdout}");
    assert!(dir.path("machines/ask.iso").exists());
}
