//! The machine catalogue and the server card (`/api/machines`, `/api/status`).

use std::path::Path;

use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::error::ApiError;
use super::wire::{self, Body};
use super::{Call, Inner};
use crate::session::Caller;

/// `GET /api/machines`: the machines users may pick.
pub(super) fn machines(app: &Inner) -> Response<Body> {
    let catalogue = app.manager.catalogue();
    let machines: Vec<Value> = catalogue
        .machines()
        .iter()
        .map(|m| json!({ "name": m.name, "description": m.description, "available": m.available }))
        .collect();
    wire::json(StatusCode::OK, &json!({ "machines": machines }))
}

/// `GET /api/status`: the server card. Administrators see every figure (the original
/// monitor's table and the GPUs); other users a summary of how busy the server is.
pub(super) fn status(app: &Inner, call: &Call) -> Result<Response<Body>, ApiError> {
    let caller = call.caller()?;
    let config = &call.config;
    let sessions = app.manager.list(&Caller::admin(""));
    let host = crate::host::read(Path::new("/proc"))
        .map_err(|e| tracing::warn!(error = %e, "cannot read the host's figures"))
        .ok();
    let load = host
        .as_ref()
        .map(|h| round2(h.load1 / f64::from(h.ncpu.max(1))));
    let gpus = crate::gpu::configured(config, Path::new("/sys"));
    let gpu_session = |pci: &str| sessions.iter().find(|s| s.gpu.as_deref() == Some(pci));
    let gpus_free = gpus
        .iter()
        .filter(|g| gpu_session(&g.pci).is_none())
        .count();
    if !caller.admin {
        return Ok(wire::json(
            StatusCode::OK,
            &json!({
                "summary": true,
                "load": load,
                "sessions": sessions.len(),
                "max_sessions": config.service_max_session_nb,
                "gpus": gpus.len(),
                "gpus_free": gpus_free,
            }),
        ));
    }
    let gpu_list: Vec<Value> = gpus
        .iter()
        .map(|g| {
            let s = gpu_session(&g.pci);
            json!({
                "pci": g.pci,
                "model": g.model(),
                "name": g.name,
                "session": s.map(|s| &s.name),
                "user": s.map(|s| &s.user),
            })
        })
        .collect();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    Ok(wire::json(
        StatusCode::OK,
        &json!({
            "summary": false,
            "server": hostname,
            "service": "darts",
            "version": env!("CARGO_PKG_VERSION"),
            "ncpu": host.as_ref().map(|h| h.ncpu),
            "load1": host.as_ref().map(|h| h.load1),
            "load": load,
            "memory_total_gb": host.as_ref().map(|h| round2(h.mem_total_mb as f64 / 1024.0)),
            "memory_available_gb": host.as_ref().map(|h| round2(h.mem_available_mb as f64 / 1024.0)),
            "sessions": sessions.len(),
            "max_sessions": config.service_max_session_nb,
            "gpus": gpu_list,
            "gpus_free": gpus_free,
        }),
    ))
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
