//! `darts gpu`: prepares a host so that its GPUs can be given to virtual machines, as
//! `qwdctl gpu` did: IOMMU on the kernel command line, the cards claimed by `vfio-pci`
//! at boot, `/dev/vfio` open to group `kvm`, and memlock limits high enough for QEMU to
//! pin guest memory.
//!
//! The work is split in three: [`plan`] reads the files under a root directory and
//! computes what should change, [`apply`] writes it, [`run_commands`] runs the tools that
//! make it effective. Every edit lives in a marked block (or, for GRUB, in a known set
//! of kernel arguments), so applying twice changes nothing and `--undo` removes exactly
//! what was added. The memlock limits stay on undo, as with the original.

use std::fmt::Write as _;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use super::discover::{display_devices, pci_functions, PCI_IDS};

/// Errors preparing the host.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("invalid device id {0:?}: expected VENDOR:MODEL in hex, e.g. 10de:1eb8")]
    InvalidId(String),
    #[error("no GPU to give to virtual machines: none found besides the boot display (name them as VENDOR:MODEL)")]
    NoGpu,
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot run {command}: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("{command} failed ({status})")]
    Command { command: String, status: String },
}

/// Reserve the GPUs with these `vendor:device` ids (every GPU but the boot display when
/// empty), or undo it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Lock { ids: Vec<String> },
    Unlock,
}

/// `darts gpu` as typed.
#[derive(Debug, Clone)]
pub struct Options {
    pub ids: Vec<String>,
    pub apply: bool,
    pub undo: bool,
    /// Root of the file system to edit; commands run only when it is `/`.
    pub root: PathBuf,
    /// Do not ask before applying.
    pub yes: bool,
}

/// One file to create, change or remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    pub path: PathBuf,
    /// Current content; `None` when the file does not exist.
    pub before: Option<String>,
    /// New content; `None` removes the file.
    pub after: Option<String>,
    /// Where the current content is copied first.
    pub backup: Option<PathBuf>,
}

/// What `darts gpu` would do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// `vendor:device` ids handed to `vfio-pci` (empty for an undo).
    pub ids: Vec<String>,
    pub changes: Vec<FileChange>,
    /// Commands that make the changes effective, in order.
    pub commands: Vec<Vec<String>>,
    /// The kernel command line or the initramfs changed.
    pub reboot: bool,
    /// Things the operator should know or check.
    pub warnings: Vec<String>,
    /// Steps left to the operator.
    pub hints: Vec<String>,
}

const GRUB: &str = "etc/default/grub";
const GRUB_BACKUP: &str = "etc/default/grub.darts-backup";
const GRUB_KEY: &str = "GRUB_CMDLINE_LINUX_DEFAULT=";
const MODPROBE: &str = "etc/modprobe.d/vfio.conf";
const INITRAMFS_TOOLS: &str = "etc/initramfs-tools";
const INITRAMFS_MODULES: &str = "etc/initramfs-tools/modules";
const DRACUT_DIR: &str = "etc/dracut.conf.d";
const DRACUT_CONF: &str = "etc/dracut.conf.d/darts-vfio.conf";
const MKINITCPIO: &str = "etc/mkinitcpio.conf";
const UDEV_RULES: &str = "etc/udev/rules.d/10-qemu-hw-users.rules";
const LIMITS: &str = "etc/security/limits.d/darts-memlock.conf";
const SYSTEMD_DROP_IN: &str = "etc/systemd/system/darts.service.d/memlock.conf";

/// Loaded from the initramfs so that `vfio-pci` claims the cards before their own
/// drivers do. Older kernels' `vfio_virqfd` comes along as a dependency.
const VFIO_MODULES: [&str; 3] = ["vfio", "vfio_iommu_type1", "vfio_pci"];

const BLOCK_BEGIN: &str = "# BEGIN darts gpu";
const BLOCK_END: &str = "# END darts gpu";

/// The CPU's IOMMU flavour, from `vendor_id` in `cpuinfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CpuVendor {
    Intel,
    Amd,
}

/// Computes the changes for `action` on the system rooted at `root` (`/` normally):
/// files under `root/etc`, devices from `root/sys`, the CPU from `root/proc/cpuinfo`.
pub fn plan(root: &Path, action: &Action) -> Result<Plan, SetupError> {
    let mut plan = Plan::default();
    let lock = match action {
        Action::Lock { ids } => {
            plan.ids = resolve_ids(root, ids, &mut plan.warnings)?;
            true
        }
        Action::Unlock => false,
    };
    let block = |body: String| lock.then_some(body);

    // Kernel command line.
    let grub_path = root.join(GRUB);
    let mut grub_changed = false;
    match read_optional(&grub_path)? {
        Some(text) => {
            let args = if lock {
                kernel_args(cpu_vendor(root, &mut plan.warnings), &plan.ids)
            } else {
                Vec::new()
            };
            let after = edit_grub(&text, &args);
            grub_changed = plan.change(
                grub_path,
                Some(text),
                Some(after),
                Some(root.join(GRUB_BACKUP)),
            );
        }
        None if lock => {
            let args = kernel_args(cpu_vendor(root, &mut plan.warnings), &plan.ids);
            plan.warnings.push(format!(
                "no {GRUB}: add \"{}\" to the kernel command line of the boot loader by hand",
                args.join(" ")
            ));
        }
        None => {}
    }

    // vfio-pci claims the cards, and the initramfs loads it early.
    let modprobe = plan.edit_block(
        root.join(MODPROBE),
        block(format!(
            "options vfio-pci ids={} disable_vga=1",
            plan.ids.join(",")
        )),
    )?;
    let mut initramfs = false;
    let mut dracut = false;
    if root.join(INITRAMFS_TOOLS).is_dir() {
        initramfs =
            plan.edit_block(root.join(INITRAMFS_MODULES), block(VFIO_MODULES.join("\n")))?;
        initramfs |= modprobe;
    } else if root.join(DRACUT_DIR).is_dir() {
        let line = format!("force_drivers+=\" {} \"", VFIO_MODULES.join(" "));
        dracut = plan.edit_block(root.join(DRACUT_CONF), block(line))? || modprobe;
    } else if root.join(MKINITCPIO).is_file() {
        if lock || modprobe {
            plan.warnings.push(format!(
                "{}: {} the vfio modules ({}) in MODULES=(...), then run mkinitcpio -P",
                MKINITCPIO,
                if lock { "list" } else { "remove" },
                VFIO_MODULES.join(" ")
            ));
        }
    } else if lock {
        plan.warnings.push(format!(
            "no initramfs-tools, dracut or mkinitcpio found: make sure the initramfs loads {}",
            VFIO_MODULES.join(", ")
        ));
    }

    // /dev/vfio/* for group kvm.
    let udev = plan.edit_block(
        root.join(UDEV_RULES),
        block(r#"SUBSYSTEM=="vfio", OWNER="root", GROUP="kvm""#.to_owned()),
    )?;

    // QEMU pins all guest memory of a VM with a passed-through device. Kept on undo.
    let mut systemd = false;
    if lock {
        plan.edit_block(
            root.join(LIMITS),
            Some(
                "*    soft memlock 20000000\n*    hard memlock 20000000\n@kvm soft memlock unlimited\n@kvm hard memlock unlimited"
                    .to_owned(),
            ),
        )?;
        systemd = plan.edit_block(
            root.join(SYSTEMD_DROP_IN),
            Some("[Service]\nLimitMEMLOCK=infinity".to_owned()),
        )?;
    }

    let mut commands: Vec<&[&str]> = Vec::new();
    if initramfs {
        commands.push(&["update-initramfs", "-u"]);
    }
    if dracut {
        commands.push(&["dracut", "-f"]);
    }
    if grub_changed {
        commands.push(&["update-grub"]);
    }
    if udev {
        commands.push(&["udevadm", "control", "--reload-rules"]);
        commands.push(&["udevadm", "trigger"]);
    }
    if systemd {
        commands.push(&["systemctl", "daemon-reload"]);
    }
    plan.commands = commands
        .into_iter()
        .map(|c| c.iter().map(|s| (*s).to_owned()).collect())
        .collect();
    plan.reboot = grub_changed || modprobe || initramfs || dracut;
    if lock {
        plan.hints.push(
            "set layout_gpu = true in the darts configuration so that the form offers a GPU".into(),
        );
        plan.hints.push(
            "the darts service must be in group kvm to open /dev/vfio (SupplementaryGroups=kvm)"
                .into(),
        );
    }
    Ok(plan)
}

impl Plan {
    /// Records a change if there is one; tells whether there was.
    fn change(
        &mut self,
        path: PathBuf,
        before: Option<String>,
        after: Option<String>,
        backup: Option<PathBuf>,
    ) -> bool {
        if before == after {
            return false;
        }
        self.changes.push(FileChange {
            path,
            before,
            after,
            backup,
        });
        true
    }

    /// Sets (`Some`) or removes (`None`) darts' block in `path`.
    fn edit_block(&mut self, path: PathBuf, body: Option<String>) -> Result<bool, SetupError> {
        let before = read_optional(&path)?;
        let after = with_block(before.as_deref(), body.as_deref());
        Ok(self.change(path, before, after, None))
    }

    /// What the plan does, for a person.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if !self.ids.is_empty() {
            let _ = writeln!(out, "Devices for virtual machines: {}", self.ids.join(","));
        }
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        if self.changes.is_empty() {
            let _ = writeln!(out, "Nothing to change.");
            return out;
        }
        let _ = writeln!(out, "Files:");
        for c in &self.changes {
            let what = match (&c.before, &c.after) {
                (None, _) => " (new)".to_owned(),
                (_, None) => " (removed)".to_owned(),
                _ => c
                    .backup
                    .as_ref()
                    .map(|b| format!(" (backup in {})", b.display()))
                    .unwrap_or_default(),
            };
            let _ = writeln!(out, "  {}{what}", c.path.display());
            let before: Vec<&str> = c
                .before
                .as_deref()
                .map_or(Vec::new(), |t| t.lines().collect());
            let after: Vec<&str> = c
                .after
                .as_deref()
                .map_or(Vec::new(), |t| t.lines().collect());
            for line in before.iter().filter(|l| !after.contains(l)) {
                let _ = writeln!(out, "    - {line}");
            }
            for line in after.iter().filter(|l| !before.contains(l)) {
                let _ = writeln!(out, "    + {line}");
            }
        }
        if !self.commands.is_empty() || self.reboot {
            let _ = writeln!(out, "Then:");
            for c in &self.commands {
                let _ = writeln!(out, "  {}", c.join(" "));
            }
            if self.reboot {
                let _ = writeln!(out, "  reboot (by hand)");
            }
        }
        for h in &self.hints {
            let _ = writeln!(out, "Also: {h}");
        }
        out
    }
}

/// The ids to reserve: `given` validated, or every display device but the boot one.
fn resolve_ids(
    root: &Path,
    given: &[String],
    warnings: &mut Vec<String>,
) -> Result<Vec<String>, SetupError> {
    let sys = root.join("sys");
    let pci_ids: Vec<PathBuf> = PCI_IDS.iter().map(|p| root.join(p)).collect();
    let displays = display_devices(&sys, &pci_ids);
    let mut ids: Vec<String> = Vec::new();
    let candidates: Vec<String> = if given.is_empty() {
        displays
            .iter()
            .filter(|(f, _)| !f.boot_vga)
            .map(|(f, _)| f.model())
            .collect()
    } else {
        given
            .iter()
            .flat_map(|g| g.split(','))
            .filter(|g| !g.trim().is_empty())
            .map(parse_id)
            .collect::<Result<_, _>>()?
    };
    for id in candidates {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    if ids.is_empty() {
        return Err(SetupError::NoGpu);
    }
    if displays.len() < 2 {
        warnings.push(format!(
            "{} GPU found: keep one for the host's own display",
            displays.len()
        ));
    }
    for (f, gpu) in &displays {
        if f.boot_vga && ids.contains(&f.model()) {
            warnings.push(format!(
                "the boot display {} ({}) has the same id {} and would be taken from the host too: identical cards cannot be split",
                gpu.short, gpu.name, f.model()
            ));
        }
    }
    // A card's other functions (HDMI audio, USB-C) sit in its IOMMU group; QEMU refuses
    // a group with devices still on host drivers ("group N is not viable").
    let all = pci_functions(&sys);
    for (f, gpu) in displays.iter().filter(|(f, _)| ids.contains(&f.model())) {
        for other in &all {
            let related = other.slot() == f.slot()
                || (other.iommu_group.is_some() && other.iommu_group == f.iommu_group);
            if other.address != f.address
                && related
                && !other.is_bridge()
                && !ids.contains(&other.model())
            {
                warnings.push(format!(
                    "{} ({}) shares {}'s IOMMU group or slot: add {} to the ids, or QEMU will find the group not viable",
                    other.address,
                    other.model(),
                    gpu.short,
                    other.model()
                ));
            }
        }
    }
    Ok(ids)
}

/// `10DE:1eb8` → `10de:1eb8`; anything else is refused, so no raw input reaches a file.
fn parse_id(raw: &str) -> Result<String, SetupError> {
    let id = raw.trim().to_ascii_lowercase();
    let hex4 = |s: &str| s.len() == 4 && s.bytes().all(|b| b.is_ascii_hexdigit());
    match id.split_once(':') {
        Some((v, d)) if hex4(v) && hex4(d) => Ok(id),
        _ => Err(SetupError::InvalidId(raw.to_owned())),
    }
}

fn cpu_vendor(root: &Path, warnings: &mut Vec<String>) -> Option<CpuVendor> {
    let path = root.join("proc/cpuinfo");
    let vendor = std::fs::File::open(&path).ok().and_then(|f| {
        std::io::BufReader::new(f)
            .lines()
            .map_while(Result::ok)
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == "vendor_id").then(|| value.trim().to_owned())
            })
    });
    match vendor.as_deref() {
        Some("GenuineIntel") => Some(CpuVendor::Intel),
        Some("AuthenticAMD" | "HygonGenuine") => Some(CpuVendor::Amd),
        other => {
            let msg = format!(
                "CPU vendor {} unknown: check that the IOMMU is on",
                other.unwrap_or("(none)")
            );
            if !warnings.contains(&msg) {
                warnings.push(msg);
            }
            None
        }
    }
}

fn kernel_args(cpu: Option<CpuVendor>, ids: &[String]) -> Vec<String> {
    let mut args = Vec::new();
    match cpu {
        Some(CpuVendor::Intel) => args.push("intel_iommu=on".to_owned()),
        Some(CpuVendor::Amd) => args.push("amd_iommu=on".to_owned()),
        None => {}
    }
    args.push("iommu=pt".to_owned());
    args.push(format!("vfio-pci.ids={}", ids.join(",")));
    args
}

/// Kernel arguments `darts gpu` sets, and so removes before setting or on undo.
fn is_managed_arg(arg: &str) -> bool {
    matches!(arg, "intel_iommu=on" | "amd_iommu=on" | "iommu=pt")
        || arg.starts_with("vfio-pci.ids=")
}

/// Puts `args` inside the quotes of the last `GRUB_CMDLINE_LINUX_DEFAULT=` line (the one
/// the shell keeps), replacing the ones a previous run set. An empty `args` undoes.
fn edit_grub(text: &str, args: &[String]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let Some(i) = lines
        .iter()
        .rposition(|l| l.trim_start().starts_with(GRUB_KEY))
    else {
        if args.is_empty() {
            return text.to_owned();
        }
        let mut out = text.to_owned();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        let _ = writeln!(out, "{GRUB_KEY}\"{}\"", args.join(" "));
        return out;
    };
    let Some(edited) = edit_cmdline(&lines[i], args) else {
        return text.to_owned();
    };
    lines[i] = edited;
    let mut out = lines.join("\n");
    if text.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// The line with its value's managed arguments replaced by `args`; `None` if unchanged.
fn edit_cmdline(line: &str, args: &[String]) -> Option<String> {
    let start = line.find(GRUB_KEY)? + GRUB_KEY.len();
    let (head, rest) = line.split_at(start);
    let (quote, value, tail) = match rest.chars().next() {
        Some(q @ ('"' | '\'')) => match rest[1..].find(q) {
            Some(end) => (q, &rest[1..1 + end], &rest[2 + end..]),
            None => (q, &rest[1..], ""),
        },
        // Unquoted: the value ends at the first blank. Written back quoted.
        _ => {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            ('"', &rest[..end], &rest[end..])
        }
    };
    let old: Vec<&str> = value.split_whitespace().collect();
    let mut new: Vec<&str> = old.iter().copied().filter(|a| !is_managed_arg(a)).collect();
    new.extend(args.iter().map(String::as_str));
    if new == old {
        return None;
    }
    Some(format!("{head}{quote}{}{quote}{tail}", new.join(" ")))
}

/// `text` without darts' block, then with `body` in a new block at the end. A file that
/// held nothing but the block is removed (`None`); one without a block is left as is.
fn with_block(text: Option<&str>, body: Option<&str>) -> Option<String> {
    let mut out = String::new();
    let mut inside = false;
    let mut had_block = false;
    for line in text.unwrap_or("").split_inclusive('\n') {
        let bare = line.trim_end();
        if !inside && bare.starts_with(BLOCK_BEGIN) {
            inside = true;
            had_block = true;
        } else if inside && bare == BLOCK_END {
            inside = false;
        } else if !inside {
            out.push_str(line);
        }
    }
    let Some(body) = body else {
        return match (had_block, out.trim().is_empty()) {
            (false, _) => text.map(str::to_owned),
            (true, true) => None,
            (true, false) => Some(out),
        };
    };
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "{BLOCK_BEGIN}: written by `darts gpu`, removed by `darts gpu --undo`\n{body}\n{BLOCK_END}"
    );
    Some(out)
}

fn read_optional(path: &Path) -> Result<Option<String>, SetupError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SetupError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

fn write_file(path: &Path, text: &str) -> Result<(), SetupError> {
    let write_err = |source| SetupError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(write_err)?;
    }
    // Written in place, so the file keeps its owner and mode.
    std::fs::write(path, text).map_err(write_err)
}

/// Writes the plan's files (backups first).
pub fn apply(plan: &Plan) -> Result<(), SetupError> {
    for change in &plan.changes {
        if let (Some(backup), Some(before)) = (&change.backup, &change.before) {
            write_file(backup, before)?;
        }
        match &change.after {
            Some(text) => write_file(&change.path, text)?,
            None => match std::fs::remove_file(&change.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(SetupError::Write {
                        path: change.path.clone(),
                        source,
                    })
                }
            },
        }
        tracing::info!(path = %change.path.display(), removed = change.after.is_none(), "GPU set-up file updated");
    }
    Ok(())
}

/// Runs the plan's commands in order, stopping at the first failure.
pub fn run_commands(plan: &Plan) -> Result<(), SetupError> {
    for argv in &plan.commands {
        let Some((program, args)) = argv.split_first() else {
            continue;
        };
        let command = argv.join(" ");
        println!("+ {command}");
        let status = std::process::Command::new(program)
            .args(args)
            .status()
            .map_err(|source| SetupError::Spawn {
                command: command.clone(),
                source,
            })?;
        if !status.success() {
            return Err(SetupError::Command {
                command,
                status: status.to_string(),
            });
        }
    }
    Ok(())
}

fn is_system_root(root: &Path) -> bool {
    root.canonicalize()
        .map_or(root == Path::new("/"), |r| r == Path::new("/"))
}

fn confirm(question: &str) -> bool {
    use std::io::Write as _;
    print!("{question}");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).is_ok()
        && matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// `darts gpu`: prints the plan; with `apply`, writes it and (on `/` only) runs the
/// commands.
pub fn command(opts: &Options) -> Result<(), SetupError> {
    let action = if opts.undo {
        Action::Unlock
    } else {
        Action::Lock {
            ids: opts.ids.clone(),
        }
    };
    let plan = plan(&opts.root, &action)?;
    print!("{}", plan.render());
    if plan.changes.is_empty() {
        return Ok(());
    }
    if !opts.apply {
        println!("Nothing written: run again with --apply to make these changes.");
        return Ok(());
    }
    if !opts.yes && !confirm("Apply these changes? [y/N] ") {
        println!("Nothing written.");
        return Ok(());
    }
    apply(&plan)?;
    if is_system_root(&opts.root) {
        run_commands(&plan)?;
        if plan.reboot {
            println!("Done. Reboot the host to finish.");
        }
    } else {
        println!(
            "Files written under {}; commands not run (--root is not /).",
            opts.root.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::discover::tests::FakeSys;

    const GRUB_TEXT: &str = "# If you change this file, run 'update-grub'\nGRUB_DEFAULT=0\nGRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash\"\nGRUB_CMDLINE_LINUX=\"\"\n";
    const MODULES_TEXT: &str = "# List of modules that you want to include in your initramfs.\n# Examples:\n# raid1\nloop\n";

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
        assert!(p
            .warnings
            .iter()
            .any(|w| w.contains("no etc/default/grub")
                && w.contains("iommu=pt vfio-pci.ids=8086:3e92")));
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
}
