//! The catalogue as the service serves it: read once and kept in memory, so the pages'
//! unauthenticated `/api/config` and `/api/machines` (and every Create) cost no file
//! reads. It is read again only when what it was read from changes: the catalogue files,
//! the drop-in directory, `dir_machines`, or a machine's image appearing or going. The
//! service checks that once a second, off the async workers (`Manager`'s refresher). An
//! edit that breaks a file is refused: the last good catalogue stays, and the log says why.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;

use super::{Catalogue, DROP_IN_DIR, MAIN_FILE};

/// What a catalogue was read from: each path with its modification time and size, or
/// `None` when it was missing. Equal stamps mean nothing changed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp(Vec<(PathBuf, Option<(SystemTime, u64)>)>);

impl Stamp {
    fn of(catalogue: &Catalogue) -> Self {
        let mut paths = vec![
            catalogue.dir_etc.join(MAIN_FILE),
            catalogue.dir_etc.join(DROP_IN_DIR),
            catalogue.dir_machines.clone(),
        ];
        paths.extend(catalogue.files.iter().cloned());
        paths.extend(catalogue.machines().iter().map(|m| m.path.clone()));
        Self(paths.into_iter().map(|p| (p.clone(), meta(&p))).collect())
    }
}

/// Follows symlinks: a machine that is a link to an image becomes available when the
/// image does.
fn meta(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// The current catalogue and what it was read from.
#[derive(Debug)]
pub struct CatalogueCache {
    current: ArcSwap<Catalogue>,
    seen: Mutex<Seen>,
    loads: AtomicU64,
}

/// The last catalogue read (served, or refused as a broken edit) and the stamp of what it
/// was read from: a refused read is not read again until something changes again.
#[derive(Debug)]
struct Seen {
    read: Arc<Catalogue>,
    stamp: Stamp,
}

impl CatalogueCache {
    /// Reads the catalogue (blocking: at start, or off the async workers). Problems and
    /// all, it is the best there is at start.
    pub fn load(dir_etc: &Path, dir_machines: &Path) -> Self {
        let catalogue = Arc::new(Catalogue::load_from(dir_etc, dir_machines));
        log_loaded(&catalogue);
        Self {
            seen: Mutex::new(Seen {
                stamp: Stamp::of(&catalogue),
                read: catalogue.clone(),
            }),
            current: ArcSwap::new(catalogue),
            loads: AtomicU64::new(1),
        }
    }

    /// The catalogue as last read; no I/O.
    pub fn get(&self) -> Arc<Catalogue> {
        self.current.load_full()
    }

    /// Reads the catalogue again if anything it came from changed, or if the directories
    /// are others (a reloaded configuration). Blocking. True when the catalogue served
    /// changed. An edit that loses something the served catalogue has not lost (a broken
    /// line or section, an unreadable file: see `broken_files`) is refused and logged:
    /// the last good catalogue stays until the files are fixed, rather than machines
    /// vanishing or taking another's settings in the middle of an edit.
    pub fn refresh(&self, dir_etc: &Path, dir_machines: &Path) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let moved = |c: &Catalogue| c.dir_etc != dir_etc || c.dir_machines != dir_machines;
        if !moved(&seen.read) && Stamp::of(&seen.read) == seen.stamp {
            return false;
        }
        let catalogue = Arc::new(Catalogue::load_from(dir_etc, dir_machines));
        self.loads.fetch_add(1, Ordering::Relaxed);
        *seen = Seen {
            stamp: Stamp::of(&catalogue),
            read: catalogue.clone(),
        };
        let current = self.get();
        if !moved(&current) {
            let broken = broken_files(&current, &catalogue);
            if !broken.is_empty() {
                log_refused(&catalogue, &broken);
                return false;
            }
        }
        log_loaded(&catalogue);
        self.current.store(catalogue);
        true
    }

    /// How many times the catalogue was read.
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }
}

/// Files (or the drop-in directory) where `new` left out more than `current` did.
/// Counted per file, so line numbers moved by an edit do not matter, and an edit no
/// worse than what is served (a catalogue broken since the start) is taken.
fn broken_files<'a>(current: &Catalogue, new: &'a Catalogue) -> Vec<&'a Path> {
    let count = |c: &Catalogue, file: &Path| {
        c.problems
            .iter()
            .filter(|p| p.skipped && p.file == file)
            .count()
    };
    let mut broken: Vec<&Path> = Vec::new();
    for p in new.problems.iter().filter(|p| p.skipped) {
        let file = p.file.as_path();
        if !broken.contains(&file) && count(new, file) > count(current, file) {
            broken.push(file);
        }
    }
    broken
}

fn log_refused(catalogue: &Catalogue, broken: &[&Path]) {
    for file in broken {
        tracing::warn!(
            file = %file.display(),
            "catalogue edit refused: the previous catalogue is served until this file is fixed"
        );
    }
    for p in catalogue
        .problems
        .iter()
        .filter(|p| broken.contains(&p.file.as_path()))
    {
        tracing::warn!(problem = %p, "catalogue");
    }
}

fn log_loaded(catalogue: &Catalogue) {
    let available = catalogue.machines().iter().filter(|m| m.available).count();
    tracing::info!(
        dir_etc = %catalogue.dir_etc.display(),
        machines = catalogue.machines().len(),
        available,
        problems = catalogue.problems.len(),
        "catalogue loaded"
    );
    for p in &catalogue.problems {
        tracing::warn!(problem = %p, "catalogue");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_once_and_again_only_when_something_changed() {
        let dir = tempfile::tempdir().unwrap();
        let (etc, machines) = (dir.path().join("etc"), dir.path().join("machines"));
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::create_dir_all(&machines).unwrap();
        std::fs::write(etc.join(MAIN_FILE), "[a.qcow2]\n").unwrap();
        let cache = CatalogueCache::load(&etc, &machines);
        assert!(!cache.get().get("a.qcow2").unwrap().available);
        for _ in 0..100 {
            assert!(!cache.refresh(&etc, &machines));
            assert!(cache.get().get("a.qcow2").is_some());
        }
        assert_eq!(cache.loads(), 1);
        // An image appears: the machine becomes available.
        std::fs::write(machines.join("a.qcow2"), b"x").unwrap();
        assert!(cache.refresh(&etc, &machines));
        assert!(cache.get().get("a.qcow2").unwrap().available);
        // A drop-in file is added: its machine appears.
        std::fs::create_dir_all(etc.join(DROP_IN_DIR)).unwrap();
        std::fs::write(etc.join(DROP_IN_DIR).join("b.conf"), "[b.iso]\n").unwrap();
        assert!(cache.refresh(&etc, &machines));
        assert!(cache.get().get("b.iso").is_some());
        // Another directory (a reloaded configuration) is read at once.
        let other = dir.path().join("other");
        std::fs::create_dir_all(&other).unwrap();
        assert!(cache.refresh(&other, &machines));
        assert!(cache.get().machines().is_empty());
        assert_eq!(cache.loads(), 4);
    }

    #[test]
    fn a_broken_edit_keeps_the_last_good_catalogue() {
        let dir = tempfile::tempdir().unwrap();
        let (etc, machines) = (dir.path().join("etc"), dir.path().join("machines"));
        std::fs::create_dir_all(etc.join(DROP_IN_DIR)).unwrap();
        std::fs::create_dir_all(&machines).unwrap();
        let main = etc.join(MAIN_FILE);
        std::fs::write(
            &main,
            "[a.qcow2]\ndescription=A\n\n[b.qcow2]\ndescription=B\n",
        )
        .unwrap();
        let cache = CatalogueCache::load(&etc, &machines);
        let names = |c: &CatalogueCache| -> Vec<String> {
            c.get().machines().iter().map(|m| m.name.clone()).collect()
        };
        let description = |c: &CatalogueCache, n: &str| c.get().get(n).unwrap().description.clone();
        assert_eq!(names(&cache), ["a.qcow2", "b.qcow2"]);

        // A bracket lost: b's section would vanish and its description land on a.
        std::fs::write(
            &main,
            "[a.qcow2]\ndescription=A\n\n[b.qcow2\ndescription=B\n",
        )
        .unwrap();
        assert!(!cache.refresh(&etc, &machines));
        assert_eq!(names(&cache), ["a.qcow2", "b.qcow2"]);
        assert_eq!(description(&cache, "a.qcow2"), "A");
        // Not read again every check while it stays broken.
        let loads = cache.loads();
        assert!(!cache.refresh(&etc, &machines));
        assert_eq!(cache.loads(), loads);

        // Fixed (and changed): taken.
        std::fs::write(&main, "[a.qcow2]\ndescription=A\n\n[c.qcow2]\n").unwrap();
        assert!(cache.refresh(&etc, &machines));
        assert_eq!(names(&cache), ["a.qcow2", "c.qcow2"]);

        // A drop-in file that refines a machine is no broken edit.
        std::fs::write(
            etc.join(DROP_IN_DIR).join("x.ini"),
            "[a.qcow2]\ndescription=Override\n",
        )
        .unwrap();
        assert!(cache.refresh(&etc, &machines));
        assert_eq!(description(&cache, "a.qcow2"), "Override");

        // A broken drop-in file keeps the rest as it was, and so do the good files' edits
        // until it is fixed.
        std::fs::write(
            etc.join(DROP_IN_DIR).join("y.ini"),
            "description= outside\n",
        )
        .unwrap();
        assert!(!cache.refresh(&etc, &machines));
        assert_eq!(names(&cache), ["a.qcow2", "c.qcow2"]);
        std::fs::remove_file(etc.join(DROP_IN_DIR).join("y.ini")).unwrap();
        assert!(cache.refresh(&etc, &machines));

        // A catalogue broken from the start is served as far as it could be read, and an
        // edit no worse than it is taken.
        std::fs::write(&main, "[d.qcow2\n[e.qcow2]\n").unwrap();
        let broken = CatalogueCache::load(&etc, &machines);
        assert!(broken.get().get("e.qcow2").is_some());
        std::fs::write(&main, "[d.qcow2\n[e.qcow2]\n[f.qcow2]\n").unwrap();
        assert!(broken.refresh(&etc, &machines));
        assert!(broken.get().get("f.qcow2").is_some());
        // Another directory (a reloaded configuration) is always taken.
        let other = dir.path().join("other");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join(MAIN_FILE), "[g.qcow2\n").unwrap();
        assert!(broken.refresh(&other, &machines));
        assert!(broken.get().machines().is_empty());
    }
}
