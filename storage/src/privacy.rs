//! A member's personal data (152-FZ): everything we hold about her, and its erasure.
//!
//! Erasure keeps the member's row and every row that points at it — ledger, balances,
//! purchases, coupons, settlement — so that balances and statements still add up, but the
//! row no longer says who she was: no phone, names or e-mail. What only ever served to reach
//! or recognise her goes altogether: devices, sessions, login codes and their SMS jobs, staff
//! and operator roles, seats at events to come. Her message history keeps what was said
//! (no personal data in our templates), not to which number. The system test
//! `a_deleted_members_phone_is_gone_from_every_table` reads every table for the phone, so a
//! table added later that keeps one fails it until erasure covers it.

use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

/// Everything about `user_id`, as one JSON document in the API's field names (money as
/// two-decimal strings); `None` for no such (or a deleted) member.
pub async fn export(db: &PgPool, user_id: Uuid) -> sqlx::Result<Option<serde_json::Value>> {
    sqlx::query_scalar(
        "SELECT jsonb_build_object(
            'exported_at', now(),
            'profile', jsonb_build_object(
                'id', u.id, 'phone', u.phone, 'first_name', u.first_name,
                'last_name', u.last_name, 'email', u.email, 'status_tier', u.status_tier,
                'created_at', u.created_at),
            'settings', jsonb_build_object(
                'push_marketing', u.push_marketing, 'sms_marketing', u.sms_marketing,
                'email_marketing', u.email_marketing, 'email', u.email),
            'roles', COALESCE((
                SELECT jsonb_agg(jsonb_build_object('role', r.role, 'business_id', r.business_id))
                FROM (SELECT role, NULL::uuid AS business_id FROM user_roles WHERE user_id = u.id
                      UNION ALL
                      SELECT role, business_id FROM business_staff WHERE user_id = u.id) r), '[]'),
            'balance', (
                SELECT jsonb_build_object('balance', b.balance::text,
                    'lifetime_earned', b.lifetime_earned::text, 'lifetime_spent', b.lifetime_spent::text)
                FROM bonus_balances b WHERE b.user_id = u.id),
            'ledger', COALESCE((
                SELECT jsonb_agg(jsonb_build_object('id', l.id, 'kind', l.kind,
                    'amount', l.amount::text, 'transaction_id', l.transaction_id,
                    'created_at', l.created_at) ORDER BY l.created_at, l.id)
                FROM bonus_ledger l WHERE l.user_id = u.id), '[]'),
            'transactions', COALESCE((
                SELECT jsonb_agg(jsonb_build_object('id', t.id, 'business_id', t.business_id,
                    'business_name', b.name, 'amount', t.amount::text,
                    'bonus_accrued', t.bonus_accrued::text, 'bonus_redeemed', t.bonus_redeemed::text,
                    'coupon_discount', t.coupon_discount::text,
                    'transaction_type', t.transaction_type, 'occurred_at', t.occurred_at,
                    'created_at', t.created_at) ORDER BY t.created_at, t.id)
                FROM transactions t JOIN businesses b ON b.id = t.business_id
                WHERE t.user_id = u.id), '[]'),
            'coupons', COALESCE((
                SELECT jsonb_agg(jsonb_build_object('id', c.id, 'code', c.code,
                    'business_id', c.business_id, 'discount_type', c.discount_type,
                    'discount_value', c.discount_value::text, 'expires_at', c.expires_at,
                    'redeemed_at', c.redeemed_at, 'source_chain_id', c.source_chain_id)
                    ORDER BY c.created_at, c.id)
                FROM coupons c WHERE c.user_id = u.id), '[]'),
            'devices', COALESCE((
                SELECT jsonb_agg(jsonb_build_object('id', d.id, 'platform', d.platform,
                    'created_at', d.created_at, 'last_seen_at', d.last_seen_at)
                    ORDER BY d.created_at, d.id)
                FROM devices d WHERE d.user_id = u.id), '[]'),
            'events', COALESCE((
                SELECT jsonb_agg(jsonb_build_object('event_id', e.id, 'title', e.title,
                    'date', e.date, 'registered_at', r.created_at) ORDER BY r.created_at, e.id)
                FROM event_registrations r JOIN events e ON e.id = r.event_id
                WHERE r.user_id = u.id), '[]'),
            'messages', COALESCE((
                SELECT jsonb_agg(jsonb_build_object('channel', n.channel,
                    'template', n.template, 'title', n.title, 'body', n.body,
                    'status', n.status, 'created_at', n.created_at) ORDER BY n.created_at, n.id)
                FROM notifications n WHERE n.user_id = u.id), '[]'))
         FROM users u WHERE u.id = $1 AND u.deleted_at IS NULL",
    )
    .bind(user_id)
    .fetch_optional(db)
    .await
}

/// What an erasure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Erased {
    pub deleted_at: OffsetDateTime,
    /// Seats given back at events that have not happened.
    pub seats_released: u64,
}

/// Erases `user_id`'s personal data (see the module docs), in one transaction; `None` for no
/// such (or an already deleted) member.
pub async fn erase(db: &PgPool, user_id: Uuid) -> sqlx::Result<Option<Erased>> {
    let mut tx = db.begin().await?;
    // The old phone, to find what was keyed by it before she had an account.
    let erased: Option<(String, OffsetDateTime)> = sqlx::query_as(
        "UPDATE users u SET phone = NULL, first_name = NULL, last_name = NULL, email = NULL,
                push_marketing = false, sms_marketing = false, email_marketing = false,
                deleted_at = now(), updated_at = now()
         FROM (SELECT id, phone FROM users WHERE id = $1 AND deleted_at IS NULL FOR UPDATE) old
         WHERE u.id = old.id
         RETURNING old.phone, u.deleted_at",
    )
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((phone, deleted_at)) = erased else {
        return Ok(None);
    };
    for statement in [
        "DELETE FROM devices WHERE user_id = $1",
        "DELETE FROM device_sightings WHERE user_id = $1",
        // Her invitation code stops working; invitations already taken stay as history.
        "DELETE FROM referral_codes WHERE user_id = $1",
        "DELETE FROM refresh_tokens WHERE user_id = $1",
        "DELETE FROM user_roles WHERE user_id = $1",
        "DELETE FROM business_staff WHERE user_id = $1",
        "DELETE FROM otp_codes WHERE phone = $2",
        "DELETE FROM job_outbox WHERE queue = 'otp_send' AND payload->>'phone' = $2",
        "UPDATE notifications SET phone = NULL, email = NULL WHERE user_id = $1 OR phone = $2",
    ] {
        sqlx::query(statement)
            .bind(user_id)
            .bind(&phone)
            .execute(&mut *tx)
            .await?;
    }
    // Seats at events to come go back to the others; past attendance is history.
    let seats_released = sqlx::query(
        "WITH gone AS (
            DELETE FROM event_registrations r USING events e
            WHERE r.event_id = e.id AND r.user_id = $1 AND e.status IN ('proposed', 'approved', 'active')
            RETURNING r.event_id
         )
         UPDATE events e SET registered_count = registered_count - 1
         FROM gone WHERE e.id = gone.event_id",
    )
    .bind(user_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(Some(Erased {
        deleted_at,
        seats_released,
    }))
}
