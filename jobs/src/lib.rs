#![doc = include_str!("../README.md")]

pub mod client;
pub mod env;
pub mod finisher;
pub mod handlers;
pub mod inspect;
pub mod metrics;
pub mod outbox;
pub mod processes;
pub mod queue;
pub mod run;
pub mod runtime;
pub mod scan_batcher;
pub mod schedule;
mod signals;

pub use client::{JobQueue, QueueError};
pub use env::Env;
pub use queue::{Job, JobError, QueueName};
pub use run::{JobCtx, RunJob};
