//! Open-file limit: each session holds two descriptors, so the soft limit is raised to
//! the hard limit at start (the hard limit itself needs privileges darts should not have).

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the limit now in force.
pub fn raise_nofile() -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    let target = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, target) {
        Ok(()) => {
            tracing::debug!(nofile = ?limit.maximum, "open-files limit raised to the hard limit");
            limit.maximum
        }
        Err(e) => {
            tracing::warn!(error = %e, soft = ?limit.current, "could not raise the open-files limit");
            limit.current
        }
    }
}
