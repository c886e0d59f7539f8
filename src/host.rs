//! What the host has to offer right now: cores, 1-minute load and memory, read from a
//! `/proc` tree (a directory parameter, so tests can hand in a fake one).

use std::path::{Path, PathBuf};

/// Errors reading the host's resources.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {what}")]
    Parse { path: PathBuf, what: String },
}

/// A snapshot of the host's capacity and use.
#[derive(Debug, Clone, PartialEq)]
pub struct HostResources {
    /// Logical processors.
    pub ncpu: u32,
    /// 1-minute load average.
    pub load1: f64,
    /// `MemTotal`, MB.
    pub mem_total_mb: u64,
    /// `MemAvailable` (memory a new process can get without swapping), MB.
    pub mem_available_mb: u64,
}

/// Reads `cpuinfo`, `loadavg` and `meminfo` under `proc_root` (`/proc` in production).
pub fn read(proc_root: &Path) -> Result<HostResources, HostError> {
    let ncpu = count_cpus(proc_root);
    let load1 = read_load1(&proc_root.join("loadavg"))?;
    let (mem_total_mb, mem_available_mb) = read_meminfo(&proc_root.join("meminfo"))?;
    Ok(HostResources {
        ncpu,
        load1,
        mem_total_mb,
        mem_available_mb,
    })
}

fn read_text(path: &Path) -> Result<String, HostError> {
    std::fs::read_to_string(path).map_err(|source| HostError::Read {
        path: path.to_owned(),
        source,
    })
}

/// `processor` lines of `cpuinfo`; when the file is missing or lists none (some
/// architectures), the processors this process may run on.
fn count_cpus(proc_root: &Path) -> u32 {
    let listed = std::fs::read_to_string(proc_root.join("cpuinfo"))
        .map(|text| {
            text.lines()
                .filter(|l| l.split(':').next().map(str::trim) == Some("processor"))
                .count()
        })
        .unwrap_or(0);
    let n = if listed > 0 {
        listed
    } else {
        std::thread::available_parallelism().map_or(1, usize::from)
    };
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn read_load1(path: &Path) -> Result<f64, HostError> {
    let text = read_text(path)?;
    text.split_whitespace()
        .next()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| HostError::Parse {
            path: path.to_owned(),
            what: "no 1-minute load average".into(),
        })
}

/// `(MemTotal, MemAvailable)` in MB. Kernels before 3.14 have no `MemAvailable`;
/// `MemFree + Buffers + Cached` is the usual estimate there.
fn read_meminfo(path: &Path) -> Result<(u64, u64), HostError> {
    let text = read_text(path)?;
    let field = |name: &str| -> Option<u64> {
        text.lines().find_map(|line| {
            let (key, rest) = line.split_once(':')?;
            (key.trim() == name)
                .then(|| rest.split_whitespace().next()?.parse::<u64>().ok())
                .flatten()
        })
    };
    let total_kb = field("MemTotal").ok_or_else(|| HostError::Parse {
        path: path.to_owned(),
        what: "no MemTotal".into(),
    })?;
    let available_kb = match field("MemAvailable") {
        Some(kb) => kb,
        None => {
            let parts = [field("MemFree"), field("Buffers"), field("Cached")];
            if parts[0].is_none() {
                return Err(HostError::Parse {
                    path: path.to_owned(),
                    what: "neither MemAvailable nor MemFree".into(),
                });
            }
            parts.iter().flatten().sum()
        }
    };
    Ok((total_kb / 1024, available_kb / 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:       16314400 kB\nMemFree:         1000000 kB\nMemAvailable:   12288000 kB\nBuffers:          204800 kB\nCached:          4096000 kB\n";

    fn fake_proc(cpuinfo: Option<&str>, loadavg: &str, meminfo: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        if let Some(c) = cpuinfo {
            std::fs::write(dir.path().join("cpuinfo"), c).unwrap();
        }
        std::fs::write(dir.path().join("loadavg"), loadavg).unwrap();
        std::fs::write(dir.path().join("meminfo"), meminfo).unwrap();
        dir
    }

    #[test]
    fn reads_a_proc_tree() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\n\nprocessor\t: 1\n\nprocessor\t: 2\n\nprocessor\t: 3\n";
        let p = fake_proc(Some(cpuinfo), "1.50 0.80 0.40 2/345 6789\n", MEMINFO);
        let host = read(p.path()).unwrap();
        assert_eq!(
            host,
            HostResources {
                ncpu: 4,
                load1: 1.5,
                mem_total_mb: 15932,
                mem_available_mb: 12000,
            }
        );
    }

    #[test]
    fn cpus_fall_back_to_the_scheduler() {
        let p = fake_proc(None, "0.00 0.00 0.00 1/1 1\n", MEMINFO);
        let expected = std::thread::available_parallelism().map_or(1, usize::from) as u32;
        assert_eq!(read(p.path()).unwrap().ncpu, expected);
        let p = fake_proc(Some("model name: something\n"), "0 0 0 1/1 1\n", MEMINFO);
        assert_eq!(read(p.path()).unwrap().ncpu, expected);
    }

    #[test]
    fn old_kernels_estimate_available_memory() {
        let meminfo =
            "MemTotal: 2048000 kB\nMemFree: 102400 kB\nBuffers: 102400 kB\nCached: 819200 kB\n";
        let p = fake_proc(Some("processor : 0\n"), "0.1 0 0 1/1 1\n", meminfo);
        let host = read(p.path()).unwrap();
        assert_eq!(host.mem_total_mb, 2000);
        assert_eq!(host.mem_available_mb, 1000);
    }

    #[test]
    fn broken_files_are_named() {
        let p = fake_proc(None, "garbage\n", MEMINFO);
        let e = read(p.path()).unwrap_err().to_string();
        assert!(e.contains("loadavg") && e.contains("load average"), "{e}");
        let p = fake_proc(None, "0.5 0 0 1/1 1\n", "Cached: 1 kB\n");
        let e = read(p.path()).unwrap_err().to_string();
        assert!(e.contains("meminfo") && e.contains("MemTotal"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let e = read(dir.path()).unwrap_err();
        assert!(matches!(e, HostError::Read { .. }), "{e}");
    }

    #[test]
    fn reads_this_machine() {
        let host = read(Path::new("/proc")).unwrap();
        assert!(host.ncpu >= 1);
        assert!(host.mem_total_mb > 0 && host.mem_available_mb <= host.mem_total_mb);
    }
}
