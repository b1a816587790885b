//! Renovatio (МИС «Реновация», medical centre Миллениум) through its public API.
//!
//! Every transaction from here is medical (`is_medical: true`): it earns and spends
//! bonuses, but never reaches analytics or cross-promo (DESIGN.md).
//!
//! # What this client relies on, and where it was confirmed
//!
//! - `POST {base}/{method}`, form-urlencoded, `api_key` in the body, base
//!   `https://app.rnova.org/api/public` (self-hosted instances have their own host): a PHP
//!   SDK (0zd0/renovatio-sdk-php `src/Renovatio.php`, Saloon connector with a form body
//!   defaulting `api_key`), a Python MIS client and JS sync scripts on public repositories.
//! - Replies `{"error": 0, "data": …}` / `{"error": 1, "data": {"code": …, "desc": "…"}}`
//!   with HTTP 200 either way: the same SDK (`BaseRenovatioRequest::createDtoFromResponse`).
//! - Methods are opened per key by the clinic: a closed one answers
//!   `{"error":1,"data":{"code":403,"desc":"No access to method"}}` (a Python client met it;
//!   real calls to `getInvoices` answer it until the clinic enables the method). That is a
//!   configuration the operator must have changed, reported as such with what to ask for,
//!   not refused credentials. A body-level code 500 means a missing parameter: permanent,
//!   reported with the parameters we sent. Code 401 we read as a wrong key (**not
//!   confirmed**).
//! - Renovatio's public help documents booking methods only; `getInvoices` is neither
//!   public nor open by default (this project's vendor notes): its fields below are
//!   assumptions, as marked.
//! - `getInvoices` with `clinic_id`, `date_from`, `date_to` as `dd.mm.yyyy` (and a `status`
//!   filter, `2` for paid invoices); invoices carry `value`: a public JS script summing
//!   «оплаченные счета» with `getInvoices {patient_id, status: '2', date_from, date_to}` and
//!   `parseFloat(inv.value)`; a Python client calling `getInvoices {clinic_id, date_from,
//!   date_to}` (format `dd.mm.yyyy`). The invoice fields `id`, `patient_id`, `date` (local
//!   `dd.mm.yyyy HH:MM`), the meaning of `status` 2 (paid, confirmed by use) and 3
//!   (cancelled: **not confirmed**), and `offset`/`count` paging (**not confirmed**; harmless
//!   if ignored, see below) are our assumptions. `getPayments` exists too (same Python
//!   client), but its reply shape was not public anywhere we looked, so we do not use it.
//! - `getPatient` by `patient_id` or by `mobile` (the Python client, trying `7…` and
//!   `+7…`); the reply names the patient `patient_id` (not `id`), with `number`,
//!   `last_name`, `first_name`, `third_name`, `mobile` ("+7 (928) 085-88-77"): this
//!   project's vendor notes of a real reply. An error reply to `getPatient` means «no such
//!   patient» to us, as it does to that client (a 403 there too is a closed method).
//! - `getAppointments` with `show_patient_data=1` returns `patient_phone` directly (vendor
//!   notes); we do not read appointments (an appointment is not a payment).
//! - Self-hosted installations often use their own certificate: `settings.ca_certificate`
//!   (PEM) is trusted besides the system's roots for that integration only. Verification is
//!   never skipped.
//!
//! Renovatio has no public loyalty books: `record_bonus` answers `Ok(false)`.
//!
//! # Paging when the API may not page
//!
//! The public clients read a date range in one reply. We still send `offset`/`count`: a
//! server that honours them is paged until an empty page; a server that ignores them
//! (Renovatio ignores unknown parameters, per that Python client) either answers more than
//! `count` (done) or the same first page again (done, recognised by its ids). A cancelled
//! invoice comes back as `{id}:cancel` without a phone: the member is whoever the
//! original purchase names.
//!
//! # Configuration (`crm_credentials` of a `renovatio` business)
//!
//! `api_key`, `clinic_id` (required); `paid_status` (default `2`), `cancelled_status`
//! (default `3`), `utc_offset` (the clinic's time zone, default `+03:00`). Settings:
//! `ca_certificate` (PEM of a self-hosted installation's CA).

use super::{ConfigError, CrmClient, CrmCustomer, CrmKind, CrmTransaction, Target, Window};
use crate::http::{RetryPolicy, VendorError, send};
use async_trait::async_trait;
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};
use time::{
    Date, OffsetDateTime, PrimitiveDateTime, UtcOffset, format_description::BorrowedFormatItem,
    macros::format_description,
};

const DAY: &[BorrowedFormatItem<'_>] = format_description!("[day].[month].[year]");
const MINUTE: &[BorrowedFormatItem<'_>] =
    format_description!("[day].[month].[year] [hour]:[minute]");
const SECOND: &[BorrowedFormatItem<'_>] =
    format_description!("[day].[month].[year] [hour]:[minute]:[second]");
/// Invoices asked for per request.
const PAGE: usize = 500;
/// A window that needs more pages than this is not ending: stop rather than loop forever.
const MAX_PAGES: usize = 10_000;

/// The `crm_credentials` of a `renovatio` business.
#[derive(Deserialize)]
struct Credentials {
    api_key: SecretString,
    #[serde(deserialize_with = "scalar")]
    clinic_id: String,
    #[serde(default = "defaults::paid", deserialize_with = "scalar")]
    paid_status: String,
    #[serde(default = "defaults::cancelled", deserialize_with = "scalar")]
    cancelled_status: String,
    #[serde(default = "defaults::utc_offset")]
    utc_offset: String,
}

mod defaults {
    pub(super) fn paid() -> String {
        "2".to_owned()
    }
    pub(super) fn cancelled() -> String {
        "3".to_owned()
    }
    pub(super) fn utc_offset() -> String {
        "+03:00".to_owned()
    }
}

/// A Renovatio MIS.
pub struct HttpRenovatio {
    http: reqwest::Client,
    /// `https://app.rnova.org/api/public` or a self-hosted equivalent.
    base: String,
    api_key: SecretString,
    clinic_id: String,
    paid_status: String,
    cancelled_status: String,
    offset: UtcOffset,
    policy: RetryPolicy,
}

/// What Renovatio said instead of data (its code; the text is not kept).
struct ApiError {
    code: String,
}

impl HttpRenovatio {
    /// A client of the MIS at `target.base_url` (e.g. `https://app.rnova.org/api/public`).
    pub fn new(target: &Target<'_>) -> Result<Self, ConfigError> {
        let base_url = target.checked_base()?;
        let c: Credentials = super::credentials("renovatio", target.credentials)?;
        let not_pem = || {
            ConfigError("renovatio settings: `ca_certificate` is not a PEM certificate".to_owned())
        };
        let ca = match target.settings.get("ca_certificate") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::String(pem)) => {
                let certificates =
                    reqwest::Certificate::from_pem_bundle(pem.as_bytes()).map_err(|_| not_pem())?;
                if certificates.is_empty() {
                    return Err(not_pem());
                }
                certificates
            }
            Some(_) => return Err(not_pem()),
        };
        if c.api_key.expose_secret().trim().is_empty() || c.clinic_id.trim().is_empty() {
            return Err(ConfigError(
                "renovatio credentials: `api_key` and `clinic_id` must not be empty".to_owned(),
            ));
        }
        let offset = UtcOffset::parse(
            c.utc_offset.trim(),
            format_description!("[offset_hour sign:mandatory]:[offset_minute]"),
        )
        .map_err(|_| {
            ConfigError(format!(
                "renovatio credentials: `utc_offset` must look like +03:00, not `{}`",
                c.utc_offset
            ))
        })?;
        Ok(Self {
            http: target.egress.client(Duration::from_secs(30), ca),
            base: base_url,
            api_key: c.api_key,
            clinic_id: c.clinic_id.trim().to_owned(),
            paid_status: c.paid_status,
            cancelled_status: c.cancelled_status,
            offset,
            policy: RetryPolicy::default(),
        })
    }

    /// Calls `method`; refused credentials are an error, other refusals are the caller's
    /// to judge.
    async fn call(
        &self,
        method: &str,
        params: &[(&str, String)],
    ) -> Result<Result<Option<Box<RawValue>>, ApiError>, VendorError> {
        let url = format!("{}/{method}", self.base);
        let mut form: Vec<(&str, &str)> = vec![("api_key", self.api_key.expose_secret())];
        form.extend(params.iter().map(|(k, v)| (*k, v.as_str())));
        let reply = send(&self.policy, None, || self.http.post(&url).form(&form)).await?;
        let envelope: Envelope =
            serde_json::from_str(&reply.body).map_err(|_| VendorError::malformed(&reply.body))?;
        if !envelope.failed() {
            return Ok(Ok(envelope.data));
        }
        let detail: ErrorData = envelope
            .data
            .as_deref()
            .and_then(|d| serde_json::from_str(d.get()).ok())
            .ok_or_else(|| VendorError::malformed(&reply.body))?;
        let error = ApiError {
            code: detail.code.map(|c| scalar_text(&c)).unwrap_or_default(),
        };
        // Our own words only: this is a medical system, and its text stays with it.
        let sent: Vec<&str> = form.iter().map(|(name, _)| *name).collect();
        match error.code.as_str() {
            "401" => Err(VendorError::Unauthorized {
                status: reply.status,
                detail: format!("Renovatio refused the api_key ({method}, code 401)"),
            }),
            "403" => Err(VendorError::Configuration(format!(
                "Renovatio has not opened `{method}` for this API key (code 403): ask the clinic to enable `{method}` for the key in Renovatio's API settings"
            ))),
            "500" => Err(VendorError::Configuration(format!(
                "Renovatio answered `{method}` with code 500, a required parameter missing; we sent {}",
                sent.join(", ")
            ))),
            _ => Ok(Err(error)),
        }
    }

    /// A patient by id or phone; `None` when Renovatio says there is none.
    async fn patient(&self, by: (&str, String)) -> Result<Option<Patient>, VendorError> {
        let data = match self.call("getPatient", &[by]).await? {
            Ok(Some(data)) => data,
            Ok(None) | Err(_) => return Ok(None),
        };
        // One patient, or a list of them.
        let patients: OneOrMany<Patient> =
            serde_json::from_str(data.get()).map_err(|_| VendorError::malformed(data.get()))?;
        Ok(match patients {
            OneOrMany::One(p) => Some(p),
            OneOrMany::Many(list) => list.into_iter().next(),
        })
    }

    fn local_date(&self, at: OffsetDateTime) -> Date {
        at.to_offset(self.offset).date()
    }

    fn parse_time(&self, text: &str) -> Option<OffsetDateTime> {
        let text = text.trim();
        PrimitiveDateTime::parse(text, MINUTE)
            .or_else(|_| PrimitiveDateTime::parse(text, SECOND))
            .ok()
            .or_else(|| Date::parse(text, DAY).ok().map(Date::midnight))
            .map(|t| t.assume_offset(self.offset))
    }

    /// What an invoice of the window means to us, if anything (before the phone lookup).
    fn transaction(
        &self,
        invoice: &Invoice,
        window: Window,
    ) -> Result<Option<CrmTransaction>, VendorError> {
        let id = scalar_text(&invoice.id);
        if id.is_empty() {
            return Err(VendorError::unreadable("a Renovatio invoice without an id"));
        }
        let status = invoice.status.as_ref().map(scalar_text).unwrap_or_default();
        let cancelled = status == self.cancelled_status;
        if status != self.paid_status && !cancelled {
            // Not paid yet, partly paid, or something we do not know: not a sale.
            return Ok(None);
        }
        let date = invoice.date.as_deref().unwrap_or_default();
        let occurred_at = self.parse_time(date).ok_or_else(|| {
            VendorError::unreadable(format!("Renovatio invoice {id}: unreadable date"))
        })?;
        // The request covered whole days: the window itself decides.
        if occurred_at < window.from || occurred_at >= window.to {
            return Ok(None);
        }
        let amount = invoice
            .value
            .as_deref()
            .and_then(decimal)
            .ok_or_else(|| {
                VendorError::unreadable(format!("Renovatio invoice {id}: no readable value"))
            })?
            .abs();
        if amount.is_zero() {
            return Ok(None);
        }
        let (external_id, kind) = if cancelled {
            (
                format!("{id}:cancel"),
                CrmKind::Refund {
                    original_external_id: id,
                },
            )
        } else {
            (id, CrmKind::Purchase)
        };
        Ok(Some(CrmTransaction {
            external_id,
            kind,
            amount,
            occurred_at,
            customer_phone: None,
            customer_name: None,
            is_medical: true,
        }))
    }
}

#[async_trait]
impl CrmClient for HttpRenovatio {
    fn vendor(&self) -> &'static str {
        "renovatio"
    }

    #[tracing::instrument(skip_all, fields(vendor = "renovatio", from = %window.from, to = %window.to), err)]
    async fn fetch_transactions(&self, window: Window) -> Result<Vec<CrmTransaction>, VendorError> {
        let first_day = self.local_date(window.from);
        let last_day = self.local_date(window.to - time::Duration::NANOSECOND);
        let days = (
            first_day.format(DAY).unwrap_or_default(),
            last_day.format(DAY).unwrap_or_default(),
        );
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut patients: HashMap<String, Option<Patient>> = HashMap::new();
        let mut first_page: Option<Vec<String>> = None;
        let mut offset = 0;
        for _ in 0..MAX_PAGES {
            let params = [
                ("clinic_id", self.clinic_id.clone()),
                ("date_from", days.0.clone()),
                ("date_to", days.1.clone()),
                ("offset", offset.to_string()),
                ("count", PAGE.to_string()),
            ];
            let data = match self.call("getInvoices", &params).await? {
                Ok(data) => data,
                Err(e) => {
                    return Err(VendorError::Rejected {
                        status: 200,
                        detail: format!("Renovatio getInvoices: code {}", e.code),
                    });
                }
            };
            let invoices: Vec<Invoice> = match data {
                None => Vec::new(),
                Some(data) => serde_json::from_str::<Option<Vec<Invoice>>>(data.get())
                    .map_err(|_| VendorError::malformed(data.get()))?
                    .unwrap_or_default(),
            };
            if invoices.is_empty() {
                return Ok(out);
            }
            let ids: Vec<String> = invoices.iter().map(|i| scalar_text(&i.id)).collect();
            if first_page.as_ref() == Some(&ids) {
                // The server ignored `offset` and sent the first page again.
                return Ok(out);
            }
            let unpaged = invoices.len() > PAGE;
            offset += invoices.len();
            first_page.get_or_insert(ids);
            for invoice in &invoices {
                let Some(mut t) = self.transaction(invoice, window)? else {
                    continue;
                };
                if !seen.insert(t.external_id.clone()) {
                    continue;
                }
                // A cancellation names no one: the original purchase does (module docs).
                if t.kind == CrmKind::Purchase
                    && let Some(patient_id) = invoice.patient_id.as_ref().map(scalar_text)
                    && !patient_id.is_empty()
                {
                    if !patients.contains_key(&patient_id) {
                        let found = self.patient(("patient_id", patient_id.clone())).await?;
                        patients.insert(patient_id.clone(), found);
                    }
                    if let Some(Some(p)) = patients.get(&patient_id) {
                        t.customer_phone = p.mobile.clone().filter(|m| !m.trim().is_empty());
                        t.customer_name = p.name();
                    }
                }
                out.push(t);
            }
            if unpaged {
                return Ok(out);
            }
        }
        Err(VendorError::unreadable(format!(
            "Renovatio kept returning invoices after {MAX_PAGES} pages"
        )))
    }

    async fn find_customer(&self, phone: &str) -> Result<Option<CrmCustomer>, VendorError> {
        let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
        if digits.len() < 10 {
            return Ok(None);
        }
        let national = &digits[digits.len() - 10..];
        // The forms a public client tries, in its order.
        for mobile in [format!("7{national}"), format!("+7{national}")] {
            if let Some(p) = self.patient(("mobile", mobile)).await? {
                let name = p.name();
                return Ok(Some(CrmCustomer {
                    external_id: p.id(),
                    phone: p.mobile.filter(|m| !m.trim().is_empty()),
                    name,
                }));
            }
        }
        Ok(None)
    }

    async fn record_bonus(
        &self,
        _customer: &CrmCustomer,
        _amount: Decimal,
        _comment: &str,
    ) -> Result<bool, VendorError> {
        // No public loyalty books in Renovatio; we keep the ledger.
        Ok(false)
    }
}

#[derive(Deserialize)]
struct Envelope {
    error: serde_json::Value,
    #[serde(default)]
    data: Option<Box<RawValue>>,
}

impl Envelope {
    /// `error` is 0 on success (as a number or, defensively, a string).
    fn failed(&self) -> bool {
        !matches!(scalar_text(&self.error).as_str(), "0" | "false" | "")
    }
}

/// The error part of a reply; its `desc` is not read (see `call`).
#[derive(Deserialize)]
struct ErrorData {
    #[serde(default)]
    code: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Invoice {
    id: serde_json::Value,
    #[serde(default)]
    patient_id: Option<serde_json::Value>,
    #[serde(default)]
    date: Option<String>,
    #[serde(default)]
    value: Option<Box<RawValue>>,
    #[serde(default)]
    status: Option<serde_json::Value>,
}

#[derive(Deserialize, Clone)]
struct Patient {
    /// Renovatio's name for a patient's id.
    #[serde(default)]
    patient_id: Option<serde_json::Value>,
    /// What some replies (and older clients) call it.
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default)]
    last_name: Option<String>,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    third_name: Option<String>,
    #[serde(default)]
    mobile: Option<String>,
}

impl Patient {
    fn id(&self) -> String {
        self.patient_id
            .as_ref()
            .or(self.id.as_ref())
            .map(scalar_text)
            .unwrap_or_default()
    }

    /// «Фамилия Имя Отчество», as far as known.
    fn name(&self) -> Option<String> {
        let parts: Vec<&str> = [&self.last_name, &self.first_name, &self.third_name]
            .into_iter()
            .filter_map(|p| p.as_deref().map(str::trim))
            .filter(|p| !p.is_empty())
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    Many(Vec<T>),
    One(T),
}

/// A JSON scalar as text: ids and codes come as numbers or strings.
fn scalar_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.trim().to_owned(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A credential given as a number or a string.
fn scalar<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    match value {
        serde_json::Value::String(_) | serde_json::Value::Number(_) => Ok(scalar_text(&value)),
        other => Err(serde::de::Error::custom(format!(
            "expected a number or a string, got {other}"
        ))),
    }
}

/// An amount from the JSON text the vendor sent (a number or a numeric string), never
/// through a float.
fn decimal(raw: &RawValue) -> Option<Decimal> {
    let text = raw.get().trim();
    let text = if text.starts_with('"') {
        serde_json::from_str::<String>(text).ok()?.replace(',', ".")
    } else {
        text.to_owned()
    };
    let text = text.trim();
    Decimal::from_str_exact(text)
        .or_else(|_| Decimal::from_scientific(text))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;
    use simulators::{Fault, Sale, Simulator, Vendor};
    use std::time::Instant;
    use time::macros::datetime;

    const DAY_WINDOW: Window = Window {
        from: datetime!(2026-03-02 00:00 +3),
        to: datetime!(2026-03-03 00:00 +3),
    };

    fn client(url: &str, credentials: &serde_json::Value) -> Result<HttpRenovatio, ConfigError> {
        HttpRenovatio::new(&Target::new(url, credentials, crate::test_egress()))
    }

    /// A clinic that has opened `getInvoices` for our key.
    async fn renovatio() -> (Simulator, HttpRenovatio) {
        let sim = Simulator::start(Vendor::Renovatio)
            .await
            .expect("simulator");
        sim.open_renovatio_invoices();
        let client = client(&sim.url, &Vendor::Renovatio.credentials()).expect("client");
        (sim, client)
    }

    fn visit(id: &str, amount: Decimal, minute: i64) -> Sale {
        let mut sale = Sale::purchase(
            id,
            amount,
            datetime!(2026-03-02 10:00 +3) + time::Duration::minutes(minute),
            "+7 926 111-22-33",
        );
        sale.name = Some("Ирина Соколова".to_owned());
        sale
    }

    fn visits(n: usize) -> Vec<Sale> {
        (0..n)
            .map(|i| {
                visit(
                    &format!("{}", 500 + i),
                    dec!(3500.50) + Decimal::from(i),
                    i as i64,
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn every_page_of_paid_invoices_is_read_and_all_are_medical() {
        let (sim, client) = renovatio().await;
        sim.add_sales(visits(5));
        // The day before and the day after, local time: outside the window.
        sim.add_sales([visit("1", dec!(1), -11 * 60), visit("2", dec!(1), 14 * 60)]);
        *sim.state.page_size.lock().unwrap() = Some(2);

        let got = client.fetch_transactions(DAY_WINDOW).await.unwrap();

        assert_eq!(got.len(), 5, "{got:?}");
        for (i, t) in got.iter().enumerate() {
            assert!(t.is_medical, "{t:?}");
            assert_eq!(t.kind, CrmKind::Purchase);
            assert_eq!(t.external_id, format!("{}", 500 + i));
            assert_eq!(t.amount, dec!(3500.50) + Decimal::from(i));
            assert_eq!(
                t.occurred_at,
                datetime!(2026-03-02 10:00 +3) + time::Duration::minutes(i as i64)
            );
            assert_eq!(t.customer_phone.as_deref(), Some("+7 926 111-22-33"));
            assert_eq!(t.customer_name.as_deref(), Some("Соколова Ирина"));
        }
    }

    #[tokio::test]
    async fn a_cancelled_invoice_is_a_refund_of_the_same_record_and_medical() {
        let (sim, client) = renovatio().await;
        let mut paid = visit("700", dec!(8200), 0);
        sim.add_sales([paid.clone()]);
        let before = client.fetch_transactions(DAY_WINDOW).await.unwrap();
        paid.cancelled = true;
        paid.at = datetime!(2026-03-02 18:30 +3);
        *sim.state.sales.lock().unwrap() = vec![paid];

        let after = client.fetch_transactions(DAY_WINDOW).await.unwrap();

        assert_eq!(before[0].kind, CrmKind::Purchase);
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].external_id, "700:cancel");
        assert_eq!(
            after[0].kind,
            CrmKind::Refund {
                original_external_id: "700".to_owned()
            }
        );
        assert_eq!(after[0].amount, dec!(8200));
        assert_eq!(after[0].occurred_at, datetime!(2026-03-02 18:30 +3));
        assert_eq!(after[0].customer_phone, None);
        assert!(after[0].is_medical);
    }

    #[tokio::test]
    async fn an_invoice_delivered_twice_is_reported_once() {
        let (sim, client) = renovatio().await;
        sim.add_sales(visits(3));
        sim.state
            .duplicate
            .store(true, std::sync::atomic::Ordering::SeqCst);
        *sim.state.page_size.lock().unwrap() = Some(2);

        let got = client.fetch_transactions(DAY_WINDOW).await.unwrap();

        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got.iter().all(|t| t.is_medical));
    }

    #[tokio::test]
    async fn the_window_not_the_whole_day_decides() {
        let (sim, client) = renovatio().await;
        sim.add_sales(visits(3));
        let window = Window {
            from: datetime!(2026-03-02 10:01 +3),
            to: datetime!(2026-03-02 10:02 +3),
        };

        let got = client.fetch_transactions(window).await.unwrap();

        let ids: Vec<&str> = got.iter().map(|t| t.external_id.as_str()).collect();
        assert_eq!(ids, ["501"]);
    }

    #[tokio::test]
    async fn a_429_is_waited_out_as_told_then_the_window_is_read() {
        let (sim, client) = renovatio().await;
        sim.add_sales(visits(2));
        sim.inject([Fault::RateLimited { retry_after_s: 1 }]);
        let started = Instant::now();

        let got = client.fetch_transactions(DAY_WINDOW).await.unwrap();

        assert_eq!(got.len(), 2);
        assert!(started.elapsed() >= Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_500_is_retried_then_the_window_is_read() {
        let (sim, client) = renovatio().await;
        sim.add_sales(visits(2));
        sim.inject([Fault::ServerError]);

        let got = client.fetch_transactions(DAY_WINDOW).await.unwrap();

        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|t| t.is_medical));
    }

    #[tokio::test]
    async fn a_401_is_unauthorized() {
        let (sim, client) = renovatio().await;
        sim.inject([Fault::Unauthorized]);

        let error = client.fetch_transactions(DAY_WINDOW).await.unwrap_err();

        assert!(
            matches!(error, VendorError::Unauthorized { status: 401, .. }),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_wrong_api_key_is_unauthorized() {
        let sim = Simulator::start(Vendor::Renovatio).await.unwrap();
        let client = client(
            &sim.url,
            &serde_json::json!({"api_key": "revoked", "clinic_id": 1}),
        )
        .unwrap();

        let error = client.fetch_transactions(DAY_WINDOW).await.unwrap_err();

        assert!(
            matches!(error, VendorError::Unauthorized { .. }),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_malformed_body_is_malformed() {
        let (sim, client) = renovatio().await;
        sim.inject([Fault::Malformed]);

        let error = client.fetch_transactions(DAY_WINDOW).await.unwrap_err();

        assert!(matches!(error, VendorError::Malformed { .. }), "{error:?}");
    }

    #[tokio::test]
    async fn a_patient_is_found_by_phone_and_a_stranger_is_not() {
        let (sim, client) = renovatio().await;
        sim.add_sales(visits(1));

        let found = client.find_customer("+79261112233").await.unwrap();
        let stranger = client.find_customer("+79990000000").await.unwrap();

        let found = found.expect("patient");
        assert_eq!(found.phone.as_deref(), Some("+7 926 111-22-33"));
        assert_eq!(found.name.as_deref(), Some("Соколова Ирина"));
        assert!(!found.external_id.is_empty());
        assert_eq!(stranger, None);
    }

    #[tokio::test]
    async fn renovatio_keeps_no_bonus_books() {
        let (_sim, client) = renovatio().await;
        let customer = CrmCustomer {
            external_id: "1".to_owned(),
            phone: None,
            name: None,
        };

        assert!(!client.record_bonus(&customer, dec!(10), "x").await.unwrap());
    }

    /// The public clients send no paging parameters: a server that ignores ours answers
    /// the first page again, which ends the window instead of looping.
    #[tokio::test]
    async fn a_server_that_ignores_offset_is_read_once() {
        use wiremock::{
            Mock, MockServer, ResponseTemplate,
            matchers::{method, path},
        };
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/api/public/getInvoices"))
            .respond_with(ResponseTemplate::new(200).set_body_string(
                r#"{"error":0,"data":[
                    {"id":11,"patient_id":5,"date":"02.03.2026 10:00","value":"1000.10","status":2},
                    {"id":12,"patient_id":5,"date":"02.03.2026 11:00","value":2000.2,"status":"2"}]}"#,
            ))
            .expect(2)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/api/public/getPatient"))
            .respond_with(ResponseTemplate::new(200).set_body_string(
                r#"{"error":0,"data":{"id":5,"last_name":"Орлова","first_name":"Мария","mobile":"79260001122"}}"#,
            ))
            .expect(1)
            .mount(&server)
            .await;
        let client = client(
            &format!("{}/api/public", server.uri()),
            &Vendor::Renovatio.credentials(),
        )
        .unwrap();

        let got = client.fetch_transactions(DAY_WINDOW).await.unwrap();

        let amounts: Vec<Decimal> = got.iter().map(|t| t.amount).collect();
        assert_eq!(amounts, [dec!(1000.10), dec!(2000.2)]);
        assert_eq!(got[0].customer_name.as_deref(), Some("Орлова Мария"));
    }

    #[test]
    fn clinic_id_may_be_a_number_or_a_string() {
        for clinic in [serde_json::json!(7), serde_json::json!("7")] {
            let client = client(
                "http://127.0.0.1:9/api/public",
                &serde_json::json!({"api_key": "k", "clinic_id": clinic}),
            )
            .unwrap();
            assert_eq!(client.clinic_id, "7");
        }
    }

    /// Renovatio opens methods per key; `getInvoices` is closed until the clinic enables
    /// it, and answers 403 «No access to method» in the body: a configuration the operator
    /// can act on (it names the method to ask for), never retried as an outage.
    #[tokio::test]
    async fn a_closed_invoice_method_is_a_configuration_error_saying_what_to_ask() {
        let sim = Simulator::start(Vendor::Renovatio).await.unwrap();
        sim.add_sales(visits(1));
        let client = client(&sim.url, &Vendor::Renovatio.credentials()).unwrap();

        let error = client.fetch_transactions(DAY_WINDOW).await.unwrap_err();

        let VendorError::Configuration(message) = &error else {
            panic!("{error:?}");
        };
        assert!(
            message.contains("getInvoices") && message.contains("enable"),
            "{message}"
        );
        assert!(!error.is_transient());
        assert_eq!(sim.requests(), 1);
    }

    /// A body-level 500 is a missing parameter: permanent, with what we sent named, and
    /// without the vendor's text (this is a medical system).
    #[tokio::test]
    async fn a_body_level_500_is_a_missing_parameter_not_an_outage() {
        use wiremock::{Mock, MockServer, ResponseTemplate, matchers::path};
        let server = MockServer::start().await;
        Mock::given(path("/api/public/getInvoices"))
            .respond_with(ResponseTemplate::new(200).set_body_string(
                r#"{"error":1,"data":{"code":500,"desc":"Пациент Иванов: не передан параметр"}}"#,
            ))
            .expect(1)
            .mount(&server)
            .await;
        let client = client(
            &format!("{}/api/public", server.uri()),
            &Vendor::Renovatio.credentials(),
        )
        .unwrap();

        let error = client.fetch_transactions(DAY_WINDOW).await.unwrap_err();

        let VendorError::Configuration(message) = &error else {
            panic!("{error:?}");
        };
        assert!(
            message.contains("clinic_id") && message.contains("date_from"),
            "{message}"
        );
        assert!(!message.contains("Иванов"), "{message}");
    }

    /// Renovatio names a patient's id `patient_id`: that is the customer's external id.
    #[tokio::test]
    async fn a_patient_is_known_by_patient_id() {
        use wiremock::{Mock, MockServer, ResponseTemplate, matchers::path};
        let server = MockServer::start().await;
        Mock::given(path("/api/public/getPatient"))
            .respond_with(ResponseTemplate::new(200).set_body_string(
                r#"{"error":0,"data":{"patient_id":4242,"number":"000117","last_name":"Орлова","first_name":"Мария","mobile":"+7 (928) 085-88-77"}}"#,
            ))
            .mount(&server)
            .await;
        let client = client(
            &format!("{}/api/public", server.uri()),
            &Vendor::Renovatio.credentials(),
        )
        .unwrap();

        let found = client
            .find_customer("+79280858877")
            .await
            .unwrap()
            .expect("patient");

        assert_eq!(found.external_id, "4242");
        assert_eq!(found.phone.as_deref(), Some("+7 (928) 085-88-77"));
    }

    #[test]
    fn a_ca_certificate_must_be_pem() {
        let url = "https://clinic.example.ru/api/public";
        let credentials = Vendor::Renovatio.credentials();
        let egress = crate::test_egress();
        let bad = serde_json::json!({"ca_certificate": "not a certificate"});
        assert!(
            HttpRenovatio::new(&Target::new(url, &credentials, egress).with_settings(&bad))
                .is_err()
        );
        let none = serde_json::json!({});
        assert!(
            HttpRenovatio::new(&Target::new(url, &credentials, egress).with_settings(&none))
                .is_ok()
        );
    }
}
