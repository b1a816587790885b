//! `settlement` (the 1st of the month, 05:00): closes last month into its statement
//! (DESIGN.md "Settlement"). Which month is "last" is decided by `Env::clock` in
//! `KRUG_TIMEZONE`; a month closed already (by an operator, or by an earlier run) is done.
//! Closing a month records, in the same transaction, each business's statement e-mail to its
//! owners (`handlers::email`).

use crate::{
    handlers::notify_job::SendEmail,
    outbox,
    queue::{Job, JobError, QueueName},
    run::{JobCtx, RunJob},
};
use domain::settlement::{Period, Statement};
use serde::{Deserialize, Serialize};
use sqlx::{Postgres, Transaction};
use storage::{
    outbox::OutboxJob,
    settlement::{self, CloseRefusal},
};
use uuid::Uuid;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CloseSettlement {}

impl Job for CloseSettlement {
    const QUEUE: QueueName = QueueName::Settlement;
}

impl RunJob for CloseSettlement {
    async fn run(self, ctx: JobCtx) -> Result<(), JobError> {
        let env = &ctx.env;
        let tz = env.timezone.name();
        let now = env.clock.now();
        let period = settlement::period_at(&env.db, now, tz).await?.previous();
        let mut tx = env.db.begin().await?;
        match settlement::close(&mut tx, period, tz, now, None).await? {
            Ok(statement) => {
                let mails = statement_mails(&mut tx, period, &statement).await?;
                tx.commit().await?;
                env.committed([], &mails, "statement e-mails").await;
                tracing::info!(
                    %period,
                    businesses = statement.lines.len(),
                    transfers = statement.transfers.len(),
                    entries = statement.entries,
                    total = %statement.total,
                    "settlement period closed"
                );
                Ok(())
            }
            Err(CloseRefusal::AlreadyClosed(_)) => {
                tracing::info!(%period, "settlement period closed already");
                Ok(())
            }
            // An earlier month left open (or a later one closed): an operator closes them
            // in order; running again changes nothing.
            Err(refusal) => Err(JobError::permanent(refusal)),
        }
    }
}

/// Records, in the closing transaction, the statement e-mail of every business of the
/// closed `statement` (whoever closed it: this job or an operator); relay them after commit.
pub async fn statement_mails(
    tx: &mut Transaction<'_, Postgres>,
    period: Period,
    statement: &Statement<Uuid>,
) -> sqlx::Result<Vec<OutboxJob>> {
    let rows = SendEmail::statements(period, statement.lines.iter().map(|l| l.business_id));
    outbox::record_all(tx, &rows).await?;
    Ok(rows)
}
