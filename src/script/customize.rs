//! The single virt-customize call that puts a plan's scripts into a session's overlay
//! before QEMU starts.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tracing::{debug, info};

use super::{Plan, ScriptError};

/// How much of virt-customize's standard error an error keeps (its end).
const STDERR_TAIL: usize = 4096;

/// Writes each script of `plan` to `workdir/configuration_script_<n>` (mode 0600) and
/// returns `virt-customize -a <overlay> --firstboot <file> --commands-from-file <file> …`
/// in the plan's order, or `None` when there is nothing to customise.
pub fn virt_customize_argv(
    plan: &Plan,
    overlay: &Path,
    workdir: &Path,
) -> Result<Option<Vec<OsString>>, ScriptError> {
    if plan.customize.is_empty() {
        return Ok(None);
    }
    let mut argv: Vec<OsString> = vec!["virt-customize".into(), "-a".into(), overlay.into()];
    for (n, item) in plan.customize.iter().enumerate() {
        let path = workdir.join(format!("configuration_script_{n}"));
        write_private(&path, item.content().as_bytes()).map_err(|source| ScriptError::Write {
            path: path.clone(),
            source,
        })?;
        argv.push(item.option().into());
        argv.push(path.into());
    }
    Ok(Some(argv))
}

/// Creates `path` afresh with mode 0600. A previous file (or symlink) of that name is
/// removed first, so the content never goes through a link or keeps older permissions.
fn write_private(path: &Path, content: &[u8]) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(content)
}

/// Runs a command line built by [`virt_customize_argv`] and waits at most `timeout`
/// (then kills it). Its standard output is discarded; the end of its standard error is
/// kept for the error.
pub async fn run_virt_customize(argv: &[OsString], timeout: Duration) -> Result<(), ScriptError> {
    let (program, args) = argv.split_first().ok_or(ScriptError::EmptyCommand)?;
    let name = program.to_string_lossy().into_owned();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| ScriptError::Spawn {
            program: name.clone(),
            source,
        })?;
    info!(program = %name, args = args.len(), "customising the overlay");
    let stderr = child.stderr.take();
    let finished = tokio::time::timeout(timeout, async {
        let (status, tail) = tokio::join!(child.wait(), read_tail(stderr));
        (status, tail)
    })
    .await;
    let Ok((status, tail)) = finished else {
        // kill_on_drop would do it too; killing here also reaps the process.
        let _ = child.kill().await;
        return Err(ScriptError::Timeout {
            program: name,
            timeout,
        });
    };
    let status = status.map_err(|source| ScriptError::Wait {
        program: name.clone(),
        source,
    })?;
    if status.success() {
        debug!(program = %name, "overlay customised");
        Ok(())
    } else {
        Err(ScriptError::Failed {
            program: name,
            status,
            stderr: String::from_utf8_lossy(&tail).trim().to_owned(),
        })
    }
}

/// Reads a stream to its end, keeping only its last [`STDERR_TAIL`] bytes.
async fn read_tail(stream: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut stream) = stream else {
        return kept;
    };
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => kept.extend_from_slice(&buf[..n]),
        }
        if kept.len() > 2 * STDERR_TAIL {
            kept.drain(..kept.len() - STDERR_TAIL);
        }
    }
    if kept.len() > STDERR_TAIL {
        kept.drain(..kept.len() - STDERR_TAIL);
    }
    kept
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::super::Customize;
    use super::*;

    fn sample() -> Plan {
        Plan {
            qemu_args: vec!["-usb".into()],
            customize: vec![
                Customize::FirstBoot("echo one\n".into()),
                Customize::CommandsFromFile("install vim".into()),
                Customize::FirstBoot("echo three".into()),
            ],
        }
    }

    #[test]
    fn nothing_to_customise_gives_none() {
        let dir = tempfile::tempdir().unwrap();
        let plan = Plan {
            qemu_args: vec!["-usb".into()],
            customize: vec![],
        };
        assert_eq!(
            virt_customize_argv(&plan, Path::new("/o.qcow2"), dir.path()).unwrap(),
            None
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn argv_and_private_files() {
        let dir = tempfile::tempdir().unwrap();
        let overlay = dir.path().join("overlay.qcow2");
        let argv = virt_customize_argv(&sample(), &overlay, dir.path())
            .unwrap()
            .unwrap();
        let f = |n: usize| dir.path().join(format!("configuration_script_{n}"));
        let expected: Vec<OsString> = vec![
            "virt-customize".into(),
            "-a".into(),
            overlay.into(),
            "--firstboot".into(),
            f(0).into(),
            "--commands-from-file".into(),
            f(1).into(),
            "--firstboot".into(),
            f(2).into(),
        ];
        assert_eq!(argv, expected);
        for (n, content) in ["echo one\n", "install vim", "echo three"]
            .iter()
            .enumerate()
        {
            assert_eq!(std::fs::read_to_string(f(n)).unwrap(), *content);
            let mode = std::fs::metadata(f(n)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "file {n}");
        }
    }

    #[test]
    fn old_files_and_symlinks_are_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("configuration_script_0")).unwrap();
        std::fs::write(dir.path().join("configuration_script_1"), "old").unwrap();
        std::fs::set_permissions(
            dir.path().join("configuration_script_1"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        virt_customize_argv(&sample(), Path::new("/o.qcow2"), dir.path()).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        let first = dir.path().join("configuration_script_0");
        assert!(!std::fs::symlink_metadata(&first)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(first).unwrap(), "echo one\n");
        let second = dir.path().join("configuration_script_1");
        assert_eq!(std::fs::read_to_string(&second).unwrap(), "install vim");
        assert_eq!(
            std::fs::metadata(second).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn unwritable_workdir_is_a_clear_error() {
        let err = virt_customize_argv(
            &sample(),
            Path::new("/o.qcow2"),
            Path::new("/nonexistent/dir"),
        )
        .unwrap_err();
        assert!(matches!(err, ScriptError::Write { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("/nonexistent/dir/configuration_script_0"),
            "{err}"
        );
    }

    fn argv(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[tokio::test]
    async fn missing_program_is_a_clear_error() {
        let err = run_virt_customize(
            &argv(&["darts-no-such-virt-customize", "-a", "x"]),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        let ScriptError::Spawn { program, source } = &err else {
            panic!("{err}")
        };
        assert_eq!(program, "darts-no-such-virt-customize");
        assert_eq!(source.kind(), io::ErrorKind::NotFound);
        assert!(err
            .to_string()
            .starts_with("cannot start darts-no-such-virt-customize"));
        assert!(matches!(
            run_virt_customize(&[], Duration::from_secs(1)).await,
            Err(ScriptError::EmptyCommand)
        ));
    }

    #[tokio::test]
    async fn success_and_failure_with_standard_error() {
        run_virt_customize(
            &argv(&["sh", "-c", "echo progress; echo note >&2"]),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
        let err = run_virt_customize(
            &argv(&[
                "sh",
                "-c",
                "echo 'virt-customize: error: no disk' >&2; exit 3",
            ]),
            Duration::from_secs(30),
        )
        .await
        .unwrap_err();
        let ScriptError::Failed { status, stderr, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(status.code(), Some(3));
        assert_eq!(stderr, "virt-customize: error: no disk");
    }

    #[tokio::test]
    async fn long_standard_error_keeps_its_end() {
        let err = run_virt_customize(
            &argv(&[
                "sh",
                "-c",
                "i=0; while [ $i -lt 2000 ]; do echo line-$i >&2; i=$((i+1)); done; exit 1",
            ]),
            Duration::from_secs(60),
        )
        .await
        .unwrap_err();
        let ScriptError::Failed { stderr, .. } = &err else {
            panic!("{err}")
        };
        assert!(stderr.len() <= STDERR_TAIL);
        assert!(stderr.ends_with("line-1999"), "{stderr}");
        assert!(!stderr.contains("line-0\n"));
    }

    #[tokio::test]
    async fn hanging_program_is_killed_at_the_deadline() {
        let err = run_virt_customize(&argv(&["sleep", "600"]), Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(err, ScriptError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("sleep did not finish"), "{err}");
    }
}
