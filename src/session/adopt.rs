//! Start-up: find the sessions a previous darts left, keep those whose VM still answers,
//! undo the rest. Only names darts makes, in directories darts marked, are touched.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::create::{remove_session_dir, MARKER};
use super::manager::{lock, Live, Manager};
use super::record::{is_session_name, Phase, SessionRecord};
use crate::qmp::Qmp;

const QMP_PROBE: Duration = Duration::from_secs(3);

impl Manager {
    pub(super) async fn adopt(self: &Arc<Self>) {
        let store = self.store.clone();
        let (records, errors) = match super::off_workers("reading the session state", move || {
            store.remove_temporaries();
            store.load_all()
        })
        .await
        {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the session state");
                return;
            }
        };
        for e in errors {
            tracing::warn!(error = %e, "unreadable session state left in place");
        }
        let mut known = std::collections::HashSet::new();
        for record in records {
            known.insert(record.name.clone());
            match self.readopt(&record).await {
                Ok(()) => {
                    tracing::info!(session = %record.name, user = %record.user, "session re-adopted")
                }
                Err(why) => {
                    tracing::info!(session = %record.name, why, "cleaning up session");
                    self.undo(&record).await;
                }
            }
        }
        self.remove_orphan_dirs(&known).await;
    }

    async fn readopt(self: &Arc<Self>, record: &SessionRecord) -> Result<(), &'static str> {
        if record.phase != Phase::Running {
            return Err("its creation was cut short");
        }
        let pid = record.pid.ok_or("no QEMU pid")?;
        if !super::process::is_session_process(pid, &record.name) {
            return Err("its VM is no longer running");
        }
        let qmp = Qmp::connect(&record.qmp_socket, QMP_PROBE)
            .await
            .map_err(|_| "its VM does not answer on QMP")?;
        self.register_routes(record)
            .await
            .map_err(|_| "its VNC credentials cannot be loaded")?;
        let live = Live::new(record.clone());
        let (tx, rx) = mpsc::channel(4);
        *lock(&live.control) = Some(tx);
        lock(&self.sessions).insert(record.name.clone(), live.clone());
        let mgr = self.clone();
        self.tasks
            .spawn(async move { super::monitor::run(mgr, live, qmp, rx).await });
        Ok(())
    }

    /// Session directories with darts' marker and no record: a crash between making the
    /// directory and writing the record cannot happen (the record comes first), but a
    /// record removed by hand can leave one. Their QEMU, if any, is stopped.
    async fn remove_orphan_dirs(&self, known: &std::collections::HashSet<String>) {
        let dir = self.config().dir_snapshots.clone();
        let known = known.clone();
        let orphans = super::off_workers("looking for orphan session directories", move || {
            orphan_dirs(&dir, &known)
        });
        let orphans = match orphans.await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look for orphan session directories");
                return;
            }
        };
        for (name, path, pid) in orphans {
            if let Some(pid) = pid {
                super::process::kill(pid, &name);
                super::process::wait_gone(pid, &name, Duration::from_secs(5)).await;
            }
            super::process::stop_unrecorded_qemus(&path, &name).await;
            tracing::info!(session = %name, "removing orphan session directory");
            let removed = super::off_workers("removing an orphan session directory", move || {
                remove_session_dir(&path, &name)
            });
            if let Err(e) = removed.await {
                tracing::warn!(error = %e, "cannot remove an orphan session directory");
            }
        }
    }
}

/// Session directories under `dir` with darts' marker and a name not in `known`: each
/// name, path and the pid in its pidfile, if any. Blocking.
fn orphan_dirs(
    dir: &Path,
    known: &std::collections::HashSet<String>,
) -> Vec<(String, PathBuf, Option<u32>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut orphans = Vec::new();
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !is_session_name(&name) || known.contains(&name) || !entry.path().join(MARKER).exists() {
            continue;
        }
        let pid = std::fs::read_to_string(entry.path().join("qemu.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        orphans.push((name, entry.path(), pid));
    }
    orphans
}
