//! darts' RFB (VNC) protocol core. Sans-IO: parses and produces bytes, never touches a
//! socket, a clock or a runtime.

pub mod version;
