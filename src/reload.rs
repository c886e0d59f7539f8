//! Live reload of `darts serve`'s configuration, as the original re-read `config.pl` on
//! every request: a change to the files (or SIGHUP) is loaded and checked; a broken
//! configuration is refused with one log line naming file, line and key, and the running
//! one stays; a good one is applied without a restart and without touching sessions.
//!
//! What applies live: limits, lifetimes, layout, catalogue, boot scripts, authentication
//! (the chain is rebuilt; logins stay) and the TLS certificate's content. Keys read once
//! at start (`keys::Apply::Restart`: the port, the prefix, state directories, the TLS file
//! names) keep their running value and are logged as needing a restart.
//!
//! Why polling rather than inotify (`notify`): a handful of small files read once a second
//! costs nothing, sees every way operators replace files (editors' rename, `cp`, symlink
//! swaps of packaged or managed configuration, NFS), and needs no watcher thread; the
//! gateway watches the certificate files the same way. A change is applied once the
//! files read the same on two consecutive looks, so a half-written file is not loaded.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use darts_proxy::GatewayHandle;
use serde::Deserialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::api::DartsApp;
use crate::config::check::check;
use crate::config::keys::{self, Apply};
use crate::config::{Config, ConfigSource};
use crate::session::Manager;

/// How often the configuration files are looked at.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The parts of the running service a reload changes.
#[derive(Debug, Clone)]
pub struct Targets {
    pub manager: Arc<Manager>,
    pub app: DartsApp,
    pub gateway: GatewayHandle,
    /// The listening address (open access is refused off loopback, as at start).
    pub listen: SocketAddr,
    /// TLS is on: the certificate is re-read on every reload.
    pub tls: bool,
}

/// What one reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    Applied {
        /// Keys whose new value is in use.
        changed: Vec<&'static str>,
        /// Keys whose new value waits for a restart.
        restart: Vec<&'static str>,
    },
    /// The new configuration has errors; the message lists them.
    Refused(String),
}

/// The keys that differ between the running and the new configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub live: Vec<&'static str>,
    pub restart: Vec<&'static str>,
}

/// Compares `running` with `new`; returns the plan and the configuration to apply: `new`
/// with every restart-only key kept at its running value.
pub fn plan(running: &Config, new: &Config) -> (Plan, Config) {
    let old = running.to_table();
    let mut next = new.to_table();
    let mut plan = Plan::default();
    for key in keys::KEYS {
        if old.get(key.name) == next.get(key.name) {
            continue;
        }
        match key.apply {
            Apply::Live => plan.live.push(key.name),
            Apply::Restart => {
                plan.restart.push(key.name);
                if let Some(v) = old.get(key.name) {
                    next.insert(key.name.to_owned(), v.clone());
                }
            }
        }
    }
    // Every value came from a valid `Config`, so this cannot fail; fall back to `new`.
    let effective = Config::deserialize(toml::Value::Table(next)).unwrap_or_else(|_| new.clone());
    (plan, effective)
}

/// The configuration files' names and contents at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    files: Vec<(PathBuf, Option<Vec<u8>>)>,
    listing_error: Option<String>,
}

impl Snapshot {
    pub fn take(source: &ConfigSource) -> Self {
        match source.files() {
            Ok(files) => Self {
                files: files
                    .into_iter()
                    .map(|f| {
                        let content = std::fs::read(&f).ok();
                        (f, content)
                    })
                    .collect(),
                listing_error: None,
            },
            Err(e) => Self {
                files: Vec::new(),
                listing_error: Some(e.to_string()),
            },
        }
    }
}

/// Watches the configuration and applies changes.
#[derive(Debug)]
pub struct Reloader {
    source: ConfigSource,
    running: Arc<Config>,
    targets: Targets,
    /// The files as last loaded (applied or refused).
    loaded: Snapshot,
    /// The files at the previous look.
    seen: Snapshot,
}

impl Reloader {
    /// `baseline`: the files as they were when `running` was read from them.
    pub fn new(
        source: ConfigSource,
        baseline: Snapshot,
        running: Arc<Config>,
        targets: Targets,
    ) -> Self {
        Self {
            source,
            running,
            targets,
            seen: baseline.clone(),
            loaded: baseline,
        }
    }

    /// Polls the files and answers `hup` (SIGHUP) until `stop`. Reading and checking the
    /// files (and the certificate) is blocking work: each look runs on the blocking pool,
    /// never on an async worker.
    pub async fn run(self, hup: Arc<Notify>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reloader = self;
        loop {
            let signalled = tokio::select! {
                _ = stop.cancelled() => break,
                _ = hup.notified() => true,
                _ = tick.tick() => false,
            };
            let look = tokio::task::spawn_blocking(move || {
                if signalled {
                    reloader.reload("SIGHUP");
                    // SIGHUP always re-reads the certificate, changed configuration or not.
                    if reloader.targets.tls {
                        reloader.targets.gateway.reload_tls();
                    }
                } else {
                    reloader.poll();
                }
                reloader
            });
            reloader = match look.await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "the configuration watcher failed: no more reloads until a restart");
                    return;
                }
            };
        }
    }

    /// Reloads when the files changed since the last load and read the same as at the
    /// previous look (so a file being written is not loaded half-way).
    fn poll(&mut self) {
        let now = Snapshot::take(&self.source);
        if now != self.loaded && now == self.seen {
            self.reload("file change");
        }
        self.seen = now;
    }

    /// Loads, checks and applies the configuration now.
    pub fn reload(&mut self, trigger: &str) -> Outcome {
        self.loaded = Snapshot::take(&self.source);
        self.seen = self.loaded.clone();
        let report = check(&self.source);
        let Some(loaded) = report.usable() else {
            let problems = report.errors_line();
            tracing::error!(
                trigger,
                problems = %problems,
                "configuration refused; the running configuration stays"
            );
            crate::audit::config_reload(trigger, Err(&problems));
            return Outcome::Refused(problems);
        };
        for w in report.warnings() {
            tracing::warn!(trigger, problem = %w, "configuration");
        }
        let (plan, effective) = plan(&self.running, &loaded.config);
        if plan.live.is_empty() && plan.restart.is_empty() {
            tracing::info!(trigger, "configuration unchanged");
            return Outcome::Unchanged;
        }
        if !plan.restart.is_empty() {
            tracing::warn!(
                trigger,
                keys = %plan.restart.join(", "),
                "configuration: needs a restart of darts serve for these keys; their running values stay until then"
            );
        }
        if !plan.live.is_empty() {
            if let Err(e) = self.apply(effective) {
                let problems = format!("{e:#}");
                tracing::error!(
                    trigger,
                    problems = %problems,
                    "configuration refused; the running configuration stays"
                );
                crate::audit::config_reload(trigger, Err(&problems));
                return Outcome::Refused(problems);
            }
            tracing::info!(trigger, changed = %plan.live.join(", "), "configuration reloaded");
        }
        let mut detail = format!("changed: {}", plan.live.join(", "));
        if !plan.restart.is_empty() {
            detail.push_str(&format!("; needs a restart: {}", plan.restart.join(", ")));
        }
        crate::audit::config_reload(trigger, Ok(&detail));
        Outcome::Applied {
            changed: plan.live,
            restart: plan.restart,
        }
    }

    /// Builds what can fail first (authentication), then swaps everything in.
    fn apply(&mut self, config: Config) -> anyhow::Result<()> {
        let config = Arc::new(config);
        let auth = crate::serve::web_auth(&config, self.targets.listen)?;
        self.targets.manager.set_config(config.clone());
        self.targets
            .app
            .set_auth(auth.login, auth.mailer, auth.open);
        if self.targets.tls {
            self.targets.gateway.reload_tls();
        }
        self.running = config;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_keys_keep_their_running_value() {
        let running = Config::default();
        let new = Config {
            service_max_session_nb: 2,
            layout_cpu: vec![1],
            service_port: 9999,
            dir_cfg: "/elsewhere".into(),
            ..Config::default()
        };
        let (plan, effective) = plan(&running, &new);
        assert_eq!(plan.live, vec!["service_max_session_nb", "layout_cpu"]);
        assert_eq!(plan.restart, vec!["dir_cfg", "service_port"]);
        assert_eq!(effective.service_max_session_nb, 2);
        assert_eq!(effective.layout_cpu, vec![1]);
        assert_eq!(effective.service_port, running.service_port);
        assert_eq!(effective.dir_cfg, running.dir_cfg);
    }

    #[test]
    fn nothing_changed_nothing_planned() {
        let (plan, _) = plan(&Config::default(), &Config::default());
        assert_eq!(plan, Plan::default());
    }

    #[test]
    fn snapshots_see_content_changes_and_new_dropins() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("config.toml");
        std::fs::write(&main, "machine = \"a\"\n").unwrap();
        let source = ConfigSource::new(Some(&main), &[]);
        let a = Snapshot::take(&source);
        assert_eq!(a, Snapshot::take(&source));
        std::fs::write(&main, "machine = \"b\"\n").unwrap();
        let b = Snapshot::take(&source);
        assert_ne!(a, b);
        std::fs::create_dir(dir.path().join("config.d")).unwrap();
        std::fs::write(dir.path().join("config.d/10-x.toml"), "").unwrap();
        assert_ne!(b, Snapshot::take(&source));
    }
}
