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
