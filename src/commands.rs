//! The long-running subcommands and the operator CLI.

use crate::app::{Services, shutdown_signal};
use anyhow::{Context, bail};
use domain::PhoneNumber;
use jobs::{QueueName, runtime::WorkerOptions};
use poem::listener::{Acceptor, Listener, TcpListener};
use storage::{businesses, users};
use uuid::Uuid;

/// `krug api`.
pub async fn api(services: Services) -> anyhow::Result<()> {
    let acceptor = TcpListener::bind(services.config.bind.clone())
        .into_acceptor()
        .await
        .with_context(|| format!("Failed to bind {}", services.config.bind))?;
    tracing::info!(addr = ?acceptor.local_addr(), "API listening");
    let shutdown = shutdown_signal();
    api::serve(acceptor, services.app_state(), async move {
        shutdown.cancelled().await
    })
    .await?;
    Ok(())
}

/// `krug worker [--queue NAME]...`.
pub async fn worker(services: Services, queues: Vec<String>) -> anyhow::Result<()> {
    let queues = if queues.is_empty() {
        QueueName::ALL.to_vec()
    } else {
        queues
            .iter()
            .map(|q| q.parse::<QueueName>())
            .collect::<Result<Vec<_>, _>>()?
    };
    let options = WorkerOptions::new(services.config.redis_url.clone(), queues);
    jobs::runtime::run(services.job_env(), options, shutdown_signal()).await;
    Ok(())
}

/// `krug scheduler`.
pub async fn scheduler(services: Services) -> anyhow::Result<()> {
    jobs::schedule::run(
        services.job_env(),
        services.config.timezone,
        shutdown_signal(),
    )
    .await
}

/// `krug schedule trigger NAME`.
pub async fn trigger(services: Services, name: &str) -> anyhow::Result<()> {
    let id = jobs::schedule::trigger(&services.job_env(), name).await?;
    println!("enqueued {name} as job {id}");
    Ok(())
}

/// `krug admin grant --phone P --role R [--business ID]`.
pub async fn grant(
    services: Services,
    phone: &str,
    role: &str,
    business: Option<Uuid>,
) -> anyhow::Result<()> {
    let phone = PhoneNumber::parse(phone).map_err(|e| anyhow::anyhow!("--phone: {e}"))?;
    let db = &services.db;
    let user = users::find_or_create(db, &phone)
        .await
        .context("Failed to find or create the user")?;
    match (role, business) {
        ("superadmin" | "moderator", None) => users::grant_platform_role(db, user.id, role).await?,
        ("superadmin" | "moderator", Some(_)) => {
            bail!("{role} is a platform role: drop --business")
        }
        ("owner" | "staff" | "viewer", Some(business_id)) => {
            businesses::get(db, business_id)
                .await?
                .with_context(|| format!("no business {business_id}"))?;
            businesses::put_staff(db, business_id, user.id, role).await?;
        }
        ("owner" | "staff" | "viewer", None) => {
            bail!("{role} is a business role: add --business ID")
        }
        _ => bail!("--role must be superadmin, moderator, owner, staff or viewer"),
    }
    println!(
        "{} ({}) is now {role}{}",
        phone,
        user.id,
        business.map(|b| format!(" of {b}")).unwrap_or_default()
    );
    Ok(())
}
