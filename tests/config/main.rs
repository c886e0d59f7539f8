//! The operators' configuration: layering (`config.toml`, `config.d/*.toml`, command line)
//! with the origin of every value, `darts config check` on every kind of mistake,
//! `darts config show`, the import of the original's `config.pl` (a sample with each kind
//! of line in tests/fixtures/qemu-web-desktop), and live reload of a real `darts serve`
//! with a running session (QEMU under TCG) whose websocket stays open across reloads.
//!
//! The reload test needs qemu-system-x86_64 and the demo machine (`bash tests/setup.sh`).

#[path = "../support/qemu.rs"]
mod qemu;
#[path = "../support/service.rs"]
mod service;
#[path = "../support/mod.rs"]
mod support;

mod check;
mod config_pl;
mod helpers;
mod layering;
mod reload;
