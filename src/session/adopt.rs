//! Start-up: find the sessions a previous darts left, keep those whose VM still answers,
//! undo the rest. Only names darts makes, in directories darts marked, are touched.

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
        self.store.remove_temporaries();
        let (records, errors) = self.store.load_all();
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
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for entry in entries.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !is_session_name(&name)
                || known.contains(&name)
                || !entry.path().join(MARKER).exists()
            {
                continue;
            }
            if let Some(pid) = std::fs::read_to_string(entry.path().join("qemu.pid"))
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
            {
                super::process::kill(pid, &name);
                super::process::wait_gone(pid, &name, Duration::from_secs(5)).await;
            }
            tracing::info!(session = %name, "removing orphan session directory");
            remove_session_dir(&entry.path(), &name);
        }
    }
}
