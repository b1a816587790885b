//! Members, operators and staff: one `users` row per phone.

use crate::states;
use domain::{
    PhoneNumber, Tier,
    roles::{PlatformRole, StaffRole},
};
use sqlx::{FromRow, PgExecutor, PgPool, Row, postgres::PgRow};
use time::OffsetDateTime;
use uuid::Uuid;

/// A member as she is now. Deleted members (`DELETE /users/me`) are never read as users:
/// their row is only what keeps the ledger whole.
#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub phone: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub status_tier: Tier,
    pub created_at: OffsetDateTime,
    /// Set while an operator has her blocked (`POST /admin/users/{id}/block`).
    pub blocked_at: Option<OffsetDateTime>,
    pub blocked_reason: Option<String>,
}

impl User {
    pub fn tier(&self) -> Tier {
        self.status_tier
    }
}

/// By hand for the tier: a name this build does not know is an error naming the user.
impl FromRow<'_, PgRow> for User {
    fn from_row(row: &PgRow) -> sqlx::Result<Self> {
        let id: Uuid = row.try_get("id")?;
        Ok(Self {
            id,
            phone: row.try_get("phone")?,
            first_name: row.try_get("first_name")?,
            last_name: row.try_get("last_name")?,
            email: row.try_get("email")?,
            status_tier: states::column(row, "users", id, "status_tier")?,
            created_at: row.try_get("created_at")?,
            blocked_at: row.try_get("blocked_at")?,
            blocked_reason: row.try_get("blocked_reason")?,
        })
    }
}

/// A role a user holds: platform-wide, or at one business.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Platform(PlatformRole),
    Business { business_id: Uuid, role: StaffRole },
}

macro_rules! user_columns {
    () => {
        "id, phone, first_name, last_name, email, status_tier, created_at, blocked_at, blocked_reason"
    };
}

/// Finds the user with this phone or creates a member for it.
pub async fn find_or_create(db: impl PgExecutor<'_>, phone: &PhoneNumber) -> sqlx::Result<User> {
    // The no-op update makes RETURNING give the row in both cases, in one round trip.
    sqlx::query_as(concat!(
        "INSERT INTO users (phone) VALUES ($1)
         ON CONFLICT (phone) DO UPDATE SET phone = EXCLUDED.phone
         RETURNING ",
        user_columns!()
    ))
    .bind(phone.as_ref())
    .fetch_one(db)
    .await
}

pub async fn get(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<User>> {
    sqlx::query_as(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE id = $1 AND deleted_at IS NULL"
    ))
    .bind(id)
    .fetch_optional(db)
    .await
}

pub async fn find_by_phone(
    db: impl PgExecutor<'_>,
    phone: &PhoneNumber,
) -> sqlx::Result<Option<User>> {
    sqlx::query_as(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE phone = $1"
    ))
    .bind(phone.as_ref())
    .fetch_optional(db)
    .await
}

/// A profile change; `None` leaves a field as it is, `Some(None)` clears it.
#[derive(Debug, Default, Clone)]
pub struct ProfilePatch {
    pub first_name: Option<Option<String>>,
    pub last_name: Option<Option<String>>,
    pub email: Option<Option<String>>,
}

pub async fn update_profile(
    db: &PgPool,
    id: Uuid,
    patch: &ProfilePatch,
) -> sqlx::Result<Option<User>> {
    sqlx::query_as(concat!(
        "UPDATE users SET
            first_name = CASE WHEN $2 THEN $3 ELSE first_name END,
            last_name  = CASE WHEN $4 THEN $5 ELSE last_name END,
            email      = CASE WHEN $6 THEN $7 ELSE email END,
            updated_at = now()
         WHERE id = $1 AND deleted_at IS NULL
         RETURNING ",
        user_columns!()
    ))
    .bind(id)
    .bind(patch.first_name.is_some())
    .bind(patch.first_name.clone().flatten())
    .bind(patch.last_name.is_some())
    .bind(patch.last_name.clone().flatten())
    .bind(patch.email.is_some())
    .bind(patch.email.clone().flatten())
    .fetch_optional(db)
    .await
}

/// Platform roles (`superadmin`, `moderator`) and business roles, as names for tokens and `/users/me`.
pub async fn roles(db: &PgPool, id: Uuid) -> sqlx::Result<Vec<Role>> {
    let rows: Vec<(Option<Uuid>, String)> = sqlx::query_as(
        "SELECT NULL::uuid, role FROM user_roles WHERE user_id = $1
         UNION ALL
         SELECT business_id, role FROM business_staff WHERE user_id = $1
         ORDER BY 2",
    )
    .bind(id)
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|(business_id, role)| {
            Ok(match business_id {
                None => Role::Platform(states::parse(
                    "user_roles",
                    format!("user {id}"),
                    "role",
                    &role,
                )?),
                Some(business_id) => Role::Business {
                    business_id,
                    role: crate::businesses::parse_role(business_id, id, &role)?,
                },
            })
        })
        .collect()
}

pub async fn grant_platform_role(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    role: PlatformRole,
) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO user_roles (user_id, role) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(user_id)
        .bind(role.as_str())
        .execute(db)
        .await?;
    Ok(())
}

/// A member's marketing consent per channel and her e-mail (`/users/me/settings`).
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct Settings {
    pub push_marketing: bool,
    pub sms_marketing: bool,
    pub email_marketing: bool,
    pub email: Option<String>,
}

/// A change of settings; `None` leaves a field as it is (`email: Some(None)` clears it).
#[derive(Debug, Default, Clone)]
pub struct SettingsPatch {
    pub push_marketing: Option<bool>,
    pub sms_marketing: Option<bool>,
    pub email_marketing: Option<bool>,
    pub email: Option<Option<String>>,
}

/// Whom a message reaches and how she may be reached: her phone and what marketing she
/// accepts.
#[derive(Debug, Clone, FromRow)]
pub struct Recipient {
    pub id: Uuid,
    pub phone: String,
    pub push_marketing: bool,
    pub sms_marketing: bool,
}

/// The recipients among these members (a deleted member is none).
pub async fn recipients(db: impl PgExecutor<'_>, ids: &[Uuid]) -> sqlx::Result<Vec<Recipient>> {
    sqlx::query_as(
        "SELECT id, phone, push_marketing, sms_marketing FROM users
         WHERE id = ANY($1) AND deleted_at IS NULL",
    )
    .bind(ids)
    .fetch_all(db)
    .await
}

pub async fn settings(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<Settings>> {
    sqlx::query_as(
        "SELECT push_marketing, sms_marketing, email_marketing, email FROM users
         WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .fetch_optional(db)
    .await
}

pub async fn update_settings(
    db: impl PgExecutor<'_>,
    id: Uuid,
    patch: &SettingsPatch,
) -> sqlx::Result<Option<Settings>> {
    sqlx::query_as(
        "UPDATE users SET
            push_marketing  = COALESCE($2, push_marketing),
            sms_marketing   = COALESCE($3, sms_marketing),
            email_marketing = COALESCE($4, email_marketing),
            email           = CASE WHEN $5 THEN $6 ELSE email END,
            updated_at      = now()
         WHERE id = $1 AND deleted_at IS NULL
         RETURNING push_marketing, sms_marketing, email_marketing, email",
    )
    .bind(id)
    .bind(patch.push_marketing)
    .bind(patch.sms_marketing)
    .bind(patch.email_marketing)
    .bind(patch.email.is_some())
    .bind(patch.email.clone().flatten())
    .fetch_optional(db)
    .await
}

/// Takes a platform role away; `false` if the user did not hold it.
pub async fn revoke_platform_role(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    role: PlatformRole,
) -> sqlx::Result<bool> {
    Ok(
        sqlx::query("DELETE FROM user_roles WHERE user_id = $1 AND role = $2")
            .bind(user_id)
            .bind(role.as_str())
            .execute(db)
            .await?
            .rows_affected()
            > 0,
    )
}

/// Whether `user_id` is blocked now (`false` for no such member).
pub async fn is_blocked(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<bool> {
    Ok(
        sqlx::query_scalar::<_, bool>("SELECT blocked_at IS NOT NULL FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(db)
            .await?
            .unwrap_or(false),
    )
}

/// Which of `user_ids` are blocked now.
pub async fn blocked_among(db: impl PgExecutor<'_>, user_ids: &[Uuid]) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar("SELECT id FROM users WHERE id = ANY($1) AND blocked_at IS NOT NULL")
        .bind(user_ids)
        .fetch_all(db)
        .await
}

/// Locks a member's row for a change by an operator; `None` for no such (or a deleted) member.
pub async fn get_for_update(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<User>> {
    sqlx::query_as(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE id = $1 AND deleted_at IS NULL FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Blocks (`Some(reason)`) or unblocks (`None`) a member; returns her as she is now.
pub async fn set_blocked(
    db: impl PgExecutor<'_>,
    id: Uuid,
    reason: Option<&str>,
) -> sqlx::Result<Option<User>> {
    sqlx::query_as(concat!(
        "UPDATE users SET blocked_at = CASE WHEN $2::text IS NULL THEN NULL ELSE COALESCE(blocked_at, now()) END,
                blocked_reason = $2, updated_at = now()
         WHERE id = $1 AND deleted_at IS NULL
         RETURNING ",
        user_columns!()
    ))
    .bind(id)
    .bind(reason)
    .fetch_optional(db)
    .await
}

/// Members whose phone is `phone`, for operators looking someone up (at most one today: a
/// phone is one account; a list, because a search by phone is a search).
pub async fn search_by_phone(
    db: impl PgExecutor<'_>,
    phone: &PhoneNumber,
) -> sqlx::Result<Vec<User>> {
    sqlx::query_as(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE phone = $1 AND deleted_at IS NULL ORDER BY created_at"
    ))
    .bind(phone.as_ref())
    .fetch_all(db)
    .await
}

/// Those of `ids` an offer may go to. Analytics may still know a member who has since left;
/// members who refuse offers by push and by SMS are not targeted, nor are blocked members
/// (no coupon follows while she is blocked).
pub async fn open_to_offers(db: impl PgExecutor<'_>, ids: &[Uuid]) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT id FROM users WHERE id = ANY($1) AND (push_marketing OR sms_marketing) AND blocked_at IS NULL",
    )
    .bind(ids)
    .fetch_all(db)
    .await
}
