//! Logs and metrics for every subcommand.
//!
//! Logs: `RUST_LOG` filters; without it the level follows `KRUG_ENV` (debug in development,
//! info in staging, warn and above in production). `LOG_FORMAT=json` or `text` chooses the
//! format; without it production writes one JSON object per line (with the span fields:
//! request id, job id, queue) and the others write text.
//!
//! Metrics: `krug api` serves `/metrics` itself; `krug worker` and `krug scheduler` serve it
//! at `KRUG_METRICS_BIND` ([`serve_metrics`]), since their counters (jobs, scans, bonuses,
//! ticks) live in their own process.

use crate::config::Environment;
use anyhow::Context;
use poem::{
    EndpointExt, Route, get, handler,
    listener::{Acceptor, Listener, TcpListener},
};
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Dependencies that are chatty below warn whatever our own level is.
const QUIET_DEPENDENCIES: &str = "sqlx=warn,apalis=warn,apalis_core=warn,apalis_redis=warn,\
     hyper=info,hyper_util=info,h2=info,reqwest=info,rustls=info,tower=info,object_store=info";

/// What the logs look like, decided from the environment (a pure function, unit-tested).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// An `EnvFilter` directive.
    pub filter: String,
    pub json: bool,
}

impl LogSettings {
    /// `rust_log` and `log_format` are `RUST_LOG` and `LOG_FORMAT` (empty counts as unset).
    pub fn new(environment: Environment, rust_log: Option<&str>, log_format: Option<&str>) -> Self {
        let filter = match rust_log.filter(|f| !f.trim().is_empty()) {
            Some(filter) => filter.to_owned(),
            None => match environment {
                Environment::Development => format!("debug,{QUIET_DEPENDENCIES}"),
                Environment::Staging => format!("info,{QUIET_DEPENDENCIES}"),
                // Requests and jobs are counted in /metrics; the logs keep what needs a person.
                Environment::Production => "warn".to_owned(),
            },
        };
        let json = match log_format.map(str::to_ascii_lowercase).as_deref() {
            Some("json") => true,
            Some("text") => false,
            _ => environment == Environment::Production,
        };
        Self { filter, json }
    }
}

/// Where a process writes its logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTo {
    /// The services (`api`, `worker`, `scheduler`): the platform collects stdout.
    Stdout,
    /// One-shot commands, whose stdout is their answer (`krug jobs list | …`).
    Stderr,
}

/// Installs the log subscriber (a second call, as in tests, is harmless).
pub fn init(environment: Environment, to: LogTo) {
    let settings = LogSettings::new(
        environment,
        std::env::var("RUST_LOG").ok().as_deref(),
        std::env::var("LOG_FORMAT").ok().as_deref(),
    );
    let filter = EnvFilter::try_new(&settings.filter).unwrap_or_else(|e| {
        eprintln!(
            "RUST_LOG `{}` is not a valid filter ({e}); using info",
            settings.filter
        );
        EnvFilter::new("info")
    });
    let registry = tracing_subscriber::registry().with(filter);
    let writer = fmt::writer::BoxMakeWriter::new(move || -> Box<dyn std::io::Write> {
        match to {
            LogTo::Stdout => Box::new(std::io::stdout()),
            LogTo::Stderr => Box::new(std::io::stderr()),
        }
    });
    let _ = if settings.json {
        registry
            .with(
                fmt::layer()
                    .with_writer(writer)
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init()
    } else {
        registry
            .with(fmt::layer().with_writer(writer).with_target(false))
            .try_init()
    };
}

/// The metrics of this process in Prometheus's text format.
#[handler]
fn metrics() -> poem::Response {
    poem::Response::builder()
        .content_type("text/plain; version=0.0.4")
        .body(jobs::metrics::render())
}

/// Serves `GET /metrics` on `bind` until `shutdown` (worker and scheduler processes).
/// Binding is checked before this returns, so a taken port stops the process at start.
pub async fn serve_metrics(
    bind: &str,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let acceptor = TcpListener::bind(bind.to_owned())
        .into_acceptor()
        .await
        .with_context(|| format!("Failed to bind KRUG_METRICS_BIND {bind}"))?;
    let addr = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .context("the metrics listener has no address")?;
    tracing::info!(%addr, "metrics listening");
    let app = Route::new().at("/metrics", get(metrics)).map_to_response();
    let served = tokio::spawn(async move {
        let server = poem::Server::new_with_acceptor(acceptor);
        if let Err(e) = server
            .run_with_graceful_shutdown(app, shutdown.cancelled_owned(), None)
            .await
        {
            tracing::warn!(error = %e, "the metrics server stopped");
        }
    });
    Ok((addr, served))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_environment_has_its_default_level_and_format() {
        let cases = [
            (Environment::Development, "debug", false),
            (Environment::Staging, "info", false),
            (Environment::Production, "warn", true),
        ];
        for (environment, level, json) in cases {
            let settings = LogSettings::new(environment, None, None);
            assert!(
                settings.filter.starts_with(level),
                "{environment:?}: {settings:?}"
            );
            assert_eq!(settings.json, json, "{environment:?}");
        }
    }

    #[test]
    fn rust_log_and_log_format_override_the_environment() {
        let settings = LogSettings::new(Environment::Production, Some("debug"), Some("text"));
        assert_eq!(
            settings,
            LogSettings {
                filter: "debug".to_owned(),
                json: false
            }
        );
        let settings = LogSettings::new(Environment::Development, Some("info"), Some("JSON"));
        assert!(settings.json);
        // An empty RUST_LOG (as `.env` may leave it) is no choice at all.
        let settings = LogSettings::new(Environment::Production, Some(""), None);
        assert_eq!(settings.filter, "warn");
    }
}
