//! The QEMU binary (`qemu_exec`), its machine options (`qemu_exec_options`), and starting
//! a VM from a [`LaunchSpec`].

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;

use super::cmdline::{self, LaunchSpec};
use super::VmError;

/// How long `-M help` and friends may take.
const HELP_TIMEOUT: Duration = Duration::from_secs(20);

/// Most of QEMU's stderr kept for an error message.
const MAX_STDERR: u64 = 64 * 1024;

/// UEFI firmware for `virt` machines, in the order the usual packages install it
/// (Debian/Ubuntu qemu-efi-aarch64, Fedora and Arch edk2, AAVMF, QEMU's own, Homebrew).
const ARM_FIRMWARE: &[&str] = &[
    "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd",
    "/usr/share/edk2/aarch64/QEMU_EFI.fd",
    "/usr/share/edk2-armvirt/aarch64/QEMU_EFI.fd",
    "/usr/share/edk2/ovmf/AARCH64/QEMU_EFI.fd",
    "/usr/share/AAVMF/AAVMF_CODE.fd",
    "/usr/share/qemu/edk2-aarch64-code.fd",
    "/opt/homebrew/share/qemu/edk2-aarch64-code.fd",
    "/usr/local/share/qemu/edk2-aarch64-code.fd",
];

/// The QEMU binary for `qemu_exec`: `auto`/`host` is the system emulator of this host's
/// architecture, found on PATH; anything else is a path or a name looked up on PATH.
pub fn resolve_exec(qemu_exec: &str) -> Result<PathBuf, VmError> {
    let name = match qemu_exec.trim() {
        "auto" | "host" | "" => host_emulator()?,
        other => other,
    };
    which::which(name).map_err(|e| VmError::ExecNotFound {
        name: name.to_owned(),
        reason: e.to_string(),
    })
}

fn host_emulator() -> Result<&'static str, VmError> {
    match std::env::consts::ARCH {
        "x86_64" => Ok("qemu-system-x86_64"),
        "aarch64" => Ok("qemu-system-aarch64"),
        other => Err(VmError::UnsupportedArch(other)),
    }
}

/// Machine and display options for `qemu_exec_options`. `auto` asks the binary what it
/// supports (once per binary and process); anything else is split into words as a shell
/// would, without running one. The accelerator is not part of these (see `accel`).
pub async fn resolve_options(qemu_exec_options: &str, exec: &Path) -> Result<Vec<String>, VmError> {
    if qemu_exec_options.trim() != "auto" {
        return shell_words::split(qemu_exec_options).map_err(|e| VmError::Options {
            value: qemu_exec_options.to_owned(),
            reason: e.to_string(),
        });
    }
    static CACHE: LazyLock<Mutex<HashMap<PathBuf, Vec<String>>>> = LazyLock::new(Default::default);
    if let Some(hit) = CACHE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(exec)
    {
        return Ok(hit.clone());
    }
    let options = probe_options(exec).await?;
    tracing::info!(exec = %exec.display(), ?options, "QEMU machine options (auto)");
    CACHE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(exec.to_owned(), options.clone());
    Ok(options)
}

async fn probe_options(exec: &Path) -> Result<Vec<String>, VmError> {
    let machines = help_text(exec, &["-M", "help"]).await?;
    match machine_family(&machines) {
        MachineFamily::Pc => {
            let vga = help_text(exec, &["-M", "pc", "-vga", "help"]).await?;
            let mut options = vec!["-M".to_owned(), "pc".to_owned()];
            options.extend(pc_display(&vga));
            Ok(options)
        }
        MachineFamily::Virt => {
            let mut options = strings(&["-M", "virt,iommu=smmuv3", "-device", "ramfb"]);
            match ARM_FIRMWARE.iter().map(Path::new).find(|p| p.is_file()) {
                Some(bios) => {
                    options.push("-bios".to_owned());
                    options.push(bios.display().to_string());
                }
                None => tracing::warn!(
                    exec = %exec.display(),
                    "no UEFI firmware found for the virt machine; install qemu-efi-aarch64"
                ),
            }
            Ok(options)
        }
        MachineFamily::Other => {
            tracing::warn!(exec = %exec.display(), "neither a PC nor a virt machine; using QEMU's defaults");
            Ok(Vec::new())
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum MachineFamily {
    Pc,
    Virt,
    Other,
}

/// From `-M help`: a "Standard PC" means `-M pc`; else a `virt` machine.
fn machine_family(help: &str) -> MachineFamily {
    if help.contains("Standard PC") {
        MachineFamily::Pc
    } else if help
        .lines()
        .any(|l| l.split_whitespace().next() == Some("virt"))
    {
        MachineFamily::Virt
    } else {
        MachineFamily::Other
    }
}

/// From `-M pc -vga help`: virtio, else qxl, else a ramfb device. virtio-gpu as a plain
/// device is left out on purpose (the pointer drifts away from the cursor).
fn pc_display(vga_help: &str) -> Vec<String> {
    let has = |card: &str| {
        vga_help
            .lines()
            .any(|l| l.split_whitespace().next() == Some(card))
    };
    if has("virtio") {
        strings(&["-vga", "virtio"])
    } else if has("qxl") {
        strings(&["-vga", "qxl"])
    } else {
        strings(&["-device", "ramfb"])
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

async fn help_text(exec: &Path, args: &[&str]) -> Result<String, VmError> {
    let out = run_captured(exec, args, HELP_TIMEOUT).await?;
    if !out.status.success() {
        return Err(VmError::Probe {
            program: exec.to_owned(),
            detail: format!(
                "{} exited with {}: {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `program args` with no stdin, collecting stdout and stderr; killed after `timeout`.
pub(crate) async fn run_captured<S: AsRef<OsStr>>(
    program: &Path,
    args: &[S],
    timeout: Duration,
) -> Result<Output, VmError> {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| VmError::Spawn {
            program: program.to_owned(),
            source,
        })?;
    // On timeout the child is dropped, which kills it (`kill_on_drop`).
    tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| VmError::Timeout {
            program: program.to_owned(),
            what: first_arg(args),
            after: timeout,
        })?
        .map_err(|source| VmError::Spawn {
            program: program.to_owned(),
            source,
        })
}

fn first_arg<S: AsRef<OsStr>>(args: &[S]) -> String {
    args.first()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Starts the VM described by `spec` and returns the pid of the daemonized QEMU.
///
/// QEMU runs with stdin and stdout on `/dev/null` and stderr piped; its foreground process
/// exits once the VM is set up (0) or has failed (non-zero, the reason on stderr), which
/// must happen within `timeout` (else it is killed, with the daemon if it wrote its pid).
pub async fn launch(spec: &LaunchSpec, timeout: Duration) -> Result<u32, VmError> {
    let args = cmdline::build(spec)?;
    // The command line holds no secret: passwords are set over QMP afterwards.
    tracing::info!(vm = %spec.name, exec = %spec.exec.display(), ?args, "starting QEMU");
    let mut child = Command::new(&spec.exec)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| VmError::Spawn {
            program: spec.exec.clone(),
            source,
        })?;
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let reader = child.stderr.take().map(|pipe| {
        let sink = stderr.clone();
        tokio::spawn(async move {
            let mut pipe = pipe.take(MAX_STDERR);
            let mut chunk = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend_from_slice(&chunk[..n]);
            }
        })
    });
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => status.map_err(|source| VmError::Spawn {
            program: spec.exec.clone(),
            source,
        })?,
        Err(_) => {
            let _ = child.kill().await;
            // The daemon may exist already; kill it only if the pid is still this VM's.
            if let Ok(pid) = read_pidfile(&spec.pidfile).await {
                if runs_vm(pid, &spec.name) {
                    kill_pid(pid);
                }
            }
            return Err(VmError::Timeout {
                program: spec.exec.clone(),
                what: format!("start of {}", spec.name),
                after: timeout,
            });
        }
    };
    // The daemon's stderr points at /dev/null by now, so the pipe is at EOF; the bound
    // only matters if an extra option (`-D`) kept it open.
    if let Some(reader) = reader {
        let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
    }
    let stderr = {
        let bytes = stderr.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).trim().to_owned()
    };
    if !status.success() {
        tracing::warn!(vm = %spec.name, %status, %stderr, "QEMU did not start");
        return Err(VmError::Launch {
            status: status.to_string(),
            stderr,
        });
    }
    if !stderr.is_empty() {
        tracing::warn!(vm = %spec.name, %stderr, "QEMU warnings");
    }
    let pid = read_pidfile(&spec.pidfile).await?;
    tracing::info!(vm = %spec.name, pid, "QEMU running");
    Ok(pid)
}

/// The pid QEMU wrote with `-pidfile` (read off the async workers: the session
/// directory's disk may be slow).
pub async fn read_pidfile(path: &Path) -> Result<u32, VmError> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| VmError::Pidfile {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
    text.trim()
        .parse::<u32>()
        .ok()
        .filter(|pid| *pid > 1)
        .ok_or_else(|| VmError::Pidfile {
            path: path.to_owned(),
            detail: format!("not a pid: {:?}", text.trim()),
        })
}

/// Whether `pid` is a process whose command line holds the VM's `-name`.
fn runs_vm(pid: u32, name: &str) -> bool {
    let needle = cmdline::escape_opt(std::ffi::OsStr::new(name));
    let needle = needle.as_encoded_bytes();
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| !needle.is_empty() && c.windows(needle.len()).any(|w| w == needle))
}

fn kill_pid(pid: u32) {
    use rustix::process::{kill_process, Pid, Signal};
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = kill_process(pid, Signal::KILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_picks_the_host_emulator() {
        let name = host_emulator().unwrap();
        assert!(name.starts_with("qemu-system-"), "{name}");
        let e = resolve_exec("/nonexistent/qemu-system-x86_64").unwrap_err();
        assert!(matches!(e, VmError::ExecNotFound { .. }), "{e}");
        assert!(
            e.to_string().contains("/nonexistent/qemu-system-x86_64"),
            "{e}"
        );
        let e = resolve_exec("no-such-qemu-binary").unwrap_err();
        assert!(e.to_string().contains("no-such-qemu-binary"), "{e}");
    }

    #[test]
    fn machine_family_from_help() {
        let pc = "Supported machines are:\nmicrovm              microvm (i386)\n\
                  pc-i440fx-9.2        Standard PC (i440FX + PIIX, 1996)\n";
        assert_eq!(machine_family(pc), MachineFamily::Pc);
        let arm = "Supported machines are:\nvirt-9.2             QEMU 9.2 ARM Virtual Machine\n\
                   virt                 QEMU 10.0 ARM Virtual Machine (alias of virt-10.0)\n";
        assert_eq!(machine_family(arm), MachineFamily::Virt);
        assert_eq!(
            machine_family("virt-9.2   only versioned\n"),
            MachineFamily::Other
        );
    }

    #[test]
    fn pc_display_preference() {
        let all = "none  no graphic card\nstd   standard VGA (default)\nqxl   QXL VGA\nvirtio  Virtio VGA\n";
        assert_eq!(pc_display(all), ["-vga", "virtio"]);
        assert_eq!(
            pc_display("std  standard\nqxl   QXL VGA\n"),
            ["-vga", "qxl"]
        );
        assert_eq!(
            pc_display("std  standard\nvirtio-gpu  not a vga\n"),
            ["-device", "ramfb"]
        );
    }

    #[tokio::test]
    async fn explicit_options_are_split_like_a_shell() {
        let exec = Path::new("/nonexistent");
        let o = resolve_options("-M q35 -vga 'std' -device \"a b\"", exec)
            .await
            .unwrap();
        assert_eq!(o, ["-M", "q35", "-vga", "std", "-device", "a b"]);
        assert!(resolve_options("", exec).await.unwrap().is_empty());
        let e = resolve_options("-M 'pc", exec).await.unwrap_err();
        assert!(matches!(e, VmError::Options { .. }), "{e}");
    }

    #[tokio::test]
    async fn pidfile_parsing() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pid");
        std::fs::write(&f, "4242\n").unwrap();
        assert_eq!(read_pidfile(&f).await.unwrap(), 4242);
        std::fs::write(&f, "x").unwrap();
        assert!(matches!(
            read_pidfile(&f).await,
            Err(VmError::Pidfile { .. })
        ));
        assert!(read_pidfile(&dir.path().join("none")).await.is_err());
    }
}
