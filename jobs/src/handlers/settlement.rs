//! `settlement` (the 1st of the month, 05:00): closes last month into its statement
//! (DESIGN.md "Settlement"). Which month is "last" is decided by `Env::clock` in
//! `KRUG_TIMEZONE`; a month closed already (by an operator, or by an earlier run) is done.

use crate::queue::{Job, JobCtx, JobError, QueueName};
use serde::{Deserialize, Serialize};
use storage::settlement::{self, CloseRefusal};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CloseSettlement {}

impl Job for CloseSettlement {
    const QUEUE: QueueName = QueueName::Settlement;

    async fn run(self, ctx: JobCtx) -> Result<(), JobError> {
        let env = &ctx.env;
        let tz = env.timezone.name();
        let now = env.clock.now();
        let period = settlement::period_at(&env.db, now, tz).await?.previous();
        let mut tx = env.db.begin().await?;
        match settlement::close(&mut tx, period, tz, now, None).await? {
            Ok(statement) => {
                tx.commit().await?;
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
