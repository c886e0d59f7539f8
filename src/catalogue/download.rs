//! `download`: puts every machine's image in place. A URL machine is fetched into
//! `dir_machines/downloads/<name>/<name>` and `dir_machines/<name>` becomes a symlink
//! to it (the original's layout); a local-path machine gets a symlink to its file.
//! A file placed by hand at `dir_machines/<name>` is never replaced.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{CatalogueError, Machine, Source, DOWNLOADS_DIR};
use crate::fetch::{Client, DownloadOutcome, Progress};

/// What happened to one machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placed {
    /// Fetched (`resumed_from` bytes came from an earlier, interrupted attempt).
    Downloaded { bytes: u64, resumed_from: u64 },
    /// The server says our copy is current.
    Unchanged,
    /// `dir_machines/<name>` now points at this local file.
    Linked(PathBuf),
    /// A hand-placed image that is there.
    Present,
    /// A hand-placed image that is not there (no URL to fetch it from).
    Missing,
}

/// Where a URL machine's download goes.
pub fn download_path(dir_machines: &Path, name: &str) -> PathBuf {
    dir_machines.join(DOWNLOADS_DIR).join(name).join(name)
}

/// Puts `machine`'s image in place (see the module documentation).
pub fn place(
    machine: &Machine,
    dir_machines: &Path,
    client: &Client,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Placed, CatalogueError> {
    let link = dir_machines.join(&machine.name);
    match &machine.source {
        Source::Url(url) => {
            refuse_regular_file(&link)?;
            let dest = download_path(dir_machines, &machine.name);
            let outcome = client.download(url, &dest, progress)?;
            let relative = Path::new(DOWNLOADS_DIR)
                .join(&machine.name)
                .join(&machine.name);
            point_link(&link, &relative)?;
            Ok(match outcome {
                DownloadOutcome::Downloaded {
                    bytes,
                    resumed_from,
                } => Placed::Downloaded {
                    bytes,
                    resumed_from,
                },
                DownloadOutcome::Unchanged => Placed::Unchanged,
            })
        }
        Source::Path(src) => {
            if !src.is_file() {
                return Err(CatalogueError::SourceMissing {
                    name: machine.name.clone(),
                    path: src.clone(),
                });
            }
            refuse_regular_file(&link)?;
            point_link(&link, src)?;
            Ok(Placed::Linked(src.clone()))
        }
        Source::Plain if link.is_file() => Ok(Placed::Present),
        Source::Plain => Ok(Placed::Missing),
    }
}

fn refuse_regular_file(link: &Path) -> Result<(), CatalogueError> {
    match fs::symlink_metadata(link) {
        Ok(meta) if !meta.file_type().is_symlink() => Err(CatalogueError::NotALink(link.into())),
        _ => Ok(()),
    }
}

/// Makes `link` a symlink to `target`, replacing an older symlink atomically.
fn point_link(link: &Path, target: &Path) -> Result<(), CatalogueError> {
    if fs::read_link(link).is_ok_and(|t| t == target) {
        return Ok(());
    }
    refuse_regular_file(link)?;
    let dir = link.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(CatalogueError::io(dir))?;
    let name = link
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.link-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(CatalogueError::io(&tmp))?;
    fs::rename(&tmp, link).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        CatalogueError::io(link)(e)
    })
}

/// A progress display for one download: a line redrawn at most 4 times a second on a
/// terminal, else a plain line at each tenth of the file (or every 10 s when the length
/// is unknown).
#[derive(Debug)]
pub struct ProgressLine<W: Write> {
    out: W,
    label: String,
    tty: bool,
    started: Instant,
    last_draw: Option<Instant>,
    last_tenth: Option<u64>,
}

impl<W: Write> ProgressLine<W> {
    pub fn new(label: &str, out: W, tty: bool) -> Self {
        Self {
            out,
            label: label.to_owned(),
            tty,
            started: Instant::now(),
            last_draw: None,
            last_tenth: None,
        }
    }

    pub fn update(&mut self, p: &Progress) {
        let now = Instant::now();
        let percent = p.total.filter(|&t| t > 0).map(|t| p.received * 100 / t);
        let since_draw = self.last_draw.map(|t| now.duration_since(t));
        let due = if self.tty {
            since_draw.is_none_or(|d| d >= Duration::from_millis(250))
                || p.total == Some(p.received)
        } else {
            match percent {
                Some(pc) => self.last_tenth != Some(pc / 10),
                None => since_draw.is_none_or(|d| d >= Duration::from_secs(10)),
            }
        };
        if !due {
            return;
        }
        self.last_draw = Some(now);
        self.last_tenth = percent.map(|pc| pc / 10);
        let secs = now.duration_since(self.started).as_secs_f64();
        let rate = if secs > 0.0 {
            (p.received - p.resumed_from) as f64 / secs / 1e6
        } else {
            0.0
        };
        let amount = match (p.total, percent) {
            (Some(t), Some(pc)) => format!("{pc:3}% {} of {}", mb(p.received), mb(t)),
            _ => mb(p.received),
        };
        let text = format!("{}: {amount}, {rate:.1} MB/s", self.label);
        let _ = if self.tty {
            write!(self.out, "\r\x1b[K{text}")
        } else {
            writeln!(self.out, "{text}")
        };
        let _ = self.out.flush();
    }

    /// Ends the redrawn line on a terminal.
    pub fn finish(&mut self) {
        if self.tty && self.last_draw.is_some() {
            let _ = writeln!(self.out);
        }
    }
}

/// Bytes as megabytes (10^6), one decimal.
pub fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_progress_prints_each_tenth_once() {
        let mut out = Vec::new();
        let mut line = ProgressLine::new("a.iso", &mut out, false);
        for received in (0..=1000).step_by(25) {
            line.update(&Progress {
                received,
                total: Some(1000),
                resumed_from: 0,
            });
        }
        line.finish();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 11, "{text}");
        assert!(
            lines[0].starts_with("a.iso:   0% 0.0 MB of 0.0 MB"),
            "{text}"
        );
        assert!(lines[10].starts_with("a.iso: 100%"), "{text}");
        assert!(lines.iter().all(|l| l.ends_with("MB/s")));
        assert!(!text.contains('\r'));
    }

    #[test]
    fn terminal_progress_redraws_one_line() {
        let mut out = Vec::new();
        let mut line = ProgressLine::new("b.iso", &mut out, true);
        line.update(&Progress {
            received: 0,
            total: None,
            resumed_from: 0,
        });
        line.update(&Progress {
            received: 5_000_000,
            total: None,
            resumed_from: 0,
        });
        line.finish();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("\r\x1b[Kb.iso: 0.0 MB"), "{text:?}");
        assert_eq!(text.matches('\n').count(), 1);
    }

    #[test]
    fn links_are_replaced_but_files_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("a.iso");
        point_link(&link, Path::new("downloads/a.iso/a.iso")).unwrap();
        point_link(&link, Path::new("/elsewhere/a.iso")).unwrap();
        assert_eq!(fs::read_link(&link).unwrap(), Path::new("/elsewhere/a.iso"));
        let file = dir.path().join("b.iso");
        fs::write(&file, "by hand").unwrap();
        assert!(matches!(
            point_link(&file, Path::new("x")),
            Err(CatalogueError::NotALink(_))
        ));
        assert_eq!(fs::read_to_string(&file).unwrap(), "by hand");
    }
}
