//! The file edits of `darts gpu`: the GRUB kernel command line, and darts' marked blocks
//! in the modprobe, initramfs, udev and memlock files.

use std::fmt::Write as _;
use std::path::Path;

use super::{CpuVendor, SetupError};

pub(super) const GRUB: &str = "etc/default/grub";
pub(super) const GRUB_BACKUP: &str = "etc/default/grub.darts-backup";
pub(super) const GRUB_KEY: &str = "GRUB_CMDLINE_LINUX_DEFAULT=";
pub(super) const MODPROBE: &str = "etc/modprobe.d/vfio.conf";
pub(super) const INITRAMFS_TOOLS: &str = "etc/initramfs-tools";
pub(super) const INITRAMFS_MODULES: &str = "etc/initramfs-tools/modules";
pub(super) const DRACUT_DIR: &str = "etc/dracut.conf.d";
pub(super) const DRACUT_CONF: &str = "etc/dracut.conf.d/darts-vfio.conf";
pub(super) const MKINITCPIO: &str = "etc/mkinitcpio.conf";
pub(super) const UDEV_RULES: &str = "etc/udev/rules.d/10-qemu-hw-users.rules";
pub(super) const LIMITS: &str = "etc/security/limits.d/darts-memlock.conf";
pub(super) const SYSTEMD_DROP_IN: &str = "etc/systemd/system/darts.service.d/memlock.conf";

/// Loaded from the initramfs so that `vfio-pci` claims the cards before their own
/// drivers do. Older kernels' `vfio_virqfd` comes along as a dependency.
pub(super) const VFIO_MODULES: [&str; 3] = ["vfio", "vfio_iommu_type1", "vfio_pci"];

pub(super) const BLOCK_BEGIN: &str = "# BEGIN darts gpu";
pub(super) const BLOCK_END: &str = "# END darts gpu";

pub(super) fn kernel_args(cpu: Option<CpuVendor>, ids: &[String]) -> Vec<String> {
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
pub(super) fn is_managed_arg(arg: &str) -> bool {
    matches!(arg, "intel_iommu=on" | "amd_iommu=on" | "iommu=pt")
        || arg.starts_with("vfio-pci.ids=")
}

/// Puts `args` inside the quotes of the last `GRUB_CMDLINE_LINUX_DEFAULT=` line (the one
/// the shell keeps), replacing the ones a previous run set. An empty `args` undoes.
pub(super) fn edit_grub(text: &str, args: &[String]) -> String {
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
pub(super) fn edit_cmdline(line: &str, args: &[String]) -> Option<String> {
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
pub(super) fn with_block(text: Option<&str>, body: Option<&str>) -> Option<String> {
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

pub(super) fn read_optional(path: &Path) -> Result<Option<String>, SetupError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SetupError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

pub(super) fn write_file(path: &Path, text: &str) -> Result<(), SetupError> {
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
