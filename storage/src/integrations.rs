//! A business's connections to its CRMs: one record per connection (Лисичкино has two), each
//! with its sealed credentials, settings, polling cursor and health.
//!
//! Credentials are sealed with the integration's id as associated data: copied onto another
//! row they do not open. Changing the URL or the CRM type drops them (they were given for
//! that host), and they must be given again; until then the integration is `disabled`.

use crate::{secret::SecretBox, states};
use domain::crm::CrmType;
use serde_json::Value;
use sqlx::{FromRow, PgConnection, PgExecutor, PgPool, Row, postgres::PgRow};
use time::OffsetDateTime;
use uuid::Uuid;

/// What `last_error` says of an integration whose credentials were dropped.
pub const CREDENTIALS_NEEDED: &str =
    "credentials needed: the CRM URL or type changed, so the old credentials were dropped";

/// Whether an integration is polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegrationStatus {
    /// Polled on schedule.
    Ok,
    /// Its last poll failed in a way retrying will not fix: polled again only when an
    /// operator asks (or changes it).
    Failing,
    /// Switched off, or waiting for credentials.
    Disabled,
}

impl IntegrationStatus {
    pub const ALL: [IntegrationStatus; 3] = [Self::Ok, Self::Failing, Self::Disabled];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failing => "failing",
            Self::Disabled => "disabled",
        }
    }
}

domain::parse_by_name!(IntegrationStatus);

#[derive(Debug, Clone)]
pub struct Integration {
    pub id: Uuid,
    pub business_id: Uuid,
    pub crm_type: CrmType,
    pub base_url: String,
    /// Whether credentials are stored; they never leave [`credentials`].
    pub has_credentials: bool,
    pub settings: Value,
    pub status: IntegrationStatus,
    pub last_error: Option<String>,
    pub warning: Option<String>,
    /// Everything changed before this is stored.
    pub polled_until: Option<OffsetDateTime>,
    pub last_polled_at: Option<OffsetDateTime>,
    pub last_success_at: Option<OffsetDateTime>,
    /// Checks whose buyer could not be resolved.
    pub unattributed: i64,
    pub created_at: OffsetDateTime,
}

/// By hand for the CRM type and the status: a name this build does not know is an error
/// naming the integration.
impl FromRow<'_, PgRow> for Integration {
    fn from_row(row: &PgRow) -> sqlx::Result<Self> {
        let id: Uuid = row.try_get("id")?;
        Ok(Self {
            id,
            business_id: row.try_get("business_id")?,
            crm_type: states::column(row, "integrations", id, "crm_type")?,
            base_url: row.try_get("base_url")?,
            has_credentials: row.try_get("has_credentials")?,
            settings: row.try_get("settings")?,
            status: states::column(row, "integrations", id, "status")?,
            last_error: row.try_get("last_error")?,
            warning: row.try_get("warning")?,
            polled_until: row.try_get("polled_until")?,
            last_polled_at: row.try_get("last_polled_at")?,
            last_success_at: row.try_get("last_success_at")?,
            unattributed: row.try_get("unattributed")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

macro_rules! columns {
    () => {
        "i.id, i.business_id, i.crm_type, i.base_url, i.credentials IS NOT NULL AS has_credentials,
         i.settings, i.status, i.last_error, i.warning, i.polled_until, i.last_polled_at,
         i.last_success_at,
         (SELECT count(*) FROM crm_unattributed u WHERE u.integration_id = i.id) AS unattributed,
         i.created_at"
    };
}

/// A new connection, already validated.
#[derive(Debug, Clone)]
pub struct NewIntegration {
    pub crm_type: CrmType,
    pub base_url: String,
    pub credentials: Option<Value>,
    pub settings: Value,
}

/// Adds an integration to a business, in the caller's transaction. A deleted integration of
/// the same business, type and URL is taken back instead (same id, so the purchases it
/// stored keep their key and are not counted again), with the new credentials and settings.
pub async fn create(
    tx: &mut PgConnection,
    secrets: &SecretBox,
    business_id: Uuid,
    new: &NewIntegration,
) -> sqlx::Result<Integration> {
    let deleted: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM integrations
         WHERE business_id = $1 AND crm_type = $2 AND base_url = $3 AND deleted_at IS NOT NULL
         ORDER BY deleted_at DESC LIMIT 1 FOR UPDATE",
    )
    .bind(business_id)
    .bind(new.crm_type.as_str())
    .bind(&new.base_url)
    .fetch_optional(&mut *tx)
    .await?;
    let id = deleted.unwrap_or_else(Uuid::new_v4);
    let sealed = new.credentials.as_ref().map(|c| seal(secrets, id, c));
    let (status, error) = match sealed {
        Some(_) => (IntegrationStatus::Ok, None),
        None => (IntegrationStatus::Disabled, Some("credentials needed")),
    };
    sqlx::query(
        "INSERT INTO integrations (id, business_id, crm_type, base_url, credentials, settings, status, last_error)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (id) DO UPDATE SET
             credentials = EXCLUDED.credentials, settings = EXCLUDED.settings,
             status = EXCLUDED.status, last_error = EXCLUDED.last_error, warning = NULL,
             deleted_at = NULL, updated_at = now()",
    )
    .bind(id)
    .bind(business_id)
    .bind(new.crm_type.as_str())
    .bind(&new.base_url)
    .bind(sealed)
    .bind(&new.settings)
    .bind(status.as_str())
    .bind(error)
    .execute(&mut *tx)
    .await?;
    fetch(&mut *tx, id).await?.ok_or(sqlx::Error::RowNotFound)
}

/// A change to an integration; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct IntegrationPatch {
    pub crm_type: Option<CrmType>,
    pub base_url: Option<String>,
    /// `Some(None)` removes them.
    pub credentials: Option<Option<Value>>,
    pub settings: Option<Value>,
    /// `false` switches polling off (`disabled`); `true` back on.
    pub enabled: Option<bool>,
}

/// Changes an integration of `business_id`, in the caller's transaction; `None` if it has no
/// such integration.
///
/// A new URL or CRM type without new credentials drops the stored ones: they were given
/// for the old host, and the next poll would otherwise send them to the new one.
pub async fn update(
    tx: &mut PgConnection,
    secrets: &SecretBox,
    business_id: Uuid,
    id: Uuid,
    patch: &IntegrationPatch,
) -> sqlx::Result<Option<Integration>> {
    let current: Option<(String, String, bool, String)> = sqlx::query_as(
        "SELECT crm_type, base_url, credentials IS NOT NULL, status FROM integrations
         WHERE id = $1 AND business_id = $2 AND deleted_at IS NULL FOR UPDATE",
    )
    .bind(id)
    .bind(business_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((crm_type, base_url, had_credentials, status)) = current else {
        return Ok(None);
    };
    let crm_type: CrmType = states::parse("integrations", id, "crm_type", &crm_type)?;
    let status: IntegrationStatus = states::parse("integrations", id, "status", &status)?;
    let moved = patch.crm_type.is_some_and(|t| t != crm_type)
        || patch.base_url.as_ref().is_some_and(|u| *u != base_url);
    // (change the column?, new sealed value)
    let credentials: (bool, Option<Vec<u8>>) = match &patch.credentials {
        Some(Some(value)) => (true, Some(seal(secrets, id, value))),
        Some(None) => (true, None),
        None if moved => (true, None),
        None => (false, None),
    };
    let has_credentials = if credentials.0 {
        credentials.1.is_some()
    } else {
        had_credentials
    };
    let (status, error): (IntegrationStatus, Option<&str>) = if patch.enabled == Some(false) {
        (IntegrationStatus::Disabled, None)
    } else if !has_credentials {
        (
            IntegrationStatus::Disabled,
            Some(if moved {
                CREDENTIALS_NEEDED
            } else {
                "credentials needed"
            }),
        )
    } else if patch.enabled == Some(true)
        || credentials.0
        || moved
        || patch.settings.is_some()
        || status == IntegrationStatus::Disabled
    {
        // Something an operator changed deserves a fresh try.
        (IntegrationStatus::Ok, None)
    } else {
        (status, None)
    };
    let keep_error =
        !credentials.0 && !moved && patch.settings.is_none() && patch.enabled.is_none();
    sqlx::query(
        "UPDATE integrations SET
             crm_type     = COALESCE($2, crm_type),
             base_url     = COALESCE($3, base_url),
             credentials  = CASE WHEN $4 THEN $5 ELSE credentials END,
             settings     = COALESCE($6, settings),
             status       = $7,
             last_error   = CASE WHEN $9 THEN last_error ELSE $8 END,
             -- Another host or vendor: its records are read from the start again (what was
             -- stored already is not stored twice).
             polled_until  = CASE WHEN $10 THEN NULL ELSE polled_until END,
             vendor_cursor = CASE WHEN $10 THEN NULL ELSE vendor_cursor END,
             -- An operator who changed the integration has seen its warning.
             warning       = NULL,
             updated_at   = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(patch.crm_type.map(CrmType::as_str))
    .bind(&patch.base_url)
    .bind(credentials.0)
    .bind(credentials.1)
    .bind(&patch.settings)
    .bind(status.as_str())
    .bind(error)
    .bind(keep_error)
    .bind(moved)
    .execute(&mut *tx)
    .await?;
    fetch(&mut *tx, id).await
}

/// Deletes an integration of `business_id` (its credentials are erased; the record stays for
/// the purchases it stored). `false` if there was none.
pub async fn delete(db: impl PgExecutor<'_>, business_id: Uuid, id: Uuid) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE integrations SET deleted_at = now(), credentials = NULL, status = 'disabled', updated_at = now()
         WHERE id = $1 AND business_id = $2 AND deleted_at IS NULL",
    )
    .bind(id)
    .bind(business_id)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

async fn fetch(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<Integration>> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM integrations i WHERE i.id = $1 AND i.deleted_at IS NULL"
    ))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// One integration (not deleted).
pub async fn get(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<Integration>> {
    fetch(db, id).await
}

/// The integrations of these businesses, oldest first per business.
pub async fn of_businesses(
    db: impl PgExecutor<'_>,
    business_ids: &[Uuid],
) -> sqlx::Result<Vec<Integration>> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM integrations i WHERE i.business_id = ANY($1) AND i.deleted_at IS NULL
          ORDER BY i.business_id, i.created_at, i.id"
    ))
    .bind(business_ids)
    .fetch_all(db)
    .await
}

/// The integrations of one business, oldest first: the first is the one `crm_*` fields of
/// `/admin/businesses` manage.
pub async fn of_business(
    db: impl PgExecutor<'_>,
    business_id: Uuid,
) -> sqlx::Result<Vec<Integration>> {
    of_businesses(db, &[business_id]).await
}

/// The integrations to poll: of active businesses, with credentials, `ok` (and `failing` too
/// when `include_failing`, for an operator's "poll now"); of one business or all.
pub async fn due(
    db: impl PgExecutor<'_>,
    business_id: Option<Uuid>,
    include_failing: bool,
) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT i.id FROM integrations i JOIN businesses b ON b.id = i.business_id
         WHERE i.deleted_at IS NULL AND i.credentials IS NOT NULL AND b.is_active
           AND ($1::uuid IS NULL OR i.business_id = $1)
           AND (i.status = 'ok' OR ($2 AND i.status = 'failing'))
         ORDER BY i.id",
    )
    .bind(business_id)
    .bind(include_failing)
    .fetch_all(db)
    .await
}

/// An integration that is `failing`, for the `crm_integration_failing_seconds` gauge.
#[derive(Debug, Clone)]
pub struct Failing {
    pub id: Uuid,
    pub business_id: Uuid,
    pub crm_type: CrmType,
    /// Since its last successful poll (or its creation, if it never had one).
    pub seconds: i64,
}

impl FromRow<'_, PgRow> for Failing {
    fn from_row(row: &PgRow) -> sqlx::Result<Self> {
        let id: Uuid = row.try_get("id")?;
        Ok(Self {
            id,
            business_id: row.try_get("business_id")?,
            crm_type: states::column(row, "integrations", id, "crm_type")?,
            seconds: row.try_get("seconds")?,
        })
    }
}

/// The integrations now `failing` (deleted ones and inactive businesses left out).
pub async fn failing(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<Failing>> {
    sqlx::query_as(
        "SELECT i.id, i.business_id, i.crm_type,
                EXTRACT(EPOCH FROM now() - COALESCE(i.last_success_at, i.created_at))::bigint
                    AS seconds
         FROM integrations i JOIN businesses b ON b.id = i.business_id
         WHERE i.status = 'failing' AND i.deleted_at IS NULL AND b.is_active
         ORDER BY i.id",
    )
    .fetch_all(db)
    .await
}

/// Why stored credentials could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsError {
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// Sealed with another key or for another integration, or corrupt.
    #[error("the stored CRM credentials cannot be opened: {0}")]
    Sealed(#[from] crate::secret::OpenError),
    /// Opened, but not the JSON object they were stored as.
    #[error("the stored CRM credentials are not JSON")]
    NotJson,
}

/// The decrypted credentials of an integration, for its adapter only. Credentials sealed in
/// an older form are sealed again on the way.
pub async fn credentials(
    db: &PgPool,
    secrets: &SecretBox,
    id: Uuid,
) -> Result<Option<Value>, CredentialsError> {
    let sealed: Option<Option<Vec<u8>>> =
        sqlx::query_scalar("SELECT credentials FROM integrations WHERE id = $1")
            .bind(id)
            .fetch_optional(db)
            .await?;
    let Some(sealed) = sealed.flatten() else {
        return Ok(None);
    };
    let opened = secrets.open_versioned(&sealed, id.as_bytes())?;
    let value: Value =
        serde_json::from_slice(&opened.plaintext).map_err(|_| CredentialsError::NotJson)?;
    if opened.stale {
        // Only if nobody replaced them meanwhile.
        sqlx::query("UPDATE integrations SET credentials = $2 WHERE id = $1 AND credentials = $3")
            .bind(id)
            .bind(seal(secrets, id, &value))
            .bind(&sealed)
            .execute(db)
            .await?;
    }
    Ok(Some(value))
}

/// Seals again every credential stored in an older form (run by `krug migrate`); returns how
/// many were rewritten.
pub async fn reseal_stale(db: &PgPool, secrets: &SecretBox) -> Result<usize, CredentialsError> {
    let stale: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM integrations WHERE credentials IS NOT NULL AND get_byte(credentials, 0) <> $1",
    )
    .bind(i32::from(crate::secret::KEY_VERSION))
    .fetch_all(db)
    .await?;
    for id in &stale {
        credentials(db, secrets, *id).await?;
    }
    Ok(stale.len())
}

fn seal(secrets: &SecretBox, id: Uuid, credentials: &Value) -> Vec<u8> {
    secrets.seal_for(credentials.to_string().as_bytes(), id.as_bytes())
}

/// Moves the cursor forward (never back: an older poll finishing late changes nothing) and
/// notes the success; a `failing` integration that answers again is `ok`.
pub async fn advance(
    db: impl PgExecutor<'_>,
    id: Uuid,
    polled_until: OffsetDateTime,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE integrations SET
             polled_until = GREATEST(COALESCE(polled_until, $2), $2),
             last_polled_at = now(), last_success_at = now(), last_error = NULL,
             status = CASE WHEN status = 'failing' THEN 'ok' ELSE status END,
             updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(polled_until)
    .execute(db)
    .await?;
    Ok(())
}

/// Notes a failed poll without moving the cursor; `failing` also stops the schedule from
/// polling it until an operator acts.
pub async fn record_failure(
    db: impl PgExecutor<'_>,
    id: Uuid,
    error: &str,
    failing: bool,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE integrations SET last_error = $2, last_polled_at = now(),
             status = CASE WHEN $3 AND status = 'ok' THEN 'failing' ELSE status END,
             updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(error)
    .bind(failing)
    .execute(db)
    .await?;
    Ok(())
}

/// Sets (or clears) what operators should know that is not a failure.
pub async fn set_warning(
    db: impl PgExecutor<'_>,
    id: Uuid,
    warning: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE integrations SET warning = $2 WHERE id = $1 AND warning IS DISTINCT FROM $2",
    )
    .bind(id)
    .bind(warning)
    .execute(db)
    .await?;
    Ok(())
}

/// An integration's credentials held under its row lock (for credentials the vendor
/// rotates, such as AMO CRM's refresh tokens): every other lock waits until this one is
/// saved or dropped.
pub struct LockedCredentials {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    id: Uuid,
    /// As stored when the lock was taken.
    pub value: Value,
}

/// Locks an integration's credentials and opens them.
pub async fn lock_credentials(
    db: &PgPool,
    secrets: &SecretBox,
    id: Uuid,
) -> Result<LockedCredentials, CredentialsError> {
    let mut tx = db.begin().await?;
    let sealed: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT credentials FROM integrations WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .flatten();
    let sealed = sealed.ok_or(CredentialsError::Database(sqlx::Error::RowNotFound))?;
    let opened = secrets.open_versioned(&sealed, id.as_bytes())?;
    let value = serde_json::from_slice(&opened.plaintext).map_err(|_| CredentialsError::NotJson)?;
    Ok(LockedCredentials { tx, id, value })
}

impl LockedCredentials {
    /// Stores `credentials` (sealed for this integration) and releases the lock.
    pub async fn save(mut self, secrets: &SecretBox, credentials: &Value) -> sqlx::Result<()> {
        sqlx::query("UPDATE integrations SET credentials = $2, updated_at = now() WHERE id = $1")
            .bind(self.id)
            .bind(seal(secrets, self.id, credentials))
            .execute(&mut *self.tx)
            .await?;
        self.tx.commit().await
    }
}
