//! darts' data plane: one port for static files, health, metrics and websocket sessions,
//! each session a bounded byte pump between a browser and a VNC server.
//!
//! This crate knows nothing of virtual machines or users. Other parts of darts steer it
//! through the `TokenMap` (which token goes where, until when) and the `GatewayHandle`.
//! See `LIFECYCLE.md` for the path of one connection.

#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]
// Code the service runs logs through `tracing`: a panicking print macro never.
#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

pub mod app;
pub mod client;
pub mod config;
pub mod error;
pub mod events;
pub mod forwarded;
pub mod gateway;
mod http_service;
pub mod metrics;
pub mod origin;
mod per_address;
mod per_token;
pub mod proxy_protocol;
pub mod pump;
pub mod rfb;
pub mod route;
pub mod session;
pub mod static_files;
pub mod target;
pub mod tls;
pub mod token;
pub mod url;
pub mod ws;

pub use config::GatewayConfig;
pub use error::{ProxyError, SessionEnd};
pub use events::{
    OpenViewers, RouteOrigin, ViewerChange, ViewerEvent, ViewerEvents, ViewerEventsRx,
};
pub use gateway::{Gateway, GatewayHandle};
pub use route::Route;
pub use target::Target;
pub use token::{Lookup, TokenFileSource, TokenMap};
