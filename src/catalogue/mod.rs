//! The machine catalogue: which virtual machines users may start, read from
//! `machines.conf` and `config.d/*.ini`/`*.conf` under `dir_etc` in the original's INI
//! format (see [`parse`]), and the images in `dir_machines`.
//!
//! ```text
//! dir_etc/machines.conf, dir_etc/config.d/*.ini, dir_etc/config.d/*.conf
//! dir_machines/<name>                      the image, or a symlink to it
//! dir_machines/downloads/<name>/<name>     a downloaded image (.part, .meta beside it)
//! ```
//!
//! [`Catalogue::load`] never fails: a broken file or line is reported in
//! [`Catalogue::problems`] and everything else still loads.

pub mod cache;
pub mod command;
pub mod download;
pub mod parse;
pub mod purge;
pub mod store;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

pub use parse::{check_name, DisabledEntry, ImageFormat, Location, Problem, Source};

use crate::config::Config;
use crate::fetch::FetchError;

/// The main catalogue file in `dir_etc`.
pub const MAIN_FILE: &str = "machines.conf";
/// Directory of extra catalogue files in `dir_etc`.
pub const DROP_IN_DIR: &str = "config.d";
/// Where downloads live inside `dir_machines`.
pub const DOWNLOADS_DIR: &str = "downloads";

/// Errors changing the catalogue or the image directory.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid machine name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error(
        "{name}: unknown image format (the name must end in one of {})",
        ImageFormat::EXTENSIONS
    )]
    UnknownFormat { name: String },
    #[error("no machine {0:?} in the catalogue")]
    Unknown(String),
    #[error("{0} exists and is not a symbolic link; not replacing it")]
    NotALink(PathBuf),
    #[error("{0} already exists")]
    Exists(PathBuf),
    #[error("{name}: {path} does not exist")]
    SourceMissing { name: String, path: PathBuf },
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

impl CatalogueError {
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_owned();
        move |source| Self::Io { path, source }
    }
}

/// An enabled machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// File name in `dir_machines`, with its extension; what users pick.
    pub name: String,
    /// Label in the landing page (the name when none is given).
    pub description: String,
    pub source: Source,
    pub format: ImageFormat,
    /// `dir_machines/<name>`.
    pub path: PathBuf,
    /// Whether the image exists (a symlink counts when its target does).
    pub available: bool,
    /// The section header that defines it.
    pub defined_at: Location,
}

/// A commented-out (`;[name]`) machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisabledMachine {
    pub name: String,
    pub url: Option<String>,
    pub description: Option<String>,
    pub defined_at: Location,
    /// Whether `dir_machines/<name>` still exists.
    pub available: bool,
}

/// The catalogue as loaded from disk.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    dir_etc: PathBuf,
    dir_machines: PathBuf,
    files: Vec<PathBuf>,
    machines: Vec<Machine>,
    disabled: Vec<DisabledMachine>,
    orphans: Vec<PathBuf>,
    problems: Vec<Problem>,
}

impl Catalogue {
    /// Reads the catalogue of `config.dir_etc` against `config.dir_machines`.
    pub fn load(config: &Config) -> Catalogue {
        Self::load_from(&config.dir_etc, &config.dir_machines)
    }

    /// Reads the catalogue files under `dir_etc` against the images in `dir_machines`.
    pub fn load_from(dir_etc: &Path, dir_machines: &Path) -> Catalogue {
        let mut cat = Catalogue {
            dir_etc: dir_etc.to_owned(),
            dir_machines: dir_machines.to_owned(),
            ..Catalogue::default()
        };
        let (files, mut problems) = catalogue_files(dir_etc);
        let mut by_name: HashMap<String, usize> = HashMap::new();
        let mut disabled: Vec<DisabledEntry> = Vec::new();
        for file in &files {
            let text = match fs::read_to_string(file) {
                Ok(t) => t,
                Err(e) => {
                    problems.push(Problem {
                        file: file.clone(),
                        line: None,
                        message: format!("cannot read: {e}"),
                        skipped: true,
                    });
                    continue;
                }
            };
            let parsed = parse::parse(file, &text);
            problems.extend(parsed.problems);
            disabled.extend(parsed.disabled);
            for e in parsed.entries {
                let machine = Machine {
                    path: dir_machines.join(&e.name),
                    available: dir_machines.join(&e.name).is_file(),
                    description: e.description.unwrap_or_else(|| e.name.clone()),
                    name: e.name,
                    source: e.source,
                    format: e.format,
                    defined_at: e.at,
                };
                // Later files refine earlier ones (config.d over machines.conf).
                if let Some(&i) = by_name.get(&machine.name) {
                    problems.push(Problem {
                        file: machine.defined_at.file.clone(),
                        line: Some(machine.defined_at.line),
                        message: format!(
                            "{} is also defined at {}; this definition wins",
                            machine.name, cat.machines[i].defined_at
                        ),
                        skipped: false,
                    });
                    cat.machines[i] = machine;
                } else {
                    by_name.insert(machine.name.clone(), cat.machines.len());
                    cat.machines.push(machine);
                }
            }
        }
        let mut seen_disabled = std::collections::HashSet::new();
        for d in disabled {
            if by_name.contains_key(&d.name) || !seen_disabled.insert(d.name.clone()) {
                continue;
            }
            cat.disabled.push(DisabledMachine {
                available: dir_machines.join(&d.name).is_file(),
                name: d.name,
                url: d.url,
                description: d.description,
                defined_at: d.at,
            });
        }
        cat.orphans = find_orphans(dir_machines, &by_name);
        cat.files = files;
        cat.problems = problems;
        cat
    }

    /// Enabled machines, in catalogue order.
    pub fn machines(&self) -> &[Machine] {
        &self.machines
    }

    /// The enabled machine called `name`.
    pub fn get(&self, name: &str) -> Option<&Machine> {
        self.machines.iter().find(|m| m.name == name)
    }

    /// Commented-out machines not enabled elsewhere.
    pub fn disabled(&self) -> &[DisabledMachine] {
        &self.disabled
    }

    /// Entries of `dir_machines` (and of its `downloads/`) that no enabled machine uses.
    pub fn orphans(&self) -> &[PathBuf] {
        &self.orphans
    }

    /// What could not be read.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// The catalogue files read, in order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    pub fn dir_etc(&self) -> &Path {
        &self.dir_etc
    }

    pub fn dir_machines(&self) -> &Path {
        &self.dir_machines
    }
}

/// `machines.conf`, then `config.d/*.ini`, then `config.d/*.conf` (each sorted), as
/// the original read them.
fn catalogue_files(dir_etc: &Path) -> (Vec<PathBuf>, Vec<Problem>) {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    let main = dir_etc.join(MAIN_FILE);
    if main.exists() {
        files.push(main);
    }
    let drop_in = dir_etc.join(DROP_IN_DIR);
    let mut by_ext: [Vec<PathBuf>; 2] = [Vec::new(), Vec::new()];
    match fs::read_dir(&drop_in) {
        Ok(entries) => {
            for entry in entries.flatten() {
                let path = entry.path();
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.starts_with('.') || !path.is_file() {
                    continue;
                }
                match path.extension().and_then(|e| e.to_str()) {
                    Some("ini") => by_ext[0].push(path),
                    Some("conf") => by_ext[1].push(path),
                    _ => {}
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => problems.push(Problem {
            file: drop_in,
            line: None,
            message: format!("cannot list: {e}"),
            skipped: true,
        }),
    }
    for mut group in by_ext {
        group.sort();
        files.extend(group);
    }
    (files, problems)
}

fn find_orphans(dir_machines: &Path, enabled: &HashMap<String, usize>) -> Vec<PathBuf> {
    let mut orphans = Vec::new();
    let listed = |dir: &Path| -> Vec<(String, PathBuf)> {
        fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
                    .filter(|(name, _)| !name.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default()
    };
    for (name, path) in listed(dir_machines) {
        if name == DOWNLOADS_DIR && path.is_dir() && !path.is_symlink() {
            for (sub, sub_path) in listed(&path) {
                if !enabled.contains_key(&sub) {
                    orphans.push(sub_path);
                }
            }
        } else if !enabled.contains_key(&name) {
            orphans.push(path);
        }
    }
    orphans.sort();
    orphans
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_in_order_later_definitions_win_and_orphans() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc");
        let machines = dir.path().join("machines");
        fs::create_dir_all(etc.join("config.d")).unwrap();
        fs::create_dir_all(machines.join("downloads/old.iso")).unwrap();
        fs::create_dir_all(machines.join("downloads/b.iso")).unwrap();
        fs::write(
            etc.join("machines.conf"),
            "[a.iso]\ndescription=from main\n;[gone.qcow2]\n;[b.iso]\n",
        )
        .unwrap();
        fs::write(
            etc.join("config.d/20-x.conf"),
            "[a.iso]\ndescription=from conf\n",
        )
        .unwrap();
        fs::write(etc.join("config.d/10-b.ini"), "[b.iso]\nbroken line\n").unwrap();
        fs::write(etc.join("config.d/notes.txt"), "[c.iso]\n").unwrap();
        fs::write(machines.join("a.iso"), "x").unwrap();
        fs::write(machines.join("stray.qcow2"), "x").unwrap();
        fs::write(machines.join(".hidden"), "x").unwrap();
        std::os::unix::fs::symlink("/nonexistent", machines.join("b.iso")).unwrap();

        let cat = Catalogue::load_from(&etc, &machines);
        let files: Vec<_> = cat
            .files()
            .iter()
            .map(|f| f.strip_prefix(&etc).unwrap().to_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            files,
            ["machines.conf", "config.d/10-b.ini", "config.d/20-x.conf"]
        );
        let a = cat.get("a.iso").unwrap();
        assert_eq!(a.description, "from conf");
        assert!(a.available);
        assert_eq!(a.path, machines.join("a.iso"));
        let b = cat.get("b.iso").unwrap();
        assert!(!b.available, "a dangling symlink is not available");
        assert_eq!(b.description, "b.iso");
        assert_eq!(cat.machines().len(), 2);
        assert_eq!(cat.disabled().len(), 1, "b.iso is enabled elsewhere");
        assert_eq!(cat.disabled()[0].name, "gone.qcow2");
        assert_eq!(
            cat.orphans(),
            [
                machines.join("downloads/old.iso"),
                machines.join("stray.qcow2")
            ]
        );
        let problems: Vec<String> = cat.problems().iter().map(|p| p.to_string()).collect();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("10-b.ini:2")));
        assert!(problems
            .iter()
            .any(|p| p.contains("20-x.conf:1") && p.contains("also defined")));
        assert!(cat.get("c.iso").is_none());
    }

    #[test]
    fn unreadable_file_does_not_hide_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path();
        fs::create_dir_all(etc.join("config.d/dir.ini")).unwrap();
        fs::write(etc.join("config.d/bad.ini"), [0xff, 0xfe, b'\n']).unwrap();
        fs::write(etc.join("config.d/good.ini"), "[g.iso]\n").unwrap();
        let cat = Catalogue::load_from(etc, &etc.join("none"));
        assert_eq!(cat.machines().len(), 1);
        assert_eq!(cat.problems().len(), 1);
        assert!(cat.problems()[0].file.ends_with("bad.ini"));
        assert!(cat.orphans().is_empty());
    }
}
