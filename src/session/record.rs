//! What darts keeps about one session on disk, so that a restart finds it again.
//!
//! Tokens are kept only as SHA-256 digests (what the gateway's map is keyed by), so a
//! stolen state file does not open any desktop; the VNC password is kept because QEMU
//! holds it too and darts must answer its challenge after a restart (the file is 0600).

use std::path::PathBuf;

use darts_proxy::Target;
use serde::{Deserialize, Serialize};

use crate::vm::VncEndpoint;

/// Version of the record format; a record with another version is left alone.
pub const FORMAT: u32 = 1;

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Files are being made and QEMU started; a record found in this phase at start-up
    /// belongs to a creation cut short, and is undone.
    Creating,
    /// QEMU answered on QMP and VNC; the session's links work.
    Running,
}

/// One access token, by digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub sha256: String,
    pub view_only: bool,
}

/// The session's state file (`dir_cfg/<name>.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub darts_session: u32,
    pub name: String,
    pub phase: Phase,
    pub user: String,
    pub machine: String,
    pub machine_path: PathBuf,
    /// QEMU's name of the machine image's format, from the catalogue (never probed).
    #[serde(default)]
    pub machine_format: String,
    pub cpu: u32,
    pub memory_mb: u64,
    /// Size of the blank disk of an ISO session, GB.
    pub disk_gb: Option<u32>,
    pub gpu: Option<String>,
    pub oneshot: bool,
    /// View-only viewers also receive the guest's clipboard (the owner allowed it).
    #[serde(default)]
    pub view_clipboard: bool,
    /// Runs on the master image itself (`snapshot_use_master`): never delete that disk.
    pub use_master: bool,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds; the session ends then.
    pub expires: u64,
    pub pid: Option<u32>,
    /// The session's directory in `dir_snapshots`.
    pub dir: PathBuf,
    pub disk: PathBuf,
    pub qmp_socket: PathBuf,
    /// Where QEMU's VNC server listens: key `vnc_socket` (a unix socket; records written
    /// before TCP listening have only this) or `vnc_tcp` (`qemu_vnc_listen`).
    #[serde(flatten)]
    pub vnc: VncEndpoint,
    /// `password` or `x509` (VNC security between darts and QEMU).
    pub vnc_security: String,
    pub vnc_password: String,
    pub tokens: Vec<TokenRecord>,
    /// Address of the client that asked for the session, for the administrators' view.
    pub remote_host: Option<String>,
}

impl SessionRecord {
    /// The file name of a session's record.
    pub fn file_name(name: &str) -> String {
        format!("{name}.json")
    }

    pub fn state_path(&self, dir_cfg: &std::path::Path) -> PathBuf {
        dir_cfg.join(Self::file_name(&self.name))
    }

    /// Where a gateway sends the session's bytes.
    pub fn vnc_target(&self) -> Target {
        match &self.vnc {
            VncEndpoint::Unix(path) => Target::Unix(path.clone()),
            VncEndpoint::Tcp(addr) => Target::Tcp {
                host: addr.ip().to_string(),
                port: addr.port(),
            },
        }
    }
}

/// Session names darts makes: `darts-` and 12 lowercase letters or digits. Only files
/// and directories with such names are ever touched by clean-up.
pub fn is_session_name(s: &str) -> bool {
    s.strip_prefix("darts-").is_some_and(|rest| {
        rest.len() == 12
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as darts wrote it before VNC could listen on TCP.
    const UNIX_RECORD: &str = r#"{"darts_session":1,"name":"darts-abcdefgh1234","phase":"running",
        "user":"alice","machine":"m.qcow2","machine_path":"/m/m.qcow2","cpu":1,"memory_mb":512,
        "disk_gb":null,"gpu":null,"oneshot":false,"use_master":false,"created":10,"expires":20,
        "pid":42,"dir":"/s/darts-abcdefgh1234","disk":"/s/darts-abcdefgh1234/disk.qcow2",
        "qmp_socket":"/s/darts-abcdefgh1234/qmp.sock","vnc_socket":"/s/darts-abcdefgh1234/vnc.sock",
        "vnc_security":"password","vnc_password":"pw","tokens":[],"remote_host":null}"#;

    #[test]
    fn records_with_only_a_vnc_socket_still_read() {
        let r: SessionRecord = serde_json::from_str(UNIX_RECORD).unwrap();
        assert_eq!(
            r.vnc,
            VncEndpoint::Unix("/s/darts-abcdefgh1234/vnc.sock".into())
        );
        assert_eq!(r.pid, Some(42));
        assert_eq!(
            r.vnc_target(),
            Target::Unix("/s/darts-abcdefgh1234/vnc.sock".into())
        );
        // Written back, the same key.
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["vnc_socket"], "/s/darts-abcdefgh1234/vnc.sock");
        assert!(v.get("vnc_tcp").is_none());
    }

    #[test]
    fn tcp_endpoints_round_trip() {
        let mut r: SessionRecord = serde_json::from_str(UNIX_RECORD).unwrap();
        for (addr, host) in [("127.0.0.1:5903", "127.0.0.1"), ("[::1]:5910", "::1")] {
            r.vnc = VncEndpoint::Tcp(addr.parse().unwrap());
            let v = serde_json::to_value(&r).unwrap();
            assert_eq!(v["vnc_tcp"], addr);
            assert!(v.get("vnc_socket").is_none(), "{v}");
            let back: SessionRecord = serde_json::from_value(v).unwrap();
            assert_eq!(back, r);
            let port: u16 = addr.rsplit_once(':').unwrap().1.parse().unwrap();
            assert_eq!(
                back.vnc_target(),
                Target::Tcp {
                    host: host.into(),
                    port
                }
            );
        }
        // A record with neither key is unreadable, not silently without a display.
        let mut v: serde_json::Value = serde_json::from_str(UNIX_RECORD).unwrap();
        v.as_object_mut().unwrap().remove("vnc_socket");
        assert!(serde_json::from_value::<SessionRecord>(v).is_err());
    }

    #[test]
    fn session_names() {
        assert!(is_session_name("darts-abcdefgh1234"));
        assert!(!is_session_name("darts-abcdefgh123"));
        assert!(!is_session_name("darts-ABCDEFGH1234"));
        assert!(!is_session_name("qemu-web-desktop_abcdefgh"));
        assert!(!is_session_name("darts-../../etc/x"));
    }
}
