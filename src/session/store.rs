//! Session records on disk: one JSON file per session in `dir_cfg`, written atomically
//! (temporary file, fsync, rename, fsync of the directory) with mode 0600, so that a
//! crash leaves either the old record or the new one, never half of one.
//!
//! Writes and removals run on the store's own thread (`darts-state`), one at a time and
//! in the order they were asked: the async workers never wait for the disk, and a record
//! never goes back to an older version because two writes finished out of order. A disk
//! that hangs holds that thread and the creations waiting on it, nothing else.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use tokio::sync::oneshot;

use super::record::{is_session_name, SessionRecord, FORMAT};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("session state {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("session state {path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error("cannot start the session state writer: {0}")]
    Thread(#[source] std::io::Error),
    #[error("the session state writer stopped")]
    WriterGone,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What the writer thread does.
enum Op {
    Save(Box<SessionRecord>),
    Remove(String),
}

struct Job {
    op: Op,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    writer: mpsc::Sender<Job>,
}

impl Store {
    /// Opens (and creates, mode 0700) the state directory, and starts its writer thread
    /// (which ends when the last clone of the store is dropped). Blocking.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
        let (writer, jobs) = mpsc::channel::<Job>();
        let owned = dir.to_owned();
        std::thread::Builder::new()
            .name("darts-state".into())
            .spawn(move || {
                for job in jobs {
                    let done = match job.op {
                        Op::Save(record) => save_now(&owned, &record),
                        Op::Remove(name) => remove_now(&owned, &name),
                    };
                    // The caller may have gone (its request cancelled): the write stands.
                    let _ = job.done.send(done);
                }
            })
            .map_err(StoreError::Thread)?;
        Ok(Self {
            dir: dir.to_owned(),
            writer,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes a record atomically, on the writer thread.
    pub async fn save(&self, record: &SessionRecord) -> Result<(), StoreError> {
        self.run(Op::Save(Box::new(record.clone()))).await
    }

    /// Removes a record (absent is fine), on the writer thread.
    pub async fn remove(&self, name: &str) -> Result<(), StoreError> {
        self.run(Op::Remove(name.to_owned())).await
    }

    async fn run(&self, op: Op) -> Result<(), StoreError> {
        let (done, result) = oneshot::channel();
        self.writer
            .send(Job { op, done })
            .map_err(|_| StoreError::WriterGone)?;
        result.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Every record darts wrote. Files with other names are not ours and are skipped;
    /// our files that cannot be read are returned as errors, and left in place. Blocking.
    pub fn load_all(&self) -> (Vec<SessionRecord>, Vec<StoreError>) {
        let mut records = Vec::new();
        let mut errors = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) => return (records, vec![io(&self.dir)(e)]),
        };
        for entry in entries.flatten() {
            let file = entry.file_name();
            let Some(name) = file.to_str().and_then(|f| f.strip_suffix(".json")) else {
                continue;
            };
            if !is_session_name(name) {
                continue;
            }
            let path = entry.path();
            match fs::read(&path)
                .map_err(io(&path))
                .and_then(|bytes| parse(&path, &bytes))
            {
                Ok(r) if r.name == name => records.push(r),
                Ok(_) => errors.push(StoreError::Format {
                    path,
                    message: "name inside differs from the file name".into(),
                }),
                Err(e) => errors.push(e),
            }
        }
        records.sort_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)));
        (records, errors)
    }

    /// Removes temporary files left by a save cut short. Blocking.
    pub fn remove_temporaries(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let f = entry.file_name();
            let Some(f) = f.to_str() else { continue };
            if let Some(name) = f.strip_prefix('.').and_then(|f| f.strip_suffix(".tmp")) {
                if is_session_name(name) {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
    }
}

/// Writes `record` into `dir` atomically. Blocking.
fn save_now(dir: &Path, record: &SessionRecord) -> Result<(), StoreError> {
    let path = record.state_path(dir);
    let tmp = dir.join(format!(".{}.tmp", record.name));
    let json = serde_json::to_vec_pretty(record).map_err(|e| StoreError::Format {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let write = || -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&json)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io(&path)(e)
    })
}

/// Removes the record of `name` from `dir` (absent is fine). Blocking.
fn remove_now(dir: &Path, name: &str) -> Result<(), StoreError> {
    let path = dir.join(SessionRecord::file_name(name));
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(&path)(e)),
    }
}

fn parse(path: &Path, bytes: &[u8]) -> Result<SessionRecord, StoreError> {
    let r: SessionRecord = serde_json::from_slice(bytes).map_err(|e| StoreError::Format {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    if r.darts_session != FORMAT {
        return Err(StoreError::Format {
            path: path.to_owned(),
            message: format!(
                "record format {} (this darts reads {FORMAT})",
                r.darts_session
            ),
        });
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::record::Phase;
    use std::os::unix::fs::PermissionsExt;

    pub(crate) fn sample(name: &str) -> SessionRecord {
        SessionRecord {
            darts_session: FORMAT,
            name: name.into(),
            phase: Phase::Running,
            user: "alice".into(),
            machine: "demo.qcow2".into(),
            machine_path: "/m/demo.qcow2".into(),
            machine_format: "qcow2".into(),
            view_clipboard: false,
            cpu: 1,
            memory_mb: 256,
            disk_gb: None,
            gpu: None,
            oneshot: false,
            use_master: false,
            created: 1,
            expires: 2,
            pid: Some(1),
            dir: "/s".into(),
            disk: "/s/disk.qcow2".into(),
            qmp_socket: "/s/qmp.sock".into(),
            vnc: crate::vm::VncEndpoint::Unix("/s/vnc.sock".into()),
            vnc_security: "password".into(),
            vnc_password: "secret".into(),
            tokens: vec![],
            remote_host: None,
        }
    }

    #[tokio::test]
    async fn save_load_remove_with_private_mode() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(&d.path().join("state")).unwrap();
        let r = sample("darts-aaaaaaaaaaaa");
        store.save(&r).await.unwrap();
        let path = store.dir().join("darts-aaaaaaaaaaaa.json");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(store.dir()).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let (all, errs) = store.load_all();
        assert!(errs.is_empty());
        assert_eq!(all, vec![r]);
        store.remove("darts-aaaaaaaaaaaa").await.unwrap();
        store.remove("darts-aaaaaaaaaaaa").await.unwrap();
        assert!(store.load_all().0.is_empty());
    }

    #[test]
    fn foreign_files_are_skipped_and_broken_ones_reported() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        fs::write(d.path().join("other.json"), "{}").unwrap();
        fs::write(d.path().join("darts-bbbbbbbbbbbb.json"), "{not json").unwrap();
        fs::write(d.path().join(".darts-cccccccccccc.tmp"), "half").unwrap();
        let (all, errs) = store.load_all();
        assert!(all.is_empty());
        assert_eq!(errs.len(), 1);
        assert!(errs[0].to_string().contains("darts-bbbbbbbbbbbb"));
        store.remove_temporaries();
        assert!(!d.path().join(".darts-cccccccccccc.tmp").exists());
        assert!(d.path().join("other.json").exists());
        assert!(d.path().join("darts-bbbbbbbbbbbb.json").exists());
    }
}
