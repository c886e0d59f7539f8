use super::*;
use crate::gpu::discover::tests::FakeSys;

const GRUB_TEXT: &str = "# If you change this file, run 'update-grub'\nGRUB_DEFAULT=0\nGRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash\"\nGRUB_CMDLINE_LINUX=\"\"\n";
const MODULES_TEXT: &str =
    "# List of modules that you want to include in your initramfs.\n# Examples:\n# raid1\nloop\n";

/// A Debian-like root: Intel CPU, GRUB, initramfs-tools, an Intel boot display, an
/// NVIDIA VGA card with its audio function and an NVIDIA 3D controller.
fn debian_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("proc")).unwrap();
    std::fs::write(
        root.join("proc/cpuinfo"),
        "processor\t: 0\nvendor_id\t: GenuineIntel\n\nprocessor\t: 1\nvendor_id\t: GenuineIntel\n",
    )
    .unwrap();
    std::fs::create_dir_all(root.join("etc/default")).unwrap();
    std::fs::write(root.join(GRUB), GRUB_TEXT).unwrap();
    std::fs::create_dir_all(root.join(INITRAMFS_TOOLS)).unwrap();
    std::fs::write(root.join(INITRAMFS_MODULES), MODULES_TEXT).unwrap();
    let sys = FakeSys::new(root);
    sys.add(
        "0000:00:02.0",
        "0x030000",
        "8086",
        "3e92",
        Some("i915"),
        None,
        true,
    );
    sys.add(
        "0000:01:00.0",
        "0x030000",
        "10de",
        "1eb8",
        Some("nouveau"),
        None,
        false,
    );
    sys.add(
        "0000:01:00.1",
        "0x040300",
        "10de",
        "10f8",
        Some("snd_hda_intel"),
        None,
        false,
    );
    sys.add(
        "0000:02:00.0",
        "0x030200",
        "10de",
        "20b0",
        Some("nvidia"),
        None,
        false,
    );
    dir
}

fn lock(ids: &[&str]) -> Action {
    Action::Lock {
        ids: ids.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn read(root: &Path, rel: &str) -> Option<String> {
    std::fs::read_to_string(root.join(rel)).ok()
}

/// Every file under `root/etc`, with its content.
fn snapshot(root: &Path) -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push((p.clone(), std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(&root.join("etc"), &mut out);
    out.sort();
    out
}

#[test]
fn apply_twice_then_undo() {
    let dir = debian_root();
    let root = dir.path();

    let p = plan(root, &lock(&[])).unwrap();
    assert_eq!(
        p.ids,
        ["10de:1eb8", "10de:20b0"],
        "every display but the boot one"
    );
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("0000:01:00.1") && w.contains("10de:10f8")),
        "the audio function is named: {:?}",
        p.warnings
    );
    let commands: Vec<String> = p.commands.iter().map(|c| c.join(" ")).collect();
    assert_eq!(
        commands,
        [
            "update-initramfs -u",
            "update-grub",
            "udevadm control --reload-rules",
            "udevadm trigger",
            "systemctl daemon-reload"
        ]
    );
    assert!(p.reboot);
    apply(&p).unwrap();

    let grub = read(root, GRUB).unwrap();
    assert!(
        grub.contains("\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash intel_iommu=on iommu=pt vfio-pci.ids=10de:1eb8,10de:20b0\"\n"),
        "{grub}"
    );
    assert!(grub.contains("\nGRUB_CMDLINE_LINUX=\"\"\n"), "{grub}");
    assert_eq!(read(root, GRUB_BACKUP).unwrap(), GRUB_TEXT);
    let vfio = read(root, MODPROBE).unwrap();
    assert!(
        vfio.contains("\noptions vfio-pci ids=10de:1eb8,10de:20b0 disable_vga=1\n"),
        "{vfio}"
    );
    let modules = read(root, INITRAMFS_MODULES).unwrap();
    assert!(modules.starts_with(MODULES_TEXT), "{modules}");
    assert!(
        modules.contains("\nvfio\nvfio_iommu_type1\nvfio_pci\n# END darts gpu\n"),
        "{modules}"
    );
    assert!(read(root, UDEV_RULES)
        .unwrap()
        .contains("\nSUBSYSTEM==\"vfio\", OWNER=\"root\", GROUP=\"kvm\"\n"));
    assert!(read(root, LIMITS)
        .unwrap()
        .contains("\n@kvm hard memlock unlimited\n"));
    assert!(read(root, SYSTEMD_DROP_IN)
        .unwrap()
        .contains("\n[Service]\nLimitMEMLOCK=infinity\n"));

    // Again: nothing to do, nothing touched.
    let applied = snapshot(root);
    let again = plan(root, &lock(&[])).unwrap();
    assert!(again.changes.is_empty(), "{:?}", again.changes);
    assert!(again.commands.is_empty() && !again.reboot);
    assert!(again.render().contains("Nothing to change."));
    apply(&again).unwrap();
    assert_eq!(snapshot(root), applied);

    // Undo: GRUB and the initramfs as they were, the limits kept.
    let undo = plan(root, &Action::Unlock).unwrap();
    let commands: Vec<String> = undo.commands.iter().map(|c| c.join(" ")).collect();
    assert_eq!(
        commands,
        [
            "update-initramfs -u",
            "update-grub",
            "udevadm control --reload-rules",
            "udevadm trigger"
        ]
    );
    apply(&undo).unwrap();
    assert_eq!(read(root, GRUB).unwrap(), GRUB_TEXT);
    assert_eq!(read(root, INITRAMFS_MODULES).unwrap(), MODULES_TEXT);
    assert_eq!(read(root, MODPROBE), None);
    assert_eq!(read(root, UDEV_RULES), None);
    assert!(read(root, LIMITS).is_some());
    assert!(read(root, SYSTEMD_DROP_IN).is_some());
    assert!(plan(root, &Action::Unlock).unwrap().changes.is_empty());
}

#[test]
fn new_ids_replace_old_ones() {
    let dir = debian_root();
    let root = dir.path();
    apply(&plan(root, &lock(&["10de:1eb8"])).unwrap()).unwrap();
    let p = plan(root, &lock(&["10DE:1EB8,10de:10f8"])).unwrap();
    assert_eq!(p.ids, ["10de:1eb8", "10de:10f8"]);
    apply(&p).unwrap();
    let grub = read(root, GRUB).unwrap();
    assert_eq!(grub.matches("vfio-pci.ids=").count(), 1, "{grub}");
    assert!(
        grub.contains("vfio-pci.ids=10de:1eb8,10de:10f8\""),
        "{grub}"
    );
    let vfio = read(root, MODPROBE).unwrap();
    assert_eq!(vfio.matches("options vfio-pci").count(), 1, "{vfio}");
    assert_eq!(
        read(root, GRUB_BACKUP)
            .unwrap()
            .matches("vfio-pci.ids=10de:1eb8\"")
            .count(),
        1
    );
}

#[test]
fn ids_are_validated_before_any_file_is_planned() {
    let dir = debian_root();
    for bad in [
        "10de:1eb8,zzzz:0001",
        "10de",
        "10de:1eb8 disable_vga=0",
        "10de:1eb8\nsoftdep",
    ] {
        let e = plan(dir.path(), &lock(&[bad])).unwrap_err();
        assert!(matches!(e, SetupError::InvalidId(_)), "{bad}: {e}");
    }
}

#[test]
fn warns_about_a_single_gpu_and_a_twin_of_the_boot_display() {
    let dir = tempfile::tempdir().unwrap();
    let sys = FakeSys::new(dir.path());
    sys.add(
        "0000:00:02.0",
        "0x030000",
        "8086",
        "3e92",
        Some("i915"),
        None,
        true,
    );
    let e = plan(dir.path(), &lock(&[])).unwrap_err();
    assert!(matches!(e, SetupError::NoGpu), "{e}");
    let p = plan(dir.path(), &lock(&["8086:3e92"])).unwrap();
    assert!(
        p.warnings.iter().any(|w| w.starts_with("1 GPU found")),
        "{:?}",
        p.warnings
    );
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("boot display 00:02.0")),
        "{:?}",
        p.warnings
    );
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("CPU vendor (none) unknown")),
        "{:?}",
        p.warnings
    );
    // No GRUB and no initramfs tool: said, not guessed.
    assert!(p.warnings.iter().any(
        |w| w.contains("no etc/default/grub") && w.contains("iommu=pt vfio-pci.ids=8086:3e92")
    ));
    assert!(p.warnings.iter().any(|w| w.contains("no initramfs-tools")));
    assert!(!p
        .commands
        .iter()
        .any(|c| c[0] == "update-grub" || c[0] == "update-initramfs"));
}

#[test]
fn amd_and_dracut_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("proc")).unwrap();
    std::fs::write(root.join("proc/cpuinfo"), "vendor_id : AuthenticAMD\n").unwrap();
    std::fs::create_dir_all(root.join(DRACUT_DIR)).unwrap();
    std::fs::create_dir_all(root.join("etc/default")).unwrap();
    std::fs::write(root.join(GRUB), "GRUB_CMDLINE_LINUX_DEFAULT='rhgb quiet'\n").unwrap();
    let p = plan(root, &lock(&["1002:67df"])).unwrap();
    apply(&p).unwrap();
    assert_eq!(
        read(root, GRUB).unwrap(),
        "GRUB_CMDLINE_LINUX_DEFAULT='rhgb quiet amd_iommu=on iommu=pt vfio-pci.ids=1002:67df'\n"
    );
    assert!(read(root, DRACUT_CONF)
        .unwrap()
        .contains("force_drivers+=\" vfio vfio_iommu_type1 vfio_pci \""));
    assert!(p.commands.iter().any(|c| c.join(" ") == "dracut -f"));
    apply(&plan(root, &Action::Unlock).unwrap()).unwrap();
    assert_eq!(
        read(root, GRUB).unwrap(),
        "GRUB_CMDLINE_LINUX_DEFAULT='rhgb quiet'\n"
    );
    assert_eq!(read(root, DRACUT_CONF), None);
}

#[test]
fn grub_lines_in_every_shape() {
    let args = vec!["iommu=pt".to_owned(), "vfio-pci.ids=10de:1eb8".to_owned()];
    // Unquoted values are quoted; the args go inside the quotes, never before them.
    assert_eq!(
        edit_grub("GRUB_CMDLINE_LINUX_DEFAULT=quiet # comment\n", &args),
        "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet iommu=pt vfio-pci.ids=10de:1eb8\" # comment\n"
    );
    // The last assignment wins in the shell, so that one is edited.
    assert_eq!(
        edit_grub("GRUB_CMDLINE_LINUX_DEFAULT=\"a\"\n#GRUB_CMDLINE_LINUX_DEFAULT=\"c\"\nGRUB_CMDLINE_LINUX_DEFAULT=\"b\"", &args),
        "GRUB_CMDLINE_LINUX_DEFAULT=\"a\"\n#GRUB_CMDLINE_LINUX_DEFAULT=\"c\"\nGRUB_CMDLINE_LINUX_DEFAULT=\"b iommu=pt vfio-pci.ids=10de:1eb8\""
    );
    assert_eq!(
        edit_grub("GRUB_TIMEOUT=5", &args),
        "GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT=\"iommu=pt vfio-pci.ids=10de:1eb8\"\n"
    );
    assert_eq!(edit_grub("GRUB_TIMEOUT=5\n", &[]), "GRUB_TIMEOUT=5\n");
    // Undo keeps odd spacing when there is nothing of ours.
    let odd = "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet   splash\"\n";
    assert_eq!(edit_grub(odd, &[]), odd);
}

#[test]
fn blocks_leave_other_content_alone() {
    let mine = with_block(Some("options snd index=0"), Some("x")).unwrap();
    assert_eq!(
        mine,
        "options snd index=0\n# BEGIN darts gpu: written by `darts gpu`, removed by `darts gpu --undo`\nx\n# END darts gpu\n"
    );
    assert_eq!(with_block(Some(&mine), Some("x")).unwrap(), mine);
    assert_eq!(
        with_block(Some(&mine), None).unwrap(),
        "options snd index=0\n"
    );
    assert_eq!(with_block(None, None), None);
    assert_eq!(
        with_block(Some(""), None).as_deref(),
        Some(""),
        "not ours: kept"
    );
    let only = with_block(None, Some("y")).unwrap();
    assert_eq!(with_block(Some(&only), None), None);
}

#[test]
fn render_shows_files_and_commands() {
    let dir = debian_root();
    let text = plan(dir.path(), &lock(&[])).unwrap().render();
    assert!(
        text.contains("Devices for virtual machines: 10de:1eb8,10de:20b0"),
        "{text}"
    );
    assert!(
        text.contains("    - GRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash\""),
        "{text}"
    );
    assert!(text.contains("vfio.conf (new)"), "{text}");
    assert!(
        text.contains("  update-grub\n") && text.contains("  reboot (by hand)"),
        "{text}"
    );
    assert!(text.contains("Also: set layout_gpu = true"), "{text}");
}
