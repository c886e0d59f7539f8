//! The command line: the run's options (which gateways and scenarios, how long, how
//! many) and the hidden `backend` mode the tool starts itself in.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::gateway::GatewayKind;
use crate::scenario::{Scenario, Settings};
use crate::security::Security;

#[derive(Debug, Parser)]
#[command(
    name = "darts-load",
    version,
    about = "Measures direct TCP, websockify and darts proxy against one fake VNC backend",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The fake VNC server (started by the tool itself).
    #[command(hide = true)]
    Backend {
        /// Exit after this many seconds even if standard input stays open.
        #[arg(long, default_value_t = 4.0 * 3600.0)]
        lifetime: f64,
        /// Directory for the certificates and password darts needs for secured targets.
        #[arg(long, value_name = "DIR")]
        secrets: PathBuf,
    },
    /// The zero-copy reference relay (started by the tool itself): raw TCP from
    /// `--listen` to `--target`, every byte moved with splice(2).
    #[command(hide = true)]
    Relay {
        #[arg(long)]
        listen: std::net::SocketAddr,
        #[arg(long)]
        target: std::net::SocketAddr,
    },
    /// Soak: real sessions through `darts serve` for a given time, with faults (a killed
    /// QEMU, a restarted gateway); reports memory, open files, errors and lost sessions.
    Soak(Box<crate::soak::SoakArgs>),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Gateways to measure, in order (also `splice-relay`: the zero-copy raw TCP
    /// reference, shown in the details only).
    #[arg(long, value_delimiter = ',', default_values = ["direct", "websockify", "darts"])]
    pub gateways: Vec<GatewayKind>,

    /// Scenarios to run, in order.
    #[arg(long, value_delimiter = ',',
          default_values = ["down", "up", "echo", "idle", "hs-plain", "hs-tls", "paste"])]
    pub scenarios: Vec<Scenario>,

    /// Security of darts' target in the down, up and hs-plain scenarios: none (the plain
    /// relay), vnc-password or x509 (darts answers the backend's VNC password or VeNCrypt
    /// X509None with its client certificate, and offers the client None).
    #[arg(long, value_delimiter = ',', default_values = ["none", "vnc-password", "x509"])]
    pub security: Vec<Security>,

    /// Seconds each scenario measures (idle: seconds the sessions are held).
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,

    /// Seconds of traffic before measuring starts.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,

    /// Runs of every measurement; the table shows medians.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,

    /// The darts binary [default: `darts` next to this program].
    #[arg(long, value_name = "PATH")]
    pub darts: Option<PathBuf>,

    /// Extra arguments for `darts proxy`, split on spaces.
    #[arg(
        long,
        value_name = "ARGS",
        default_value = "",
        allow_hyphen_values = true
    )]
    pub darts_args: String,

    /// The websockify command, split on spaces.
    #[arg(long, value_name = "CMD", default_value = "websockify")]
    pub websockify: String,

    /// Parallel streams in the throughput scenarios.
    #[arg(long, default_value_t = 1)]
    pub streams: usize,

    /// Payload bytes per upstream frame.
    #[arg(long, default_value_t = 65_536)]
    pub up_frame: usize,

    /// Payload bytes per echo message.
    #[arg(long, default_value_t = 64)]
    pub echo_size: usize,

    /// Idle sessions to open.
    #[arg(long, default_value_t = 9_000)]
    pub idle_sessions: usize,

    /// Seconds the idle sessions get to open.
    #[arg(long, default_value_t = 120.0)]
    pub idle_ramp_timeout: f64,

    /// Stop opening idle sessions when the machine has less free memory than this (MiB).
    #[arg(long, default_value_t = 2048)]
    pub idle_min_free_mib: u64,

    /// Session set-ups in flight at once in the handshake scenarios.
    #[arg(long, default_value_t = 16)]
    pub hs_concurrency: usize,

    /// Also write the report to this file.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Keep the gateways' logs (their directory is printed).
    #[arg(long)]
    pub keep_logs: bool,
}

/// Seconds from the command line as a bounded duration.
pub fn seconds(name: &str, s: f64) -> Result<Duration, String> {
    if !(s.is_finite() && (0.0..=24.0 * 3600.0).contains(&s)) {
        return Err(format!("{name} must be between 0 and 86400 seconds"));
    }
    Ok(Duration::from_secs_f64(s))
}

impl RunArgs {
    pub fn settings(&self) -> Result<Settings, String> {
        Ok(Settings {
            warmup: seconds("--warmup", self.warmup)?,
            duration: seconds("--duration", self.duration)?.max(Duration::from_millis(100)),
            streams: self.streams.clamp(1, 64),
            up_frame: self.up_frame.clamp(1, 16 << 20),
            echo_size: self.echo_size.clamp(1, 60 << 10),
            idle_sessions: self.idle_sessions.max(1),
            idle_ramp_timeout: seconds("--idle-ramp-timeout", self.idle_ramp_timeout)?,
            idle_min_free: self.idle_min_free_mib << 20,
            hs_concurrency: self.hs_concurrency.clamp(1, 1024),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_run_everything() {
        let cli = Cli::try_parse_from(["darts-load"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.run.gateways.len(), 3);
        assert_eq!(cli.run.scenarios.len(), 7);
        assert_eq!(cli.run.security, Security::ALL);
        assert_eq!(cli.run.settings().unwrap().idle_sessions, 9000);
    }

    #[test]
    fn lists_and_backend_mode_parse() {
        let cli = Cli::try_parse_from([
            "darts-load",
            "--gateways",
            "darts,direct",
            "--scenarios",
            "hs-plain,idle",
            "--darts-args",
            "--read-chunk 131072",
            "--security",
            "x509",
        ])
        .unwrap();
        assert_eq!(cli.run.gateways, [GatewayKind::Darts, GatewayKind::Direct]);
        assert_eq!(cli.run.scenarios, [Scenario::HsPlain, Scenario::Idle]);
        assert_eq!(cli.run.darts_args, "--read-chunk 131072");
        assert_eq!(cli.run.security, [Security::X509]);
        let cli = Cli::try_parse_from(["darts-load", "backend", "--secrets", "/tmp/x"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Backend { .. })));
        let cli = Cli::try_parse_from(["darts-load", "soak", "--duration", "90s"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Soak(_))));
        assert!(seconds("x", -1.0).is_err());
    }
}
