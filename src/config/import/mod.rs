//! `darts config import`: the original's `config.pl` (and `config.d/*.pl` beside it, in
//! name order) as darts TOML. Literal assignments `$config{key} = value;` convert: numbers
//! (with simple arithmetic such as `4*86400`), quoted strings (joined with `.`), lists
//! `(…)`, `[…]` and `qw(…)`, `1`/`0` booleans, and `push @{$config{key}}, …`. The rest
//! (subroutines, hashes, variables, other Perl) is listed with the darts way to do it.
//!
//! darts runs no Perl: this is a reader of the literal subset operators write, not a Perl
//! interpreter. Anything outside that subset is reported, never guessed.

mod convert;
mod perl;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use super::layers::Origin;
use convert::State;

/// Errors reading the files to convert.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A key converted, with where it was set.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    pub key: String,
    pub value: toml::Value,
    pub origin: Origin,
    /// The original's name when darts spells it differently.
    pub was: Option<String>,
}

/// Something that could not be converted, and what to do in darts instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub origin: Origin,
    /// The statement, shortened.
    pub what: String,
    pub advice: String,
}

/// The result of an import.
#[derive(Debug, Clone, Default)]
pub struct Import {
    pub files: Vec<PathBuf>,
    /// The effective value of each key (later files win), in the order of the key table.
    pub converted: Vec<Converted>,
    pub skipped: Vec<Skipped>,
}

/// Converts `main` and `config.d/*.pl` beside it.
pub fn import(main: &Path) -> Result<Import, ImportError> {
    let mut files = vec![main.to_owned()];
    let dir = match main.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.join("config.d"),
        _ => PathBuf::from("config.d"),
    };
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut pl: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "pl") && p.is_file())
            .collect();
        pl.sort();
        files.extend(pl);
    }
    let mut state = State::default();
    for path in &files {
        let text = std::fs::read_to_string(path).map_err(|source| ImportError::Read {
            path: path.clone(),
            source,
        })?;
        state.file(path, &text);
    }
    Ok(state.finish(files))
}

/// Converts one file's text (for tests and for `import`).
pub fn import_text(path: &Path, text: &str) -> Import {
    let mut state = State::default();
    state.file(path, text);
    state.finish(vec![path.to_owned()])
}

/// Renders the TOML file: what was not converted first (as comments), then each key with
/// where it came from.
pub fn render(import: &Import) -> String {
    let mut out = String::new();
    out.push_str("# darts configuration converted by `darts config import` from:\n");
    for f in &import.files {
        out.push_str(&format!("#   {}\n", f.display()));
    }
    out.push_str("# Check it with `darts config check -c FILE`.\n");
    if !import.skipped.is_empty() {
        out.push_str(&format!("#\n# Not converted ({}):\n", import.skipped.len()));
        for s in &import.skipped {
            out.push_str(&format!(
                "#   {}: {}\n#       {}\n",
                s.origin, s.what, s.advice
            ));
        }
    }
    out.push('\n');
    for c in &import.converted {
        let was = c
            .was
            .as_deref()
            .map(|w| format!(" (was {w})"))
            .unwrap_or_default();
        out.push_str(&format!("{} = {}  # {}{was}\n", c.key, c.value, c.origin));
    }
    out
}
