//! Partner businesses and their staff (their CRM connections are `integrations`).

use crate::states;
use domain::{Category, roles::StaffRole};
use rust_decimal::Decimal;
use sqlx::{FromRow, PgExecutor, Row, postgres::PgRow};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct Business {
    pub id: Uuid,
    pub name: String,
    pub category: Category,
    pub cashback_percent: Decimal,
    pub max_redeem_percent: Decimal,
    pub is_medical: bool,
    pub is_active: bool,
    /// The largest check its staff may issue a QR code for (set by a superadmin).
    pub max_check_amount: Decimal,
    /// Days an accrual waits before it enters the ledger (0: at once).
    pub bonus_hold_days: i32,
    /// The largest refund staff may give; above it, only an owner.
    pub staff_refund_limit: Decimal,
    pub created_at: OffsetDateTime,
}

/// By hand for the category: a name this build does not know is an error naming the
/// business.
impl FromRow<'_, PgRow> for Business {
    fn from_row(row: &PgRow) -> sqlx::Result<Self> {
        let id: Uuid = row.try_get("id")?;
        Ok(Self {
            id,
            name: row.try_get("name")?,
            category: states::column(row, "businesses", id, "category")?,
            cashback_percent: row.try_get("cashback_percent")?,
            max_redeem_percent: row.try_get("max_redeem_percent")?,
            is_medical: row.try_get("is_medical")?,
            is_active: row.try_get("is_active")?,
            max_check_amount: row.try_get("max_check_amount")?,
            bonus_hold_days: row.try_get("bonus_hold_days")?,
            staff_refund_limit: row.try_get("staff_refund_limit")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

macro_rules! business_columns {
    () => {
        "id, name, category, cashback_percent, max_redeem_percent, is_medical, is_active,
    max_check_amount, bonus_hold_days, staff_refund_limit, created_at"
    };
}

/// DESIGN.md's default `max_check_amount`: 500 000.00 ₽ (the column's default too).
pub const DEFAULT_MAX_CHECK_AMOUNT: Decimal = Decimal::from_parts(50_000_000, 0, 0, false, 2);

/// What staff may refund without the owner unless the business says otherwise (DESIGN.md).
pub const DEFAULT_STAFF_REFUND_LIMIT: Decimal = Decimal::from_parts(500_000, 0, 0, false, 2);

/// The fields of a new business, already validated.
#[derive(Debug, Clone)]
pub struct NewBusiness {
    pub name: String,
    pub category: Category,
    pub cashback_percent: Decimal,
    pub max_redeem_percent: Decimal,
    pub is_medical: bool,
    pub max_check_amount: Decimal,
    pub bonus_hold_days: i32,
    pub staff_refund_limit: Decimal,
}

pub async fn create(db: impl PgExecutor<'_>, new: &NewBusiness) -> sqlx::Result<Business> {
    sqlx::query_as(concat!(
        "INSERT INTO businesses (name, category, cashback_percent, max_redeem_percent, is_medical,
                                 max_check_amount, bonus_hold_days, staff_refund_limit)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         RETURNING ",
        business_columns!()
    ))
    .bind(&new.name)
    .bind(new.category.as_str())
    .bind(new.cashback_percent)
    .bind(new.max_redeem_percent)
    .bind(new.is_medical)
    .bind(new.max_check_amount)
    .bind(new.bonus_hold_days)
    .bind(new.staff_refund_limit)
    .fetch_one(db)
    .await
}

/// A change to a business; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct BusinessPatch {
    pub name: Option<String>,
    pub category: Option<Category>,
    pub cashback_percent: Option<Decimal>,
    pub max_redeem_percent: Option<Decimal>,
    pub is_medical: Option<bool>,
    pub is_active: Option<bool>,
    pub max_check_amount: Option<Decimal>,
    pub bonus_hold_days: Option<i32>,
    pub staff_refund_limit: Option<Decimal>,
}

pub async fn update(
    db: impl PgExecutor<'_>,
    id: Uuid,
    patch: &BusinessPatch,
) -> sqlx::Result<Option<Business>> {
    sqlx::query_as(concat!(
        "UPDATE businesses SET
            name               = COALESCE($2, name),
            category           = COALESCE($3, category),
            cashback_percent   = COALESCE($4, cashback_percent),
            max_redeem_percent = COALESCE($5, max_redeem_percent),
            is_medical         = COALESCE($6, is_medical),
            is_active          = COALESCE($7, is_active),
            max_check_amount   = COALESCE($8, max_check_amount),
            bonus_hold_days    = COALESCE($9, bonus_hold_days),
            staff_refund_limit = COALESCE($10, staff_refund_limit),
            updated_at         = now()
         WHERE id = $1
         RETURNING ",
        business_columns!()
    ))
    .bind(id)
    .bind(&patch.name)
    .bind(patch.category.map(Category::as_str))
    .bind(patch.cashback_percent)
    .bind(patch.max_redeem_percent)
    .bind(patch.is_medical)
    .bind(patch.is_active)
    .bind(patch.max_check_amount)
    .bind(patch.bonus_hold_days)
    .bind(patch.staff_refund_limit)
    .fetch_optional(db)
    .await
}

/// Every purchase of `id` recorded so far counts as medical from now on (the business was
/// just flagged medical): none reaches analytics or triggers cross-promo any more. Waits for
/// an analytics export holding some of them, so that once this commits no export of the
/// business can still be writing to ClickHouse.
pub async fn mark_history_medical(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<u64> {
    Ok(sqlx::query(
        "UPDATE transactions SET is_medical = true WHERE business_id = $1 AND NOT is_medical",
    )
    .bind(id)
    .execute(db)
    .await?
    .rows_affected())
}

/// The business, locked until the caller's transaction ends (a change reads what it changes).
pub async fn get_for_update(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<Business>> {
    sqlx::query_as(concat!(
        "SELECT ",
        business_columns!(),
        " FROM businesses WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// A business's name (for messages about it).
pub async fn name(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<String> {
    sqlx::query_scalar("SELECT name FROM businesses WHERE id = $1")
        .bind(id)
        .fetch_one(db)
        .await
}

pub async fn get(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<Business>> {
    sqlx::query_as(concat!(
        "SELECT ",
        business_columns!(),
        " FROM businesses WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Several businesses at once (those that exist).
pub async fn get_many(db: impl PgExecutor<'_>, ids: &[Uuid]) -> sqlx::Result<Vec<Business>> {
    sqlx::query_as(concat!(
        "SELECT ",
        business_columns!(),
        " FROM businesses WHERE id = ANY($1)"
    ))
    .bind(ids)
    .fetch_all(db)
    .await
}

/// Every business, active or not, by name.
pub async fn list_all(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<Business>> {
    sqlx::query_as(concat!(
        "SELECT ",
        business_columns!(),
        " FROM businesses ORDER BY name, id"
    ))
    .fetch_all(db)
    .await
}

pub async fn list_active(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<Business>> {
    sqlx::query_as(concat!(
        "SELECT ",
        business_columns!(),
        " FROM businesses WHERE is_active ORDER BY name"
    ))
    .fetch_all(db)
    .await
}

/// `business_staff` has no key of its own: its rows are named by business and user.
fn staff_key(business_id: Uuid, user_id: Uuid) -> String {
    format!("business {business_id} user {user_id}")
}

/// A role read from `business_staff`, strictly.
pub(crate) fn parse_role(business_id: Uuid, user_id: Uuid, role: &str) -> sqlx::Result<StaffRole> {
    states::parse(
        "business_staff",
        staff_key(business_id, user_id),
        "role",
        role,
    )
}

/// The role `user_id` holds at `business_id`, if any.
pub async fn staff_role(
    db: impl PgExecutor<'_>,
    business_id: Uuid,
    user_id: Uuid,
) -> sqlx::Result<Option<StaffRole>> {
    let role: Option<String> = sqlx::query_scalar(
        "SELECT role FROM business_staff WHERE business_id = $1 AND user_id = $2",
    )
    .bind(business_id)
    .bind(user_id)
    .fetch_optional(db)
    .await?;
    role.map(|role| parse_role(business_id, user_id, &role))
        .transpose()
}

/// Adds a staff member (or changes their role).
pub async fn put_staff(
    db: impl PgExecutor<'_>,
    business_id: Uuid,
    user_id: Uuid,
    role: StaffRole,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO business_staff (business_id, user_id, role) VALUES ($1, $2, $3)
         ON CONFLICT (business_id, user_id) DO UPDATE SET role = EXCLUDED.role",
    )
    .bind(business_id)
    .bind(user_id)
    .bind(role.as_str())
    .execute(db)
    .await?;
    Ok(())
}

/// A person on a business's staff.
#[derive(Debug, Clone)]
pub struct StaffMember {
    pub user_id: Uuid,
    pub phone: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub role: StaffRole,
    pub created_at: OffsetDateTime,
}

impl FromRow<'_, PgRow> for StaffMember {
    fn from_row(row: &PgRow) -> sqlx::Result<Self> {
        let business_id: Uuid = row.try_get("business_id")?;
        let user_id: Uuid = row.try_get("user_id")?;
        Ok(Self {
            user_id,
            phone: row.try_get("phone")?,
            first_name: row.try_get("first_name")?,
            last_name: row.try_get("last_name")?,
            role: parse_role(business_id, user_id, row.try_get("role")?)?,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// The staff of a business, owners first.
pub async fn list_staff(
    db: impl PgExecutor<'_>,
    business_id: Uuid,
) -> sqlx::Result<Vec<StaffMember>> {
    sqlx::query_as(
        "SELECT s.business_id, s.user_id, COALESCE(u.phone, '') AS phone, u.first_name, u.last_name,
                s.role, s.created_at
         FROM business_staff s JOIN users u ON u.id = s.user_id
         WHERE s.business_id = $1
         ORDER BY array_position($2, s.role), s.created_at, s.user_id",
    )
    .bind(business_id)
    .bind(StaffRole::ALL.map(StaffRole::as_str).to_vec())
    .fetch_all(db)
    .await
}

/// The owners of a business who gave an e-mail address (and have not deleted their
/// account), with it: where its monthly statement goes.
pub async fn owner_addresses(
    db: impl PgExecutor<'_>,
    business_id: Uuid,
) -> sqlx::Result<Vec<(Uuid, String)>> {
    sqlx::query_as(
        "SELECT u.id, btrim(u.email) FROM business_staff s JOIN users u ON u.id = s.user_id
         WHERE s.business_id = $1 AND s.role = 'owner' AND u.deleted_at IS NULL
           AND btrim(COALESCE(u.email, '')) <> ''
         ORDER BY u.id",
    )
    .bind(business_id)
    .fetch_all(db)
    .await
}

/// The owners of a business, locked until the caller's transaction ends: a change that
/// could leave the business without an owner reads them first, so that two owners removing
/// each other at once cannot both succeed.
pub async fn lock_owners(db: impl PgExecutor<'_>, business_id: Uuid) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT user_id FROM business_staff WHERE business_id = $1 AND role = 'owner'
         ORDER BY user_id FOR UPDATE",
    )
    .bind(business_id)
    .fetch_all(db)
    .await
}

/// Takes `user_id` off the staff of `business_id`; returns the role they held. From the
/// commit on, the QR codes they issued and nobody has used are refused (`qr_scan` checks
/// the issuer's role as it processes a scan).
pub async fn remove_staff(
    db: impl PgExecutor<'_>,
    business_id: Uuid,
    user_id: Uuid,
) -> sqlx::Result<Option<StaffRole>> {
    let role: Option<String> = sqlx::query_scalar(
        "DELETE FROM business_staff WHERE business_id = $1 AND user_id = $2 RETURNING role",
    )
    .bind(business_id)
    .bind(user_id)
    .fetch_optional(db)
    .await?;
    role.map(|role| parse_role(business_id, user_id, &role))
        .transpose()
}

/// Every business where `user_id` is on the staff, with the role held there.
pub async fn roles_of(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
) -> sqlx::Result<Vec<(Uuid, StaffRole)>> {
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT business_id, role FROM business_staff WHERE user_id = $1 ORDER BY business_id",
    )
    .bind(user_id)
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|(business_id, role)| Ok((business_id, parse_role(business_id, user_id, &role)?)))
        .collect()
}
