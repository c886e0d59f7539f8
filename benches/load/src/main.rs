//! `darts-load`: one run measures direct TCP, Debian's websockify and `darts proxy`
//! against the same fake VNC backend, and prints a markdown table with darts' ratios and
//! PASS/MISS against its targets. See `benches/README.md`.
//!
//! Three kinds of process take part, so each one's CPU and memory stay apart: this one
//! (the client, on a current-thread runtime), the backend (`darts-load backend`, started
//! by this one), and the gateway under test, started and stopped for every scenario.
//!
//! `darts-load soak` (`soak/`) is the long run: real sessions through `darts serve`, with
//! faults injected.

mod backend;
mod cli;
mod client;
mod error;
mod gateway;
mod relay;
mod report;
mod rfb;
mod scenario;
mod security;
mod soak;
mod sys;
mod tls;
mod ws;

use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::Parser;

use crate::cli::{Cli, Command, RunArgs};
use crate::gateway::Commands;
use crate::scenario::{Ctx, Measurement};
use crate::security::Security;

/// Pause between two measurements, for sockets and CPU to settle.
const SETTLE: Duration = Duration::from_millis(500);

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Backend { lifetime, secrets }) => run_backend(lifetime, &secrets),
        Some(Command::Soak(args)) => soak::main(&args),
        Some(Command::Relay { listen, target }) => run_relay(listen, target),
        None => run_load(&cli.run),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("darts-load: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the runtime")
}

fn run_backend(lifetime: f64, secrets: &Path) -> anyhow::Result<()> {
    sys::raise_nofile();
    let lifetime = cli::seconds("--lifetime", lifetime).map_err(|e| anyhow!(e))?;
    runtime()?.block_on(backend::serve(lifetime, secrets))?;
    Ok(())
}

fn run_relay(listen: std::net::SocketAddr, target: std::net::SocketAddr) -> anyhow::Result<()> {
    sys::raise_nofile();
    runtime()?
        .block_on(relay::serve(listen, target))
        .with_context(|| format!("relaying {listen} to {target}"))
}

fn run_load(args: &RunArgs) -> anyhow::Result<()> {
    let settings = args.settings().map_err(|e| anyhow!(e))?;
    let nofile = sys::raise_nofile();
    let exe = std::env::current_exe().context("finding this program")?;
    let darts = match &args.darts {
        Some(p) => p.clone(),
        None => exe.with_file_name("darts"),
    };
    let dir = std::env::temp_dir().join(format!("darts-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let cmds = Commands {
        darts,
        relay: exe.clone(),
        websockify: args
            .websockify
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        darts_args: args
            .darts_args
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        log_dir: dir.clone(),
    };
    let cert = tls::write_cert(&dir)?;
    let secrets_dir = dir.join("secrets");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&secrets_dir)
        .with_context(|| format!("creating {}", secrets_dir.display()))?;
    let backend = backend::Backend::spawn(&exe, &secrets_dir)?;
    let ctx = Ctx {
        settings: settings.clone(),
        backend: backend.ports,
        backend_pid: backend.pid(),
        cmds,
        cert,
        connector: tls::connector()?,
        secrets: security::Secrets::in_dir(&secrets_dir),
    };
    let header = report::Header {
        date: report::today(),
        background: background_load(),
        repeat: args.repeat.clamp(1, 20),
        machine: format!(
            "{}; open-files limit {}",
            sys::machine(),
            nofile.map_or("unknown".into(), |n| n.to_string())
        ),
        gateways: args
            .gateways
            .iter()
            .map(|&g| (g, gateway::describe(&ctx.cmds, g)))
            .collect(),
        command: command_line(),
    };
    let results = runtime()?.block_on(measure_all(&ctx, args));
    drop(backend);
    let text = report::render(&header, &settings, &results);
    println!("{text}");
    if let Some(path) = &args.output {
        std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
    }
    let failed = results.iter().filter(|r| r.outcome.is_err()).count();
    finish_logs(&dir, args.keep_logs || failed > 0);
    if failed > 0 {
        return Err(anyhow!(
            "{failed} measurement(s) failed; gateway logs are in {}",
            dir.display()
        ));
    }
    Ok(())
}

async fn measure_all(ctx: &Ctx, args: &RunArgs) -> Vec<Measurement> {
    let mut results = Vec::new();
    let repeat = args.repeat.clamp(1, 20);
    for &scenario in &args.scenarios {
        for run in 1..=repeat {
            for &gw in &args.gateways {
                if !scenario.applies_to(gw) {
                    continue;
                }
                for &security in &args.security {
                    if security != Security::None && !scenario.runs_secured(gw) {
                        continue;
                    }
                    let target = match security {
                        Security::None => String::new(),
                        s => format!(" ({} target)", s.name()),
                    };
                    let what = format!(
                        "{} / {}{target} (run {run} of {repeat})",
                        scenario.name(),
                        gw.name()
                    );
                    eprintln!("darts-load: {what} ...");
                    let m = scenario::run(ctx, scenario, gw, security).await;
                    if let Err(e) = &m.outcome {
                        eprintln!("darts-load: {what} failed: {e}");
                    }
                    results.push(m);
                    tokio::time::sleep(SETTLE).await;
                }
            }
        }
    }
    results
}

/// Cores busy machine-wide over one second, before anything starts.
fn background_load() -> f64 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let before = sys::machine_ticks();
    std::thread::sleep(Duration::from_secs(1));
    match (before, sys::machine_ticks()) {
        (Some(a), Some(b)) if b.total > a.total => {
            (b.busy - a.busy) as f64 / (b.total - a.total) as f64 * cores
        }
        _ => 0.0,
    }
}

/// This run's command line as typed, for the report.
fn command_line() -> String {
    std::env::args()
        .map(|a| {
            if a.is_empty() || a.contains(char::is_whitespace) {
                format!("'{a}'")
            } else {
                a
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn finish_logs(dir: &PathBuf, keep: bool) {
    if keep {
        eprintln!("darts-load: gateway logs kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn direct_skips_gateway_only_scenarios() {
        use crate::gateway::GatewayKind;
        use crate::scenario::Scenario;
        assert!(!Scenario::Idle.applies_to(GatewayKind::Direct));
        assert!(!Scenario::HsTls.applies_to(GatewayKind::Direct));
        assert!(Scenario::Down.applies_to(GatewayKind::Direct));
        assert!(Scenario::Idle.applies_to(GatewayKind::Darts));
        assert!(!Scenario::Idle.applies_to(GatewayKind::SpliceRelay));
        assert!(Scenario::Down.applies_to(GatewayKind::SpliceRelay));
        assert!(!Scenario::Down.runs_secured(GatewayKind::SpliceRelay));
        assert!(Scenario::Down.runs_secured(GatewayKind::Darts));
        assert!(!Scenario::Down.runs_secured(GatewayKind::Websockify));
        assert!(!Scenario::Echo.runs_secured(GatewayKind::Darts));
    }
}
