//! `darts config check|show|import|keys`: the operator's view of the configuration.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use crate::config::{check, import, keys, show, ConfigSource};
use crate::sessions_cmd::ConfigArgs;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check the configuration: every problem with file, line and key; exit status 1 on errors.
    Check(ConfigArgs),
    /// Print every effective value and where it came from (secrets hidden).
    Show(ConfigArgs),
    /// Convert the original's config.pl (and config.d/*.pl beside it) to darts TOML.
    Import(ImportArgs),
    /// List every key with its default and what it does.
    Keys,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The original's configuration, e.g. /etc/qemu-web-desktop/config.pl.
    #[arg(value_name = "CONFIG.PL")]
    pub file: PathBuf,
    /// Write the TOML here instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Replace FILE if it exists.
    #[arg(long, requires = "output")]
    pub force: bool,
}

pub fn run(cmd: ConfigCommand) -> anyhow::Result<()> {
    match cmd {
        ConfigCommand::Check(args) => run_check(&source(&args)?),
        ConfigCommand::Show(args) => run_show(&source(&args)?),
        ConfigCommand::Import(args) => run_import(&args),
        ConfigCommand::Keys => {
            out!("{}", keys::help_text());
            Ok(())
        }
    }
}

fn source(args: &ConfigArgs) -> anyhow::Result<ConfigSource> {
    let (file, overrides) = args.split()?;
    Ok(ConfigSource { file, overrides })
}

fn run_check(source: &ConfigSource) -> anyhow::Result<()> {
    let report = check::check(source);
    for p in report.errors() {
        errln!("error: {p}");
    }
    for p in report.warnings() {
        errln!("warning: {p}");
    }
    let (errors, warnings) = (report.errors().count(), report.warnings().count());
    let files = report
        .loaded
        .as_ref()
        .map(|l| {
            l.files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if errors > 0 {
        bail!("configuration has {errors} error(s) and {warnings} warning(s)");
    }
    outln!(
        "configuration OK ({warnings} warning(s)); read {}",
        if files.is_empty() {
            "no file (defaults)".to_owned()
        } else {
            files.join(", ")
        }
    );
    Ok(())
}

fn run_show(source: &ConfigSource) -> anyhow::Result<()> {
    let loaded = crate::config::Loaded::load(source)?;
    out!("{}", show::render(&loaded));
    Ok(())
}

fn run_import(args: &ImportArgs) -> anyhow::Result<()> {
    let result = import::import(&args.file)?;
    let text = import::render(&result);
    match &args.output {
        Some(path) => {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .create_new(!args.force)
                // It may hold email_passwd.
                .mode(0o600)
                .open(path)
                .with_context(|| {
                    format!("cannot write {} (--force replaces it)", path.display())
                })?;
            file.write_all(text.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            errln!(
                "wrote {} key(s) to {}",
                result.converted.len(),
                path.display()
            );
        }
        None => out!("{text}"),
    }
    if !result.skipped.is_empty() {
        errln!("not converted ({}):", result.skipped.len());
        for s in &result.skipped {
            errln!("  {}: {}\n      {}", s.origin, s.what, s.advice);
        }
    }
    Ok(())
}
