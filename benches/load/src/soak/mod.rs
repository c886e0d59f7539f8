//! `darts-load soak`: for a given time, keeps a number of real sessions cycling through
//! `darts serve` (create, view through the gateway, stream, idle, reconnect, stop; some
//! held for the whole run, some one-shot), injects faults on a schedule (a killed QEMU,
//! a restarted gateway), samples darts' memory and open files, and checks after every
//! fault and at the end that no session was lost. See `benches/README.md`.
//!
//! The run fails (non-zero exit) on a lost session or a broken invariant; errors of
//! single steps and memory or file growth are reported, never a failure.

mod api;
mod args;
mod check;
mod end;
mod error;
mod faults;
mod markdown;
mod plan;
mod procs;
mod report;
mod sampler;
mod screen;
mod service;
mod slot;
mod state;
mod tally;
mod viewer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context};
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use args::SoakArgs;
use report::{Bounds, Report};
use service::{Service, Setup};
use state::{progress, Dirs, Shared};

/// Runs the soak, prints the report and writes it; an error if the run failed.
pub fn main(args: &SoakArgs) -> anyhow::Result<()> {
    let plan = args.plan().map_err(|e| anyhow!(e))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the runtime")?;
    let report = runtime.block_on(run(args, plan))?;
    let text = markdown::render(&report);
    println!("{text}");
    if let Some(path) = &args.output {
        write_outputs(path, &report, &text)?;
    }
    if !report.passed {
        return Err(anyhow!(
            "soak failed: {} session(s) lost, {} invariant(s) broken",
            report.tally.lost.len(),
            report.tally.invariants_failed.len()
        ));
    }
    Ok(())
}

fn write_outputs(path: &Path, report: &Report, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let json = serde_json::to_string_pretty(report).context("encoding the report")?;
    std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    let md = path.with_extension("md");
    std::fs::write(&md, text).with_context(|| format!("writing {}", md.display()))?;
    eprintln!(
        "darts-load soak: report in {} and {}",
        path.display(),
        md.display()
    );
    Ok(())
}

async fn run(args: &SoakArgs, plan: plan::Plan) -> anyhow::Result<Report> {
    crate::sys::raise_nofile();
    let darts = match &args.darts {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .context("finding this program")?
            .with_file_name("darts"),
    };
    // The pid of the attached darts never changes; the soak's own darts publishes its own.
    let (attached_pid, attached_rx) = watch::channel(args.pid);
    let mut service = None;
    let (url, dirs, pid_rx) = match &args.attach {
        Some(url) => {
            let dirs = Dirs {
                state: args.state_dir.clone(),
                snapshots: None,
            };
            (url.clone(), dirs, attached_rx)
        }
        None => {
            let mut svc = Service::prepare(Setup {
                darts: darts.clone(),
                scratch: absolute(&args.scratch)?,
                guest: args.guest.clone(),
                web: absolute(&args.web)
                    .ok()
                    .filter(|w| w.join("novnc").is_dir()),
                max_sessions: plan.sessions,
            })?;
            progress(&format!("starting {} serve", darts.display()));
            svc.launch().await?;
            let found = (
                svc.url(),
                Dirs {
                    state: Some(svc.state_dir()),
                    snapshots: Some(svc.snapshot_dir()),
                },
                svc.pid.subscribe(),
            );
            service = Some(Arc::new(tokio::sync::Mutex::new(svc)));
            found
        }
    };
    let api = api::Api::new(&url, &args.user, args.password.clone(), args.machine())?;
    api.login().await.context("logging in")?;
    let darts_desc = match &service {
        Some(_) => format!("{} (`darts serve` started by the soak)", version(&darts)),
        None => format!("attached at {url}"),
    };
    let preexisting = api.list().await.context("listing the sessions")?;
    if !preexisting.is_empty() {
        progress(&format!(
            "{} session(s) of user {} existed before: left alone",
            preexisting.len(),
            args.user
        ));
    }
    let shared = Arc::new(Shared::new(plan, api, dirs, service.is_some(), preexisting));
    progress(&format!(
        "{} sessions ({} long-lived) for {:.0} s against {url}; seed {}",
        shared.plan.sessions,
        shared.plan.long_lived,
        shared.plan.duration.as_secs_f64(),
        shared.plan.seed
    ));

    let samples: sampler::Samples = Arc::new(Mutex::new(Vec::new()));
    let (stop_sampling, stop_rx) = watch::channel(false);
    let sampling = tokio::spawn(sampler::run(
        shared.clone(),
        pid_rx.clone(),
        samples.clone(),
        stop_rx,
    ));
    let fault_task = tokio::spawn(faults::run(shared.clone(), service.clone()));
    let mut slots = JoinSet::new();
    for (i, role) in shared.plan.roles().into_iter().enumerate() {
        slots.spawn(slot::run(shared.clone(), i, role));
    }

    let mut aborted = shared.ending.subscribe();
    let interrupted = tokio::select! {
        () = tokio::time::sleep_until(shared.started + shared.plan.duration) => false,
        _ = aborted.wait_for(|e| *e) => false,
        _ = tokio::signal::ctrl_c() => true,
    };
    if interrupted {
        progress("interrupted: last check, then winding down");
    }
    // A fault in progress finishes with its checks; no new one starts.
    shared.faults_off.send_replace(true);
    let _ = fault_task.await;
    // Not after an abort (darts gone): there is nothing left to check.
    if !shared.is_ending() {
        progress("last check of every session");
        check::survivors(&shared, "at the end").await;
    }
    shared.ending.send_replace(true);
    progress("stopping every session");
    while slots.join_next().await.is_some() {}
    end::nothing_left(&shared, service.as_deref()).await;
    sampler::push(&samples, sampler::take(&shared, *pid_rx.borrow()));
    stop_sampling.send_replace(true);
    let _ = sampling.await;
    drop(attached_pid);

    let mut darts_log = None;
    if let Some(svc) = &service {
        let mut svc = svc.lock().await;
        let (_, graceful) = svc.stop().await;
        if !graceful {
            shared
                .tally()
                .invariant("darts serve did not exit on SIGTERM at the end".into());
        }
        let left = svc.kill_leftovers();
        if left > 0 {
            shared.tally().invariant(format!(
                "{left} process(es) of the run's VMs were still running after darts stopped"
            ));
        }
        let keep = args.output.as_ref().map(|o| o.with_extension("darts.log"));
        if let Some(dir) = keep.as_deref().and_then(Path::parent) {
            let _ = std::fs::create_dir_all(dir);
        }
        darts_log = Some(svc.log_counts(keep.as_deref()));
    }
    let samples = samples.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let bounds = Bounds {
        rss_mib_per_hour: args.rss_warn_mib_per_hour,
        fd_growth: args.fd_warn,
    };
    let memory = report::memory(&samples);
    let fds = report::fds(&samples);
    let tally = shared.tally().clone();
    let report = Report {
        date: crate::report::today(),
        command: redact_password(&crate::command_line()),
        machine: crate::sys::machine(),
        darts: darts_desc,
        plan: shared.plan.clone(),
        elapsed: shared.elapsed(),
        interrupted,
        warnings: report::warnings(&memory, &fds, bounds),
        passed: tally.passed(),
        tally,
        memory,
        fds,
        bounds,
        darts_log,
        samples,
    };
    if let Some(svc) = &service {
        let svc = svc.lock().await;
        if report.passed {
            svc.remove_scratch();
        } else {
            progress(&format!(
                "scratch directory and darts' log kept: {}",
                svc.log_path().display()
            ));
        }
    }
    Ok(report)
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("resolving {}", p.display()))
}

/// The command line with the value of `--password` hidden.
fn redact_password(command: &str) -> String {
    let mut hide_next = false;
    command
        .split(' ')
        .map(|word| {
            let hide = std::mem::take(&mut hide_next);
            if word == "--password" {
                hide_next = true;
                word.to_owned()
            } else if word.starts_with("--password=") || word.starts_with("'--password=") {
                "--password=***".to_owned()
            } else if hide {
                "***".to_owned()
            } else {
                word.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `darts --version`, or the path if it does not answer.
fn version(darts: &Path) -> String {
    std::process::Command::new(darts)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| darts.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_the_report() {
        assert_eq!(
            redact_password("darts-load soak --password s3cret --user u"),
            "darts-load soak --password *** --user u"
        );
        assert_eq!(
            redact_password("darts-load soak --password=s3cret"),
            "darts-load soak --password=***"
        );
        assert_eq!(redact_password("darts-load soak"), "darts-load soak");
    }
}
