//! The `krug` binary's library: configuration, wiring and the subcommands, so that the
//! black-box tests in `tests/` start exactly what production starts.

pub mod app;
pub mod bench;
pub mod client;
pub mod commands;
pub mod config;
pub mod demo;
pub mod keys;
pub mod seed;
pub mod telemetry;

pub use app::Services;
pub use config::Config;
