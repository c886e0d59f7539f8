//! Helpers shared by the fuzz targets: slicing the fuzzer's bytes into parameters, a
//! reference model of the browser→target direction of the pump, and a decoder for the
//! frames the gateway writes to the browser.

pub mod input;
pub mod model;
pub mod server;
