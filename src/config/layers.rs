//! Where the configuration comes from, in order: the main file (`-c FILE`, else
//! `/etc/darts/config.toml` when it exists), `config.d/*.toml` beside it in name order, then
//! `--key=value` from the command line. Later layers win key by key, and each effective
//! value remembers its origin (file and line, command line, or default).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::check::{self, Problem};
use super::{override_value, Config, ConfigError, DEFAULT_FILE};

/// Name of the directory of drop-in files beside the main file.
pub const DROPIN_DIR: &str = "config.d";

/// What the configuration is read from: a main file (or the default location) and the
/// command line's overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigSource {
    pub file: Option<PathBuf>,
    pub overrides: Vec<(String, String)>,
}

impl ConfigSource {
    pub fn new(file: Option<&Path>, overrides: &[(String, String)]) -> Self {
        Self {
            file: file.map(Path::to_owned),
            overrides: overrides.to_vec(),
        }
    }

    /// The files to read, in order: the main file (when named, or when the default one
    /// exists), then `config.d/*.toml` beside it sorted by name. Names starting with a
    /// dot (editors' lock and swap files) are skipped.
    pub fn files(&self) -> Result<Vec<PathBuf>, ConfigError> {
        let main = self
            .file
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_FILE));
        let mut files = Vec::new();
        if self.file.is_some() || main.exists() {
            files.push(main.clone());
        }
        let dir = match main.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.join(DROPIN_DIR),
            _ => PathBuf::from(DROPIN_DIR),
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
            Err(source) => return Err(ConfigError::Read { path: dir, source }),
        };
        let mut dropins: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default();
                !name.starts_with('.') && name.ends_with(".toml") && p.is_file()
            })
            .collect();
        dropins.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        files.extend(dropins);
        Ok(files)
    }
}

/// Where an effective value was set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    /// `line` is 1-based; 0 when the problem is with the file as a whole.
    File {
        path: PathBuf,
        line: usize,
    },
    CommandLine,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::File { path, line: 0 } => write!(f, "{}", path.display()),
            Self::File { path, line } => write!(f, "{}:{line}", path.display()),
            Self::CommandLine => f.write_str("command line"),
        }
    }
}

/// One `key = value` of one layer.
#[derive(Debug, Clone)]
pub struct Setting {
    pub key: String,
    pub value: toml::Value,
    pub origin: Origin,
}

/// Every setting of every layer, in the order they apply.
#[derive(Debug, Clone, Default)]
pub struct Layers {
    pub files: Vec<PathBuf>,
    pub settings: Vec<Setting>,
}

impl Layers {
    /// Reads every layer. Files that cannot be read or parsed become problems (with the
    /// line of a syntax error) and add no setting; the other layers are still read.
    pub fn read(source: &ConfigSource) -> (Self, Vec<Problem>) {
        let mut layers = Self::default();
        let mut problems = Vec::new();
        match source.files() {
            Ok(files) => {
                for path in files {
                    match read_file(&path) {
                        Ok(settings) => layers.settings.extend(settings),
                        Err(p) => problems.push(p),
                    }
                    layers.files.push(path);
                }
            }
            Err(e) => problems.push(Problem::error(None, None, e.to_string())),
        }
        for (key, raw) in &source.overrides {
            layers.settings.push(Setting {
                key: key.clone(),
                value: override_value(raw),
                origin: Origin::CommandLine,
            });
        }
        (layers, problems)
    }

    /// The effective table (later settings win) and the origin of each key set.
    pub fn effective(&self) -> (toml::Table, BTreeMap<String, Origin>) {
        let mut table = toml::Table::new();
        let mut origins = BTreeMap::new();
        for s in &self.settings {
            table.insert(s.key.clone(), s.value.clone());
            origins.insert(s.key.clone(), s.origin.clone());
        }
        (table, origins)
    }
}

/// A file's top-level keys with the line each is on.
fn read_file(path: &Path) -> Result<Vec<Setting>, Problem> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Problem::error(
            Some(Origin::File {
                path: path.to_owned(),
                line: 0,
            }),
            None,
            format!("cannot read: {e}"),
        )
    })?;
    let entries = parse_with_lines(&text).map_err(|(line, message)| {
        Problem::error(
            Some(Origin::File {
                path: path.to_owned(),
                line,
            }),
            None,
            format!("TOML syntax: {message}"),
        )
    })?;
    Ok(entries
        .into_iter()
        .map(|(key, value, line)| Setting {
            key,
            value,
            origin: Origin::File {
                path: path.to_owned(),
                line,
            },
        })
        .collect())
}

/// A top-level `key = value` and the 1-based line it is on.
pub(crate) type Entry = (String, toml::Value, usize);

/// Parses TOML into `(key, value, line)` in file order; a syntax error as `(line, message)`.
pub(crate) fn parse_with_lines(text: &str) -> Result<Vec<Entry>, (usize, String)> {
    let spanned: BTreeMap<Spanned<String>, Spanned<toml::Value>> =
        toml::from_str(text).map_err(|e: toml::de::Error| {
            let line = e.span().map_or(0, |s| line_of(text, s.start));
            (line, e.message().trim().to_owned())
        })?;
    let mut entries: Vec<Entry> = spanned
        .into_iter()
        .map(|(k, v)| {
            let line = line_of(text, k.span().start);
            (k.into_inner(), v.into_inner(), line)
        })
        .collect();
    entries.sort_by_key(|(_, _, line)| *line);
    Ok(entries)
}

/// The 1-based line of byte offset `at`.
fn line_of(text: &str, at: usize) -> usize {
    text.get(..at).map_or(0, |t| t.matches('\n').count()) + 1
}

/// The effective configuration and where each value came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// The origin of every key set by a layer; the others are defaults.
    pub origins: BTreeMap<String, Origin>,
    /// The files read, in order.
    pub files: Vec<PathBuf>,
}

impl Loaded {
    /// Reads every layer and builds the configuration. Unreadable files, syntax errors,
    /// unknown keys and wrong types are errors, all reported at once with file, line and
    /// key. Combinations are not checked here (see [`check::check`]), so that commands
    /// such as `darts status` work for users who cannot read, say, the TLS key.
    pub fn load(source: &ConfigSource) -> Result<Self, ConfigError> {
        let (layers, mut problems) = Layers::read(source);
        problems.extend(check::settings(&layers.settings));
        let errors: Vec<Problem> = problems.into_iter().filter(Problem::is_error).collect();
        if !errors.is_empty() {
            return Err(ConfigError::Invalid(errors));
        }
        Self::build(&layers).map_err(|p| ConfigError::Invalid(vec![p]))
    }

    /// The configuration of layers whose settings were each checked.
    pub(crate) fn build(layers: &Layers) -> Result<Self, Problem> {
        let (table, origins) = layers.effective();
        let config = Config::deserialize(toml::Value::Table(table))
            .map_err(|e| Problem::error(None, None, e.to_string().trim().to_owned()))?;
        Ok(Self {
            config,
            origins,
            files: layers.files.clone(),
        })
    }

    /// Where `key`'s value came from.
    pub fn origin(&self, key: &str) -> Origin {
        self.origins.get(key).cloned().unwrap_or(Origin::Default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_with_their_lines() {
        let text = "# comment\nmachine = \"a\"\n\nlayout_cpu = [\n  1,\n  2,\n]\noneshot = true\n";
        let e = parse_with_lines(text).unwrap();
        let lines: Vec<(&str, usize)> = e.iter().map(|(k, _, l)| (k.as_str(), *l)).collect();
        assert_eq!(
            lines,
            vec![("machine", 2), ("layout_cpu", 4), ("oneshot", 8)]
        );
        let (line, msg) = parse_with_lines("a = 1\nb = = 2\n").unwrap_err();
        assert_eq!(line, 2, "{msg}");
    }

    #[test]
    fn origins_display_as_operators_read_them() {
        let o = Origin::File {
            path: "/etc/darts/config.d/10-auth.toml".into(),
            line: 3,
        };
        assert_eq!(o.to_string(), "/etc/darts/config.d/10-auth.toml:3");
        assert_eq!(Origin::CommandLine.to_string(), "command line");
        assert_eq!(Origin::Default.to_string(), "default");
    }

    #[test]
    fn dropins_are_read_in_name_order_and_others_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("config.toml");
        std::fs::write(&main, "").unwrap();
        let d = dir.path().join(DROPIN_DIR);
        std::fs::create_dir(&d).unwrap();
        for name in [
            "20-b.toml",
            "10-a.toml",
            ".10-a.toml.swp",
            ".hidden.toml",
            "machines.ini",
            "30-c.toml~",
        ] {
            std::fs::write(d.join(name), "").unwrap();
        }
        let files = ConfigSource::new(Some(&main), &[]).files().unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            vec!["config.toml", "config.d/10-a.toml", "config.d/20-b.toml"]
        );
    }
}
