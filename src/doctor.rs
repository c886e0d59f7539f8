//! `darts doctor`: checks this host against the configuration and says what to fix, one
//! line per check: `OK`, `WARN` (works, but not as well as it could) or `FAIL` (something
//! will not work), each `WARN` and `FAIL` with the command or setting that fixes it. The
//! exit status is non-zero when any check fails.
//!
//! Permissions are judged for the account the service runs as (`--user`, `darts` for the
//! Debian package's unit), whoever runs the doctor: root can open anything, the service
//! cannot.

mod files;
mod gpu;
mod host;
mod net;
mod tls;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::config::Config;
use crate::sessions_cmd::ConfigArgs;

pub use host::Identity;

/// `darts doctor`'s command line.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The account the service runs as; permissions are checked for it.
    #[arg(long, value_name = "USER", default_value = "darts")]
    pub user: String,
    /// Address the service listens on (default 127.0.0.1:<service_port>, as darts serve).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// Seconds to wait for each authentication server to accept a connection.
    #[arg(long, value_name = "S", default_value_t = 3.0)]
    pub timeout: f64,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Warn => "WARN",
            Self::Fail => "FAIL",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked: a configuration key or a short name (`qemu`, `kvm`, `port`).
    pub name: String,
    pub status: Status,
    pub message: String,
    /// What to do about a `WARN` or `FAIL`.
    pub hint: Option<String>,
}

impl Check {
    pub fn ok(name: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            status: Status::Ok,
            message: message.into(),
            hint: None,
        }
    }

    pub fn warn(
        name: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            status: Status::Warn,
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    pub fn fail(
        name: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            status: Status::Fail,
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// `warn` or `fail`, as `status` says (`Ok` gives a `warn`).
    fn problem(status: Status, name: &str, message: String, hint: String) -> Self {
        if status == Status::Fail {
            Self::fail(name, message, hint)
        } else {
            Self::warn(name, message, hint)
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<4} {}: {}",
            self.status.label(),
            self.name,
            self.message
        )?;
        if let Some(h) = &self.hint {
            write!(f, " -> {h}")?;
        }
        Ok(())
    }
}

/// Every check, in the order they ran.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    pub fn failures(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .count()
    }

    pub fn warnings(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Warn)
            .count()
    }

    /// The first check named `name`.
    pub fn get(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

/// What the checks need besides the configuration.
#[derive(Debug, Clone)]
pub struct Options {
    /// The service's account (falls back to the doctor's own when it does not exist).
    pub user: String,
    pub listen: SocketAddr,
    pub timeout: Duration,
    /// Root of `/etc/passwd`, `/etc/group`, `/dev` and `/sys` (tests use a scratch tree).
    pub root: PathBuf,
}

/// Runs every check.
pub async fn run_checks(config: &Config, opts: &Options) -> Report {
    let mut checks = Vec::new();
    let (who, who_check) = host::service_identity(&opts.user, &opts.root);
    checks.extend(who_check);
    checks.extend(host::qemu(config).await);
    checks.extend(host::kvm(config, &who, &opts.root).await);
    checks.extend(files::web(config, &who));
    checks.extend(files::directories(config, &who, &opts.root));
    checks.extend(files::catalogue(config));
    checks.extend(files::logs(config, &who, &opts.root));
    checks.extend(tls::certificates(config, &who, &opts.root));
    checks.push(net::port(config, opts.listen).await);
    checks.extend(net::authentication(config, &who, opts.timeout, &opts.root).await);
    checks.extend(gpu::gpus(config, &who, &opts.root));
    Report { checks }
}

/// `darts doctor`: prints the report; an error when a check failed.
pub fn command(args: DoctorArgs) -> anyhow::Result<()> {
    let config = match args.config.load() {
        Ok(c) => c,
        Err(e) => {
            outln!(
                "{}",
                Check::fail(
                    "config",
                    format!("{e:#}"),
                    "fix the file (darts config check names the line and key)"
                )
            );
            anyhow::bail!("the configuration cannot be read");
        }
    };
    let (file, _) = args.config.split()?;
    let source = file
        .or_else(|| {
            let d = PathBuf::from(crate::config::DEFAULT_FILE);
            d.exists().then_some(d)
        })
        .map_or_else(
            || "built-in defaults".to_owned(),
            |p| p.display().to_string(),
        );
    outln!("{}", Check::ok("config", source));
    let opts = Options {
        user: args.user,
        listen: args.listen.unwrap_or(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            config.service_port,
        )),
        timeout: Duration::from_secs_f64(args.timeout.max(0.1)),
        root: PathBuf::from("/"),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(run_checks(&config, &opts));
    for c in &report.checks {
        outln!("{c}");
    }
    let (fails, warns) = (report.failures(), report.warnings());
    outln!(
        "{} checks: {} OK, {warns} WARN, {fails} FAIL",
        report.checks.len() + 1,
        report.checks.len() + 1 - fails - warns
    );
    if fails > 0 {
        anyhow::bail!("{fails} check(s) failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_status_name_message_and_fix() {
        let c = Check::fail("dir_machines", "/x does not exist", "mkdir /x");
        assert_eq!(
            c.to_string(),
            "FAIL dir_machines: /x does not exist -> mkdir /x"
        );
        assert_eq!(Check::ok("qemu", "10.0").to_string(), "OK   qemu: 10.0");
        let r = Report {
            checks: vec![c, Check::warn("a", "b", "c"), Check::ok("d", "e")],
        };
        assert_eq!((r.failures(), r.warnings()), (1, 1));
        assert_eq!(r.get("a").unwrap().status, Status::Warn);
    }
}
