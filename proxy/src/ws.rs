//! The websocket protocol as the gateway speaks it: server side, binary frames only.

pub mod close;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod write;
