//! YCLIENTS (the beauty salon Миндаль): visits ("records") as purchases and cancellations.
//!
//! # What this client relies on, and where it was confirmed
//!
//! "The API blueprint" below is YCLIENTS' own API Blueprint, as vendored in the public
//! repository `mkosinov/yclientsapi` at `docs/yclients_official/yclientsru.apib` (host
//! `https://api.yclients.com/api/v1`).
//!
//! | what | confirmed in |
//! |---|---|
//! | `Accept: application/vnd.yclients.v2+json`; `Authorization: Bearer {partner_token}, User {user_token}`; replies `{"success", "data", "meta"}` | the API blueprint, "Авторизация запросов API" and "Версионирование API" |
//! | 200 requests a minute or 5 a second per IP: both are kept, by one limiter shared by every YCLIENTS integration of the process (the limit is per IP, not per salon) | the API blueprint, "Лимиты"; the README of `andrey-tech/yclients-api-php` |
//! | `{"success": false, "meta": {"message": "Не найдено"}}` to a client search is an empty result, not a failure (whatever the HTTP status) | `strukovsv/yclients-micro` `src/micro/api_yclients.py` (`load_object` returns `[]` on «Не найдено»); the HTTP status of that reply (404 in our simulator) is an assumption, so we do not depend on it. A records listing keeps it an error: a wrong `company_id` answers the same |
//! | `GET /records/{company_id}` with `page`, `count`, `changed_after`, `changed_before` (`2016-02-23T12:00:00`: no offset), `with_deleted`; `meta.total_count` | the API blueprint, "Коллекция записей"; also `dvkazin/Yclients` `src/Model/Request/RecordParameter.cs` |
//! | a record's `id`, `services[].cost` (final cost of the service), `client{phone, name}` (may be `null`), `datetime` (ISO 8601 with offset), `last_change_date` (`2019-01-16T20:35:15+0900`: offset without a colon), `attendance` (1 = the client came and was served), `deleted` | the API blueprint's record table and example reply; `dvkazin/Yclients` `src/Model/Response/Data/Record.cs`, `RecordService.cs` |
//! | `POST /company/{company_id}/clients/search` with `page`, `page_size`, `fields`, `filters: [{"type": "quick_search", "state": {"value": …}}]` → `data: [{id, name, phone}]` | the API blueprint, "Коллекция клиентов" (`FullClientSearchRequest`, `ClientQuickSearchFilter`) |
//!
//! Not confirmed, and therefore not used: `services[].cost_to_pay` (in the C# client, not in
//! the blueprint), `paid_full` / `payment_status` (their values are undocumented), the items of
//! `goods_transactions` (goods sold during a visit are not counted), a loyalty-card API.
//! The time zone in which `changed_after` / `changed_before` are read (presumably the
//! company's) is not documented: we widen the query and cut the reply back (`query_bounds`).
//!
//! # What counts
//!
//! - A record with `attendance == 1` (the client came and the services were rendered) is a
//!   purchase of the sum of its services' `cost`, at the visit's `datetime`.
//! - A record that is `deleted` but had `attendance == 1` is a visit voided after the fact:
//!   it is reported as the purchase *and* its cancellation `"{id}:cancel"` (at the record's
//!   `last_change_date`). Reporting the purchase again is harmless (the caller keeps one per
//!   id) and ties the cancellation to it even when the purchase was never polled.
//! - Anything else (a booking not yet attended, a no-show, a booking deleted before the
//!   visit) is no purchase and is left out. A visit un-marked as attended without being
//!   deleted is not noticed: the record then looks like any booking.
//! - A record belongs to a window by its `last_change_date`, the key YCLIENTS filters on.

use super::{ConfigError, CrmClient, CrmCustomer, CrmKind, CrmTransaction, Target, Window};
use crate::http::{RateLimiter, Reply, RetryPolicy, VendorError, Verdict, send_classified};
use async_trait::async_trait;
use reqwest::header::{ACCEPT, AUTHORIZATION};
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use std::{
    collections::HashSet,
    str::FromStr,
    sync::{Arc, LazyLock},
    time::Duration,
};
use time::{
    OffsetDateTime, PrimitiveDateTime, format_description::well_known::Rfc3339,
    macros::format_description,
};

/// The version of the reply format we read (the API blueprint: "Версионирование API").
const ACCEPT_V2: &str = "application/vnd.yclients.v2+json";
/// Records per page we ask for. The blueprint's default is 300; 200 is what partners are
/// told to stay under, and the client copes with smaller pages anyway.
const PAGE_SIZE: u32 = 200;
/// A walk that has not ended after this many pages is a vendor bug, not a big salon.
const MAX_PAGES: u32 = 10_000;
/// YCLIENTS allows 5 requests a second and 200 a minute per IP. We keep a margin (1.1 s and
/// 61 s): YCLIENTS counts requests when they arrive, and one that travels slower than the
/// next must not make the next look early.
pub const LIMITS: [(u32, Duration); 2] = [
    (5, Duration::from_millis(1100)),
    (200, Duration::from_secs(61)),
];
/// The limits are per IP: every YCLIENTS client of this process shares them.
static LIMITER: LazyLock<Arc<RateLimiter>> = LazyLock::new(|| Arc::new(RateLimiter::new(&LIMITS)));
/// What YCLIENTS says when a search or a listing finds nothing.
const NOT_FOUND: &str = "Не найдено";

/// `crm_credentials` of a business whose `crm_type` is `yclients` (DESIGN.md).
#[derive(Deserialize)]
struct Credentials {
    partner_token: SecretString,
    user_token: SecretString,
    /// A number in YCLIENTS; accepted as a number or a string of digits.
    company_id: Value,
}

/// YCLIENTS over HTTPS.
pub struct HttpYclients {
    http: reqwest::Client,
    base_url: String,
    company_id: String,
    /// `Bearer {partner_token}, User {user_token}`.
    authorization: SecretString,
    policy: RetryPolicy,
    limiter: Arc<RateLimiter>,
}

impl HttpYclients {
    /// Reads the credentials (`partner_token`, `user_token`, `company_id`).
    pub fn new(target: &Target<'_>) -> Result<Self, ConfigError> {
        let base_url = target.checked_base()?;
        let creds: Credentials = super::credentials("yclients", target.credentials)?;
        let company_id = match &creds.company_id {
            Value::Number(n) if n.is_u64() => n.to_string(),
            Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.clone(),
            _ => {
                return Err(ConfigError(
                    "yclients credentials: company_id must be a positive whole number".to_owned(),
                ));
            }
        };
        if creds.partner_token.expose_secret().is_empty()
            || creds.user_token.expose_secret().is_empty()
        {
            return Err(ConfigError(
                "yclients credentials: partner_token and user_token must not be empty".to_owned(),
            ));
        }
        let authorization = format!(
            "Bearer {}, User {}",
            creds.partner_token.expose_secret(),
            creds.user_token.expose_secret()
        );
        Ok(Self {
            http: target.egress.client(Duration::from_secs(30), Vec::new()),
            base_url,
            company_id,
            authorization: authorization.into(),
            policy: RetryPolicy::default(),
            limiter: LIMITER.clone(),
        })
    }

    /// This client under its own limiter (tests scale YCLIENTS' limits down in time).
    pub fn with_limiter(mut self, limiter: RateLimiter) -> Self {
        self.limiter = Arc::new(limiter);
        self
    }

    /// Sends within the limits. For a search, «Не найдено» comes back as a reply, to be
    /// read as empty; elsewhere it stays an error (a wrong `company_id` answers the same, and
    /// must not pass for a salon without visits).
    async fn send(
        &self,
        search: bool,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Reply, VendorError> {
        send_classified(
            &self.policy,
            Some(&self.limiter),
            |_, body| {
                if search && Envelope::not_found(body) {
                    Verdict::Accept
                } else {
                    Verdict::Generic
                }
            },
            build,
        )
        .await
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base_url))
            .header(ACCEPT, ACCEPT_V2)
            .header(AUTHORIZATION, self.authorization.expose_secret())
    }
}

/// The v2 reply envelope. `meta` is an object, or `[]` when empty (PHP's empty array).
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    success: Option<bool>,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    meta: Value,
}

impl Envelope {
    /// `success: false` with «Не найдено»: nothing matched.
    fn not_found(body: &str) -> bool {
        serde_json::from_str::<Envelope>(body).is_ok_and(|e| {
            e.success == Some(false)
                && e.meta.get("message").and_then(Value::as_str).map(str::trim) == Some(NOT_FOUND)
        })
    }

    /// The reply's `data` array, or why the reply is unusable.
    fn parse_list(body: &str, status: u16) -> Result<(Vec<Value>, Value), VendorError> {
        let envelope: Envelope =
            serde_json::from_str(body).map_err(|_| VendorError::malformed(body))?;
        if envelope.success == Some(false) {
            // A 2xx that says it failed: the request was refused, with the reason in `meta`.
            return Err(VendorError::Rejected {
                status,
                detail: crate::http::reply_detail(body),
            });
        }
        match envelope.data {
            Value::Array(items) => Ok((items, envelope.meta)),
            _ => Err(VendorError::malformed(body)),
        }
    }
}

/// One record, read leniently: YCLIENTS writes some fields as numbers or strings, and empty
/// objects as `[]`.
#[derive(Deserialize)]
struct Record {
    id: Value,
    #[serde(default)]
    services: Value,
    #[serde(default)]
    client: Value,
    #[serde(default)]
    datetime: Option<String>,
    #[serde(default)]
    last_change_date: Option<String>,
    #[serde(default)]
    attendance: Value,
    #[serde(default)]
    deleted: Value,
}

impl Record {
    /// What this record means for the window, or why it is unreadable.
    fn transactions(&self, window: Window) -> Result<Vec<CrmTransaction>, String> {
        let id = id_text(&self.id).ok_or("a record without an id")?;
        let visit = self.datetime.as_deref().and_then(parse_time);
        let changed = self
            .last_change_date
            .as_deref()
            .and_then(parse_time)
            .or(visit)
            .ok_or_else(|| format!("record {id} has no readable last_change_date or datetime"))?;
        if changed < window.from || changed >= window.to || integer(&self.attendance) != Some(1) {
            return Ok(Vec::new());
        }
        let mut amount = Decimal::ZERO;
        if let Value::Array(services) = &self.services {
            for service in services {
                let cost = service.get("cost").unwrap_or(&Value::Null);
                amount += money(cost)
                    .ok_or_else(|| format!("record {id} has a service without a readable cost"))?;
            }
        }
        if amount <= Decimal::ZERO {
            // Served for free: nothing to earn bonuses on.
            return Ok(Vec::new());
        }
        let text = |field: &str| {
            self.client
                .get(field)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let purchase = CrmTransaction {
            external_id: id.clone(),
            kind: CrmKind::Purchase,
            amount,
            occurred_at: visit.unwrap_or(changed),
            customer_phone: text("phone"),
            customer_name: text("name"),
            is_medical: false,
        };
        if !flag(&self.deleted) {
            return Ok(vec![purchase]);
        }
        let cancellation = CrmTransaction {
            external_id: format!("{id}:cancel"),
            kind: CrmKind::Refund {
                original_external_id: id,
            },
            occurred_at: changed,
            ..purchase.clone()
        };
        Ok(vec![purchase, cancellation])
    }
}

/// `changed_after` / `changed_before` for a window.
///
/// YCLIENTS takes them without an offset and does not say in which zone it reads them
/// (presumably the company's). So we ask for the window widened by every offset a company
/// could have (UTC−12 to UTC+14) and keep only the records whose `last_change_date`, which
/// does carry its offset, falls in the window.
fn query_bounds(window: Window) -> (String, String) {
    let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let wall = |t: OffsetDateTime| {
        let utc = t.to_offset(time::UtcOffset::UTC);
        PrimitiveDateTime::new(utc.date(), utc.time())
            .format(&format)
            .unwrap_or_default()
    };
    (
        wall(window.from - time::Duration::hours(12)),
        // Whole seconds: round the end up so that nothing in the window's last second is lost.
        wall(window.to + time::Duration::hours(14) + time::Duration::seconds(1)),
    )
}

#[async_trait]
impl CrmClient for HttpYclients {
    fn vendor(&self) -> &'static str {
        "yclients"
    }

    async fn fetch_transactions(&self, window: Window) -> Result<Vec<CrmTransaction>, VendorError> {
        if window.from >= window.to {
            return Ok(Vec::new());
        }
        let (changed_after, changed_before) = query_bounds(window);
        let path = format!("/records/{}", self.company_id);
        let mut out = Vec::new();
        let mut seen_ids = HashSet::new();
        let mut delivered = 0usize;
        for page in 1..=MAX_PAGES {
            let query = [
                ("page", page.to_string()),
                ("count", PAGE_SIZE.to_string()),
                ("changed_after", changed_after.clone()),
                ("changed_before", changed_before.clone()),
                // Deleted records are how YCLIENTS reports a voided visit.
                ("with_deleted", "1".to_owned()),
            ];
            let reply = self
                .send(false, || {
                    self.request(reqwest::Method::GET, &path).query(&query)
                })
                .await?;
            let (records, meta) = Envelope::parse_list(&reply.body, reply.status)?;
            if records.is_empty() {
                return Ok(out);
            }
            delivered += records.len();
            for record in records {
                let record: Record = serde_json::from_value(record)
                    .map_err(|_| VendorError::unreadable("a YCLIENTS record of another shape"))?;
                let found = record
                    .transactions(window)
                    .map_err(VendorError::unreadable)?;
                // A record delivered twice (a vendor's retry, or one that moved between
                // pages while we walked) is reported once.
                out.extend(
                    found
                        .into_iter()
                        .filter(|t| seen_ids.insert(t.external_id.clone())),
                );
            }
            // YCLIENTS may serve fewer records than asked for: the total decides, and
            // without one, an empty page ends the walk.
            let total = meta.get("total_count").and_then(integer);
            if total.is_some_and(|total| delivered as i64 >= total) {
                return Ok(out);
            }
        }
        Err(VendorError::unreadable(format!(
            "YCLIENTS records paging did not end after {MAX_PAGES} pages"
        )))
    }

    async fn find_customer(&self, phone: &str) -> Result<Option<CrmCustomer>, VendorError> {
        let wanted = national_digits(phone);
        if wanted.is_empty() {
            return Ok(None);
        }
        // Quick search matches part of a phone: the last ten digits find the client however
        // the salon wrote the number (+7…, 8…, with spaces), and we check each match below.
        let body = json!({
            "page": 1,
            "page_size": 50,
            "fields": ["id", "name", "phone"],
            "filters": [{"type": "quick_search", "state": {"value": wanted}}],
        });
        let path = format!("/company/{}/clients/search", self.company_id);
        let reply = self
            .send(true, || {
                self.request(reqwest::Method::POST, &path).json(&body)
            })
            .await?;
        if Envelope::not_found(&reply.body) {
            return Ok(None);
        }
        let (clients, _) = Envelope::parse_list(&reply.body, reply.status)?;
        for client in &clients {
            let client_phone = client.get("phone").and_then(Value::as_str);
            if client_phone.map(national_digits).as_deref() != Some(wanted.as_str()) {
                continue;
            }
            let external_id = client
                .get("id")
                .and_then(id_text)
                .ok_or_else(|| VendorError::unreadable("a YCLIENTS client without an id"))?;
            return Ok(Some(CrmCustomer {
                external_id,
                phone: client_phone.map(str::to_owned),
                name: client
                    .get("name")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            }));
        }
        Ok(None)
    }

    /// YCLIENTS' own loyalty cards are not part of what we confirmed: we keep the ledger.
    async fn record_bonus(
        &self,
        _customer: &CrmCustomer,
        _amount: Decimal,
        _comment: &str,
    ) -> Result<bool, VendorError> {
        Ok(false)
    }
}

/// An id written as a number or a string.
fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    }
}

/// A whole number written as a number or a string.
fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A flag written as a boolean, 0/1, or "0"/"1".
fn flag(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        other => integer(other).is_some_and(|n| n != 0),
    }
}

/// Money exactly as written: the JSON number's text, never through a float of ours.
fn money(value: &Value) -> Option<Decimal> {
    let text = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_owned(),
        _ => return None,
    };
    Decimal::from_str(&text)
        .ok()
        .or_else(|| Decimal::from_scientific(&text).ok())
}

/// ISO 8601 with an offset, with or without the colon (`+03:00`, `+0300`).
fn parse_time(text: &str) -> Option<OffsetDateTime> {
    let text = text.trim();
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(t);
    }
    let split = text.len().checked_sub(5)?;
    let (head, offset) = (text.get(..split)?, text.get(split..)?);
    let (sign, digits) = offset.split_at(1);
    if !matches!(sign, "+" | "-") || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let fixed = format!("{head}{sign}{}:{}", &digits[..2], &digits[2..]);
    OffsetDateTime::parse(&fixed, &Rfc3339).ok()
}

/// The last ten digits of a Russian number (all digits of a shorter one).
fn national_digits(phone: &str) -> String {
    let digits: Vec<char> = phone.chars().filter(char::is_ascii_digit).collect();
    digits[digits.len().saturating_sub(10)..].iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;
    use simulators::{Fault, Sale, Simulator, Vendor};
    use std::sync::atomic::Ordering;
    use time::macros::datetime;

    /// The poll window most tests ask for: one afternoon.
    fn afternoon() -> Window {
        Window {
            from: datetime!(2026-03-02 12:00 UTC),
            to: datetime!(2026-03-02 18:00 UTC),
        }
    }

    /// Three visits of the afternoon, with kopecks that a float would lose.
    fn three_visits() -> Vec<Sale> {
        vec![
            Sale::purchase(
                "1001",
                dec!(2500.00),
                datetime!(2026-03-02 12:30 UTC),
                "+7 999 123-45-67",
            ),
            Sale::purchase(
                "1002",
                dec!(1234.57),
                datetime!(2026-03-02 13:15 UTC),
                "89991112233",
            ),
            Sale::purchase(
                "1003",
                dec!(0.10),
                datetime!(2026-03-02 17:59 UTC),
                "+79990001122",
            ),
        ]
    }

    fn client(url: &str, credentials: &Value) -> Result<Box<dyn CrmClient>, ConfigError> {
        HttpYclients::new(&Target::new(url, credentials, crate::test_egress()))
            .map(|c| Box::new(c) as Box<dyn CrmClient>)
    }

    async fn salon(sales: Vec<Sale>) -> (Simulator, Box<dyn CrmClient>) {
        let sim = Simulator::start(Vendor::Yclients).await.unwrap();
        sim.add_sales(sales);
        let client = client(&sim.url, &Vendor::Yclients.credentials()).unwrap();
        (sim, client)
    }

    fn ids(transactions: &[CrmTransaction]) -> Vec<&str> {
        transactions
            .iter()
            .map(|t| t.external_id.as_str())
            .collect()
    }

    /// Every page is walked, and amounts and phones arrive exactly as the salon wrote them.
    #[tokio::test]
    async fn every_page_of_a_window_is_walked() {
        let (sim, client) = salon(three_visits()).await;
        *sim.state.page_size.lock().unwrap() = Some(2);

        let got = client.fetch_transactions(afternoon()).await.unwrap();

        assert_eq!(ids(&got), ["1001", "1002", "1003"]);
        let amounts: Vec<Decimal> = got.iter().map(|t| t.amount).collect();
        assert_eq!(amounts, [dec!(2500.00), dec!(1234.57), dec!(0.10)]);
        assert_eq!(got[0].kind, CrmKind::Purchase);
        assert_eq!(got[0].customer_phone.as_deref(), Some("+7 999 123-45-67"));
        assert_eq!(got[0].occurred_at, datetime!(2026-03-02 12:30 UTC));
        assert!(sim.requests() >= 2, "two pages of two: {}", sim.requests());
    }

    /// The window is widened for YCLIENTS' zone-less bounds, then cut back exactly.
    #[tokio::test]
    async fn records_changed_outside_the_window_are_left_out() {
        let mut sales = three_visits();
        sales.push(Sale::purchase(
            "999",
            dec!(100),
            datetime!(2026-03-02 11:59:59 UTC),
            "+79990000001",
        ));
        sales.push(Sale::purchase(
            "2000",
            dec!(100),
            datetime!(2026-03-02 18:00 UTC),
            "+79990000002",
        ));
        let (_sim, client) = salon(sales).await;

        let got = client.fetch_transactions(afternoon()).await.unwrap();

        assert_eq!(ids(&got), ["1001", "1002", "1003"]);
    }

    /// A visit deleted after it was served is reported as the purchase and its cancellation.
    #[tokio::test]
    async fn a_deleted_visit_is_reported_with_its_cancellation() {
        let mut voided = Sale::purchase(
            "1004",
            dec!(3100.50),
            datetime!(2026-03-02 14:00 UTC),
            "+79995556677",
        );
        voided.cancelled = true;
        let (_sim, client) = salon(vec![voided]).await;

        let got = client.fetch_transactions(afternoon()).await.unwrap();

        assert_eq!(ids(&got), ["1004", "1004:cancel"]);
        assert_eq!(
            got[1].kind,
            CrmKind::Refund {
                original_external_id: "1004".to_owned()
            }
        );
        assert_eq!(got[1].amount, dec!(3100.50));
    }

    /// A refund is YCLIENTS' deletion of the visit's record: a cancellation of that visit.
    #[tokio::test]
    async fn a_refunded_visit_is_reported_as_its_cancellation() {
        let mut sales = three_visits();
        sales.push(Sale {
            refund_of: Some("1002".to_owned()),
            ..Sale::purchase(
                "r-1",
                dec!(1234.57),
                datetime!(2026-03-02 16:00 UTC),
                "89991112233",
            )
        });
        let (_sim, client) = salon(sales).await;

        let got = client.fetch_transactions(afternoon()).await.unwrap();

        let cancellation = got.iter().find(|t| t.external_id == "1002:cancel").unwrap();
        assert_eq!(
            cancellation.kind,
            CrmKind::Refund {
                original_external_id: "1002".to_owned()
            }
        );
        assert_eq!(cancellation.occurred_at, datetime!(2026-03-02 16:00 UTC));
    }

    #[tokio::test]
    async fn a_record_delivered_twice_is_reported_once() {
        let (sim, client) = salon(three_visits()).await;
        sim.state.duplicate.store(true, Ordering::SeqCst);
        *sim.state.page_size.lock().unwrap() = Some(2);

        let got = client.fetch_transactions(afternoon()).await.unwrap();

        assert_eq!(ids(&got), ["1001", "1002", "1003"]);
    }

    #[tokio::test]
    async fn a_429_is_retried_after_the_retry_after_delay() {
        let (sim, client) = salon(three_visits()).await;
        sim.inject([Fault::RateLimited { retry_after_s: 1 }]);
        let started = std::time::Instant::now();

        let got = client.fetch_transactions(afternoon()).await.unwrap();

        assert_eq!(got.len(), 3);
        assert!(started.elapsed() >= Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_500_is_retried_and_then_succeeds() {
        let (sim, client) = salon(three_visits()).await;
        sim.inject([Fault::ServerError]);

        let got = client.fetch_transactions(afternoon()).await.unwrap();

        assert_eq!(got.len(), 3);
        assert_eq!(sim.requests(), 2);
    }

    #[tokio::test]
    async fn a_401_is_unauthorized() {
        let (sim, client) = salon(three_visits()).await;
        sim.inject([Fault::Unauthorized]);

        let error = client.fetch_transactions(afternoon()).await.unwrap_err();

        assert!(
            matches!(error, VendorError::Unauthorized { status: 401, .. }),
            "{error:?}"
        );
        assert_eq!(sim.requests(), 1, "credentials are not retried");
    }

    #[tokio::test]
    async fn a_wrong_user_token_is_unauthorized() {
        let sim = Simulator::start(Vendor::Yclients).await.unwrap();
        let mut credentials = Vendor::Yclients.credentials();
        credentials["user_token"] = json!("revoked");
        let client = client(&sim.url, &credentials).unwrap();

        let error = client.fetch_transactions(afternoon()).await.unwrap_err();

        assert!(
            matches!(error, VendorError::Unauthorized { .. }),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_malformed_body_is_reported_as_malformed() {
        let (sim, client) = salon(three_visits()).await;
        sim.inject([Fault::Malformed]);

        let error = client.fetch_transactions(afternoon()).await.unwrap_err();

        assert!(matches!(error, VendorError::Malformed { .. }), "{error:?}");
    }

    #[tokio::test]
    async fn a_client_is_found_by_phone_however_it_was_written() {
        let (_sim, client) = salon(three_visits()).await;

        let found = client.find_customer("+79991112233").await.unwrap().unwrap();

        assert_eq!(found.phone.as_deref(), Some("89991112233"));
        assert!(!found.external_id.is_empty());
        assert_eq!(client.find_customer("+79997770000").await.unwrap(), None);
    }

    /// YCLIENTS answers a search that matches nobody with `success: false` and «Не найдено»
    /// (HTTP 404 in the simulator): that is no client, not a failure.
    #[tokio::test]
    async fn not_found_from_a_search_is_an_empty_result() {
        let (sim, client) = salon(Vec::new()).await;

        let found = client.find_customer("+79997770000").await.unwrap();

        assert_eq!(found, None);
        assert_eq!(sim.requests(), 1);
    }

    /// The simulator refuses (429) anything beyond 5 a second or N a window, as YCLIENTS
    /// does; the client keeps under both, so a walk longer than the window's allowance
    /// never meets a 429. The minute is scaled down to two seconds (and 200 to 8).
    #[tokio::test]
    async fn a_long_walk_stays_within_both_limits() {
        let sim = Simulator::start(Vendor::Yclients).await.unwrap();
        sim.limit_rate(&[(5, Duration::from_secs(1)), (8, Duration::from_secs(2))]);
        sim.add_sales(
            (0..12)
                .map(|i| {
                    Sale::purchase(
                        format!("{}", 5000 + i),
                        dec!(100),
                        datetime!(2026-03-02 13:00 UTC) + time::Duration::minutes(i),
                        "+79990001122",
                    )
                })
                .collect::<Vec<_>>(),
        );
        *sim.state.page_size.lock().unwrap() = Some(1);
        let client = HttpYclients::new(&Target::new(
            &sim.url,
            &Vendor::Yclients.credentials(),
            crate::test_egress(),
        ))
        .unwrap()
        // The same margins as `LIMITS`.
        .with_limiter(RateLimiter::new(&[
            (5, Duration::from_millis(1100)),
            (8, Duration::from_millis(2200)),
        ]));

        let got = client.fetch_transactions(afternoon()).await.unwrap();

        assert_eq!(got.len(), 12);
        assert_eq!(sim.requests(), 12);
        assert_eq!(sim.refused_over_limit(), 0, "no request beyond a limit");
    }

    /// Without the per-window limit the same walk is refused: the simulator enforces it.
    #[tokio::test]
    async fn the_simulator_refuses_requests_beyond_the_window_limit() {
        let sim = Simulator::start(Vendor::Yclients).await.unwrap();
        sim.limit_rate(&[(5, Duration::from_secs(1)), (8, Duration::from_secs(60))]);
        let http = crate::http_client(Duration::from_secs(5));
        let mut statuses = Vec::new();
        for _ in 0..10 {
            let reply = http
                .get(format!("{}/records/4564", sim.url))
                .send()
                .await
                .unwrap();
            statuses.push(reply.status().as_u16());
            tokio::time::sleep(Duration::from_millis(210)).await;
        }
        assert_eq!(
            statuses.iter().filter(|s| **s == 429).count(),
            2,
            "{statuses:?}"
        );
        assert_eq!(sim.refused_over_limit(), 2);
    }

    #[tokio::test]
    async fn bonuses_are_not_recorded_in_yclients() {
        let (_sim, client) = salon(Vec::new()).await;
        let customer = CrmCustomer {
            external_id: "1".to_owned(),
            phone: None,
            name: None,
        };

        assert!(!client.record_bonus(&customer, dec!(10), "x").await.unwrap());
    }

    #[test]
    fn credentials_without_a_numeric_company_id_are_refused() {
        let mut credentials = Vendor::Yclients.credentials();
        credentials["company_id"] = json!("salon");
        assert!(client("http://127.0.0.1:1", &credentials).is_err());
        credentials.as_object_mut().unwrap().remove("company_id");
        assert!(client("http://127.0.0.1:1", &credentials).is_err());
    }

    #[test]
    fn yclients_dates_are_read_with_and_without_the_offset_colon() {
        assert_eq!(
            parse_time("2019-01-16T20:35:15+0900"),
            Some(datetime!(2019-01-16 20:35:15 +09:00))
        );
        assert_eq!(
            parse_time("2019-01-16T16:00:00+09:00"),
            Some(datetime!(2019-01-16 16:00 +09:00))
        );
        assert_eq!(parse_time("2019-01-16 16:00:00"), None);
    }

    #[test]
    fn amounts_are_read_from_the_numbers_text() {
        assert_eq!(money(&json!(1234.57)), Some(dec!(1234.57)));
        assert_eq!(money(&json!("99.90")), Some(dec!(99.90)));
        assert_eq!(money(&json!(4500)), Some(dec!(4500)));
        assert_eq!(money(&json!(null)), None);
    }
}
