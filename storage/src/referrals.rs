//! Referral as stored: each member's code, who invited whom, and the rules
//! (`domain::referral` decides; this module reads and writes).

use domain::referral::{ReferralCode, ReferralRules};
use sqlx::{PgExecutor, Postgres, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

/// The rules as stored, and where invitation links point.
pub async fn rules(db: impl PgExecutor<'_>) -> sqlx::Result<(ReferralRules, String)> {
    let row: Option<(
        rust_decimal::Decimal,
        rust_decimal::Decimal,
        i32,
        i32,
        String,
    )> = sqlx::query_as(
        "SELECT bonus, min_purchase, yearly_limit, window_days, link_base FROM referral_rules",
    )
    .fetch_optional(db)
    .await?;
    Ok(match row {
        Some((bonus, min_purchase, yearly_limit, window_days, link_base)) => (
            ReferralRules {
                bonus,
                min_purchase,
                yearly_limit: yearly_limit.max(0) as u32,
                window_days: window_days.max(0) as u32,
            },
            link_base,
        ),
        None => (
            ReferralRules::default(),
            "https://svoykrug.ru/r/".to_owned(),
        ),
    })
}

/// The member's code, made now if she has none. A clash with another member's code (one in
/// 31⁸ / members) draws again.
pub async fn code_of(db: &sqlx::PgPool, user: Uuid) -> sqlx::Result<String> {
    loop {
        let candidate = ReferralCode::generate(&mut rand::rng());
        let code: Option<String> = sqlx::query_scalar(
            "WITH made AS (
                INSERT INTO referral_codes (user_id, code) VALUES ($1, $2)
                ON CONFLICT DO NOTHING RETURNING code
             )
             SELECT code FROM made
             UNION ALL
             SELECT code FROM referral_codes WHERE user_id = $1
             LIMIT 1",
        )
        .bind(user)
        .bind(candidate.as_ref())
        .fetch_optional(db)
        .await?;
        if let Some(code) = code {
            return Ok(code);
        }
    }
}

/// Why a code was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakeRefusal {
    /// No member has this code (or she deleted her account).
    UnknownCode,
    /// The member's own code.
    OwnCode,
    /// She named another inviter before.
    AlreadyTaken,
    /// More than `window_days` since she signed up.
    WindowClosed,
}

/// Records that the owner of `code` invited `invitee`. Naming the same inviter again is a
/// success that changes nothing.
pub async fn take(
    tx: &mut Transaction<'_, Postgres>,
    invitee: Uuid,
    code: &ReferralCode,
    rules: &ReferralRules,
    now: OffsetDateTime,
) -> sqlx::Result<Result<Uuid, TakeRefusal>> {
    let inviter: Option<Uuid> = sqlx::query_scalar(
        "SELECT c.user_id FROM referral_codes c JOIN users u ON u.id = c.user_id
         WHERE c.code = $1 AND u.deleted_at IS NULL",
    )
    .bind(code.as_ref())
    .fetch_optional(&mut **tx)
    .await?;
    let Some(inviter) = inviter else {
        return Ok(Err(TakeRefusal::UnknownCode));
    };
    if inviter == invitee {
        return Ok(Err(TakeRefusal::OwnCode));
    }
    // Her row locked: two requests naming two inviters at once take one of them.
    let signed_up: Option<OffsetDateTime> = sqlx::query_scalar(
        "SELECT created_at FROM users WHERE id = $1 AND deleted_at IS NULL FOR UPDATE",
    )
    .bind(invitee)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(signed_up) = signed_up else {
        return Ok(Err(TakeRefusal::UnknownCode));
    };
    let existing: Option<Uuid> =
        sqlx::query_scalar("SELECT inviter_id FROM referrals WHERE invitee_id = $1")
            .bind(invitee)
            .fetch_optional(&mut **tx)
            .await?;
    match existing {
        Some(same) if same == inviter => return Ok(Ok(inviter)),
        Some(_) => return Ok(Err(TakeRefusal::AlreadyTaken)),
        None => {}
    }
    if !rules.may_take(signed_up, now) {
        return Ok(Err(TakeRefusal::WindowClosed));
    }
    sqlx::query("INSERT INTO referrals (invitee_id, inviter_id) VALUES ($1, $2)")
        .bind(invitee)
        .bind(inviter)
        .execute(&mut **tx)
        .await?;
    Ok(Ok(inviter))
}

/// How many members `inviter` invited, and how many of those invitations were rewarded.
pub async fn counts(db: impl PgExecutor<'_>, inviter: Uuid) -> sqlx::Result<(i64, i64)> {
    sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE status = 'rewarded')
         FROM referrals WHERE inviter_id = $1",
    )
    .bind(inviter)
    .fetch_one(db)
    .await
}

/// An invitation settled by [`settle_due`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub inviter: Uuid,
    pub invitee: Uuid,
    /// `None`: rewarded (both sides got the bonus); otherwise why not.
    pub refusal: Option<domain::referral::Refusal>,
}

/// Settles up to `limit` pending invitations whose invitee made a qualifying purchase (at
/// least `min_purchase`) that is past its hold window — its accrual is in the ledger (a held
/// accrual enters it only when its hold ends, and never if a refund cancelled it). Each
/// side of a rewarded one gets a `referral` entry through [`crate::ledger`], keyed by the
/// invitee, so a retry writes nothing twice. Oldest invitations first, so the yearly limit
/// keeps the earliest.
pub async fn settle_due(
    tx: &mut Transaction<'_, Postgres>,
    rules: &ReferralRules,
    limit: i64,
) -> sqlx::Result<Vec<Settled>> {
    use crate::ledger::{self, Entry};
    use domain::loyalty::EntryKind;
    use domain::referral::Settlement;
    let due: Vec<(Uuid, Uuid, Uuid)> = sqlx::query_as(
        "SELECT r.invitee_id, r.inviter_id, q.id
         FROM referrals r
         JOIN users invitee ON invitee.id = r.invitee_id AND invitee.deleted_at IS NULL
         JOIN users inviter ON inviter.id = r.inviter_id AND inviter.deleted_at IS NULL
         JOIN LATERAL (
             SELECT t.id FROM transactions t
             WHERE t.user_id = r.invitee_id AND t.transaction_type = 'purchase' AND t.amount >= $1
               AND EXISTS (SELECT 1 FROM bonus_ledger l WHERE l.transaction_id = t.id AND l.kind = 'accrual')
             ORDER BY t.occurred_at, t.id LIMIT 1
         ) q ON true
         WHERE r.status = 'pending'
         ORDER BY r.created_at, r.invitee_id
         LIMIT $2
         FOR UPDATE OF r SKIP LOCKED",
    )
    .bind(rules.min_purchase)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?;
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let mut rewarded_now: std::collections::HashMap<Uuid, u32> = Default::default();
    let mut settled = Vec::with_capacity(due.len());
    let mut entries = Vec::new();
    for (invitee, inviter, purchase) in due {
        let (same_device, rewarded_this_year): (bool, i64) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM device_sightings a JOIN device_sightings b
                            ON b.token_hash = a.token_hash
                            WHERE a.user_id = $1 AND b.user_id = $2),
                    (SELECT count(*) FROM referrals WHERE inviter_id = $1 AND status = 'rewarded'
                       AND settled_at > now() - interval '365 days')",
        )
        .bind(inviter)
        .bind(invitee)
        .fetch_one(&mut **tx)
        .await?;
        let so_far = rewarded_this_year as u32 + rewarded_now.get(&inviter).copied().unwrap_or(0);
        let refusal = match rules.settle(same_device, so_far) {
            Settlement::Reward(bonus) => {
                *rewarded_now.entry(inviter).or_default() += 1;
                for (user, side) in [(inviter, "inviter"), (invitee, "invitee")] {
                    entries.push(Entry {
                        user_id: user,
                        kind: EntryKind::Referral,
                        amount: bonus,
                        transaction_id: None,
                        business_id: None,
                        key: format!("referral:{invitee}:{side}"),
                    });
                }
                None
            }
            Settlement::Refused(why) => Some(why),
        };
        sqlx::query(
            "UPDATE referrals SET status = $2, refusal = $3, purchase_id = $4, settled_at = now()
             WHERE invitee_id = $1",
        )
        .bind(invitee)
        .bind(if refusal.is_some() {
            "refused"
        } else {
            "rewarded"
        })
        .bind(refusal.map(|r| r.as_str()))
        .bind(purchase)
        .execute(&mut **tx)
        .await?;
        settled.push(Settled {
            inviter,
            invitee,
            refusal,
        });
    }
    let mut locked = ledger::lock(tx, entries.iter().map(|e| e.user_id)).await?;
    locked.post(tx, &entries).await?;
    Ok(settled)
}
