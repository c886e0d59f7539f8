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

/// Checks a master image before a session uses it, read as `format` (the catalogue's,
/// from the machine's name: the file's contents never choose how it is opened, so a raw
/// image a guest wrote a qcow2 header into stays raw). A backing file must be declared
/// with its format and resolve inside `dir_machines`; otherwise a crafted header could
/// make every later guest read a file of the host (darts' secrets, session records).
pub async fn check_master(path: &Path, format: &str, dir_machines: &Path) -> Result<(), VmError> {
    let args: Vec<OsString> = vec![
        "info".into(),
        "--output=json".into(),
        "--backing-chain".into(),
        "-U".into(),
        "-f".into(),
        format.into(),
        path.into(),
    ];
    let out = run_captured(Path::new(QEMU_IMG), &args, QEMU_IMG_TIMEOUT).await?;
    if !out.status.success() {
        return Err(VmError::QemuImg {
            op: "info",
            path: path.to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    let chain: Vec<ChainLink> =
        serde_json::from_slice(&out.stdout).map_err(|e| VmError::QemuImg {
            op: "info",
            path: path.to_owned(),
            stderr: format!("unexpected output: {e}"),
        })?;
    // Resolving the backing chain reads the machines' directory: off the async workers.
    let (master, root) = (path.to_owned(), dir_machines.to_owned());
    tokio::task::spawn_blocking(move || check_chain(&master, &chain, &root))
        .await
        .map_err(|e| VmError::Io {
            path: path.to_owned(),
            source: std::io::Error::other(e),
        })?
}

/// One image of a backing chain, as `qemu-img info --backing-chain` lists it.
#[derive(Debug, Clone, Deserialize)]
struct ChainLink {
    filename: String,
    #[serde(rename = "full-backing-filename", default)]
    full_backing_filename: Option<String>,
    #[serde(rename = "backing-filename", default)]
    backing_filename: Option<String>,
    #[serde(rename = "backing-filename-format", default)]
    backing_format: Option<String>,
}

fn check_chain(master: &Path, chain: &[ChainLink], dir_machines: &Path) -> Result<(), VmError> {
    let refuse = |reason: String| VmError::UnsafeImage {
        path: master.to_owned(),
        reason,
    };
    let Some(first) = chain.first() else {
        return Err(refuse("qemu-img listed no image".into()));
    };
    if first.backing_filename.is_none() {
        return Ok(());
    }
    let root = dir_machines.canonicalize().map_err(|source| VmError::Io {
        path: dir_machines.to_owned(),
        source,
    })?;
    for link in chain {
        let Some(backing) = &link.backing_filename else {
            break;
        };
        if link.backing_format.is_none() {
            return Err(refuse(format!(
                "{} has a backing file {backing:?} without a declared format",
                link.filename
            )));
        }
        let full = link.full_backing_filename.as_deref().unwrap_or(backing);
        let resolved = Path::new(full)
            .canonicalize()
            .map_err(|source| VmError::Io {
                path: full.into(),
                source,
            })?;
        if !resolved.starts_with(&root) {
            return Err(refuse(format!(
                "its backing file {} is outside dir_machines ({})",
                resolved.display(),
                root.display()
            )));
        }
    }
    Ok(())
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
    let master = tokio::fs::canonicalize(master)
        .await
        .map_err(|source| VmError::Io {
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

/// Runs `qemu-img create`; on failure removes what it left at `output`.
async fn create(output: &Path, args: Vec<OsString>) -> Result<(), VmError> {
    // qemu-img would truncate an existing file: never let it clobber an image.
    if tokio::fs::symlink_metadata(output).await.is_ok() {
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
    remove_partial(output).await;
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

async fn remove_partial(path: &Path) {
    match tokio::fs::remove_file(path).await {
        Ok(()) => tracing::debug!(path = %path.display(), "removed partial image"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot remove partial image"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(file: &str, backing: Option<&str>, format: Option<&str>) -> ChainLink {
        ChainLink {
            filename: file.into(),
            full_backing_filename: backing.map(Into::into),
            backing_filename: backing.map(Into::into),
            backing_format: format.map(Into::into),
        }
    }

    #[test]
    fn backing_chains_stay_in_dir_machines_with_declared_formats() {
        let dir = tempfile::tempdir().unwrap();
        let machines = dir.path().join("machines");
        std::fs::create_dir(&machines).unwrap();
        let base = machines.join("base.qcow2");
        let secret = dir.path().join("secret");
        std::fs::write(&base, b"").unwrap();
        std::fs::write(&secret, b"").unwrap();
        let master = machines.join("m.qcow2");
        let (b, s) = (base.to_str().unwrap(), secret.to_str().unwrap());
        let top = master.to_str().unwrap();
        // No backing file, or one inside dir_machines with its format: accepted.
        assert!(check_chain(&master, &[link(top, None, None)], &machines).is_ok());
        let inside = [link(top, Some(b), Some("qcow2")), link(b, None, None)];
        assert!(check_chain(&master, &inside, &machines).is_ok());
        // Outside (also through `..`), or without a declared format: refused.
        let escaped = machines.join("../secret");
        for (chain, why) in [
            (
                vec![link(top, Some(s), Some("raw"))],
                "outside dir_machines",
            ),
            (
                vec![link(top, Some(escaped.to_str().unwrap()), Some("raw"))],
                "outside dir_machines",
            ),
            (
                vec![
                    link(top, Some(b), Some("qcow2")),
                    link(b, Some(s), Some("raw")),
                ],
                "outside dir_machines",
            ),
            (vec![link(top, Some(b), None)], "without a declared format"),
        ] {
            let e = check_chain(&master, &chain, &machines)
                .unwrap_err()
                .to_string();
            assert!(e.contains(why) && e.contains("refusing the image"), "{e}");
        }
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
    fn chain_json_fields() {
        let json = r#"[{"virtual-size": 33554432, "filename": "/s/ov.qcow2", "format": "qcow2",
            "backing-filename": "disk.img", "full-backing-filename": "/m/disk.img",
            "backing-filename-format": "raw"}, {"filename": "/m/disk.img", "format": "raw"}]"#;
        let c: Vec<ChainLink> = serde_json::from_str(json).unwrap();
        assert_eq!(c[0].filename, "/s/ov.qcow2");
        assert_eq!(c[0].full_backing_filename.as_deref(), Some("/m/disk.img"));
        assert_eq!(c[0].backing_format.as_deref(), Some("raw"));
        assert_eq!(c[1].backing_filename, None);
    }
}
