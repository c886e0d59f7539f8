//! A session's disk, made with `qemu-img`: a qcow2 overlay over the master image (the
//! master is never written), or a blank qcow2 for machines that boot from an ISO.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::exec::run_captured;
use super::VmError;

const QEMU_IMG: &str = "qemu-img";

/// `qemu-img` only writes metadata here, but the disk may be slow or remote.
const QEMU_IMG_TIMEOUT: Duration = Duration::from_secs(120);

/// What `qemu-img info` says about an image.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ImageInfo {
    pub format: String,
    #[serde(rename = "virtual-size")]
    pub virtual_size: u64,
    #[serde(rename = "backing-filename", default)]
    pub backing_filename: Option<String>,
    #[serde(rename = "backing-filename-format", default)]
    pub backing_format: Option<String>,
}

/// `qemu-img info` of `path`. `-U` lets it read an image a running VM holds.
pub async fn image_info(path: &Path) -> Result<ImageInfo, VmError> {
    let mut args: Vec<OsString> = vec!["info".into(), "--output=json".into(), "-U".into()];
    args.push(path.into());
    let out = run_captured(Path::new(QEMU_IMG), &args, QEMU_IMG_TIMEOUT).await?;
    if !out.status.success() {
        return Err(VmError::QemuImg {
            op: "info",
            path: path.to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    serde_json::from_slice(&out.stdout).map_err(|e| VmError::QemuImg {
        op: "info",
        path: path.to_owned(),
        stderr: format!("unexpected output: {e}"),
    })
}

/// The format of an image (`qcow2`, `raw`, `vmdk`, …), as `qemu-img` detects it.
pub async fn image_format(path: &Path) -> Result<String, VmError> {
    image_info(path).await.map(|i| i.format)
}

/// Creates `overlay`, a qcow2 whose backing file is `master` in `master_format`.
/// `overlay` must not exist. The backing path is absolute, so the overlay opens from
/// anywhere, and has symlinks resolved: re-pointing a catalogue symlink to a new image
/// version must not change the base under existing overlays.
pub async fn create_overlay(
    master: &Path,
    master_format: &str,
    overlay: &Path,
) -> Result<(), VmError> {
    let master = master.canonicalize().map_err(|source| VmError::Io {
        path: master.to_owned(),
        source,
    })?;
    let args: Vec<OsString> = vec![
        "create".into(),
        "-q".into(),
        "-f".into(),
        "qcow2".into(),
        "-F".into(),
        master_format.into(),
        "-b".into(),
        master.into(),
        overlay.into(),
    ];
    create(overlay, args).await
}

/// Creates `path`, an empty qcow2 of `size_gb` GB (allocated as the guest writes).
/// `path` must not exist.
pub async fn create_blank(path: &Path, size_gb: u32) -> Result<(), VmError> {
    let args: Vec<OsString> = vec![
        "create".into(),
        "-q".into(),
        "-f".into(),
        "qcow2".into(),
        path.into(),
        format!("{size_gb}G").into(),
    ];
    create(path, args).await
}

/// Whether `path` names an ISO image (boots as a CD-ROM), by its extension in any case.
pub fn is_iso(path: &Path) -> bool {
    path.extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("iso"))
}

/// Runs `qemu-img create`; on failure removes what it left at `output`.
async fn create(output: &Path, args: Vec<OsString>) -> Result<(), VmError> {
    // qemu-img would truncate an existing file: never let it clobber an image.
    if std::fs::symlink_metadata(output).is_ok() {
        return Err(VmError::Exists {
            path: output.to_owned(),
        });
    }
    let result = run_captured(Path::new(QEMU_IMG), &args, QEMU_IMG_TIMEOUT).await;
    let error = match result {
        Ok(out) if out.status.success() => {
            tracing::debug!(path = %output.display(), "disk image created");
            return Ok(());
        }
        Ok(out) => creation_error(output, &String::from_utf8_lossy(&out.stderr)),
        Err(e) => e,
    };
    remove_partial(output);
    tracing::warn!(path = %output.display(), error = %error, "cannot create disk image");
    Err(error)
}

fn creation_error(output: &Path, stderr: &str) -> VmError {
    let stderr = stderr.trim().to_owned();
    if is_no_space(&stderr) {
        VmError::NoSpace {
            path: output.to_owned(),
            stderr,
        }
    } else {
        VmError::QemuImg {
            op: "create",
            path: output.to_owned(),
            stderr,
        }
    }
}

fn is_no_space(stderr: &str) -> bool {
    // strerror(ENOSPC) and strerror(EDQUOT), the latter being the same story for the user.
    stderr.contains("No space left on device") || stderr.contains("Disk quota exceeded")
}

fn remove_partial(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => tracing::debug!(path = %path.display(), "removed partial image"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot remove partial image"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_by_extension() {
        assert!(is_iso(Path::new("/m/debian.iso")));
        assert!(is_iso(Path::new("/m/DEBIAN.IsO")));
        assert!(!is_iso(Path::new("/m/debian.qcow2")));
        assert!(!is_iso(Path::new("/m/iso")));
        assert!(!is_iso(Path::new("/m/debian.iso.qcow2")));
    }

    #[test]
    fn errors_tell_a_full_disk_apart() {
        let p = Path::new("/s/ov.qcow2");
        let e = creation_error(
            p,
            "qemu-img: /s/ov.qcow2: Could not write qcow2 header: No space left on device\n",
        );
        assert!(matches!(e, VmError::NoSpace { .. }), "{e}");
        let e = creation_error(p, "qemu-img: /s/ov.qcow2: Could not open backing file\n");
        match e {
            VmError::QemuImg { op, stderr, .. } => {
                assert_eq!(op, "create");
                assert_eq!(stderr, "qemu-img: /s/ov.qcow2: Could not open backing file");
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn info_json_fields() {
        let json = r#"{"virtual-size": 33554432, "filename": "ov.qcow2", "format": "qcow2",
            "backing-filename": "/m/disk.img", "backing-filename-format": "raw"}"#;
        let i: ImageInfo = serde_json::from_str(json).unwrap();
        assert_eq!(i.format, "qcow2");
        assert_eq!(i.virtual_size, 33554432);
        assert_eq!(i.backing_filename.as_deref(), Some("/m/disk.img"));
        assert_eq!(i.backing_format.as_deref(), Some("raw"));
        let i: ImageInfo = serde_json::from_str(r#"{"virtual-size": 1, "format": "raw"}"#).unwrap();
        assert_eq!(i.backing_filename, None);
    }
}
