//! Launching a session's QEMU: which binary and machine options (`exec`), which
//! accelerator (`accel`), the session's disk (`disk`) and the command line (`cmdline`).
//!
//! # How a VM is started, and why it outlives darts
//!
//! [`cmdline::build`] ends the command line with `-daemonize -pidfile <file>`. QEMU then
//! forks, its daemon calls `setsid` and is re-parented away from darts, so stopping or
//! restarting darts leaves every VM running; darts finds them again by pid (pidfile) and
//! steers them over QMP. The caller must therefore:
//!
//! - spawn QEMU with stdin from `/dev/null`, stdout to `/dev/null` and **stderr piped**:
//!   errors found before daemonizing (a bad option, a missing disk, a locked image) go to
//!   stderr and the foreground process exits non-zero; QEMU points its daemon's stderr at
//!   `/dev/null` before the foreground process exits 0, so the pipe then reaches EOF.
//!   [`exec::launch`] does exactly this and returns the daemon's pid.
//! - give absolute paths: the daemon changes its directory to `/`.
//! - under systemd, run darts with `KillMode=process` (or start VMs outside darts' cgroup),
//!   otherwise stopping the service kills the VMs with it.
//!
//! VNC listens on a unix socket in the session directory, or on a TCP port of
//! `qemu_vnc_listen` that gateways on other hosts can reach, with a password (set later
//! over QMP `set_password`) or x509 client certificates; there is no `-display none`: VNC
//! is the display.

pub mod accel;
pub mod cmdline;
pub mod disk;
pub mod exec;

use std::path::PathBuf;
use std::time::Duration;

pub use accel::Accel;
pub use cmdline::{LaunchSpec, VncAuth, VncEndpoint};

/// Errors preparing or starting a VM.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VmError {
    #[error("QEMU binary {name:?} not found: {reason}")]
    ExecNotFound { name: String, reason: String },
    #[error("qemu_exec=auto: no QEMU system emulator is known for host architecture {0}")]
    UnsupportedArch(&'static str),
    #[error("qemu_exec_options {value:?}: {reason}")]
    Options { value: String, reason: String },
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("{program} {what} did not finish within {after:?}")]
    Timeout {
        program: PathBuf,
        what: String,
        after: Duration,
    },
    #[error("probing {program} failed: {detail}")]
    Probe { program: PathBuf, detail: String },
    #[error("qemu-img {op} {path}: {stderr}")]
    QemuImg {
        op: &'static str,
        path: PathBuf,
        stderr: String,
    },
    #[error("refusing the image {path}: {reason}")]
    UnsafeImage { path: PathBuf, reason: String },
    #[error("no space left for {path}: {stderr}")]
    NoSpace { path: PathBuf, stderr: String },
    #[error("{path} already exists")]
    Exists { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("QEMU did not start ({status}): {stderr}")]
    Launch { status: String, stderr: String },
    #[error("QEMU started but its pidfile {path} is unusable: {detail}")]
    Pidfile { path: PathBuf, detail: String },
    #[error(transparent)]
    Cmdline(#[from] cmdline::CmdlineError),
}

impl VmError {
    /// QEMU could not start because the TCP port of its VNC server was taken, by a
    /// program that bound it after darts found it free; another port may work.
    pub fn vnc_address_in_use(&self) -> bool {
        match self {
            Self::Launch { stderr, .. } => stderr
                .lines()
                .any(|l| l.contains("-vnc ") && l.contains("Address already in use")),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_taken_vnc_port_is_a_vnc_address_in_use() {
        let launch = |stderr: &str| VmError::Launch {
            status: "exit status: 1".into(),
            stderr: stderr.into(),
        };
        // QEMU 10's words.
        assert!(launch(
            "qemu-system-x86_64: -vnc 127.0.0.1:77,password=on: Failed to find an available port: Address already in use"
        )
        .vnc_address_in_use());
        // Another option's port (a boot script's serial console) is not the VNC port.
        assert!(!launch(
            "qemu-system-x86_64: -serial tcp::4444,server=on: Failed to find an available port: Address already in use"
        )
        .vnc_address_in_use());
        assert!(
            !launch("qemu-system-x86_64: -vnc unix:/x: No such file or directory")
                .vnc_address_in_use()
        );
        assert!(!VmError::UnsupportedArch("sparc").vnc_address_in_use());
    }
}
