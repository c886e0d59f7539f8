//! `darts machines`: the original's `qwdctl status|enable|disable|download|purge` for
//! the catalogue.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use super::download::{self, Placed, ProgressLine};
use super::store::{self, DisableOutcome, EnableOutcome, EnableRequest, EnableTarget};
use super::{purge, Catalogue, CatalogueError, Machine, Source};
use crate::config::Config;
use crate::fetch::{Client, FetchError, FetchOptions};

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  darts machines\n  darts machines enable https://example.org/slax.iso \"Slax live\"\n  darts machines enable /srv/images/debian.qcow2 --link\n  darts machines disable slax.iso\n  darts machines download --ca /etc/ssl/private-ca.pem\n  darts machines purge -y"
)]
pub struct MachinesArgs {
    /// darts configuration file (default /etc/darts/config.toml when it exists).
    #[arg(short = 'c', long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Answer yes to every question (also DARTS_YES=1).
    #[arg(short = 'y', long, global = true, env = "DARTS_YES",
          value_parser = clap::builder::FalseyValueParser::new())]
    pub yes: bool,
    /// More log output.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Option<MachinesCommand>,
}

#[derive(Debug, Subcommand)]
pub enum MachinesCommand {
    /// Enabled, disabled and orphan machines, with availability (the default).
    #[command(visible_alias = "status")]
    List,
    /// Enable a machine: a catalogue name, a local image file, or a URL.
    #[command(visible_alias = "add")]
    Enable(EnableArgs),
    /// Comment a machine out in every catalogue file.
    #[command(visible_alias = "remove")]
    Disable {
        /// Machine name, e.g. slax.iso.
        name: String,
    },
    /// Fetch URL machines and link local-path machines into the machines directory.
    #[command(visible_alias = "update")]
    Download(DownloadArgs),
    /// Delete images that no enabled machine and no running session uses.
    Purge {
        /// Only names starting with this.
        prefix: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct EnableArgs {
    /// NAME (in the catalogue), FILE (path with a /, e.g. ./a.qcow2) or http(s) URL.
    pub target: String,
    /// Label on the landing page (default: the name).
    pub description: Option<String>,
    /// For a FILE: symlink it into the machines directory instead of copying it.
    #[arg(long)]
    pub link: bool,
    /// Do not download the image now.
    #[arg(long)]
    pub no_download: bool,
    /// PEM file of extra CA certificates to trust for the download.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// Only these machines (default: all).
    pub names: Vec<String>,
    /// PEM file of extra CA certificates to trust.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
}

/// Runs `darts machines …`.
pub fn run(args: MachinesArgs) -> anyhow::Result<()> {
    crate::telemetry::init(args.verbose, crate::cli::LogFormat::Text);
    let config = Config::from_layers(args.config.as_deref(), &[])?;
    let mut stdout = std::io::stdout().lock();
    match args.command.unwrap_or(MachinesCommand::List) {
        MachinesCommand::List => {
            write_list(&Catalogue::load(&config), &mut stdout)?;
            Ok(())
        }
        MachinesCommand::Enable(e) => enable(&config, e, &mut stdout),
        MachinesCommand::Disable { name } => {
            match store::disable(&config.dir_etc, &config.dir_machines, &name)? {
                DisableOutcome::Disabled(files) => {
                    for f in files {
                        writeln!(stdout, "{name}: disabled in {}", f.display())?;
                    }
                    writeln!(
                        stdout,
                        "{name}: its image stays in {} until `darts machines purge`",
                        config.dir_machines.display()
                    )?;
                }
                DisableOutcome::AlreadyDisabled => writeln!(stdout, "{name}: already disabled")?,
            }
            Ok(())
        }
        MachinesCommand::Download(d) => {
            let cat = Catalogue::load(&config);
            warn_problems(&cat);
            let selected = select(&cat, &d.names)?;
            let client = client(&config, d.ca)?;
            place_all(&selected, &cat, &client, &mut stdout)
        }
        MachinesCommand::Purge { prefix } => {
            let cat = Catalogue::load(&config);
            warn_problems(&cat);
            let in_use = purge::in_use_from_sessions(&config.dir_cfg);
            let yes = args.yes;
            let report = purge::purge(&cat, &in_use, prefix.as_deref(), &mut |p| {
                yes || ask(&format!("delete {}?", p.display()))
            })?;
            for p in &report.deleted {
                writeln!(stdout, "deleted {}", p.display())?;
            }
            for p in &report.in_use {
                writeln!(stdout, "kept {} (in use)", p.display())?;
            }
            if report.deleted.is_empty() && report.in_use.is_empty() && report.declined.is_empty() {
                writeln!(stdout, "nothing to purge")?;
            }
            Ok(())
        }
    }
}

fn enable(config: &Config, e: EnableArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let req = EnableRequest {
        target: EnableTarget::from_arg(&e.target),
        description: e.description,
        link: e.link,
    };
    let (name, outcome) = store::enable(&config.dir_etc, &config.dir_machines, &req)?;
    match outcome {
        EnableOutcome::AlreadyEnabled(at) => writeln!(out, "{name}: already enabled ({at})")?,
        EnableOutcome::Uncommented(f) => writeln!(out, "{name}: enabled in {}", f.display())?,
        EnableOutcome::Created(f) => writeln!(out, "{name}: enabled in new {}", f.display())?,
    }
    let cat = Catalogue::load(config);
    let Some(machine) = cat.get(&name) else {
        bail!("{name} is still not enabled; see `darts machines list`");
    };
    if e.no_download {
        return Ok(());
    }
    let client = client(config, e.ca)?;
    place_all(&[machine], &cat, &client, out)
}

fn client(config: &Config, ca: Option<PathBuf>) -> anyhow::Result<Client> {
    let opts = FetchOptions {
        ca_file: ca,
        ..FetchOptions::for_downloads(config)
    };
    Ok(Client::new(opts)?)
}

fn select<'a>(cat: &'a Catalogue, names: &[String]) -> anyhow::Result<Vec<&'a Machine>> {
    if names.is_empty() {
        return Ok(cat.machines().iter().collect());
    }
    names
        .iter()
        .map(|n| {
            cat.get(n)
                .ok_or_else(|| CatalogueError::Unknown(n.clone()).into())
        })
        .collect()
}

fn place_all(
    machines: &[&Machine],
    cat: &Catalogue,
    client: &Client,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let tty = std::io::stderr().is_terminal();
    let mut failed = 0;
    for m in machines {
        let mut line = ProgressLine::new(&m.name, std::io::stderr(), tty);
        let result = download::place(m, cat.dir_machines(), client, &mut |p| line.update(p));
        line.finish();
        match result {
            Ok(Placed::Downloaded {
                bytes,
                resumed_from,
            }) => {
                let resumed = if resumed_from > 0 {
                    format!(" (resumed at {})", download::mb(resumed_from))
                } else {
                    String::new()
                };
                writeln!(
                    out,
                    "{}: downloaded {}{resumed}",
                    m.name,
                    download::mb(bytes)
                )?;
            }
            Ok(Placed::Unchanged) => writeln!(out, "{}: up to date", m.name)?,
            Ok(Placed::Linked(p)) => writeln!(out, "{}: linked to {}", m.name, p.display())?,
            Ok(Placed::Present) => writeln!(out, "{}: present", m.name)?,
            Ok(Placed::Missing) => writeln!(
                out,
                "{}: missing; place the image at {} or give it a url=",
                m.name,
                m.path.display()
            )?,
            Err(e) => {
                failed += 1;
                errln!("darts: {}: {e}", m.name);
                if matches!(e, CatalogueError::Fetch(FetchError::Certificate { .. })) {
                    errln!("darts: a server with a private CA needs --ca FILE");
                }
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} machines failed", machines.len());
    }
    Ok(())
}

fn warn_problems(cat: &Catalogue) {
    for p in cat.problems() {
        errln!("darts: warning: {p}");
    }
}

/// Asks on stderr, reads a line from stdin; anything but y/yes (or end of input) is no.
fn ask(question: &str) -> bool {
    err!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// The `list` report, like the original's `qwdctl status`.
pub fn write_list(cat: &Catalogue, out: &mut impl Write) -> anyhow::Result<()> {
    let files: Vec<String> = cat
        .files()
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    writeln!(
        out,
        "Catalogue:  {}",
        if files.is_empty() {
            format!(
                "(none: {} and {}/*.ini)",
                cat.dir_etc().join(super::MAIN_FILE).display(),
                cat.dir_etc().join(super::DROP_IN_DIR).display()
            )
        } else {
            files.join(" ")
        }
    )?;
    writeln!(out, "Machines:   {}", cat.dir_machines().display())?;
    let width = cat
        .machines()
        .iter()
        .map(|m| m.name.len())
        .chain(cat.disabled().iter().map(|d| d.name.len()))
        .max()
        .unwrap_or(0);
    writeln!(out, "\nEnabled machines:")?;
    if cat.machines().is_empty() {
        writeln!(out, "  (none)")?;
    }
    for m in cat.machines() {
        let state = if m.available { "available" } else { "MISSING" };
        let from = match &m.source {
            Source::Url(u) => format!("  <- {u}"),
            Source::Path(p) => format!("  <- {}", p.display()),
            Source::Plain => String::new(),
        };
        writeln!(
            out,
            "  [x] {:width$}  {state:9}  {}{from}",
            m.name, m.description
        )?;
    }
    writeln!(out, "\nDisabled machines:")?;
    if cat.disabled().is_empty() {
        writeln!(out, "  (none)")?;
    }
    for d in cat.disabled() {
        let state = if d.available { "available" } else { "" };
        writeln!(
            out,
            "  [ ] {:width$}  {state:9}  {}",
            d.name,
            d.description.as_deref().unwrap_or(&d.name)
        )?;
    }
    writeln!(out, "\nOrphan files (`darts machines purge` deletes them):")?;
    if cat.orphans().is_empty() {
        writeln!(out, "  (none)")?;
    }
    for o in cat.orphans() {
        writeln!(out, "  {}", display_relative(o, cat.dir_machines()))?;
    }
    if !cat.problems().is_empty() {
        writeln!(out, "\nProblems:")?;
        for p in cat.problems() {
            writeln!(out, "  {p}")?;
        }
    }
    out.flush().context("writing the list")?;
    Ok(())
}

fn display_relative(path: &Path, base: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .display()
        .to_string()
}
