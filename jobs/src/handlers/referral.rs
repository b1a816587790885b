//! Referral rewards, settled by the `expire` job (time passing on bonuses): invitations
//! whose invitee's first qualifying purchase is past its hold window are rewarded, or
//! refused (one device behind both accounts, the inviter's yearly limit).

use crate::{queue::JobError, run::JobCtx};

/// Invitations settled per transaction: the members' balance locks are held that long.
const BATCH: i64 = 500;

/// Settles every due invitation; returns how many were rewarded.
pub async fn settle_referrals(ctx: &JobCtx) -> Result<usize, JobError> {
    let env = &ctx.env;
    let (rules, _) = storage::referrals::rules(&env.db).await?;
    let mut rewarded = 0;
    loop {
        let mut tx = storage::begin_batch(&env.db).await?;
        let settled = storage::referrals::settle_due(&mut tx, &rules, BATCH).await?;
        tx.commit().await?;
        if settled.is_empty() {
            return Ok(rewarded);
        }
        rewarded += settled.iter().filter(|s| s.refusal.is_none()).count();
        env.committed(
            settled.iter().flat_map(|s| [s.inviter, s.invitee]),
            &[],
            "referral rewards",
        )
        .await;
        if (settled.len() as i64) < BATCH {
            return Ok(rewarded);
        }
    }
}
