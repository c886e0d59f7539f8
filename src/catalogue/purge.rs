//! `purge`: deletes what lies in `dir_machines` without an enabled catalogue entry,
//! except what a running session uses.

use std::fs;
use std::path::{Path, PathBuf};

use super::{Catalogue, CatalogueError};

/// What `purge` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeReport {
    pub deleted: Vec<PathBuf>,
    /// Kept: a session (or an enabled machine's link) uses them.
    pub in_use: Vec<PathBuf>,
    /// Kept: the operator said no.
    pub declined: Vec<PathBuf>,
}

/// Deletes the catalogue's orphans (only those whose name starts with `prefix`, when
/// given) that no path of `in_use` lies in or points into, asking `confirm` for each.
/// Symbolic links are removed, never followed.
pub fn purge(
    cat: &Catalogue,
    in_use: &[PathBuf],
    prefix: Option<&str>,
    confirm: &mut dyn FnMut(&Path) -> bool,
) -> Result<PurgeReport, CatalogueError> {
    let mut used: Vec<PathBuf> = in_use.to_vec();
    // An enabled machine may be a link into a directory that looks orphaned.
    used.extend(cat.machines().iter().map(|m| m.path.clone()));
    let used = with_canonical(&used);
    let mut report = PurgeReport::default();
    for orphan in cat.orphans() {
        let name = orphan
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        if prefix.is_some_and(|p| !name.starts_with(p)) {
            continue;
        }
        let roots = with_canonical(std::slice::from_ref(orphan));
        if used.iter().any(|u| roots.iter().any(|r| u.starts_with(r))) {
            report.in_use.push(orphan.clone());
            continue;
        }
        if !confirm(orphan) {
            report.declined.push(orphan.clone());
            continue;
        }
        let meta = fs::symlink_metadata(orphan).map_err(CatalogueError::io(orphan))?;
        let removed = if meta.is_dir() {
            fs::remove_dir_all(orphan)
        } else {
            fs::remove_file(orphan)
        };
        removed.map_err(CatalogueError::io(orphan))?;
        tracing::info!(path = %orphan.display(), "purged");
        report.deleted.push(orphan.clone());
    }
    Ok(report)
}

/// Each path, plus its resolved form when it has one.
fn with_canonical(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::with_capacity(paths.len() * 2);
    for p in paths {
        out.push(p.clone());
        if let Ok(c) = fs::canonicalize(p) {
            if &c != p {
                out.push(c);
            }
        }
    }
    out
}

/// Images of running sessions: the `machine_path` of each `dir_cfg/*.json` session file.
pub fn in_use_from_sessions(dir_cfg: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir_cfg) else {
        return Vec::new();
    };
    let mut paths = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let Ok(bytes) = fs::read(&path) else {
            continue;
        };
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            tracing::debug!(path = %path.display(), "not a session file");
            continue;
        };
        if let Some(p) = value.get("machine_path").and_then(|v| v.as_str()) {
            paths.push(PathBuf::from(p));
        }
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_files_give_machine_paths() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("s1.json"),
            r#"{"name":"s1","machine_path":"/m/a.iso"}"#,
        )
        .unwrap();
        fs::write(dir.path().join("s2.json"), r#"{"name":"s2"}"#).unwrap();
        fs::write(dir.path().join("s3.json"), "[1,2").unwrap();
        fs::write(dir.path().join("x.txt"), r#"{"machine_path":"/m/b.iso"}"#).unwrap();
        assert_eq!(
            in_use_from_sessions(dir.path()),
            vec![PathBuf::from("/m/a.iso")]
        );
        assert!(in_use_from_sessions(&dir.path().join("none")).is_empty());
    }
}
