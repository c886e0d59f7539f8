//! The catalogue as the service serves it: read once and kept in memory, so the pages'
//! unauthenticated `/api/config` and `/api/machines` (and every Create) cost no file
//! reads. It is read again only when what it was read from changes: the catalogue files,
//! the drop-in directory, `dir_machines`, or a machine's image appearing or going. The
//! service checks that once a second, off the async workers (`Manager`'s refresher).

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
    stamp: Mutex<Stamp>,
    loads: AtomicU64,
}

impl CatalogueCache {
    /// Reads the catalogue (blocking: at start, or off the async workers).
    pub fn load(dir_etc: &Path, dir_machines: &Path) -> Self {
        let catalogue = Catalogue::load_from(dir_etc, dir_machines);
        log_loaded(&catalogue);
        Self {
            stamp: Mutex::new(Stamp::of(&catalogue)),
            current: ArcSwap::from_pointee(catalogue),
            loads: AtomicU64::new(1),
        }
    }

    /// The catalogue as last read; no I/O.
    pub fn get(&self) -> Arc<Catalogue> {
        self.current.load_full()
    }

    /// Reads the catalogue again if anything it came from changed, or if the directories
    /// are others (a reloaded configuration). Blocking. True when it was read again.
    pub fn refresh(&self, dir_etc: &Path, dir_machines: &Path) -> bool {
        let current = self.get();
        let moved = current.dir_etc != dir_etc || current.dir_machines != dir_machines;
        let mut stamp = self.stamp.lock().unwrap_or_else(|p| p.into_inner());
        if !moved && Stamp::of(&current) == *stamp {
            return false;
        }
        let catalogue = Catalogue::load_from(dir_etc, dir_machines);
        log_loaded(&catalogue);
        *stamp = Stamp::of(&catalogue);
        self.current.store(Arc::new(catalogue));
        self.loads.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// How many times the catalogue was read.
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
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
}
