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

use crate::{egress::Egress, http::VendorError};
use async_trait::async_trait;
use domain::crm::CrmType;
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::Arc;
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

    /// How far back the vendor keeps records (iiko: 7 days); `None` when it keeps them all.
    /// A window reaching further back cannot be read whole.
    fn keeps_records_for(&self) -> Option<time::Duration> {
        None
    }

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

/// The configuration of an integration is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CRM configuration: {0}")]
pub struct ConfigError(pub String);

impl From<crate::egress::EgressError> for ConfigError {
    fn from(error: crate::egress::EgressError) -> Self {
        Self(error.to_string())
    }
}

/// Reads a vendor's credentials (or settings) object. The error names a missing field but
/// never repeats a value (serde's own message may quote one, and it could be a secret).
pub fn credentials<T: DeserializeOwned>(vendor: &str, value: &Value) -> Result<T, ConfigError> {
    serde_json::from_value(value.clone()).map_err(|e| {
        let message = e.to_string();
        let what = match message.find("missing field") {
            Some(at) => message[at..].to_owned(),
            None => "a field has an unexpected type or value".to_owned(),
        };
        ConfigError(format!("{vendor} credentials: {what}"))
    })
}

/// Where credentials that a vendor rotates are kept (AMO CRM's OAuth tokens), shared by
/// every worker that polls the same integration.
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// The credentials as stored now, locked against every other lease of the same
    /// integration until the lease is saved or dropped: two workers never both spend a
    /// single-use refresh token.
    async fn lease(&self) -> Result<Box<dyn TokenLease>, VendorError>;
}

/// Credentials held under the integration's lock.
#[async_trait]
pub trait TokenLease: Send {
    fn credentials(&self) -> &Value;
    /// Stores `credentials` and releases the lock.
    async fn save(self: Box<Self>, credentials: Value) -> Result<(), VendorError>;
}

/// What a CRM client is built from.
#[derive(Clone)]
pub struct Target<'a> {
    /// The vendor's API root, e.g. `https://api.yclients.com/api/v1`.
    pub base_url: &'a str,
    /// Decrypted; secret.
    pub credentials: &'a Value,
    /// Not secret: presets, field names, a CA certificate (`{}` when none).
    pub settings: &'a Value,
    /// Where the client may connect.
    pub egress: &'a Egress,
    /// Where rotated tokens go (required by AMO CRM's OAuth mode).
    pub tokens: Option<Arc<dyn TokenStore>>,
}

static NO_SETTINGS: Value = Value::Null;

impl<'a> Target<'a> {
    pub fn new(base_url: &'a str, credentials: &'a Value, egress: &'a Egress) -> Self {
        Self {
            base_url,
            credentials,
            settings: &NO_SETTINGS,
            egress,
            tokens: None,
        }
    }

    pub fn with_settings(mut self, settings: &'a Value) -> Self {
        self.settings = settings;
        self
    }

    pub fn with_tokens(mut self, tokens: Arc<dyn TokenStore>) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// The base URL without a trailing slash, once the egress rule allows it.
    fn checked_base(&self) -> Result<String, ConfigError> {
        self.egress.check_url(self.base_url)?;
        Ok(self.base_url.trim().trim_end_matches('/').to_owned())
    }
}

/// Builds the client of `crm_type` for `target`: checks the URL against the egress rule and
/// reads credentials and settings, without a network call.
pub fn client(crm_type: CrmType, target: &Target<'_>) -> Result<Box<dyn CrmClient>, ConfigError> {
    Ok(match crm_type {
        CrmType::Yclients => Box::new(yclients::HttpYclients::new(target)?),
        CrmType::Iiko => Box::new(iiko::HttpIiko::new(target)?),
        CrmType::OneC => Box::new(onec::HttpOneC::new(target)?),
        CrmType::AmoCrm => Box::new(amo_crm::HttpAmoCrm::new(target)?),
        CrmType::Renovatio => Box::new(renovatio::HttpRenovatio::new(target)?),
    })
}
