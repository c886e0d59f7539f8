//! The QEMU command line of a session, in the original's order (devices, then the boot
//! medium, GPU and shared folders), with QMP on a unix socket, VNC on a unix socket or a
//! TCP port, and `-daemonize` (see the `vm` module doc for how the caller runs it).
//!
//! Paths and names that go into a comma-separated option (`-drive file=…`, `-vnc unix:…`)
//! have their commas doubled, QEMU's escape; options that take a bare file name
//! (`-pidfile`) get it as is. Every image is given with its format, so QEMU probes none.

use std::ffi::{OsStr, OsString};
use std::net::SocketAddr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::accel::{self, Accel};

/// Everything that makes one VM's command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchSpec {
    /// The QEMU binary (`exec::resolve_exec`).
    pub exec: PathBuf,
    /// Machine and display options (`exec::resolve_options`).
    pub exec_options: Vec<String>,
    pub accel: Accel,
    /// Session name; with `user` and `machine` it makes QEMU's `-name`, which is how a
    /// VM is recognised in `ps`.
    pub name: String,
    pub user: String,
    pub machine: String,
    pub cpu: u32,
    pub memory_mb: u64,
    /// The session's hard disk (overlay, blank disk, or the master itself).
    pub disk: PathBuf,
    /// Its format, given so that QEMU never guesses (a raw image could pose as qcow2).
    pub disk_format: String,
    /// An ISO to boot from; the VM boots from `disk` when `None`.
    pub cdrom: Option<PathBuf>,
    /// PCI address (`bb:dd.f`) of a GPU bound to vfio-pci.
    pub gpu: Option<String>,
    /// Host directories shared over 9p; those that do not exist are left out.
    pub mounts: Vec<PathBuf>,
    /// Options from configuration scripts, inserted after the standard devices.
    pub extra_args: Vec<String>,
    pub vnc: VncEndpoint,
    pub vnc_auth: VncAuth,
    pub qmp_socket: PathBuf,
    pub pidfile: PathBuf,
    /// Shares the clipboard with the guest (needs spice-vdagent in the guest).
    pub clipboard: bool,
}

/// QEMU's VNC display numbers count from this port (`-vnc HOST:0` listens on 5900).
pub const VNC_BASE_PORT: u16 = 5900;

/// Where a session's VNC server listens. Flattened into a session record, the variant is
/// the key: `vnc_socket` (every record written before TCP listening existed has it) or
/// `vnc_tcp` (`"127.0.0.1:5901"`, `"[::1]:5901"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VncEndpoint {
    /// A unix socket in the session directory, reached by this darts only.
    #[serde(rename = "vnc_socket")]
    Unix(PathBuf),
    /// A TCP port (`qemu_vnc_listen`), which gateways on other hosts can reach too. The
    /// port is at least [`VNC_BASE_PORT`]: QEMU takes a display number, not a port.
    #[serde(rename = "vnc_tcp")]
    Tcp(SocketAddr),
}

impl VncEndpoint {
    /// The value of `-vnc` before its options: `unix:PATH`, `HOST:DISPLAY` or
    /// `[IPV6]:DISPLAY` (QEMU's bracket syntax).
    pub fn qemu_address(&self) -> Result<OsString, CmdlineError> {
        match self {
            Self::Unix(path) => Ok(concat(&[
                OsStr::new("unix:"),
                &escape_opt(path.as_os_str()),
            ])),
            Self::Tcp(addr) => {
                let display = addr
                    .port()
                    .checked_sub(VNC_BASE_PORT)
                    .ok_or(CmdlineError::VncPortTooLow(addr.port()))?;
                let host = match addr {
                    SocketAddr::V4(a) => a.ip().to_string(),
                    SocketAddr::V6(a) => format!("[{}]", a.ip()),
                };
                Ok(OsString::from(format!("{host}:{display}")))
            }
        }
    }
}

/// How QEMU's VNC server authenticates darts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VncAuth {
    /// VNC password; set over QMP `set_password` once QEMU runs.
    Password,
    /// VeNCrypt with x509: QEMU's `dir` holds `ca-cert.pem`, `server-cert.pem` and
    /// `server-key.pem`, and QEMU requires a client certificate signed by that CA.
    /// `password` adds a VNC password inside TLS.
    X509 { dir: PathBuf, password: bool },
}

/// Why a command line cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmdlineError {
    #[error("VNC port {0} is below {VNC_BASE_PORT}: QEMU takes a display number (port - {VNC_BASE_PORT})")]
    VncPortTooLow(u16),
}

/// The arguments after the program name.
pub fn build(spec: &LaunchSpec) -> Result<Vec<OsString>, CmdlineError> {
    let mut a = Args::default();
    a.add(["-smp", &spec.cpu.to_string()]);
    a.add(["-name"]);
    a.push(escape_str(&format!(
        "{}:{}:{}",
        spec.name, spec.user, spec.machine
    )));
    a.add(&spec.exec_options);
    a.add(accel::args(spec.accel, spec.gpu.is_some()));
    a.add(["-m", &spec.memory_mb.to_string()]);
    a.add(["-device", "virtio-balloon"]);
    // Like `-hda` (index 0, the machine's default interface) with the format stated.
    a.add(["-drive"]);
    a.push(concat(&[
        OsStr::new("file="),
        &escape_opt(spec.disk.as_os_str()),
        OsStr::new(",format="),
        &escape_opt(OsStr::new(&spec.disk_format)),
        OsStr::new(",index=0,media=disk"),
    ]));
    a.add(["-device", "ich9-ahci,id=ahci"]);
    a.add([
        "-netdev",
        "user,id=mynet0",
        "-device",
        "virtio-net,netdev=mynet0",
    ]);
    a.add(["-usb", "-device", "qemu-xhci", "-device", "usb-kbd"]);
    a.add(["-device", "usb-tablet"]);
    a.add(&spec.extra_args);
    if spec.clipboard {
        a.add(["-chardev", "qemu-vdagent,id=ch1,name=vdagent,clipboard=on"]);
        a.add(["-device", "virtio-serial-pci"]);
        a.add([
            "-device",
            "virtserialport,chardev=ch1,id=ch1,name=com.redhat.spice.0",
        ]);
    }
    match &spec.cdrom {
        // Like `-cdrom` (index 2), with the format stated and read-only: QEMU never
        // probes what an ISO holds, and the guest cannot write to it.
        Some(iso) => {
            a.add(["-boot", "d", "-drive"]);
            a.push(concat(&[
                OsStr::new("file="),
                &escape_opt(iso.as_os_str()),
                OsStr::new(",format=raw,readonly=on,index=2,media=cdrom"),
            ]));
        }
        None => a.add(["-boot", "c"]),
    }
    if let Some(pci) = &spec.gpu {
        a.add(["-device"]);
        a.push(format!(
            "vfio-pci,host={},multifunction=on",
            escape_str(pci)
        ));
    }
    for (i, dir) in spec.mounts.iter().enumerate() {
        add_mount(&mut a, i, dir);
    }
    // Also drops QEMU's default human monitor, which would sit on a virtual console that
    // VNC users can switch to (ctrl-alt-2) and can run host commands.
    a.add(["-qmp"]);
    a.push(concat(&[
        OsStr::new("unix:"),
        &escape_opt(spec.qmp_socket.as_os_str()),
        OsStr::new(",server=on,wait=off"),
    ]));
    let vnc = spec.vnc.qemu_address()?;
    match &spec.vnc_auth {
        VncAuth::Password => {
            a.add(["-vnc"]);
            a.push(concat(&[&vnc, OsStr::new(",password=on")]));
        }
        VncAuth::X509 { dir, password } => {
            a.add(["-object"]);
            a.push(concat(&[
                OsStr::new("tls-creds-x509,id=vnctls0,dir="),
                &escape_opt(dir.as_os_str()),
                OsStr::new(",endpoint=server,verify-peer=on"),
            ]));
            a.add(["-vnc"]);
            let auth = if *password {
                ",tls-creds=vnctls0,password=on"
            } else {
                ",tls-creds=vnctls0"
            };
            a.push(concat(&[&vnc, OsStr::new(auth)]));
        }
    }
    a.add(["-daemonize", "-pidfile"]);
    a.push(&spec.pidfile);
    Ok(a.0)
}

/// `-fsdev … -device virtio-9p-pci …` for `dir`, seen in the guest as
/// `host_<last component>`; nothing when `dir` is not an existing directory.
fn add_mount(a: &mut Args, i: usize, dir: &Path) {
    if !dir.is_dir() {
        tracing::debug!(dir = %dir.display(), "shared folder missing; not mounted");
        return;
    }
    let Some(last) = dir.file_name() else {
        tracing::warn!(dir = %dir.display(), "shared folder has no name; not mounted");
        return;
    };
    a.add(["-fsdev"]);
    a.push(concat(&[
        OsStr::new(&format!("local,security_model=none,id=fsdev{i},path=")),
        &escape_opt(dir.as_os_str()),
    ]));
    a.add(["-device"]);
    a.push(concat(&[
        OsStr::new(&format!(
            "virtio-9p-pci,id=fs{i},fsdev=fsdev{i},mount_tag=host_"
        )),
        &escape_opt(last),
    ]));
}

/// Doubles commas, QEMU's escape inside a comma-separated option value.
pub fn escape_opt(value: &OsStr) -> OsString {
    let mut out = Vec::with_capacity(value.len());
    for &b in value.as_bytes() {
        out.push(b);
        if b == b',' {
            out.push(b',');
        }
    }
    OsString::from_vec(out)
}

fn escape_str(value: &str) -> String {
    value.replace(',', ",,")
}

fn concat(parts: &[&OsStr]) -> OsString {
    parts.iter().copied().collect()
}

#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn add<I, S>(&mut self, items: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.0
            .extend(items.into_iter().map(|s| s.as_ref().to_owned()));
    }

    /// One argument: an option value escaped where needed, or a bare file name.
    fn push(&mut self, value: impl Into<OsString>) {
        self.0.push(value.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> LaunchSpec {
        LaunchSpec {
            exec: "/usr/bin/qemu-system-x86_64".into(),
            exec_options: vec!["-M".into(), "pc".into(), "-vga".into(), "virtio".into()],
            accel: Accel::Tcg,
            name: "darts_abc".into(),
            user: "alice".into(),
            machine: "debian.qcow2".into(),
            cpu: 2,
            memory_mb: 4096,
            disk: "/s/darts_abc/disk.qcow2".into(),
            disk_format: "qcow2".into(),
            cdrom: None,
            gpu: None,
            mounts: Vec::new(),
            extra_args: Vec::new(),
            vnc: VncEndpoint::Unix("/s/darts_abc/vnc.sock".into()),
            vnc_auth: VncAuth::Password,
            qmp_socket: "/s/darts_abc/qmp.sock".into(),
            pidfile: "/s/darts_abc/qemu.pid".into(),
            clipboard: true,
        }
    }

    fn strings(spec: &LaunchSpec) -> Vec<String> {
        build(spec)
            .unwrap()
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect()
    }

    fn joined(spec: &LaunchSpec) -> String {
        strings(spec).join(" ")
    }

    /// The value after the first occurrence of `flag`.
    fn value_of(args: &[String], flag: &str) -> Option<String> {
        let i = args.iter().position(|a| a == flag)?;
        args.get(i + 1).cloned()
    }

    #[test]
    fn disk_session_in_the_originals_order() {
        let expected = "-smp 2 -name darts_abc:alice:debian.qcow2 -M pc -vga virtio \
            -accel tcg -cpu max -m 4096 -device virtio-balloon \
            -drive file=/s/darts_abc/disk.qcow2,format=qcow2,index=0,media=disk \
            -device ich9-ahci,id=ahci -netdev user,id=mynet0 -device virtio-net,netdev=mynet0 \
            -usb -device qemu-xhci -device usb-kbd -device usb-tablet \
            -chardev qemu-vdagent,id=ch1,name=vdagent,clipboard=on -device virtio-serial-pci \
            -device virtserialport,chardev=ch1,id=ch1,name=com.redhat.spice.0 \
            -boot c -qmp unix:/s/darts_abc/qmp.sock,server=on,wait=off \
            -vnc unix:/s/darts_abc/vnc.sock,password=on \
            -daemonize -pidfile /s/darts_abc/qemu.pid";
        assert_eq!(
            joined(&spec()),
            expected.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }

    #[test]
    fn iso_session_boots_the_cdrom() {
        let mut s = spec();
        s.cdrom = Some("/m/debian.iso".into());
        let a = strings(&s);
        let boot = a.iter().position(|x| x == "-boot").unwrap();
        assert_eq!(
            a[boot..boot + 4],
            [
                "-boot",
                "d",
                "-drive",
                "file=/m/debian.iso,format=raw,readonly=on,index=2,media=cdrom"
            ]
        );
        assert!(!joined(&s).contains("-boot c"));
    }

    #[test]
    fn gpu_passes_the_device_and_hides_kvm() {
        let mut s = spec();
        s.accel = Accel::Kvm;
        s.gpu = Some("01:00.0".into());
        let a = strings(&s);
        assert_eq!(value_of(&a, "-cpu").unwrap(), "host,kvm=off");
        assert!(joined(&s).contains("-device vfio-pci,host=01:00.0,multifunction=on"));
        // Device after the boot medium, as in the original.
        let boot = a.iter().position(|x| x == "-boot").unwrap();
        let vfio = a.iter().position(|x| x.starts_with("vfio-pci")).unwrap();
        assert!(vfio > boot);
        s.gpu = None;
        assert_eq!(value_of(&strings(&s), "-cpu").unwrap(), "host");
        assert!(!joined(&s).contains("vfio-pci"));
    }

    #[test]
    fn accelerator_kinds() {
        let mut s = spec();
        for (accel, cpu) in [
            (Accel::Kvm, "host"),
            (Accel::Tcg, "max"),
            (Accel::Hvf, "host"),
        ] {
            s.accel = accel;
            let a = strings(&s);
            assert_eq!(value_of(&a, "-accel").unwrap(), accel.name());
            assert_eq!(value_of(&a, "-cpu").unwrap(), cpu);
            // After the machine options, before the memory.
            let m = a.iter().position(|x| x == "-M").unwrap();
            let acc = a.iter().position(|x| x == "-accel").unwrap();
            let mem = a.iter().position(|x| x == "-m").unwrap();
            assert!(m < acc && acc < mem, "{a:?}");
        }
    }

    #[test]
    fn only_existing_mounts_with_their_last_component() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let mut s = spec();
        s.mounts = vec![dir.path().join("missing"), data.clone()];
        let j = joined(&s);
        assert!(!j.contains("missing"), "{j}");
        assert!(
            !j.contains("fsdev0"),
            "indexes follow the configured list: {j}"
        );
        assert!(
            j.contains(&format!(
                "-fsdev local,security_model=none,id=fsdev1,path={} \
             -device virtio-9p-pci,id=fs1,fsdev=fsdev1,mount_tag=host_data",
                data.display()
            )),
            "{j}"
        );
        s.mounts = vec![dir.path().join("missing")];
        assert!(!joined(&s).contains("-fsdev"));
    }

    #[test]
    fn x509_with_and_without_password() {
        let mut s = spec();
        s.vnc_auth = VncAuth::X509 {
            dir: "/etc/darts/vnc-tls/server".into(),
            password: false,
        };
        let a = strings(&s);
        assert_eq!(
            value_of(&a, "-object").unwrap(),
            "tls-creds-x509,id=vnctls0,dir=/etc/darts/vnc-tls/server,endpoint=server,verify-peer=on"
        );
        assert_eq!(
            value_of(&a, "-vnc").unwrap(),
            "unix:/s/darts_abc/vnc.sock,tls-creds=vnctls0"
        );
        let obj = a.iter().position(|x| x == "-object").unwrap();
        let vnc = a.iter().position(|x| x == "-vnc").unwrap();
        assert!(
            obj < vnc,
            "the credentials exist before the VNC server uses them"
        );
        s.vnc_auth = VncAuth::X509 {
            dir: "/etc/darts/vnc-tls/server".into(),
            password: true,
        };
        assert_eq!(
            value_of(&strings(&s), "-vnc").unwrap(),
            "unix:/s/darts_abc/vnc.sock,tls-creds=vnctls0,password=on"
        );
        s.vnc_auth = VncAuth::Password;
        assert!(!joined(&s).contains("-object"));
    }

    #[test]
    fn tcp_endpoints_become_display_numbers() {
        let mut s = spec();
        s.vnc = VncEndpoint::Tcp("127.0.0.1:5901".parse().unwrap());
        assert_eq!(
            value_of(&strings(&s), "-vnc").unwrap(),
            "127.0.0.1:1,password=on"
        );
        s.vnc = VncEndpoint::Tcp("10.0.0.5:5900".parse().unwrap());
        assert_eq!(
            value_of(&strings(&s), "-vnc").unwrap(),
            "10.0.0.5:0,password=on"
        );
        // IPv6 in QEMU's bracket syntax.
        s.vnc = VncEndpoint::Tcp("[::1]:5910".parse().unwrap());
        assert_eq!(
            value_of(&strings(&s), "-vnc").unwrap(),
            "[::1]:10,password=on"
        );
        s.vnc = VncEndpoint::Tcp("[fd00::5]:6001".parse().unwrap());
        s.vnc_auth = VncAuth::X509 {
            dir: "/etc/darts/vnc-tls/server".into(),
            password: true,
        };
        let a = strings(&s);
        assert_eq!(
            value_of(&a, "-vnc").unwrap(),
            "[fd00::5]:101,tls-creds=vnctls0,password=on"
        );
        assert!(value_of(&a, "-object")
            .unwrap()
            .starts_with("tls-creds-x509,id=vnctls0,"));
        // QMP stays on its unix socket.
        assert_eq!(
            value_of(&a, "-qmp").unwrap(),
            "unix:/s/darts_abc/qmp.sock,server=on,wait=off"
        );
    }

    #[test]
    fn a_port_below_5900_is_refused() {
        let mut s = spec();
        s.vnc = VncEndpoint::Tcp("127.0.0.1:5899".parse().unwrap());
        assert_eq!(build(&s), Err(CmdlineError::VncPortTooLow(5899)));
        s.vnc = VncEndpoint::Tcp("127.0.0.1:80".parse().unwrap());
        assert!(build(&s).unwrap_err().to_string().contains("below 5900"));
    }

    #[test]
    fn clipboard_off_leaves_out_the_agent() {
        let mut s = spec();
        s.clipboard = false;
        let j = joined(&s);
        assert!(!j.contains("vdagent"), "{j}");
        assert!(!j.contains("virtio-serial"), "{j}");
    }

    #[test]
    fn extra_args_follow_the_standard_devices() {
        let mut s = spec();
        s.extra_args = vec!["-serial".into(), "file:/tmp/x.log".into()];
        let a = strings(&s);
        let tablet = a.iter().position(|x| x == "usb-tablet").unwrap();
        let extra = a.iter().position(|x| x == "-serial").unwrap();
        let chardev = a.iter().position(|x| x == "-chardev").unwrap();
        assert_eq!(extra, tablet + 1);
        assert!(extra < chardev);
    }

    #[test]
    fn commas_are_doubled_in_option_values_only() {
        let dir = tempfile::tempdir().unwrap();
        let share = dir.path().join("a,b");
        std::fs::create_dir(&share).unwrap();
        let mut s = spec();
        s.name = "s,1".into();
        s.user = "bob,x".into();
        s.disk = "/s/a,b/disk.qcow2".into();
        s.disk_format = "qcow2".into();
        s.cdrom = Some("/m/x,y.iso".into());
        s.gpu = Some("01:00.0,rombar=0".into());
        s.mounts = vec![share.clone()];
        s.qmp_socket = "/s/a,b/qmp.sock".into();
        s.vnc = VncEndpoint::Unix("/s/a,b/vnc.sock".into());
        s.pidfile = "/s/a,b/qemu.pid".into();
        s.vnc_auth = VncAuth::X509 {
            dir: "/c,d".into(),
            password: false,
        };
        let a = strings(&s);
        assert_eq!(value_of(&a, "-name").unwrap(), "s,,1:bob,,x:debian.qcow2");
        assert_eq!(
            value_of(&a, "-drive").unwrap(),
            "file=/s/a,,b/disk.qcow2,format=qcow2,index=0,media=disk"
        );
        assert!(
            a.contains(&"file=/m/x,,y.iso,format=raw,readonly=on,index=2,media=cdrom".to_owned())
        );
        assert_eq!(
            value_of(&a, "-qmp").unwrap(),
            "unix:/s/a,,b/qmp.sock,server=on,wait=off"
        );
        assert_eq!(
            value_of(&a, "-vnc").unwrap(),
            "unix:/s/a,,b/vnc.sock,tls-creds=vnctls0"
        );
        assert!(value_of(&a, "-object").unwrap().contains("dir=/c,,d,"));
        assert!(a.contains(&"vfio-pci,host=01:00.0,,rombar=0,multifunction=on".to_owned()));
        let share_esc = share.display().to_string().replace(',', ",,");
        assert!(value_of(&a, "-fsdev")
            .unwrap()
            .ends_with(&format!("path={share_esc}")));
        assert!(a.iter().any(|x| x.ends_with("mount_tag=host_a,,b")));
        assert_eq!(value_of(&a, "-pidfile").unwrap(), "/s/a,b/qemu.pid");
    }

    #[test]
    fn no_display_option_and_daemonized_last() {
        let a = strings(&spec());
        assert!(!a.iter().any(|x| x == "-display" || x == "-nographic"));
        assert_eq!(
            a[a.len() - 3..],
            ["-daemonize", "-pidfile", "/s/darts_abc/qemu.pid"]
        );
    }

    #[test]
    fn escape_opt_on_bytes() {
        assert_eq!(escape_opt(OsStr::new("a,,b,")), OsString::from("a,,,,b,,"));
        let odd = OsStr::from_bytes(b"\xff,\xfe");
        assert_eq!(escape_opt(odd).as_bytes(), b"\xff,,\xfe");
    }
}
