//! Sessions: a user's virtual machine, from creation to its end, kept across restarts.
//!
//! The [`Manager`] owns every live session. Creation checks the limits, makes the disk,
//! starts QEMU (daemonized, so it outlives darts), waits until QMP and VNC answer and
//! registers the session's tokens in the gateway's map. One monitor task per session
//! holds its QMP connection: the VM's exit, a stop request, the timer and the end of a
//! one-shot connection all end the session through that task, and its clean-up runs once.
//! State is written to `dir_cfg` before anything is made, so a restart re-adopts what
//! still runs and undoes what a crash cut short.

mod adopt;
mod create;
pub mod manager;
mod monitor;
pub mod probe;
pub mod process;
pub mod record;
pub mod secret;
pub mod store;
pub mod vnc_port;

pub use manager::{
    Caller, CreateRequest, Created, Manager, PurgeOutcome, SessionError, SessionInfo, StopOutcome,
};
pub use record::{Phase, SessionRecord};

/// Runs blocking file work (`f`, named `what` for the error) on tokio's blocking pool:
/// the async workers, which also carry every viewer's traffic, never wait for a disk.
pub(crate) async fn off_workers<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, SessionError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|source| SessionError::Blocking { what, source })
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
