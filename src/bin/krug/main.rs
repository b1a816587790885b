//! `krug`: the one binary of Свой Круг (see `krug --help` and DESIGN.md).

use clap::{Parser, Subcommand};
mod bench;
mod demo;

use krug::{Config, Services, commands, config::Environment, telemetry};
use uuid::Uuid;

#[derive(Parser)]
#[command(
    name = "krug",
    version,
    about = "Свой Круг: loyalty coalition backend (API, workers, scheduler)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply migrations/ to DATABASE_URL and create the ClickHouse tables.
    Migrate,
    /// Serve the HTTP API on KRUG_BIND.
    Api,
    /// Process jobs (all queues unless --queue is given).
    Worker {
        /// A queue to work on; repeat for several.
        #[arg(long = "queue")]
        queues: Vec<String>,
    },
    /// Fire the cron schedules.
    Scheduler,
    /// Migrate, seed the coalition and run a day of the loyalty cycle, printing what happens.
    /// Its messages are printed, never sent, whatever the SMS and push providers are.
    Demo {
        /// The operator's phone (superadmin); a made-up number when not given.
        #[arg(long, env = "KRUG_DEMO_OPERATOR_PHONE")]
        operator_phone: Option<String>,
    },
    /// Operator commands.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Schedules.
    Schedule {
        #[command(subcommand)]
        command: ScheduleCommand,
    },
    /// Measure the speed figures of DESIGN.md (use a release build: scripts/bench.sh).
    Bench {
        /// Parts to run: jobs, scan, ingest, rfm, balance, search, dashboard, settlement,
        /// cluster (all by default).
        #[arg(long = "only")]
        only: Vec<String>,
        /// Jobs in the throughput backlog.
        #[arg(long, default_value_t = 100_000)]
        jobs: usize,
        /// Transactions of the business whose dashboard is read (DESIGN.md's size by default).
        #[arg(long, default_value_t = bench::DASHBOARD_TRANSACTIONS)]
        dashboard_transactions: usize,
        /// Ledger entries of the month the settlement closes (DESIGN.md's size by default).
        #[arg(long, default_value_t = bench::SETTLEMENT_ENTRIES)]
        settlement_entries: usize,
    },
    /// The bare poem handler `krug bench` compares the API with.
    #[command(hide = true)]
    BenchBare {
        #[arg(long)]
        bind: String,
    },
    /// A worker process of the benchmark's no-op jobs (its scale-out row starts them).
    #[command(hide = true)]
    BenchNoopWorker {
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
    /// Inspect, retry and discard jobs.
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
    },
}

#[derive(Subcommand)]
enum JobsCommand {
    /// A table of jobs.
    List {
        #[arg(long)]
        queue: Option<String>,
        /// pending, scheduled, running, done, failed or dead.
        #[arg(long)]
        state: Option<String>,
        /// Jobs per queue.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// One job in full.
    Show { queue: String, id: Uuid },
    /// Run a failed or dead job again.
    Retry { queue: String, id: Uuid },
    /// Take a pending, scheduled or failed job out for good.
    Discard { queue: String, id: Uuid },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Give a user a role (creating the user if needed).
    Grant {
        #[arg(long)]
        phone: String,
        /// superadmin, moderator, owner, staff or viewer.
        #[arg(long)]
        role: String,
        /// For owner, staff and viewer.
        #[arg(long)]
        business: Option<Uuid>,
    },
    /// Take a platform role away; the user's sessions end at once.
    Revoke {
        #[arg(long)]
        phone: String,
        /// superadmin or moderator.
        #[arg(long)]
        role: String,
    },
}

#[derive(Subcommand)]
enum ScheduleCommand {
    /// Enqueue a scheduled job now.
    Trigger { name: String },
}

fn main() -> anyhow::Result<()> {
    // `.env` is for development only: a production host's real environment decides, and a
    // stray `.env` must not change it. A missing file is fine.
    if std::env::var_os("KRUG_ENV").is_none()
        || matches!(Environment::from_env(), Ok(Environment::Development))
    {
        let _ = dotenvy::dotenv();
    }
    let cli = Cli::parse();
    // The demo seeds made-up partners and lifts sign-in limits: never on a real deployment.
    // Checked before the configuration is read or any database is touched.
    if matches!(cli.command, Command::Demo { .. }) {
        let environment = Environment::from_env()?;
        if environment != Environment::Development {
            anyhow::bail!(
                "krug demo refuses KRUG_ENV={}: it seeds demo data and lifts sign-in limits; run it in development only",
                environment.as_str()
            );
        }
    }
    let config = Config::from_env()?;
    let log_to = match cli.command {
        Command::Api | Command::Worker { .. } | Command::Scheduler => telemetry::LogTo::Stdout,
        _ => telemetry::LogTo::Stderr,
    };
    telemetry::init(config.environment, log_to);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Migrate => {
                krug::app::migrate(&config).await?;
                println!("migrations applied; ClickHouse tables ready");
                Ok(())
            }
            Command::Api => commands::api(Services::connect(config)?).await,
            Command::Worker { queues } => {
                commands::worker(Services::connect(config)?, queues).await
            }
            Command::Scheduler => commands::scheduler(Services::connect(config)?).await,
            Command::Demo { operator_phone } => {
                demo::run(Services::connect(demo::offline(config))?, operator_phone).await
            }
            Command::Admin {
                command:
                    AdminCommand::Grant {
                        phone,
                        role,
                        business,
                    },
            } => commands::grant(Services::connect(config)?, &phone, &role, business).await,
            Command::Admin {
                command: AdminCommand::Revoke { phone, role },
            } => commands::revoke(Services::connect(config)?, &phone, &role).await,
            Command::Bench {
                only,
                jobs,
                dashboard_transactions,
                settlement_entries,
            } => {
                bench::run(
                    Services::connect(config)?,
                    bench::BenchOptions {
                        only,
                        jobs,
                        dashboard_transactions,
                        settlement_entries,
                    },
                )
                .await
            }
            Command::BenchBare { bind } => bench::bare_server(&bind).await,
            Command::BenchNoopWorker { concurrency } => {
                bench::noop_worker(Services::connect(config)?, concurrency).await
            }
            Command::Jobs { command } => {
                let services = Services::connect(config)?;
                match command {
                    JobsCommand::List {
                        queue,
                        state,
                        limit,
                    } => commands::jobs_list(services, queue, state, limit).await,
                    JobsCommand::Show { queue, id } => {
                        commands::jobs_show(services, &queue, id).await
                    }
                    JobsCommand::Retry { queue, id } => {
                        commands::jobs_act(services, &queue, id, true).await
                    }
                    JobsCommand::Discard { queue, id } => {
                        commands::jobs_act(services, &queue, id, false).await
                    }
                }
            }
            Command::Schedule {
                command: ScheduleCommand::Trigger { name },
            } => commands::trigger(Services::connect(config)?, &name).await,
        }
    })
}
