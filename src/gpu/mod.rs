//! GPU pass-through: finding the display devices bound to `vfio-pci`, choosing a free one
//! for a session, and preparing a host for it (`darts gpu`).

pub mod discover;
pub mod setup;

pub use discover::{configured, discover, pick_free, Gpu};
