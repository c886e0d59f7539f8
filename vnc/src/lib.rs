//! darts' RFB (VNC) protocol core. Sans-IO: parses and produces bytes, never touches a
//! socket, a clock or a runtime, and checks every length a peer sends against a bound
//! before using it. "Need more bytes" is always distinct from "malformed".

#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]
// Code the service runs logs through `tracing`: a panicking print macro never.
#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

pub mod client;
pub mod client_filter;
pub mod client_msg;
pub mod error;
pub mod security;
pub mod server;
pub mod server_init;
pub mod version;
pub mod vnc_auth;

#[cfg(any(test, feature = "reference"))]
pub mod qemu_reader;

pub use error::RfbError;
