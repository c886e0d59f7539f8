//! A QEMU (TCG, no disk unless `extra` gives one) with its VNC server and QMP on unix
//! sockets in a scratch directory; killed on drop.
//!
//! Declared from a test file with `#[path = "support/vm.rs"] mod vm;`.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Vm {
    child: Child,
    pub vnc: PathBuf,
    pub qmp: PathBuf,
}

impl Vm {
    /// `vnc_opts` are appended to `-vnc unix:DIR/vnc.sock` (e.g. `,password=on`); `extra`
    /// are further QEMU arguments. Returns once both sockets exist.
    pub fn start(dir: &Path, vnc_opts: &str, extra: &[String]) -> Self {
        let vnc = dir.join("vnc.sock");
        let qmp = dir.join("qmp.sock");
        let child = Command::new("qemu-system-x86_64")
            .args(["-accel", "tcg,tb-size=32", "-nodefaults", "-vga", "std"])
            .args(["-display", "none", "-m", "128", "-qmp"])
            .arg(format!("unix:{},server=on,wait=off", qmp.display()))
            .arg("-vnc")
            .arg(format!("unix:{}{vnc_opts}", vnc.display()))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("qemu-system-x86_64 runs (install it with `bash tests/setup.sh`)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !(vnc.exists() && qmp.exists()) {
            assert!(Instant::now() < deadline, "QEMU sockets did not appear");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, vnc, qmp }
    }

    /// The VNC socket as a gateway target.
    pub fn target(&self) -> darts_proxy::Target {
        darts_proxy::Target::Unix(self.vnc.clone())
    }

    pub fn has_exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
