//! `darts serve`, `darts start`, `darts stop`, `darts status`, `darts purge`: the
//! service and the local commands that steer it (the equivalents of running the
//! original's CGI as a script and of `qwdctl start|stop|status`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;
use serde_json::Value;

use crate::config::{parse_override, Config};
use crate::control::{self, Request};

/// `key=value` pairs from the command line.
pub type Overrides = Vec<(String, String)>;

/// Options every session command shares.
#[derive(Debug, Args, Clone)]
pub struct ConfigArgs {
    /// Configuration file (default /etc/darts/config.toml when it exists).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Options over the file, as `--key=value` or `key=value` (e.g. `--service_port=8080`).
    #[arg(value_name = "--KEY=VALUE", allow_hyphen_values = true)]
    pub overrides: Vec<String>,
}

impl ConfigArgs {
    /// The file, then the overrides.
    pub fn load(&self) -> anyhow::Result<Config> {
        let (file, overrides) = self.split()?;
        Ok(Config::from_layers(file.as_deref(), &overrides)?)
    }

    /// The configuration file and the `key=value` overrides. Once the first override is
    /// read, clap takes every later word as another one, so `-c FILE` given after the
    /// overrides is picked out here.
    pub fn split(&self) -> anyhow::Result<(Option<PathBuf>, Overrides)> {
        let mut file = self.file.clone();
        let mut overrides = Vec::new();
        let mut words = self.overrides.iter();
        while let Some(w) = words.next() {
            if w == "-c" || w == "--config" {
                let path = words.next().with_context(|| format!("{w} needs a file"))?;
                file = Some(PathBuf::from(path));
            } else if let Some(path) = w.strip_prefix("--config=") {
                file = Some(PathBuf::from(path));
            } else {
                overrides
                    .push(parse_override(w).with_context(|| format!("{w:?} is not --key=value"))?);
            }
        }
        Ok((file, overrides))
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:<service_port>).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Machine name from the catalogue.
    pub machine: String,
    /// User the session belongs to (default: $USER or "local").
    #[arg(long)]
    pub user: Option<String>,
    /// One connection only; the session ends when it closes.
    #[arg(long)]
    pub oneshot: bool,
    /// Print the service's whole answer as JSON (links, session, time per creation phase).
    #[arg(long)]
    pub json: bool,
    /// Options: --snapshot_alloc_cpu=N --snapshot_alloc_mem=GB --snapshot_lifetime=S
    /// --snapshot_use_master=1, or any configuration key (read from the same file).
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Session name (see `darts status`).
    #[arg(required_unless_present = "all")]
    pub session: Option<String>,
    /// Stop every session.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the sessions as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub config: ConfigArgs,
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Arc::new(args.config.load()?);
    let (file, overrides) = args.config.split()?;
    crate::serve::run(crate::serve::ServeOptions {
        config,
        listen: args.listen,
        source: Some(crate::config::ConfigSource { file, overrides }),
    })
    .await
}

pub async fn start(args: StartArgs) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let (_, overrides) = args.config.split()?;
    let given = |key: &str| overrides.iter().any(|(k, _)| k == key);
    let user = args
        .user
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "local".into());
    let req = Request::Create {
        machine: args.machine,
        user,
        cpu: given("snapshot_alloc_cpu").then_some(config.snapshot_alloc_cpu),
        memory_gb: given("snapshot_alloc_mem").then_some(config.snapshot_alloc_mem),
        lifetime: given("snapshot_lifetime").then_some(config.snapshot_lifetime),
        oneshot: args.oneshot || (given("oneshot") && config.oneshot),
        gpu: false,
        use_master: given("snapshot_use_master") && config.snapshot_use_master,
    };
    let answer = control::call(&control::socket_path(&config), &req).await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    let s = &answer["session"];
    outln!("session  {}", s["name"].as_str().unwrap_or("?"));
    outln!("url      {}", answer["url"].as_str().unwrap_or("?"));
    if let Some(v) = answer["view_url"].as_str() {
        outln!("view     {v}");
    }
    Ok(())
}

pub async fn stop(args: StopArgs) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let path = control::socket_path(&config);
    if args.all {
        let a = control::call(&path, &Request::Purge).await?;
        say_purged(&a);
        return Ok(());
    }
    let Some(name) = args.session else {
        bail!("give a session name or --all");
    };
    let a = control::call(&path, &Request::Stop { name: name.clone() }).await?;
    if a["state"] == "stopped" {
        outln!("stopped {name}");
    } else {
        outln!("stopping {name}: not gone yet; follow it with `darts status`");
    }
    Ok(())
}

/// "stopped" counts only sessions that are gone.
fn say_purged(a: &Value) {
    outln!("stopped {} session(s)", a["stopped"]);
    if a["stopping"].as_u64().unwrap_or(0) > 0 {
        outln!(
            "stopping {} session(s): not gone yet; follow them with `darts status`",
            a["stopping"]
        );
    }
}

pub async fn purge(args: ConfigArgs) -> anyhow::Result<()> {
    let config = args.load()?;
    let a = control::call(&control::socket_path(&config), &Request::Purge).await?;
    say_purged(&a);
    Ok(())
}

pub async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let catalogue = crate::catalogue::Catalogue::load(&config);
    let answer = control::call(&control::socket_path(&config), &Request::List).await;
    if args.json {
        let sessions = answer
            .as_ref()
            .map(|a| a["sessions"].clone())
            .unwrap_or(Value::Null);
        outln!("{}", serde_json::to_string_pretty(&sessions)?);
        return answer.map(|_| ()).map_err(Into::into);
    }
    outln!("machines ({}):", config.dir_machines.display());
    for m in catalogue.machines() {
        outln!(
            "  [{}] {:<32} {}",
            if m.available { "x" } else { " " },
            m.name,
            m.description
        );
    }
    match answer {
        Ok(a) => {
            let empty = Vec::new();
            let sessions = a["sessions"].as_array().unwrap_or(&empty);
            outln!("sessions ({}):", sessions.len());
            if !sessions.is_empty() {
                outln!(
                    "  {:<18} {:<12} {:<24} {:>3} {:>7} {:<12} {:>8} {:>10} {:>7}",
                    "SESSION",
                    "USER",
                    "VM",
                    "CPU",
                    "MEM/GB",
                    "GPU",
                    "AGE",
                    "LEFT",
                    "VIEWERS"
                );
            }
            let now = crate::session::manager::time_left(u64::MAX).unwrap_or(0);
            let now = u64::MAX - now;
            for s in sessions {
                let created = s["created"].as_u64().unwrap_or(0);
                let expires = s["expires"].as_u64().unwrap_or(0);
                outln!(
                    "  {:<18} {:<12} {:<24} {:>3} {:>7.1} {:<12} {:>8} {:>10} {:>7}",
                    s["name"].as_str().unwrap_or(""),
                    s["user"].as_str().unwrap_or(""),
                    s["machine"].as_str().unwrap_or(""),
                    s["cpu"].as_u64().unwrap_or(0),
                    s["memory_mb"].as_u64().unwrap_or(0) as f64 / 1024.0,
                    s["gpu"].as_str().unwrap_or("-"),
                    duration(now.saturating_sub(created)),
                    if expires == 0 {
                        "never".into()
                    } else {
                        duration(expires.saturating_sub(now))
                    },
                    s["viewers"].as_u64().unwrap_or(0),
                );
            }
            Ok(())
        }
        Err(e) => {
            outln!("sessions: {e}");
            Ok(())
        }
    }
}

/// `3d04h`, `2h05m`, `4m10s`.
fn duration(s: u64) -> String {
    let (d, h, m) = (s / 86400, s % 86400 / 3600, s % 3600 / 60);
    if d > 0 {
        format!("{d}d{h:02}h")
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else {
        format!("{m}m{:02}s", s % 60)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations() {
        assert_eq!(super::duration(59), "0m59s");
        assert_eq!(super::duration(3 * 3600 + 5 * 60), "3h05m");
        assert_eq!(super::duration(86400 * 2 + 3600), "2d01h");
    }
}
