//! `darts gpu` as an operator runs it, on a scratch root: print, apply, apply again, undo.

use std::path::Path;
use std::process::{Command, Output};

fn darts_gpu(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_darts"))
        .arg("gpu")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "darts gpu {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An Intel host with GRUB and initramfs-tools, a boot display and one NVIDIA card.
fn scratch_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let write = |rel: &str, text: &str| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write("proc/cpuinfo", "processor : 0\nvendor_id : GenuineIntel\n");
    write("etc/default/grub", "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n");
    write("etc/initramfs-tools/modules", "# modules\n");
    for (address, class, vendor, device, boot) in [
        ("0000:00:02.0", "0x030000", "0x8086", "0x3e92", "1"),
        ("0000:01:00.0", "0x030000", "0x10de", "0x1eb8", "0"),
    ] {
        let dev = format!("sys/bus/pci/devices/{address}");
        write(&format!("{dev}/class"), class);
        write(&format!("{dev}/vendor"), vendor);
        write(&format!("{dev}/device"), device);
        write(&format!("{dev}/boot_vga"), boot);
    }
    dir
}

fn grub(root: &Path) -> String {
    std::fs::read_to_string(root.join("etc/default/grub")).unwrap()
}

#[test]
fn print_apply_apply_undo() {
    let dir = scratch_root();
    let root = dir.path().to_str().unwrap();

    let printed = stdout(&darts_gpu(&["--root", root]));
    assert!(
        printed.contains("Devices for virtual machines: 10de:1eb8"),
        "{printed}"
    );
    assert!(printed.contains("--apply"), "{printed}");
    assert_eq!(
        grub(dir.path()),
        "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n",
        "printing writes nothing"
    );

    let applied = stdout(&darts_gpu(&["--root", root, "--apply", "-y"]));
    assert!(applied.contains("commands not run"), "{applied}");
    assert_eq!(
        grub(dir.path()),
        "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet intel_iommu=on iommu=pt vfio-pci.ids=10de:1eb8\"\n"
    );
    assert!(dir.path().join("etc/modprobe.d/vfio.conf").exists());

    let again = stdout(&darts_gpu(&["--root", root, "--apply", "-y"]));
    assert!(again.contains("Nothing to change."), "{again}");

    darts_gpu(&["--root", root, "--undo", "--apply", "-y"]);
    assert_eq!(grub(dir.path()), "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n");
    assert!(!dir.path().join("etc/modprobe.d/vfio.conf").exists());
    assert!(dir
        .path()
        .join("etc/systemd/system/darts.service.d/memlock.conf")
        .exists());
}

#[test]
fn bad_ids_are_refused_and_nothing_is_written() {
    let dir = scratch_root();
    let out = Command::new(env!("CARGO_BIN_EXE_darts"))
        .args(["gpu", "10de:1eb8,nvidia", "--root"])
        .arg(dir.path())
        .args(["--apply", "-y"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid device id \"nvidia\""), "{stderr}");
    assert!(!dir.path().join("etc/modprobe.d").exists());
}
