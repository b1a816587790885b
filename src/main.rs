//! `krug`: the one binary of Свой Круг (see `krug --help` and DESIGN.md).

use clap::{Parser, Subcommand};
use krug::{Config, Services, commands, demo, telemetry};
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
    Demo,
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
}

#[derive(Subcommand)]
enum ScheduleCommand {
    /// Enqueue a scheduled job now.
    Trigger { name: String },
}

fn main() -> anyhow::Result<()> {
    // `.env` is for development; a missing file is fine.
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    telemetry::init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let config = Config::from_env()?;
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
            Command::Demo => demo::run(Services::connect(config)?).await,
            Command::Admin {
                command:
                    AdminCommand::Grant {
                        phone,
                        role,
                        business,
                    },
            } => commands::grant(Services::connect(config)?, &phone, &role, business).await,
            Command::Schedule {
                command: ScheduleCommand::Trigger { name },
            } => commands::trigger(Services::connect(config)?, &name).await,
        }
    })
}
