//! Boot scripts (`config_script`): what an administrator asks to run in, or add to, a
//! session's VM.
//!
//! Each entry is, after an optional `if(EXPR):` condition ([`expr`]):
//!
//! | form | effect |
//! |---|---|
//! | `exec: CMDS`, `bash: CMDS` | shell commands run once, as root, at the guest's first boot (`virt-customize --firstboot`) |
//! | `virt-customize: CMDS` | virt-customize commands, one per line (`--commands-from-file`) |
//! | `http(s)://URL` | downloaded, then like `exec:` |
//! | `/path`, `file:///path` | read on the host, then like `exec:` |
//! | `qemu: ARGS`, `qemu-system-ARCH: ARGS` | arguments appended to this session's QEMU command line ([`qemu_args`]) |
//!
//! `@USER@`, `@SESSION_NAME@` and `@VM@` stand for the login, the session name and the
//! machine's file name ([`symbols`]). The original's `@PW@` (the user's password) is an
//! error: a password must never be written into a file on the host, into the guest's
//! disk, or into virt-customize's output.
//!
//! [`plan`] turns the entries into a [`Plan`]; [`virt_customize_argv`] writes its
//! scripts next to the overlay and builds the single virt-customize call that
//! [`run_virt_customize`] runs before QEMU starts.

mod customize;
pub mod expr;
mod plan;
pub mod qemu_args;
pub mod symbols;

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

pub use customize::{run_virt_customize, virt_customize_argv};
pub use expr::ExprError;
pub use plan::{check, plan, Fetch};

/// The values of the symbols for one session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vars {
    /// `@USER@`: the login.
    pub user: String,
    /// `@SESSION_NAME@`.
    pub session_name: String,
    /// `@VM@`: the machine's file name, e.g. `debian12.qcow2`.
    pub vm: String,
}

/// What the scripts ask for one session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Appended to the session's QEMU command line, in order.
    pub qemu_args: Vec<String>,
    /// Scripts for the single virt-customize call, in order.
    pub customize: Vec<Customize>,
}

/// One script for virt-customize.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Customize {
    /// Runs once at first boot (`--firstboot`).
    FirstBoot(String),
    /// virt-customize commands (`--commands-from-file`).
    CommandsFromFile(String),
}

impl Customize {
    pub fn content(&self) -> &str {
        match self {
            Customize::FirstBoot(c) | Customize::CommandsFromFile(c) => c,
        }
    }

    /// The virt-customize option that takes this script's file.
    pub fn option(&self) -> &'static str {
        match self {
            Customize::FirstBoot(_) => "--firstboot",
            Customize::CommandsFromFile(_) => "--commands-from-file",
        }
    }
}

/// Errors of boot scripts. Script contents never appear in them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScriptError {
    #[error("config_script[{index}] uses @PW@, which is refused: the user's password is never written into a script")]
    Password { index: usize },
    #[error("config_script[{index}]: QEMU argument `{arg}` is refused: {reason}")]
    RefusedQemuArg {
        index: usize,
        arg: String,
        reason: &'static str,
    },
    #[error("config_script[{index}]: condition: {source}")]
    Condition { index: usize, source: ExprError },
    #[error("config_script[{index}]: {reason}")]
    Invalid { index: usize, reason: String },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("empty virt-customize command line")]
    EmptyCommand,
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("waiting for {program}: {source}")]
    Wait {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} did not finish within {timeout:?}")]
    Timeout { program: String, timeout: Duration },
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        program: String,
        status: ExitStatus,
        /// The end of its standard error.
        stderr: String,
    },
}
