//! The partners' CRMs and POS systems: one trait, one client per vendor.
//!
//! Each client talks to its vendor's documented HTTP API with reqwest, walks every page of
//! a time window, and reports purchases and refunds in one shape. What each relies on of
//! the vendor's format, and where that was confirmed, is written at the top of its module.

pub mod amo_crm;
pub mod iiko;
pub mod onec;
pub mod renovatio;
pub mod yclients;

use crate::http::VendorError;
use async_trait::async_trait;
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

/// A time window `[from, to)` of the vendor's own change/creation times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
}

/// Purchase or refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrmKind {
    Purchase,
    /// Refund (or cancellation) of the purchase the vendor calls `original_external_id`.
    Refund {
        original_external_id: String,
    },
}

/// One purchase or refund as the vendor reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrmTransaction {
    /// The vendor's id, unique within the business. A cancellation of purchase `X` that the
    /// vendor reports on the same record uses `X:cancel`.
    pub external_id: String,
    pub kind: CrmKind,
    /// Always positive, roubles with kopecks.
    pub amount: Decimal,
    pub occurred_at: OffsetDateTime,
    /// As the vendor wrote it; normalised (or found unusable) by the caller.
    pub customer_phone: Option<String>,
    pub customer_name: Option<String>,
    /// Medical records (Renovatio): never reach analytics or cross-promo.
    pub is_medical: bool,
}

/// A customer in the vendor's books.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrmCustomer {
    pub external_id: String,
    pub phone: Option<String>,
    pub name: Option<String>,
}

/// A CRM or POS system of a partner business.
#[async_trait]
pub trait CrmClient: Send + Sync {
    /// `yclients`, `iiko`, `1c`, `amo_crm` or `renovatio`.
    fn vendor(&self) -> &'static str;

    /// Every purchase and refund in `window`, all pages.
    async fn fetch_transactions(&self, window: Window) -> Result<Vec<CrmTransaction>, VendorError>;

    /// The customer with this phone (E.164), if the vendor knows one.
    async fn find_customer(&self, phone: &str) -> Result<Option<CrmCustomer>, VendorError>;

    /// Records a bonus accrual in the vendor's own loyalty books where the vendor has them;
    /// `Ok(false)` where it has none (we keep the ledger either way).
    async fn record_bonus(
        &self,
        customer: &CrmCustomer,
        amount: Decimal,
        comment: &str,
    ) -> Result<bool, VendorError>;
}

/// The configuration of a business's CRM is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CRM configuration: {0}")]
pub struct ConfigError(pub String);

/// Reads a vendor's credentials object.
pub fn credentials<T: DeserializeOwned>(
    vendor: &str,
    value: &serde_json::Value,
) -> Result<T, ConfigError> {
    serde_json::from_value(value.clone())
        .map_err(|e| ConfigError(format!("{vendor} credentials: {e}")))
}

/// Builds the client of `crm_type` for `base_url` with the decrypted `credentials`.
pub fn client(
    crm_type: &str,
    base_url: &str,
    credentials: &serde_json::Value,
) -> Result<Box<dyn CrmClient>, ConfigError> {
    let base_url = base_url.trim_end_matches('/');
    match crm_type {
        "yclients" => yclients::client(base_url, credentials),
        "iiko" => iiko::client(base_url, credentials),
        "1c" => onec::client(base_url, credentials),
        "amo_crm" => amo_crm::client(base_url, credentials),
        "renovatio" => renovatio::client(base_url, credentials),
        other => Err(ConfigError(format!("unknown CRM type `{other}`"))),
    }
}
