//! The scenarios, what they need, and what they measure. Each one starts its gateway,
//! warms up, measures over a fixed window, and stops the gateway again; `run` returns
//! the gateway's command line with the outcome so the report can show both.

mod cpu;
mod echo;
mod handshake;
mod idle;
mod paste;
mod throughput;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_rustls::TlsConnector;

use crate::backend::{Mode, Ports};
use crate::client::Endpoint;
use crate::error::{LoadError, Result};
use crate::gateway::{Commands, GatewayKind, Running, Upstream};
use crate::security::{Secrets, Security};
use crate::sys::Memory;

use crate::tls::CertFiles;
use cpu::Probe;
pub use cpu::{CpuUse, Watch};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Scenario {
    /// Backend → client bulk stream.
    Down,
    /// Client → backend bulk stream in masked 64 KiB frames.
    Up,
    /// Small messages bounced by the backend, one at a time.
    Echo,
    /// Many sessions opened and held without traffic.
    Idle,
    /// Session set-ups per second without TLS.
    HsPlain,
    /// Session set-ups per second with a full TLS handshake each.
    HsTls,
    /// Downstream latency of a session, idle and while its own upstream is saturated.
    Paste,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Self::Down => "down",
            Self::Up => "up",
            Self::Echo => "echo",
            Self::Idle => "idle",
            Self::HsPlain => "hs-plain",
            Self::HsTls => "hs-tls",
            Self::Paste => "paste",
        }
    }

    /// Whether the scenario means anything for `gw` (direct has no gateway memory and
    /// no TLS; the splice relay has no TLS and no websocket sessions to hold).
    pub fn applies_to(self, gw: GatewayKind) -> bool {
        gw.speaks_websocket() || !matches!(self, Self::Idle | Self::HsTls)
    }

    /// Whether the scenario also runs against secured targets (darts only: neither
    /// direct TCP nor websockify can answer a VNC password or VeNCrypt).
    pub fn runs_secured(self, gw: GatewayKind) -> bool {
        gw == GatewayKind::Darts && matches!(self, Self::Down | Self::Up | Self::HsPlain)
    }

    fn backend_mode(self) -> Mode {
        match self {
            Self::Down => Mode::Source,
            Self::Up => Mode::Sink,
            Self::Echo => Mode::Echo,
            Self::Idle | Self::HsPlain | Self::HsTls => Mode::Idle,
            Self::Paste => Mode::Ticker,
        }
    }
}

/// Sizes and durations of a run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub warmup: Duration,
    pub duration: Duration,
    pub streams: usize,
    pub up_frame: usize,
    pub echo_size: usize,
    pub idle_sessions: usize,
    pub idle_ramp_timeout: Duration,
    pub idle_min_free: u64,
    pub hs_concurrency: usize,
}

/// Everything a scenario needs.
pub struct Ctx {
    pub settings: Settings,
    pub backend: Ports,
    pub backend_pid: u32,
    pub cmds: Commands,
    pub cert: CertFiles,
    pub connector: TlsConnector,
    /// The material darts needs for secured targets (written by the backend).
    pub secrets: Secrets,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("settings", &self.settings)
            .field("backend", &self.backend)
            .field("cmds", &self.cmds)
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

/// Bytes moved in one direction over the window.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    pub bytes: u64,
    pub secs: f64,
    pub cpu: CpuUse,
}

impl Throughput {
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / self.secs / 1e6
    }
    pub fn cpu_s_per_gb(&self) -> Option<f64> {
        self.cpu.gateway.map(|c| c / (self.bytes as f64 / 1e9))
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Echo {
    pub count: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
    pub cpu: CpuUse,
}

impl Echo {
    pub fn cpu_us_per_rt(&self) -> Option<f64> {
        self.cpu.gateway.map(|c| c * 1e6 / self.count as f64)
    }
}

/// Ages of the ticks received in one window, in µs.
#[derive(Debug, Clone)]
pub struct Latency {
    /// Sorted.
    ages: Vec<u32>,
    /// Ticks the backend sent in the window.
    pub expected: u64,
}

impl Latency {
    /// Fails when not a single tick came through.
    pub fn of(mut ages: Vec<u32>, expected: u64) -> Result<Self> {
        if ages.is_empty() {
            return Err(LoadError::Scenario("no tick came back in a window".into()));
        }
        ages.sort_unstable();
        Ok(Self { ages, expected })
    }
    pub fn count(&self) -> u64 {
        self.ages.len() as u64
    }
    /// The `p`th percentile, ms.
    pub fn percentile_ms(&self, p: usize) -> f64 {
        let i = (self.ages.len() * p / 100).min(self.ages.len() - 1);
        f64::from(self.ages[i]) / 1e3
    }
    pub fn max_ms(&self) -> f64 {
        f64::from(self.ages[self.ages.len() - 1]) / 1e3
    }
}

/// Downstream latency idle and under the session's own upstream flood.
#[derive(Debug, Clone)]
pub struct Paste {
    pub idle: Latency,
    pub flooded: Latency,
    pub flood_bytes: u64,
    pub flood_secs: f64,
    /// Over the flooded window.
    pub cpu: CpuUse,
}

impl Paste {
    pub fn flood_mb_per_s(&self) -> f64 {
        self.flood_bytes as f64 / self.flood_secs / 1e6
    }
    /// What the flood adds to the p99 age of a screen update, ms.
    pub fn added_p99_ms(&self) -> f64 {
        self.flooded.percentile_ms(99) - self.idle.percentile_ms(99)
    }
}

#[derive(Debug, Clone)]
pub struct Idle {
    pub requested: usize,
    pub opened: usize,
    pub held: usize,
    pub failures: usize,
    /// Why opening stopped before `requested`, if it did.
    pub stopped: Option<String>,
    pub baseline: Memory,
    pub loaded: Memory,
    pub hold_secs: f64,
}

impl Idle {
    pub fn pss_per_session(&self) -> Option<f64> {
        (self.held > 0)
            .then(|| self.loaded.pss.saturating_sub(self.baseline.pss) as f64 / self.held as f64)
    }
    pub fn rss_per_session(&self) -> Option<f64> {
        (self.held > 0)
            .then(|| self.loaded.rss.saturating_sub(self.baseline.rss) as f64 / self.held as f64)
    }
}

#[derive(Debug, Clone)]
pub struct Handshakes {
    pub count: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub secs: f64,
    pub cpu: CpuUse,
    /// Set-ups timed one at a time after the window, with nothing else in flight.
    pub alone: Vec<u32>,
}

impl Handshakes {
    pub fn per_s(&self) -> f64 {
        self.count as f64 / self.secs
    }
    pub fn cpu_us_each(&self) -> Option<f64> {
        (self.count > 0).then_some(())?;
        self.cpu.gateway.map(|c| c * 1e6 / self.count as f64)
    }
    /// Median time of one set-up alone, µs.
    pub fn alone_p50_us(&self) -> Option<f64> {
        let mut v = self.alone.clone();
        v.sort_unstable();
        v.get(v.len() / 2).map(|&ns| f64::from(ns) / 1e3)
    }
}

#[derive(Debug, Clone)]
pub enum Outcome {
    Down(Throughput),
    Up(Throughput),
    Echo(Echo),
    Idle(Idle),
    Handshakes(Handshakes),
    Paste(Paste),
}

/// One scenario against one gateway and target security.
#[derive(Debug)]
pub struct Measurement {
    pub scenario: Scenario,
    pub gateway: GatewayKind,
    pub security: Security,
    pub outcome: Result<Outcome, String>,
}

/// Runs `scenario` against `gw` routed to a target with `security`: starts the gateway,
/// measures, stops it.
pub async fn run(
    ctx: &Ctx,
    scenario: Scenario,
    gw: GatewayKind,
    security: Security,
) -> Measurement {
    let outcome = run_inner(ctx, scenario, gw, security)
        .await
        .map_err(|e| e.to_string());
    Measurement {
        scenario,
        gateway: gw,
        security,
        outcome,
    }
}

async fn run_inner(
    ctx: &Ctx,
    scenario: Scenario,
    gw: GatewayKind,
    security: Security,
) -> Result<Outcome> {
    let backend = ctx.backend.addr(security, scenario.backend_mode());
    let tls = (scenario == Scenario::HsTls).then_some(&ctx.cert);
    let secured = security != Security::None;
    if secured && !scenario.runs_secured(gw) {
        return Err(LoadError::Scenario(format!(
            "{} cannot reach a {} target",
            gw.name(),
            security.name()
        )));
    }
    let tag = format!("{}-{}", scenario.name(), security.name());
    let upstream = if secured {
        let file = ctx.cmds.log_dir.join(format!("tokens-{tag}"));
        std::fs::write(&file, ctx.secrets.token_line(security, backend))
            .map_err(LoadError::io(format!("writing {}", file.display())))?;
        Upstream::TokenFile(file)
    } else {
        Upstream::Target(backend)
    };
    let gateway = match gw {
        GatewayKind::Direct => None,
        _ => Some(Running::start(&ctx.cmds, gw, &upstream, tls, &tag)?),
    };
    let ep = Endpoint {
        addr: gateway.as_ref().map_or(backend, |g| g.addr),
        ws: gw.speaks_websocket(),
        token: secured,
        rfb: secured,
    };
    let s = &ctx.settings;
    let watch = Watch {
        gw: gateway.as_ref(),
        backend_pid: ctx.backend_pid,
    };
    let result = match scenario {
        Scenario::Down => throughput::down(ep, watch, s).await.map(Outcome::Down),
        Scenario::Up => throughput::up(ep, watch, s).await.map(Outcome::Up),
        Scenario::Echo => echo::run(ep, watch, s).await.map(Outcome::Echo),
        Scenario::Idle => match &gateway {
            Some(g) => idle::run(ep, g, s).await.map(Outcome::Idle),
            None => Err(LoadError::Scenario("idle needs a gateway".into())),
        },
        Scenario::Paste => paste::run(ep, watch, s).await.map(Outcome::Paste),
        Scenario::HsPlain | Scenario::HsTls => {
            let connector = tls.map(|_| &ctx.connector);
            handshake::run(ep, connector, watch, s)
                .await
                .map(Outcome::Handshakes)
        }
    };
    if let (Err(e), Some(g)) = (&result, &gateway) {
        return Err(LoadError::Scenario(format!(
            "{e} (gateway log: {})",
            g.log().display()
        )));
    }
    // Dropping the gateway stops it; sessions the scenario left open are closed first.
    drop(gateway);
    result
}

/// A reading of a progress counter and of CPU at one instant.
#[derive(Debug)]
struct Mark {
    at: Instant,
    count: u64,
    probe: Probe,
}

impl Mark {
    fn take(counter: &AtomicU64, watch: Watch<'_>) -> Self {
        Self {
            at: Instant::now(),
            count: counter.load(Ordering::Relaxed),
            probe: watch.probe(),
        }
    }

    /// (count, seconds, CPU) between `self` and the later `end`.
    fn until(&self, end: &Mark) -> (u64, f64, CpuUse) {
        (
            end.count - self.count,
            end.at.duration_since(self.at).as_secs_f64(),
            self.probe.until(&end.probe),
        )
    }
}

/// Lets workers run through the warm-up, then measures `counter` and the gateway's CPU
/// over the window. Fails if a worker stopped with an error on the way.
async fn measure_window(
    counter: &Arc<AtomicU64>,
    watch: Watch<'_>,
    s: &Settings,
    workers: &mut tokio::task::JoinSet<Result<()>>,
) -> Result<(u64, f64, CpuUse)> {
    tokio::time::sleep(s.warmup).await;
    check_workers(workers)?;
    let start = Mark::take(counter, watch);
    tokio::time::sleep(s.duration).await;
    let end = Mark::take(counter, watch);
    let failed = check_workers(workers);
    workers.abort_all();
    // Wait until the aborted workers are dropped, so their sockets are closed.
    while workers.join_next().await.is_some() {}
    failed?;
    Ok(start.until(&end))
}

/// Returns the first error of a worker that already finished.
fn check_workers(workers: &mut tokio::task::JoinSet<Result<()>>) -> Result<()> {
    while let Some(done) = workers.try_join_next() {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(LoadError::Scenario(format!("worker failed: {e}"))),
        }
    }
    Ok(())
}
