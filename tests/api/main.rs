//! The web service: session manager, gateway and `DartsApp` in this process on
//! 127.0.0.1, the demo machine under real QEMU (TCG), driven over HTTP the way the pages
//! and scripts do. Covers every endpoint, who may do what, CSRF, login back-off, bad
//! bodies, unknown routes, security headers, the pages, and a whole session from Create
//! through its link's websocket to Stop; plus `darts serve` itself without authentication.
//!
//! Logins go through `FakeLogin`, a fixed user/password table standing in for the
//! authentication chain: the chain's methods are tested against real servers in their
//! own test files, here only the API's handling of each outcome matters. The second
//! factor's code travels through a real SMTP server (`support/smtp_sink.rs`) and is read
//! back from the stored mail.
//!
//! Needs qemu-system-x86_64, the demo machine and python3-aiosmtpd (`bash tests/setup.sh`).

#[path = "../support/auth_servers.rs"]
mod auth_servers;
#[path = "../support/qemu.rs"]
mod qemu;
#[path = "../support/service.rs"]
mod service;
#[path = "../support/smtp_sink.rs"]
mod smtp_sink;
#[path = "../support/mod.rs"]
mod support;

mod client;
mod fakes;
mod harness;

mod logins;
mod mfa;
mod requests;
mod serve;
mod sessions;
