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
use edits::{
    edit_grub, kernel_args, read_optional, with_block, write_file, DRACUT_CONF, DRACUT_DIR, GRUB,
    GRUB_BACKUP, INITRAMFS_MODULES, INITRAMFS_TOOLS, LIMITS, MKINITCPIO, MODPROBE, SYSTEMD_DROP_IN,
    UDEV_RULES, VFIO_MODULES,
};

mod edits;
#[cfg(test)]
mod tests;

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

/// The CPU's IOMMU flavour, from `vendor_id` in `cpuinfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CpuVendor {
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
        outln!("+ {command}");
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
    out!("{question}");
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
    out!("{}", plan.render());
    if plan.changes.is_empty() {
        return Ok(());
    }
    if !opts.apply {
        outln!("Nothing written: run again with --apply to make these changes.");
        return Ok(());
    }
    if !opts.yes && !confirm("Apply these changes? [y/N] ") {
        outln!("Nothing written.");
        return Ok(());
    }
    apply(&plan)?;
    if is_system_root(&opts.root) {
        run_commands(&plan)?;
        if plan.reboot {
            outln!("Done. Reboot the host to finish.");
        }
    } else {
        outln!(
            "Files written under {}; commands not run (--root is not /).",
            opts.root.display()
        );
    }
    Ok(())
}
