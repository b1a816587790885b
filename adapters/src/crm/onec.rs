//! 1C:Enterprise through its standard OData interface (Skinerica, Лисичкино).
//!
//! # What this client relies on, and where it was confirmed
//!
//! - `GET {base}/odata/standard.odata/{Object}?$format=json&$filter=…&$top=N&$skip=M&$orderby=Date`
//!   with HTTP Basic auth; `$filter` operators `eq`, `ge`, `lt`, `and`, `or`. Confirmed in
//!   the book «Технологии интеграции 1С:Предприятия 8.3» (rutlib.com/book/43553/p/47, the
//!   `$filter` operator tables), 42clouds.com «Интерфейс OData: правила формирования условия
//!   отбора», 1cfresh.com/articles/data_odata, and the `onec-odata` client on PyPI.
//! - Date literals `Date ge datetime'2020-03-01T00:00:00'`: public Python scripts that poll
//!   `Document_ЧекККМ` this way; the `onec-odata` README (OData v3 typed literals).
//! - Reply `{"odata.metadata": "…", "value": [{"Ref_Key", "DataVersion", "DeletionMark",
//!   "Number", "Date": "2016-12-26T17:08:57", "Posted", …}]}`, dates in the infobase's local
//!   time without an offset: a sample reply kept in a public Java client of 1C OData.
//! - Fractional numbers are `Edm.Double`, i.e. JSON numbers: 42clouds.com «Интерфейс OData:
//!   представление данных». We read them from their text, never through a float.
//! - `Document_ЧекККМ` carries `СуммаДокумента` and `ВидОперации` (a return contains
//!   «Возврат»): a public JS audit script selecting exactly these fields; a public Go config
//!   of `Document_ЧекККМ` / `Document_ЧекККМВозврат` fields. A return check points at its
//!   sale through `ЧекККМПродажа_Key` (an empty reference is the zero GUID): public Python
//!   scripts filtering `ЧекККМПродажа_Key ne guid'00000000-…'`.
//! - Customers: a tabular section is its own entity set `{Catalog}_{Section}` (lexema-ecm
//!   docs on 1C OData resource names; filtering by tabular-section fields since 8.3.8,
//!   wonderland.v8.1c.ru «Расширение поддержки протокола OData»); contact-information rows
//!   hold `Тип`, `Представление`, `НомерТелефона` (a public test fixture of `Catalog_Контрагенты`).
//!
//! Not confirmed: which field of a check holds the buyer's phone (none is standard: the
//! default `Телефон` is an installation's own attribute, so it is configurable); the format
//! of `НомерТелефона` (we try the usual written forms); that marking a posted document for
//! deletion also clears `Posted` (platform behaviour as we know it: we treat any deletion
//! mark as a cancellation, posted or not). OData has no change timestamp for documents, so a
//! deletion mark set after a window was polled is only seen when that window is read again.
//!
//! # Configuration (`crm_credentials` of a `1c` business)
//!
//! | field | default | meaning |
//! |---|---|---|
//! | `username`, `password` | required | HTTP Basic credentials of the publication |
//! | `document` | `Document_ЧекККМ` | the OData object of sales |
//! | `amount_field` | `СуммаДокумента` | the sum of a document |
//! | `phone_field` | `Телефон` | the buyer's phone, as written; absent means no phone |
//! | `name_field` | none | the buyer's name, if the configuration has one |
//! | `operation_field` | `ВидОперации` | marks returns, with `return_operation` |
//! | `return_operation` | `Возврат` | the value of `operation_field` on a return |
//! | `original_field` | `ЧекККМПродажа_Key` | the sale a return refers to |
//! | `customer_catalog` | `Catalog_Контрагенты` | where `find_customer` looks |
//! | `utc_offset` | `+03:00` | the infobase's time zone (1C writes local times) |

use super::{ConfigError, CrmClient, CrmCustomer, CrmKind, CrmTransaction, Window};
use crate::http::{Reply, RetryPolicy, VendorError, send};
use async_trait::async_trait;
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};
use time::{
    OffsetDateTime, PrimitiveDateTime, UtcOffset, format_description::BorrowedFormatItem,
    macros::format_description,
};

/// 1C's `Date` literal and JSON form (local time, no offset).
const DATE: &[BorrowedFormatItem<'_>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
/// Documents per request. 1C has no server limit; a publication may still cap it, so we
/// page until an empty page rather than trusting a short one.
const PAGE: usize = 500;
/// A window that needs more pages than this is not ending: stop rather than loop forever.
const MAX_PAGES: usize = 10_000;
/// An empty reference in 1C.
const ZERO_GUID: &str = "00000000-0000-0000-0000-000000000000";

/// The `crm_credentials` of a `1c` business (see the module docs for the defaults).
#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: SecretString,
    #[serde(default = "defaults::document")]
    document: String,
    #[serde(default = "defaults::amount_field")]
    amount_field: String,
    #[serde(default = "defaults::phone_field")]
    phone_field: String,
    #[serde(default)]
    name_field: Option<String>,
    #[serde(default = "defaults::operation_field")]
    operation_field: String,
    #[serde(default = "defaults::return_operation")]
    return_operation: String,
    #[serde(default = "defaults::original_field")]
    original_field: String,
    #[serde(default = "defaults::customer_catalog")]
    customer_catalog: String,
    #[serde(default = "defaults::utc_offset")]
    utc_offset: String,
}

mod defaults {
    pub(super) fn document() -> String {
        "Document_ЧекККМ".to_owned()
    }
    pub(super) fn amount_field() -> String {
        "СуммаДокумента".to_owned()
    }
    pub(super) fn phone_field() -> String {
        "Телефон".to_owned()
    }
    pub(super) fn operation_field() -> String {
        "ВидОперации".to_owned()
    }
    pub(super) fn return_operation() -> String {
        "Возврат".to_owned()
    }
    pub(super) fn original_field() -> String {
        "ЧекККМПродажа_Key".to_owned()
    }
    pub(super) fn customer_catalog() -> String {
        "Catalog_Контрагенты".to_owned()
    }
    pub(super) fn utc_offset() -> String {
        "+03:00".to_owned()
    }
}

/// A 1C infobase's standard OData interface.
pub struct HttpOneC {
    http: reqwest::Client,
    /// `{base}/odata/standard.odata`
    odata: String,
    username: String,
    password: SecretString,
    mapping: Mapping,
    policy: RetryPolicy,
}

/// Where the configuration keeps what we read.
struct Mapping {
    document: String,
    amount_field: String,
    phone_field: String,
    name_field: Option<String>,
    operation_field: String,
    return_operation: String,
    original_field: String,
    customer_catalog: String,
    offset: UtcOffset,
}

/// Builds the 1C client.
pub fn client(
    base_url: &str,
    credentials: &serde_json::Value,
) -> Result<Box<dyn CrmClient>, ConfigError> {
    Ok(Box::new(HttpOneC::new(base_url, credentials)?))
}

impl HttpOneC {
    /// A client of the publication at `base_url` (e.g. `https://host/base`).
    pub fn new(base_url: &str, credentials: &serde_json::Value) -> Result<Self, ConfigError> {
        let c: Credentials = super::credentials("1c", credentials)?;
        for (name, value) in [
            ("document", &c.document),
            ("amount_field", &c.amount_field),
            ("customer_catalog", &c.customer_catalog),
        ] {
            if value.trim().is_empty() {
                return Err(ConfigError(format!("1c credentials: `{name}` is empty")));
            }
        }
        let offset = UtcOffset::parse(
            c.utc_offset.trim(),
            format_description!("[offset_hour sign:mandatory]:[offset_minute]"),
        )
        .map_err(|_| {
            ConfigError(format!(
                "1c credentials: `utc_offset` must look like +03:00, not `{}`",
                c.utc_offset
            ))
        })?;
        Ok(Self {
            http: crate::http_client(Duration::from_secs(30)),
            odata: format!("{}/odata/standard.odata", base_url.trim_end_matches('/')),
            username: c.username,
            password: c.password,
            mapping: Mapping {
                document: c.document.trim().to_owned(),
                amount_field: c.amount_field,
                phone_field: c.phone_field,
                name_field: c.name_field.filter(|f| !f.trim().is_empty()),
                operation_field: c.operation_field,
                return_operation: c.return_operation,
                original_field: c.original_field,
                customer_catalog: c.customer_catalog.trim().to_owned(),
                offset,
            },
            policy: RetryPolicy::default(),
        })
    }

    /// `GET {odata}/{path_and_query}` with Basic auth.
    async fn get(&self, path_and_query: &str) -> Result<Reply, VendorError> {
        let url = format!("{}/{path_and_query}", self.odata);
        send(&self.policy, None, || {
            self.http
                .get(&url)
                .basic_auth(&self.username, Some(self.password.expose_secret()))
                .header("Accept", "application/json")
        })
        .await
    }

    /// The `value` of an OData collection reply.
    async fn list(&self, path_and_query: &str) -> Result<Vec<Record>, VendorError> {
        let reply = self.get(path_and_query).await?;
        let list: Collection =
            serde_json::from_str(&reply.body).map_err(|_| VendorError::malformed(&reply.body))?;
        Ok(list.value)
    }

    fn local(&self, at: OffsetDateTime) -> PrimitiveDateTime {
        let local = at.to_offset(self.mapping.offset);
        PrimitiveDateTime::new(local.date(), local.time())
    }

    /// The date literal of `at`, to the second.
    fn literal(&self, at: OffsetDateTime) -> String {
        self.local(at).format(DATE).unwrap_or_default()
    }

    /// What a document of the window means to us, if anything.
    fn transaction(
        &self,
        record: &Record,
        window: Window,
    ) -> Result<Option<CrmTransaction>, VendorError> {
        let m = &self.mapping;
        let key = text(record, "Ref_Key").ok_or_else(|| missing("Ref_Key"))?;
        let date = text(record, "Date").ok_or_else(|| missing("Date"))?;
        let occurred_at = PrimitiveDateTime::parse(&date, DATE)
            .map_err(|_| VendorError::Malformed {
                excerpt: format!("1C document {key}: unreadable Date `{date}`"),
            })?
            .assume_offset(m.offset);
        // The filter was widened to whole seconds: the window itself decides.
        if occurred_at < window.from || occurred_at >= window.to {
            return Ok(None);
        }
        let posted = flag(record, "Posted");
        let deleted = flag(record, "DeletionMark");
        if !posted && !deleted {
            // A draft (or a document un-posted for editing): nothing happened yet.
            return Ok(None);
        }
        let amount = record
            .get(&m.amount_field)
            .and_then(|raw| decimal(raw))
            .ok_or_else(|| VendorError::Malformed {
                excerpt: format!(
                    "1C document {key}: no readable `{}` (check `amount_field`)",
                    m.amount_field
                ),
            })?
            .abs();
        if amount.is_zero() {
            return Ok(None);
        }
        let is_return = text(record, &m.operation_field)
            .is_some_and(|op| op.trim().eq_ignore_ascii_case(m.return_operation.trim()));
        let phone = text(record, &m.phone_field).filter(|p| !p.trim().is_empty());
        let name = m
            .name_field
            .as_deref()
            .and_then(|f| text(record, f))
            .filter(|n| !n.trim().is_empty());
        let (external_id, kind, customer_phone) = if deleted {
            if is_return {
                // A cancelled return cannot be expressed as a transaction; the purchase's
                // refund stays recorded, which errs on the member's side of caution.
                tracing::warn!(document = %key, "1C return check marked for deletion: ignored");
                return Ok(None);
            }
            // The member is whoever the original purchase says: a cancellation of a
            // purchase we never recorded must not touch anyone's balance.
            (
                format!("{key}:cancel"),
                CrmKind::Refund {
                    original_external_id: key,
                },
                None,
            )
        } else if is_return {
            let original = text(record, &m.original_field)
                .filter(|o| !o.is_empty() && o != ZERO_GUID)
                .unwrap_or_default();
            (
                key,
                CrmKind::Refund {
                    original_external_id: original,
                },
                phone,
            )
        } else {
            (key, CrmKind::Purchase, phone)
        };
        Ok(Some(CrmTransaction {
            external_id,
            kind,
            amount,
            occurred_at,
            customer_phone,
            customer_name: name,
            is_medical: false,
        }))
    }
}

#[async_trait]
impl CrmClient for HttpOneC {
    fn vendor(&self) -> &'static str {
        "1c"
    }

    #[tracing::instrument(skip_all, fields(vendor = "1c", from = %window.from, to = %window.to), err)]
    async fn fetch_transactions(&self, window: Window) -> Result<Vec<CrmTransaction>, VendorError> {
        // Whole seconds, widened outwards; `transaction` re-checks the exact window.
        let from = window.from.replace_nanosecond(0).unwrap_or(window.from);
        let to = if window.to.nanosecond() == 0 {
            window.to
        } else {
            window.to.replace_nanosecond(0).unwrap_or(window.to) + time::Duration::SECOND
        };
        let filter = format!(
            "Date ge datetime'{}' and Date lt datetime'{}'",
            self.literal(from),
            self.literal(to)
        );
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut skip = 0;
        for _ in 0..MAX_PAGES {
            let records = self
                .list(&format!(
                    "{}?$format=json&$filter={}&$top={PAGE}&$skip={skip}&$orderby=Date",
                    encode(&self.mapping.document),
                    encode(&filter)
                ))
                .await?;
            if records.is_empty() {
                return Ok(out);
            }
            skip += records.len();
            for record in &records {
                if let Some(t) = self.transaction(record, window)? {
                    // A document can come twice when others are added while we page.
                    if seen.insert(t.external_id.clone()) {
                        out.push(t);
                    }
                }
            }
        }
        Err(VendorError::Malformed {
            excerpt: format!("1C kept returning documents after {MAX_PAGES} pages"),
        })
    }

    async fn find_customer(&self, phone: &str) -> Result<Option<CrmCustomer>, VendorError> {
        let forms = phone_forms(phone);
        if forms.is_empty() {
            return Ok(None);
        }
        let filter = forms
            .iter()
            .map(|f| format!("НомерТелефона eq '{}'", f.replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(" or ");
        let catalog = &self.mapping.customer_catalog;
        let rows = self
            .list(&format!(
                "{}?$format=json&$filter={}&$top=1",
                encode(&format!("{catalog}_КонтактнаяИнформация")),
                encode(&filter)
            ))
            .await?;
        let Some(key) = rows.first().and_then(|row| text(row, "Ref_Key")) else {
            return Ok(None);
        };
        if !is_guid(&key) {
            return Err(VendorError::Malformed {
                excerpt: format!("1C contact row with Ref_Key `{key}`"),
            });
        }
        let reply = match self
            .get(&format!("{}(guid'{key}')?$format=json", encode(catalog)))
            .await
        {
            Ok(reply) => reply,
            // The row outlived its owner.
            Err(VendorError::Rejected { status: 404, .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let element: Record =
            serde_json::from_str(&reply.body).map_err(|_| VendorError::malformed(&reply.body))?;
        Ok(Some(CrmCustomer {
            external_id: key,
            phone: Some(phone.to_owned()),
            name: text(&element, "Description").filter(|n| !n.trim().is_empty()),
        }))
    }

    async fn record_bonus(
        &self,
        _customer: &CrmCustomer,
        _amount: Decimal,
        _comment: &str,
    ) -> Result<bool, VendorError> {
        // Loyalty books in 1C are configuration-specific documents; we keep the ledger.
        Ok(false)
    }
}

/// One entity: its fields as the vendor wrote them, read by name when needed.
type Record = HashMap<String, Box<RawValue>>;

#[derive(Deserialize)]
struct Collection {
    value: Vec<Record>,
}

fn missing(field: &str) -> VendorError {
    VendorError::Malformed {
        excerpt: format!("1C document without `{field}`"),
    }
}

/// A string field (`None` when absent, null or not a string).
fn text(record: &Record, field: &str) -> Option<String> {
    record
        .get(field)
        .and_then(|raw| serde_json::from_str::<Option<String>>(raw.get()).ok())
        .flatten()
}

fn flag(record: &Record, field: &str) -> bool {
    record
        .get(field)
        .and_then(|raw| serde_json::from_str::<bool>(raw.get()).ok())
        .unwrap_or(false)
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

/// Percent-encodes everything but RFC 3986 unreserved characters: object names are
/// Cyrillic and filters hold spaces and quotes (`%20`, not `+`, which OData may read
/// literally).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn is_guid(s: &str) -> bool {
    s.len() == 36
        && s.chars().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The written forms a Russian number may have in a catalog: `+7…`, `7…`, `8…`, ten digits.
fn phone_forms(phone: &str) -> Vec<String> {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 10 {
        return Vec::new();
    }
    let national = &digits[digits.len() - 10..];
    vec![
        format!("+7{national}"),
        format!("7{national}"),
        format!("8{national}"),
        national.to_owned(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;
    use simulators::{Fault, Sale, Simulator, Vendor};
    use std::time::Instant;
    use time::macros::datetime;

    const DAY: Window = Window {
        from: datetime!(2026-03-02 00:00 UTC),
        to: datetime!(2026-03-03 00:00 UTC),
    };

    async fn onec() -> (Simulator, HttpOneC) {
        let sim = Simulator::start(Vendor::OneC).await.expect("simulator");
        let client = HttpOneC::new(&sim.url, &Vendor::OneC.credentials()).expect("client");
        (sim, client)
    }

    fn sale(id: &str, amount: Decimal, at: OffsetDateTime) -> Sale {
        Sale::purchase(id, amount, at, "+7 999 123-45-67")
    }

    /// Checks of one day, a few minutes apart.
    fn checks(n: usize) -> Vec<Sale> {
        (0..n)
            .map(|i| {
                sale(
                    &format!("check-{i}"),
                    dec!(100.10) + Decimal::from(i),
                    datetime!(2026-03-02 09:00 UTC) + time::Duration::minutes(i as i64),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn every_page_of_a_window_is_read_with_exact_amounts() {
        let (sim, client) = onec().await;
        sim.add_sales(checks(5));
        sim.add_sales([sale("next-day", dec!(1), datetime!(2026-03-03 00:00 UTC))]);
        *sim.state.page_size.lock().unwrap() = Some(2);

        let got = client.fetch_transactions(DAY).await.unwrap();

        assert_eq!(got.len(), 5, "{got:?}");
        for (i, t) in got.iter().enumerate() {
            assert_eq!(t.kind, CrmKind::Purchase);
            assert_eq!(t.amount, dec!(100.10) + Decimal::from(i), "{t:?}");
            assert_eq!(
                t.occurred_at,
                datetime!(2026-03-02 09:00 UTC) + time::Duration::minutes(i as i64)
            );
            assert_eq!(t.customer_phone.as_deref(), Some("+7 999 123-45-67"));
            assert!(!t.is_medical);
        }
        // Three pages of documents and the empty one that ends the window.
        assert!(sim.requests() >= 4, "{} requests", sim.requests());
    }

    #[tokio::test]
    async fn amounts_keep_every_kopeck() {
        let (sim, client) = onec().await;
        sim.add_sales([
            sale("a", dec!(1234567.89), datetime!(2026-03-02 10:00 UTC)),
            sale("b", dec!(0.30), datetime!(2026-03-02 10:01 UTC)),
        ]);

        let got = client.fetch_transactions(DAY).await.unwrap();

        let amounts: Vec<Decimal> = got.iter().map(|t| t.amount).collect();
        assert_eq!(amounts, vec![dec!(1234567.89), dec!(0.30)]);
    }

    #[tokio::test]
    async fn a_return_check_is_a_refund_of_its_sale() {
        let (sim, client) = onec().await;
        let original = sale("sale-1", dec!(900), datetime!(2026-03-02 10:00 UTC));
        let mut refund = sale("return-1", dec!(300), datetime!(2026-03-02 12:00 UTC));
        refund.refund_of = Some("sale-1".to_owned());
        sim.add_sales([original, refund]);

        let got = client.fetch_transactions(DAY).await.unwrap();

        assert_eq!(got.len(), 2);
        assert_eq!(got[0].kind, CrmKind::Purchase);
        assert_eq!(
            got[1].kind,
            CrmKind::Refund {
                original_external_id: got[0].external_id.clone()
            }
        );
        assert_eq!(got[1].amount, dec!(300));
        assert_eq!(got[1].customer_phone.as_deref(), Some("+7 999 123-45-67"));
    }

    #[tokio::test]
    async fn a_deletion_mark_cancels_the_purchase_on_the_same_record() {
        let (sim, client) = onec().await;
        let mut cancelled = sale("sale-2", dec!(450.50), datetime!(2026-03-02 11:00 UTC));
        sim.add_sales([cancelled.clone()]);
        let before = client.fetch_transactions(DAY).await.unwrap();
        cancelled.cancelled = true;
        *sim.state.sales.lock().unwrap() = vec![cancelled];

        let after = client.fetch_transactions(DAY).await.unwrap();

        assert_eq!(before.len(), 1);
        assert_eq!(after.len(), 1);
        let key = before[0].external_id.clone();
        assert_eq!(after[0].external_id, format!("{key}:cancel"));
        assert_eq!(
            after[0].kind,
            CrmKind::Refund {
                original_external_id: key
            }
        );
        assert_eq!(after[0].amount, dec!(450.50));
        assert_eq!(
            after[0].customer_phone, None,
            "the purchase names the member"
        );
    }

    #[tokio::test]
    async fn a_document_delivered_twice_is_reported_once() {
        let (sim, client) = onec().await;
        sim.add_sales(checks(3));
        sim.state
            .duplicate
            .store(true, std::sync::atomic::Ordering::SeqCst);
        *sim.state.page_size.lock().unwrap() = Some(2);

        let got = client.fetch_transactions(DAY).await.unwrap();

        let ids: HashSet<&str> = got.iter().map(|t| t.external_id.as_str()).collect();
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(ids.len(), 3);
    }

    #[tokio::test]
    async fn a_429_is_waited_out_as_told_then_the_window_is_read() {
        let (sim, client) = onec().await;
        sim.add_sales(checks(2));
        sim.inject([Fault::RateLimited { retry_after_s: 1 }]);
        let started = Instant::now();

        let got = client.fetch_transactions(DAY).await.unwrap();

        assert_eq!(got.len(), 2);
        assert!(started.elapsed() >= Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_500_is_retried_then_the_window_is_read() {
        let (sim, client) = onec().await;
        sim.add_sales(checks(2));
        sim.inject([Fault::ServerError]);

        let got = client.fetch_transactions(DAY).await.unwrap();

        assert_eq!(got.len(), 2);
    }

    #[tokio::test]
    async fn a_401_is_unauthorized() {
        let (sim, client) = onec().await;
        sim.inject([Fault::Unauthorized]);

        let error = client.fetch_transactions(DAY).await.unwrap_err();

        assert!(
            matches!(error, VendorError::Unauthorized { status: 401, .. }),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_wrong_password_is_unauthorized() {
        let sim = Simulator::start(Vendor::OneC).await.unwrap();
        let mut credentials = Vendor::OneC.credentials();
        credentials["password"] = "wrong".into();
        let client = HttpOneC::new(&sim.url, &credentials).unwrap();

        let error = client.fetch_transactions(DAY).await.unwrap_err();

        assert!(
            matches!(error, VendorError::Unauthorized { .. }),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_malformed_body_is_malformed() {
        let (sim, client) = onec().await;
        sim.inject([Fault::Malformed]);

        let error = client.fetch_transactions(DAY).await.unwrap_err();

        assert!(matches!(error, VendorError::Malformed { .. }), "{error:?}");
    }

    #[tokio::test]
    async fn an_unknown_document_object_is_rejected() {
        let sim = Simulator::start(Vendor::OneC).await.unwrap();
        let mut credentials = Vendor::OneC.credentials();
        credentials["document"] = "Document_НетТакого".into();
        let client = HttpOneC::new(&sim.url, &credentials).unwrap();

        let error = client.fetch_transactions(DAY).await.unwrap_err();

        assert!(
            matches!(error, VendorError::Rejected { status: 404, .. }),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_customer_is_found_by_any_written_form_of_the_phone() {
        let (sim, client) = onec().await;
        let mut with_name = sale("c", dec!(1), datetime!(2026-03-02 10:00 UTC));
        with_name.phone = Some("8 (999) 765-43-21".to_owned());
        with_name.name = Some("Анна Петрова".to_owned());
        sim.add_sales([with_name]);

        let found = client.find_customer("+79997654321").await.unwrap();
        let missing = client.find_customer("+79990000000").await.unwrap();

        let found = found.expect("customer");
        assert_eq!(found.name.as_deref(), Some("Анна Петрова"));
        assert_eq!(found.phone.as_deref(), Some("+79997654321"));
        assert_eq!(missing, None);
    }

    #[test]
    fn credentials_without_a_password_are_a_configuration_error() {
        let error = HttpOneC::new("http://x/base", &serde_json::json!({"username": "u"}))
            .err()
            .expect("error");
        assert!(error.0.contains("password"), "{error}");
    }

    #[test]
    fn a_bad_utc_offset_is_a_configuration_error() {
        let credentials =
            serde_json::json!({"username": "u", "password": "p", "utc_offset": "Moscow"});
        assert!(HttpOneC::new("http://x/base", &credentials).is_err());
    }

    #[test]
    fn object_names_and_filters_are_percent_encoded() {
        assert_eq!(
            encode("Document_ЧекККМ"),
            "Document_%D0%A7%D0%B5%D0%BA%D0%9A%D0%9A%D0%9C"
        );
        assert_eq!(
            encode("Date ge datetime'2026-03-02T00:00:00'"),
            "Date%20ge%20datetime%272026-03-02T00%3A00%3A00%27"
        );
    }

    #[test]
    fn amounts_are_read_from_their_text() {
        let raw = |s: &str| RawValue::from_string(s.to_owned()).unwrap();
        assert_eq!(decimal(&raw("1250.50")), Some(dec!(1250.50)));
        assert_eq!(decimal(&raw("\"1250,50\"")), Some(dec!(1250.50)));
        assert_eq!(decimal(&raw("1.5E3")), Some(dec!(1500)));
        assert_eq!(decimal(&raw("0.1")), Some(dec!(0.1)));
        assert_eq!(decimal(&raw("null")), None);
    }
}
