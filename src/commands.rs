//! The long-running subcommands and the operator CLI.

use crate::app::{Services, shutdown_signal};
use anyhow::{Context, bail};
use domain::{
    PhoneNumber,
    roles::{PlatformRole, StaffRole},
};
use jobs::{QueueName, inspect, runtime::WorkerOptions};
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
    // With KRUG_METRICS_BIND the API's metrics move to that internal bind (the app state
    // then refuses the public `/metrics`).
    let metrics = match services.config.metrics_bind {
        Some(_) => serve_metrics(&services, &shutdown).await?,
        None => None,
    };
    let served = api::serve(acceptor, services.app_state(), {
        let shutdown = shutdown.clone();
        async move { shutdown.cancelled().await }
    })
    .await;
    shutdown.cancel();
    if let Some(metrics) = metrics {
        let _ = metrics.await;
    }
    Ok(served?)
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
    let mut options = WorkerOptions::new(services.config.redis_url.expose(), queues);
    options.heartbeat = std::time::Duration::from_secs(services.config.worker_heartbeat_s.max(1));
    options.missed_heartbeats = services.config.worker_missed_heartbeats.max(2);
    let shutdown = shutdown_signal();
    let metrics = serve_metrics(&services, &shutdown).await?;
    jobs::runtime::run(services.job_env(), options, shutdown).await;
    if let Some(metrics) = metrics {
        let _ = metrics.await;
    }
    Ok(())
}

/// `krug scheduler`.
pub async fn scheduler(services: Services) -> anyhow::Result<()> {
    let shutdown = shutdown_signal();
    let metrics = serve_metrics(&services, &shutdown).await?;
    let result = jobs::schedule::run(
        services.job_env(),
        services.config.timezone,
        shutdown.clone(),
    )
    .await;
    shutdown.cancel();
    if let Some(metrics) = metrics {
        let _ = metrics.await;
    }
    result
}

/// `/metrics` at `KRUG_METRICS_BIND`, when it is set (a worker's and a scheduler's
/// counters live in their own process: the API cannot report them; the API's own move
/// there, off the public bind).
async fn serve_metrics(
    services: &Services,
    shutdown: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    match &services.config.metrics_bind {
        Some(bind) => Ok(Some(
            crate::telemetry::serve_metrics(bind, shutdown.clone())
                .await?
                .1,
        )),
        None => {
            tracing::info!("KRUG_METRICS_BIND is not set: this process's metrics are not served");
            Ok(None)
        }
    }
}

/// `krug schedule trigger NAME`.
pub async fn trigger(services: Services, name: &str) -> anyhow::Result<()> {
    let id = jobs::schedule::trigger(&services.queue, &services.db, name).await?;
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
    let mut tx = services.db.begin().await?;
    let user = users::find_or_create(&mut *tx, &phone)
        .await
        .context("Failed to find or create the user")?;
    match (
        role.parse::<PlatformRole>(),
        role.parse::<StaffRole>(),
        business,
    ) {
        (Ok(platform_role), _, None) => {
            users::grant_platform_role(&mut *tx, user.id, platform_role).await?
        }
        (Ok(_), _, Some(_)) => bail!("{role} is a platform role: drop --business"),
        (_, Ok(staff_role), Some(business_id)) => {
            businesses::get(&mut *tx, business_id)
                .await?
                .with_context(|| format!("no business {business_id}"))?;
            businesses::put_staff(&mut *tx, business_id, user.id, staff_role).await?;
        }
        (_, Ok(_), None) => bail!("{role} is a business role: add --business ID"),
        (Err(_), Err(_), _) => {
            bail!("--role must be superadmin, moderator, owner, staff or viewer")
        }
    }
    storage::audit::record(
        &mut *tx,
        &storage::audit::NewEntry {
            actor_id: None,
            action: "role.grant",
            target_type: "user",
            target_id: Some(user.id.to_string()),
            before: None,
            after: Some(serde_json::json!({"role": role, "business_id": business, "via": "cli"})),
            request_id: None,
        },
    )
    .await?;
    tx.commit().await?;
    println!(
        "{} ({}) is now {role}{}",
        phone,
        user.id,
        business.map(|b| format!(" of {b}")).unwrap_or_default()
    );
    Ok(())
}

/// `krug admin revoke --phone P --role R`: takes a platform role away. Her sessions end at
/// once (within seconds on every API process): the role is in her access tokens, which
/// would otherwise carry it up to 15 minutes more.
pub async fn revoke(services: Services, phone: &str, role: &str) -> anyhow::Result<()> {
    let Ok(platform_role) = role.parse::<PlatformRole>() else {
        bail!(
            "--role must be superadmin or moderator (business roles are removed by owners and operators)"
        );
    };
    let phone = PhoneNumber::parse(phone).map_err(|e| anyhow::anyhow!("--phone: {e}"))?;
    let mut tx = services.db.begin().await?;
    let user = users::find_by_phone(&mut *tx, &phone)
        .await?
        .with_context(|| format!("no user has the phone {phone}"))?;
    if !users::revoke_platform_role(&mut *tx, user.id, platform_role).await? {
        bail!("{phone} does not hold {role}");
    }
    let sessions = storage::tokens::revoke_all(&mut *tx, user.id).await?;
    storage::audit::record(
        &mut *tx,
        &storage::audit::NewEntry {
            actor_id: None,
            action: "role.revoke",
            target_type: "user",
            target_id: Some(user.id.to_string()),
            before: Some(serde_json::json!({"role": role})),
            after: Some(serde_json::json!({"sessions_ended": sessions.len(), "via": "cli"})),
            request_id: None,
        },
    )
    .await?;
    tx.commit().await?;
    services
        .cache
        .revoke_sessions(&sessions, api::sessions::REMEMBER)
        .await
        .context("The role is gone, but her sessions could not be ended on the API servers (Redis); run the command again")?;
    println!(
        "{phone} ({}) no longer holds {role}; {} session(s) ended",
        user.id,
        sessions.len()
    );
    Ok(())
}

/// `krug jobs list [--queue Q] [--state S] [--limit N]`: a table of jobs, newest states first.
pub async fn jobs_list(
    services: Services,
    queue: Option<String>,
    state: Option<String>,
    limit: usize,
) -> anyhow::Result<()> {
    let queues = match queue {
        Some(q) => vec![q.parse::<QueueName>()?],
        None => QueueName::ALL.to_vec(),
    };
    let state = state
        .map(|s| s.parse::<inspect::JobState>())
        .transpose()
        .map_err(anyhow::Error::msg)?;
    println!(
        "{:<12} {:<36} {:<9} {:>8}  {:<20} {}",
        "QUEUE", "ID", "STATE", "ATTEMPTS", "ENQUEUED", "LAST ERROR"
    );
    let mut shown = 0;
    for name in queues {
        let (jobs, _) = inspect::list(
            &services.queue,
            &services.db,
            name,
            state,
            &inspect::JobFilter::default(),
            None,
            limit,
        )
        .await?;
        for job in jobs {
            shown += 1;
            println!(
                "{:<12} {:<36} {:<9} {:>8}  {:<20} {}",
                name.as_str(),
                job.id,
                job.state.as_str(),
                format!("{}/{}", job.attempts, job.max_attempts),
                job.enqueued_at.map(short_time).unwrap_or_default(),
                job.last_error
                    .as_deref()
                    .map(|e| e.chars().take(60).collect::<String>())
                    .unwrap_or_default()
            );
        }
    }
    if shown == 0 {
        println!("(no jobs)");
    }
    Ok(())
}

/// `krug jobs show Q ID`.
pub async fn jobs_show(services: Services, queue: &str, id: Uuid) -> anyhow::Result<()> {
    let name: QueueName = queue.parse()?;
    let job = inspect::job(&services.queue, name, id)
        .await?
        .with_context(|| format!("queue {name} holds no job {id}"))?;
    println!("id           {}", job.id);
    println!("queue        {}", name);
    println!("state        {}", job.state.as_str());
    println!("attempts     {}/{}", job.attempts, job.max_attempts);
    println!(
        "enqueued     {}",
        job.enqueued_at.map(short_time).unwrap_or_default()
    );
    println!(
        "started      {}",
        job.started_at.map(short_time).unwrap_or_default()
    );
    println!(
        "finished     {}",
        job.finished_at.map(short_time).unwrap_or_default()
    );
    println!("last error   {}", job.last_error.unwrap_or_default());
    println!(
        "payload      {}",
        serde_json::to_string_pretty(&job.payload)?
    );
    Ok(())
}

/// `krug jobs retry Q ID` and `krug jobs discard Q ID`.
pub async fn jobs_act(
    services: Services,
    queue: &str,
    id: Uuid,
    retry: bool,
) -> anyhow::Result<()> {
    let name: QueueName = queue.parse()?;
    let action = if retry {
        inspect::retry(&services.queue, &services.db, name, id).await?
    } else {
        inspect::discard(&services.queue, &services.db, name, id).await?
    };
    let verb = if retry { "retried" } else { "discarded" };
    match action {
        inspect::Action::Done => {
            println!("{name} job {id} {verb}");
            Ok(())
        }
        inspect::Action::NotFound => bail!("queue {name} holds no job {id}"),
        inspect::Action::NotAllowed(state) => bail!("a {} job cannot be {verb}", state.as_str()),
    }
}

fn short_time(at: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    at.format(&f).unwrap_or_default()
}
