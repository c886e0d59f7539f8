//! The accelerator (`qemu_accel`). `auto` takes KVM only when it is proven to work: the
//! CPU has virtualization extensions, `/dev/kvm` opens read-write, and a real guest (a
//! 512-byte boot sector) runs to its end under KVM in bounded time. A KVM that is present
//! but broken (nested virtualization that hangs guests) thus falls back to TCG instead
//! of starting VMs that never boot.
//!
//! `auto` probes x86 hosts only; elsewhere it gives TCG (set `qemu_accel = "kvm"` there),
//! except on macOS where it gives HVF.

use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Duration;

use tokio::process::Command;

use super::cmdline::escape_opt;

/// How long the `auto` probe lets the test guest run.
pub const AUTO_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Value the probe guest writes to the isa-debug-exit port.
const PROBE_EXIT_VALUE: u8 = 0x2a;

/// QEMU's exit status when the probe guest ran to its end: isa-debug-exit exits with
/// `(value << 1) | 1`.
pub const PROBE_EXIT_CODE: i32 = ((PROBE_EXIT_VALUE as i32) << 1) | 1;

/// A QEMU accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Accel {
    Kvm,
    Tcg,
    Hvf,
}

impl Accel {
    /// QEMU's name for it (`-accel NAME`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Kvm => "kvm",
            Self::Tcg => "tcg",
            Self::Hvf => "hvf",
        }
    }
}

impl std::fmt::Display for Accel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What `qemu_accel` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setting {
    Auto,
    Fixed(Accel),
}

fn parse_setting(setting: &str) -> Setting {
    match setting.trim().to_ascii_lowercase().as_str() {
        "kvm" => Setting::Fixed(Accel::Kvm),
        "tcg" => Setting::Fixed(Accel::Tcg),
        "hvf" => Setting::Fixed(Accel::Hvf),
        "auto" | "" => Setting::Auto,
        other => {
            tracing::warn!(qemu_accel = other, "unknown qemu_accel; using auto");
            Setting::Auto
        }
    }
}

/// The accelerator for `setting` (`auto`, `kvm`, `tcg` or `hvf`). An explicit choice is
/// taken as is; `auto` is decided once per binary and process (see the module doc).
pub async fn choose(setting: &str, exec: &Path) -> Accel {
    let setting = parse_setting(setting);
    let Setting::Fixed(accel) = setting else {
        return auto(exec).await;
    };
    accel
}

async fn auto(exec: &Path) -> Accel {
    static CACHE: LazyLock<Mutex<HashMap<PathBuf, Accel>>> = LazyLock::new(Default::default);
    if let Some(hit) = CACHE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(exec)
    {
        return *hit;
    }
    let accel = if cfg!(target_os = "macos") {
        Accel::Hvf
    } else {
        decide_auto(&KvmHost::read(), || {
            probe(exec, Accel::Kvm, AUTO_PROBE_TIMEOUT)
        })
        .await
    };
    tracing::info!(exec = %exec.display(), %accel, "accelerator (auto)");
    CACHE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(exec.to_owned(), accel);
    accel
}

/// What the host says about KVM before anything is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvmHost {
    /// `/proc/cpuinfo` flags list `vmx` (Intel) or `svm` (AMD).
    pub cpu_virt: bool,
    /// `/dev/kvm` opens read-write for this user.
    pub dev_kvm_rw: bool,
}

impl KvmHost {
    pub fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Self {
            cpu_virt: cpuinfo_has_virt(&cpuinfo),
            dev_kvm_rw: std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/kvm")
                .is_ok(),
        }
    }
}

fn cpuinfo_has_virt(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .flat_map(|l| l.split_whitespace())
        .any(|flag| flag == "vmx" || flag == "svm")
}

/// `auto` from the host's facts and, only when they allow KVM, the probe's outcome.
async fn decide_auto<P, F>(host: &KvmHost, probe: P) -> Accel
where
    P: FnOnce() -> F,
    F: Future<Output = ProbeOutcome>,
{
    if !host.cpu_virt || !host.dev_kvm_rw {
        tracing::info!(?host, "KVM not available; using TCG");
        return Accel::Tcg;
    }
    match probe().await {
        ProbeOutcome::Works => Accel::Kvm,
        outcome => {
            tracing::warn!(
                ?outcome,
                "KVM is present but a test guest failed under it; using TCG"
            );
            Accel::Tcg
        }
    }
}

/// QEMU arguments for `accel`. With a GPU passed through, KVM hides itself from the
/// guest (`kvm=off`), as some GPU drivers refuse to run in a VM.
pub fn args(accel: Accel, gpu_passthrough: bool) -> Vec<String> {
    let cpu = match accel {
        Accel::Kvm if gpu_passthrough => "host,kvm=off",
        Accel::Kvm | Accel::Hvf => "host",
        // The default TCG model is a 2000s CPU (qemu64; cortex-a15 on arm); `max` gives
        // guests the instruction sets current distributions expect.
        Accel::Tcg => "max",
    };
    vec![
        "-accel".to_owned(),
        accel.name().to_owned(),
        "-cpu".to_owned(),
        cpu.to_owned(),
    ]
}

/// How the probe guest fared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// QEMU exited with [`PROBE_EXIT_CODE`]: the guest ran.
    Works,
    /// QEMU exited otherwise (the accelerator is unusable, or the options are wrong).
    Exited { code: Option<i32>, stderr: String },
    /// The guest did not finish in time (QEMU was killed).
    TimedOut,
    /// QEMU could not be started, or the boot sector not written.
    Failed(String),
}

impl ProbeOutcome {
    pub fn works(&self) -> bool {
        *self == Self::Works
    }
}

/// A 512-byte boot sector that writes [`PROBE_EXIT_VALUE`] to port 0xf4 and halts.
fn boot_sector() -> [u8; 512] {
    let code = [
        0xb0,
        PROBE_EXIT_VALUE, // mov al, 0x2a
        0xe6,
        0xf4, // out 0xf4, al
        0xfa, // cli
        0xf4, // hlt
        0xeb,
        0xfd, // jmp back to hlt
    ];
    let mut sector = [0u8; 512];
    sector[..code.len()].copy_from_slice(&code);
    sector[510] = 0x55;
    sector[511] = 0xaa;
    sector
}

/// Boots the probe guest (a PC machine, so x86 only) under `accel` with the same
/// accelerator arguments VMs get, and reports whether it ran to its end within `timeout`.
pub async fn probe(exec: &Path, accel: Accel, timeout: Duration) -> ProbeOutcome {
    let image = match write_boot_sector() {
        Ok(f) => f,
        Err(e) => return ProbeOutcome::Failed(format!("cannot write the probe boot sector: {e}")),
    };
    let mut drive = std::ffi::OsString::from("file=");
    drive.push(escape_opt(image.path().as_os_str()));
    drive.push(",format=raw,if=ide,index=0");
    let child = Command::new(exec)
        .args(args(accel, false))
        .args(["-nodefaults", "-no-user-config", "-display", "none"])
        .args(["-machine", "pc", "-m", "16"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .arg("-drive")
        .arg(drive)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => return ProbeOutcome::Failed(format!("cannot run {}: {e}", exec.display())),
    };
    // On timeout the child is dropped, which kills it (`kill_on_drop`).
    let outcome = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => ProbeOutcome::TimedOut,
        Ok(Err(e)) => ProbeOutcome::Failed(e.to_string()),
        Ok(Ok(out)) if out.status.code() == Some(PROBE_EXIT_CODE) => ProbeOutcome::Works,
        Ok(Ok(out)) => ProbeOutcome::Exited {
            code: out.status.code(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        },
    };
    tracing::debug!(%accel, ?outcome, "accelerator probe");
    outcome
}

fn write_boot_sector() -> std::io::Result<tempfile::NamedTempFile> {
    let mut f = tempfile::Builder::new()
        .prefix("darts-accel-probe-")
        .suffix(".img")
        .tempfile()?;
    f.write_all(&boot_sector())?;
    f.flush()?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    const READY: KvmHost = KvmHost {
        cpu_virt: true,
        dev_kvm_rw: true,
    };

    async fn never_probed() -> ProbeOutcome {
        panic!("the probe must not run")
    }

    #[tokio::test]
    async fn no_virtualization_extensions_means_tcg_without_probing() {
        let host = KvmHost {
            cpu_virt: false,
            ..READY
        };
        assert_eq!(decide_auto(&host, never_probed).await, Accel::Tcg);
        let host = KvmHost {
            dev_kvm_rw: false,
            ..READY
        };
        assert_eq!(decide_auto(&host, never_probed).await, Accel::Tcg);
    }

    #[tokio::test]
    async fn the_probe_decides_when_kvm_looks_usable() {
        let works = || async { ProbeOutcome::Works };
        assert_eq!(decide_auto(&READY, works).await, Accel::Kvm);
        let hangs = || async { ProbeOutcome::TimedOut };
        assert_eq!(decide_auto(&READY, hangs).await, Accel::Tcg);
        let fails = || async {
            ProbeOutcome::Exited {
                code: Some(1),
                stderr: "Could not access KVM kernel module".into(),
            }
        };
        assert_eq!(decide_auto(&READY, fails).await, Accel::Tcg);
    }

    #[tokio::test]
    async fn explicit_settings_are_honoured_without_probing() {
        // A binary that does not exist proves nothing was run.
        let exec = Path::new("/nonexistent/qemu");
        assert_eq!(choose("kvm", exec).await, Accel::Kvm);
        assert_eq!(choose(" TCG ", exec).await, Accel::Tcg);
        assert_eq!(choose("hvf", exec).await, Accel::Hvf);
        assert_eq!(parse_setting("auto"), Setting::Auto);
        assert_eq!(parse_setting("kqemu"), Setting::Auto);
    }

    #[test]
    fn cpuinfo_flags() {
        let intel = "processor\t: 0\nflags\t\t: fpu vme vmx sse\n";
        assert!(cpuinfo_has_virt(intel));
        let amd = "flags\t\t: fpu svm\n";
        assert!(cpuinfo_has_virt(amd));
        let none = "flags\t\t: fpu vmxx hypervisor\nmodel name\t: svm cpu\n";
        assert!(!cpuinfo_has_virt(none));
    }

    #[test]
    fn accelerator_arguments() {
        assert_eq!(args(Accel::Kvm, false), ["-accel", "kvm", "-cpu", "host"]);
        assert_eq!(
            args(Accel::Kvm, true),
            ["-accel", "kvm", "-cpu", "host,kvm=off"]
        );
        assert_eq!(args(Accel::Tcg, true), ["-accel", "tcg", "-cpu", "max"]);
        assert_eq!(args(Accel::Hvf, false), ["-accel", "hvf", "-cpu", "host"]);
    }

    #[test]
    fn boot_sector_layout() {
        let s = boot_sector();
        assert_eq!(&s[510..], &[0x55, 0xaa]);
        assert_eq!(&s[..4], &[0xb0, PROBE_EXIT_VALUE, 0xe6, 0xf4]);
        assert_eq!(PROBE_EXIT_CODE, 85);
    }
}
