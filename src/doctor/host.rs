//! The service's account and what it may open; QEMU and KVM.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use super::{Check, Status};
use crate::config::Config;
use crate::vm::accel::{self, Accel, KvmHost, ProbeOutcome};

/// How long `qemu-system-* --version` may take.
const VERSION_TIMEOUT: Duration = Duration::from_secs(20);

/// An account, as `/etc/passwd` and `/etc/group` describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

impl Identity {
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }

    /// Whether this account may read (`want & 4`), write (`want & 2`) or search/run
    /// (`want & 1`) a file with `meta`, by its mode bits (root may do anything but run
    /// a file nobody may run).
    pub fn may(&self, meta: &std::fs::Metadata, want: u32) -> bool {
        let mode = meta.mode();
        if self.uid == 0 {
            return want & 1 == 0 || meta.is_dir() || mode & 0o111 != 0;
        }
        let bits = if meta.uid() == self.uid {
            (mode >> 6) & 7
        } else if self.in_group(meta.gid()) {
            (mode >> 3) & 7
        } else {
            mode & 7
        };
        bits & want == want
    }
}

/// Reads `name` from `root/etc/passwd` and its groups from `root/etc/group`.
pub fn lookup(name: &str, root: &Path) -> Option<Identity> {
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).ok()?;
    let (uid, gid) = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && f[0] == name)
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .flatten()
    })?;
    let groups = std::fs::read_to_string(root.join("etc/group"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let members = f.get(3)?;
            members
                .split(',')
                .any(|m| m == name)
                .then(|| f.get(2)?.parse().ok())
                .flatten()
        })
        .collect();
    Some(Identity {
        name: name.to_owned(),
        uid,
        gid,
        groups,
    })
}

/// The doctor's own account, from `/proc/self/status`.
pub fn current() -> Identity {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |key: &str| -> Vec<u32> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| {
                v.split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    // Uid: real effective saved fs; the effective one decides.
    let uid = field("Uid:").get(1).copied().unwrap_or(0);
    let gid = field("Gid:").get(1).copied().unwrap_or(0);
    let name = if uid == 0 {
        "root".to_owned()
    } else {
        format!("uid {uid}")
    };
    Identity {
        name,
        uid,
        gid,
        groups: field("Groups:"),
    }
}

/// A group's name, or its number.
pub fn group_name(gid: u32, root: &Path) -> String {
    std::fs::read_to_string(root.join("etc/group"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.get(2)?.parse::<u32>().ok()? == gid).then(|| f[0].to_owned())
        })
        .unwrap_or_else(|| gid.to_string())
}

/// A user's name, or its number.
pub fn user_name(uid: u32, root: &Path) -> String {
    std::fs::read_to_string(root.join("etc/passwd"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.get(2)?.parse::<u32>().ok()? == uid).then(|| f[0].to_owned())
        })
        .unwrap_or_else(|| uid.to_string())
}

/// `owner:group mode` of a file, as `ls` would say it.
pub fn describe(meta: &std::fs::Metadata, root: &Path) -> String {
    format!(
        "{}:{} {:04o}",
        user_name(meta.uid(), root),
        group_name(meta.gid(), root),
        meta.mode() & 0o7777
    )
}

/// The account permissions are judged for, and a line saying which it is.
pub fn service_identity(user: &str, root: &Path) -> (Identity, Option<Check>) {
    match lookup(user, root) {
        Some(id) => {
            let groups: Vec<String> = id.groups.iter().map(|g| group_name(*g, root)).collect();
            let line = Check::ok(
                "service user",
                format!(
                    "{} (uid {}, groups {}{}{})",
                    id.name,
                    id.uid,
                    group_name(id.gid, root),
                    if groups.is_empty() { "" } else { "," },
                    groups.join(",")
                ),
            );
            (id, Some(line))
        }
        None => {
            let me = current();
            let line = Check::warn(
                "service user",
                format!(
                    "{user} does not exist; permissions are checked for {} instead",
                    me.name
                ),
                format!(
                    "the Debian package creates {user}; otherwise pass --user with the account darts serve runs as"
                ),
            );
            (me, Some(line))
        }
    }
}

/// The QEMU system emulator and qemu-img, with their versions.
pub async fn qemu(config: &Config) -> Vec<Check> {
    let mut out = Vec::new();
    match crate::vm::exec::resolve_exec(&config.qemu_exec) {
        Ok(exec) => out.push(match version(&exec).await {
            Ok(v) => Check::ok("qemu", format!("{} ({v})", exec.display())),
            Err(e) => Check::fail(
                "qemu",
                format!("{} does not run: {e}", exec.display()),
                "reinstall QEMU (apt install --reinstall qemu-system-x86)",
            ),
        }),
        Err(e) => out.push(Check::fail(
            "qemu",
            e.to_string(),
            "apt install qemu-system-x86 (or set qemu_exec to the emulator's path)",
        )),
    }
    match which::which("qemu-img") {
        Ok(img) => out.push(match version(&img).await {
            Ok(v) => Check::ok("qemu-img", format!("{} ({v})", img.display())),
            Err(e) => Check::fail(
                "qemu-img",
                format!("{} does not run: {e}", img.display()),
                "apt install --reinstall qemu-utils",
            ),
        }),
        Err(_) => out.push(Check::fail(
            "qemu-img",
            "not found on PATH (session disks are qemu-img overlays)",
            "apt install qemu-utils",
        )),
    }
    out
}

/// The first line of `exec --version`.
async fn version(exec: &Path) -> Result<String, String> {
    let run = tokio::process::Command::new(exec)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(VERSION_TIMEOUT, run).await {
        Err(_) => Err(format!("no answer within {VERSION_TIMEOUT:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(out)) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned()),
        Ok(Ok(out)) => Err(format!(
            "exit status {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// Whether KVM works on this host (the accelerator probe boots a test guest), and
/// whether the service's account may open `/dev/kvm`.
pub async fn kvm(config: &Config, who: &Identity, root: &Path) -> Vec<Check> {
    let setting = config.qemu_accel.trim().to_ascii_lowercase();
    match setting.as_str() {
        "tcg" => {
            return vec![Check::ok(
                "kvm",
                "qemu_accel = tcg: KVM is not used (guests run slower)",
            )]
        }
        "hvf" => {
            return vec![Check::fail(
                "kvm",
                "qemu_accel = hvf is for macOS hosts",
                "set qemu_accel = \"auto\"",
            )]
        }
        _ => {}
    }
    // Without KVM, `auto` still works (TCG): a warning; `kvm` does not: a failure.
    let severity = if setting == "kvm" {
        Status::Fail
    } else {
        Status::Warn
    };
    let fallback = if severity == Status::Fail {
        "qemu_accel = kvm: sessions will not start"
    } else {
        "sessions run under TCG (slower)"
    };
    let dev = root.join("dev/kvm");
    let host = KvmHost::read();
    let mut out = Vec::new();
    if !host.cpu_virt {
        out.push(Check::problem(
            severity,
            "kvm",
            format!("the CPU shows no vmx/svm flag; {fallback}"),
            "enable virtualization (VT-x/AMD-V) in the firmware, or nested virtualization when this host is a VM".into(),
        ));
        return out;
    }
    let meta = match std::fs::metadata(&dev) {
        Ok(m) => m,
        Err(_) => {
            out.push(Check::problem(
                severity,
                "kvm",
                format!("{} does not exist; {fallback}", dev.display()),
                "modprobe kvm_intel (or kvm_amd), and make it permanent in /etc/modules".into(),
            ));
            return out;
        }
    };
    out.push(if !host.dev_kvm_rw {
        Check::problem(
            severity,
            "kvm",
            format!("{} cannot be opened by the doctor; {fallback}", dev.display()),
            "run darts doctor as root to test KVM itself".into(),
        )
    } else {
        match crate::vm::exec::resolve_exec(&config.qemu_exec) {
            Err(_) => Check::problem(
                severity,
                "kvm",
                "not tested: no QEMU binary".into(),
                "install QEMU first".into(),
            ),
            Ok(exec) => match accel::probe(&exec, Accel::Kvm, accel::AUTO_PROBE_TIMEOUT).await {
                ProbeOutcome::Works => Check::ok("kvm", "a test guest ran under KVM"),
                other => Check::problem(
                    severity,
                    "kvm",
                    format!("a test guest failed under KVM ({}); {fallback}", probe_text(&other)),
                    "check dmesg for kvm errors; nested virtualization may need kvm_intel nested=1 on the outer host".into(),
                ),
            },
        }
    });
    let kvm_group = group_name(meta.gid(), root);
    out.push(if who.may(&meta, 6) {
        Check::ok(
            "/dev/kvm",
            format!("{} may open it ({})", who.name, describe(&meta, root)),
        )
    } else if meta.mode() & 0o060 == 0o060 {
        Check::problem(
            severity,
            "/dev/kvm",
            format!(
                "{} is not in group {kvm_group} ({}); {fallback}",
                who.name,
                describe(&meta, root)
            ),
            format!("adduser {} {kvm_group}, then restart darts", who.name),
        )
    } else {
        Check::problem(
            severity,
            "/dev/kvm",
            format!(
                "only its owner may open it ({}); {fallback}",
                describe(&meta, root)
            ),
            "Debian's udev rule makes it 0660 root:kvm: udevadm trigger --name-match=kvm, or chgrp kvm /dev/kvm && chmod 0660 /dev/kvm".into(),
        )
    });
    out
}

fn probe_text(outcome: &ProbeOutcome) -> String {
    match outcome {
        ProbeOutcome::Works => "works".into(),
        ProbeOutcome::TimedOut => "it did not finish in time".into(),
        ProbeOutcome::Failed(e) => e.clone(),
        ProbeOutcome::Exited { code, stderr } => {
            let first = stderr.lines().next().unwrap_or_default();
            format!("exit {code:?}: {first}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch_etc() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/bash\ndarts:x:990:990:darts:/var/lib/darts:/usr/sbin/nologin\n",
        )
        .unwrap();
        std::fs::write(
            root.path().join("etc/group"),
            "root:x:0:\nkvm:x:993:darts,alice\ndarts:x:990:\nshadow:x:42:\n",
        )
        .unwrap();
        root
    }

    #[test]
    fn accounts_and_groups_from_passwd_and_group() {
        let root = scratch_etc();
        let d = lookup("darts", root.path()).unwrap();
        assert_eq!((d.uid, d.gid), (990, 990));
        assert_eq!(d.groups, vec![993]);
        assert!(d.in_group(993) && d.in_group(990) && !d.in_group(42));
        assert!(lookup("nobody-here", root.path()).is_none());
        assert_eq!(group_name(993, root.path()), "kvm");
        assert_eq!(group_name(7, root.path()), "7");
        let (who, line) = service_identity("darts", root.path());
        assert_eq!(who.name, "darts");
        assert!(line.unwrap().message.contains("kvm"));
        let (_, line) = service_identity("ghost", root.path());
        let line = line.unwrap();
        assert_eq!(line.status, Status::Warn);
        assert!(line.hint.unwrap().contains("--user"));
    }

    #[test]
    fn permissions_by_mode_owner_and_group() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "").unwrap();
        let meta_with = |mode: u32| {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
            std::fs::metadata(&f).unwrap()
        };
        let owner_gid = std::fs::metadata(&f).unwrap().gid();
        let stranger = Identity {
            name: "s".into(),
            uid: 4242,
            gid: 4242,
            groups: vec![],
        };
        let member = Identity {
            groups: vec![owner_gid],
            ..stranger.clone()
        };
        let root = Identity {
            name: "root".into(),
            uid: 0,
            gid: 0,
            groups: vec![],
        };
        let m = meta_with(0o600);
        assert!(!stranger.may(&m, 6) && !member.may(&m, 4) && root.may(&m, 6));
        assert!(!root.may(&m, 1), "root cannot run what nobody may run");
        let m = meta_with(0o660);
        assert!(member.may(&m, 6) && !stranger.may(&m, 4));
        let m = meta_with(0o644);
        assert!(stranger.may(&m, 4) && !stranger.may(&m, 2));
    }
}
