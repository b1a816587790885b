//! The `krug` binary's library: configuration, wiring and the serving subcommands (api,
//! worker, scheduler, migrate, operator commands), so that the black-box tests in `tests/`
//! start exactly what production starts.
//!
//! Only serving code lives here. The binary's own tools are its modules:
//! `src/bin/krug/demo.rs` (`krug demo`) and `src/bin/krug/bench.rs` (`krug bench`); the HTTP
//! client they and the tests drive the API with is the `krug-client` crate (`client/`).

pub mod app;
pub mod commands;
pub mod config;
pub mod keys;
pub mod seed;
pub mod telemetry;

pub use app::Services;
pub use config::Config;
