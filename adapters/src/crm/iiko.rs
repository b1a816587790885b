//! iiko (iikoCloud API, the gastromarket Лисичкино): delivery orders as purchases and
//! cancellations, and the iikoCard loyalty wallet.
//!
//! # What this client relies on, and where it was confirmed
//!
//! "The spec" below is iiko's OpenAPI document of the iikoCloud API as vendored in the
//! public repository `UserVanya/Iikocloud-py-sdk` (`openapi/upstream/iikocloud.openapi.json`,
//! and the models generated from it under `docs/` and `iikocloud_client/models/`).
//!
//! | what | confirmed in |
//! |---|---|
//! | `POST /api/v2/access_token {"appId", "clientSecret", "apiKey"}` → `{"correlationId", "token"}` (a JWT valid 1 hour, no refresh flow); `Authorization: Bearer {token}` on every other call | the spec (`Auth.GetAccessTokenV2Request`, `…V2Response`, and the operation's description) |
//! | `POST /api/1/access_token {"apiLogin"}` → `{"correlationId", "token"}`, the same hour: the deprecated login, still accepted as a second mode | the spec (`Auth.GetAccessTokenRequest`, marked `deprecated: true` in favour of `/api/v2/access_token`) |
//! | errors `{"correlationId", "errorDescription", "error"}` (`error` is the code); 401 for a bad token; **408** on every operation when the server-side timeout (the `Timeout` header, 15 s by default) runs out — a transient retry, not a failure | the spec (`Errors.ErrorResponse`, the responses and the `Timeout` parameter of every operation) |
//! | `POST /api/1/deliveries/by_delivery_date_and_status {organizationIds, deliveryDateFrom, deliveryDateTo, statuses}`, dates `yyyy-MM-dd HH:mm:ss.fff` local to the terminal; orders kept only for the last 7 days (a catch-up reaching further back is flagged to operators as incomplete, [`RETENTION`]); no paging | the spec (`TransportDeliveriesRequestOrdersByDeliveryDateAndStatusRequest`, the "date-time" format in its description) |
//! | reply `ordersByOrganizations[{organizationId, orders[{id, creationStatus, order}]}]`; `order{phone, status, sum, completeBefore, whenDelivered, whenClosed, cancelInfo{whenCancelled}, customer{name, surname}}`; statuses `Delivered`, `Closed`, `Cancelled` | the spec (`TransportDeliveriesResponseOrdersWithRevisionResponse`, `…OrderOrderInfo`, `…OrderOrder`, `…OrderCancelInfo`, `…OrderRegularCustomer`, `TransportDeliveriesCommonDeliveryStatus`) |
//! | `POST /api/1/loyalty/iiko/customer/info {organizationId, type: "phone", phone}` (or `type: "id", id`) → `{id, name, surname, phone, walletBalances[{id, name, type, balance}]}`, wallet type 1 = bonus program | the spec (`CustomerGetCustomerInfoByPhoneRequest`, `…ByIdRequest`, `CustomerGetCustomerInfoResponse`, `CustomerGuestBalanceInfo`); public integrations calling it with `type: "phone"` |
//! | `POST /api/1/loyalty/iiko/customer/wallet/topup {customerId, walletId, sum, comment, organizationId}` | the spec (`CustomersApi` "Refill balance", `CustomerChangeUserBalanceRequest`) |
//!
//! An unknown customer is recognised by the error *code* of the reply (the `error` field),
//! never by its text: `UserNotFound` is in the spec's `Errors.ErrorCode`; the loyalty
//! endpoints' own `Customer_CustomerNotFound` was seen in public integration code with HTTP
//! 400 and is **not confirmed** by the spec. The terminal's time zone is not in the order: we take Moscow time
//! ([`TERMINAL_OFFSET`]), where the partner is. Whether a closed order keeps `whenClosed` /
//! `whenDelivered` once cancelled is not documented (see below).
//!
//! # What counts
//!
//! The cloud API sees **delivery orders only** (in-store sales are in the restaurant
//! server's OLAP reports, which this client does not read).
//!
//! - An order `Delivered` or `Closed` is a purchase of its `sum` (after discounts), at
//!   `whenClosed` (else `whenDelivered`, else `completeBefore`).
//! - An order `Cancelled` that had been delivered or closed (`whenDelivered` / `whenClosed`
//!   set) is reported as that purchase *and* its cancellation `"{id}:cancel"` at
//!   `cancelInfo.whenCancelled`. An order cancelled before it was delivered was never a
//!   purchase and is left out; so is every other status.
//! - iiko filters by delivery date, not by change time: we ask for the window widened by
//!   [`LOOKBACK`] and [`LOOKAHEAD`], one day at a time, and keep the events (closing,
//!   cancellation) that fall in the window. An order closed or cancelled further than that
//!   from its delivery time is missed; `/deliveries/by_revision` would catch it, but needs a
//!   revision cursor the `CrmClient` trait does not carry.

use super::{ConfigError, CrmClient, CrmCustomer, CrmKind, CrmTransaction, Target, Window};
use crate::http::{RateLimiter, Reply, RetryPolicy, VendorError, Verdict, send, send_classified};
use async_trait::async_trait;
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use std::{
    collections::HashSet,
    str::FromStr,
    time::{Duration, Instant},
};
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset, macros::format_description};
use tokio::sync::Mutex;

/// The zone of the terminal's local times (Moscow, where the partner is; no DST since 2014).
pub const TERMINAL_OFFSET: UtcOffset = time::macros::offset!(+3);
/// How long after its delivery time an order may still be closed or cancelled and be seen.
pub const LOOKBACK: time::Duration = time::Duration::days(1);
/// How long before its delivery time a pre-order may be cancelled and be seen.
pub const LOOKAHEAD: time::Duration = time::Duration::days(1);
/// The longest delivery-date period asked for at once: the endpoint does not page, so a
/// long window is walked a day at a time to keep each reply small.
const SLICE: time::Duration = time::Duration::days(1);
/// The token lives an hour; renewing a little early saves a 401 round trip.
const TOKEN_TTL: Duration = Duration::from_secs(50 * 60);
/// iiko publishes no rate limit; this keeps one business's poll polite.
const REQUESTS_PER_SECOND: u32 = 10;
/// The statuses we read (everything else is an order still in progress).
const STATUSES: [&str; 3] = ["Delivered", "Closed", "Cancelled"];
/// iikoCloud keeps delivery orders this long: older ones cannot be read any more.
pub const RETENTION: time::Duration = time::Duration::days(7);
/// The error codes of "no such customer" (see the module docs).
const CUSTOMER_NOT_FOUND: [&str; 2] = ["UserNotFound", "Customer_CustomerNotFound"];

/// `crm_credentials` of an `iiko` integration: the v2 application credentials, or the
/// deprecated v1 `api_login`.
#[derive(Deserialize)]
struct Credentials {
    #[serde(default)]
    api_login: Option<SecretString>,
    #[serde(default)]
    app_id: Option<String>,
    #[serde(default)]
    client_secret: Option<SecretString>,
    #[serde(default)]
    api_key: Option<SecretString>,
    organization_id: String,
}

/// How we get a session token.
enum Login {
    /// `/api/v2/access_token`.
    Application {
        app_id: String,
        client_secret: SecretString,
        api_key: SecretString,
    },
    /// `/api/1/access_token` (deprecated by iiko).
    ApiLogin(SecretString),
}

/// iikoCloud over HTTPS, with its session token cached.
pub struct HttpIiko {
    http: reqwest::Client,
    base_url: String,
    login: Login,
    organization_id: String,
    policy: RetryPolicy,
    limiter: RateLimiter,
    /// Held while a token is fetched, so that concurrent calls fetch one.
    token: Mutex<Option<Token>>,
}

struct Token {
    value: SecretString,
    fetched: Instant,
}

impl HttpIiko {
    /// Reads the credentials: `organization_id`, and `app_id` + `client_secret` + `api_key`
    /// (v2) or `api_login` (v1).
    pub fn new(target: &Target<'_>) -> Result<Self, ConfigError> {
        let base_url = target.checked_base()?;
        let creds: Credentials = super::credentials("iiko", target.credentials)?;
        let filled = |s: &Option<SecretString>| {
            s.as_ref()
                .filter(|s| !s.expose_secret().trim().is_empty())
                .cloned()
        };
        let login = match (
            creds.app_id.filter(|a| !a.trim().is_empty()),
            filled(&creds.client_secret),
            filled(&creds.api_key),
            filled(&creds.api_login),
        ) {
            (Some(app_id), Some(client_secret), Some(api_key), _) => Login::Application {
                app_id,
                client_secret,
                api_key,
            },
            (None, None, None, Some(api_login)) => Login::ApiLogin(api_login),
            _ => {
                return Err(ConfigError(
                    "iiko credentials: give app_id, client_secret and api_key (or the deprecated api_login)"
                        .to_owned(),
                ));
            }
        };
        if creds.organization_id.trim().is_empty() {
            return Err(ConfigError(
                "iiko credentials: organization_id must not be empty".to_owned(),
            ));
        }
        Ok(Self {
            http: target.egress.client(Duration::from_secs(30), Vec::new()),
            base_url,
            login,
            organization_id: creds.organization_id.trim().to_owned(),
            policy: RetryPolicy::default(),
            limiter: RateLimiter::per_second(REQUESTS_PER_SECOND),
            token: Mutex::new(None),
        })
    }

    /// The cached token, or a new one.
    async fn token(&self) -> Result<String, VendorError> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| t.fetched.elapsed() < TOKEN_TTL) {
            return Ok(token.value.expose_secret().to_owned());
        }
        let (path, body) = match &self.login {
            Login::Application {
                app_id,
                client_secret,
                api_key,
            } => (
                "/api/v2/access_token",
                json!({"appId": app_id, "clientSecret": client_secret.expose_secret(), "apiKey": api_key.expose_secret()}),
            ),
            Login::ApiLogin(api_login) => (
                "/api/1/access_token",
                json!({"apiLogin": api_login.expose_secret()}),
            ),
        };
        let url = format!("{}{path}", self.base_url);
        let reply = send(&self.policy, Some(&self.limiter), || {
            self.http.post(&url).json(&body)
        })
        .await?;
        let value = serde_json::from_str::<Value>(&reply.body)
            .ok()
            .and_then(|v| v.get("token")?.as_str().map(str::to_owned))
            .filter(|t| !t.is_empty())
            .ok_or_else(|| VendorError::unreadable("an iiko token reply without a token"))?;
        *cached = Some(Token {
            value: value.clone().into(),
            fetched: Instant::now(),
        });
        Ok(value)
    }

    /// Forgets `stale`, unless another call has already replaced it.
    async fn forget(&self, stale: &str) {
        let mut cached = self.token.lock().await;
        if cached
            .as_ref()
            .is_some_and(|t| t.value.expose_secret() == stale)
        {
            *cached = None;
        }
    }

    /// POSTs `body` to `path` with the token; a 401 (an expired or revoked token) gets one
    /// new token and one more try. `Ok(None)`: iiko said the customer does not exist.
    async fn post(
        &self,
        policy: &RetryPolicy,
        path: &str,
        body: &Value,
    ) -> Result<Option<Reply>, VendorError> {
        let url = format!("{}{path}", self.base_url);
        let call = |token: String| {
            let url = &url;
            async move {
                let reply = send_classified(
                    policy,
                    Some(&self.limiter),
                    |status, body| {
                        if status == 400
                            && error_code(body)
                                .is_some_and(|c| CUSTOMER_NOT_FOUND.contains(&c.as_str()))
                        {
                            Verdict::Accept
                        } else {
                            Verdict::Generic
                        }
                    },
                    || self.http.post(url).bearer_auth(&token).json(body),
                )
                .await?;
                Ok((reply.status < 300).then_some(reply))
            }
        };
        let token = self.token().await?;
        match call(token.clone()).await {
            Err(VendorError::Unauthorized { .. }) => {
                self.forget(&token).await;
                call(self.token().await?).await
            }
            other => other,
        }
    }

    /// The orders delivered (or due) between `from` and `to`, each once.
    async fn orders(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<OrderInfo>, VendorError> {
        let mut orders = Vec::new();
        let mut seen = HashSet::new();
        let mut slice_from = from;
        while slice_from < to {
            let slice_to = (slice_from + SLICE).min(to);
            let body = json!({
                "organizationIds": [self.organization_id],
                "deliveryDateFrom": terminal_time(slice_from),
                "deliveryDateTo": terminal_time(slice_to),
                "statuses": STATUSES,
            });
            let reply = self
                .post(
                    &self.policy,
                    "/api/1/deliveries/by_delivery_date_and_status",
                    &body,
                )
                .await?
                .ok_or_else(|| {
                    VendorError::unreadable(
                        "iiko answered a delivery listing with `customer not found`",
                    )
                })?;
            let parsed: OrdersReply = serde_json::from_str(&reply.body)
                .map_err(|_| VendorError::malformed(&reply.body))?;
            for group in parsed.orders_by_organizations {
                // Slices overlap at their edges, and iiko may deliver an order twice.
                orders.extend(
                    group
                        .orders
                        .into_iter()
                        .filter(|o| seen.insert(o.id.clone())),
                );
            }
            slice_from = slice_to;
        }
        Ok(orders)
    }

    /// `/loyalty/iiko/customer/info` by `key` (`phone` or `id`); `None` for an unknown one.
    async fn customer_info(
        &self,
        key: &str,
        value: &str,
    ) -> Result<Option<CustomerInfo>, VendorError> {
        let mut body = serde_json::Map::new();
        body.insert("organizationId".to_owned(), json!(self.organization_id));
        body.insert("type".to_owned(), json!(key));
        body.insert(key.to_owned(), json!(value));
        let body = Value::Object(body);
        match self
            .post(&self.policy, "/api/1/loyalty/iiko/customer/info", &body)
            .await?
        {
            Some(reply) => serde_json::from_str(&reply.body)
                .map(Some)
                .map_err(|_| VendorError::malformed(&reply.body)),
            None => Ok(None),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrdersReply {
    orders_by_organizations: Vec<OrdersOfOrganization>,
}

#[derive(Deserialize)]
struct OrdersOfOrganization {
    #[serde(default)]
    orders: Vec<OrderInfo>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderInfo {
    id: String,
    #[serde(default)]
    creation_status: Option<String>,
    /// Filled when `creationStatus` is `Success`.
    #[serde(default)]
    order: Option<Order>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Order {
    #[serde(default)]
    phone: Option<String>,
    status: String,
    #[serde(default)]
    sum: Value,
    #[serde(default)]
    complete_before: Option<String>,
    #[serde(default)]
    when_delivered: Option<String>,
    #[serde(default)]
    when_closed: Option<String>,
    #[serde(default)]
    cancel_info: Option<CancelInfo>,
    #[serde(default)]
    customer: Option<OrderCustomer>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CancelInfo {
    #[serde(default)]
    when_cancelled: Option<String>,
}

#[derive(Deserialize)]
struct OrderCustomer {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    surname: Option<String>,
}

impl OrderInfo {
    /// What this order means for the window, or why it is unreadable.
    fn transactions(&self, window: Window) -> Result<Vec<CrmTransaction>, String> {
        let Some(order) = self.order.as_ref() else {
            return Ok(Vec::new());
        };
        if self
            .creation_status
            .as_deref()
            .is_some_and(|s| s != "Success")
        {
            return Ok(Vec::new());
        }
        let id = &self.id;
        let local_time =
            |field: &Option<String>, name: &str| -> Result<Option<OffsetDateTime>, String> {
                match field.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
                    None => Ok(None),
                    Some(text) => parse_terminal_time(text)
                        .map(Some)
                        .ok_or_else(|| format!("order {id} has an unreadable {name}")),
                }
            };
        let due = local_time(&order.complete_before, "completeBefore")?;
        let served = local_time(&order.when_closed, "whenClosed")?
            .or(local_time(&order.when_delivered, "whenDelivered")?);
        let in_window = |t: OffsetDateTime| t >= window.from && t < window.to;
        let (purchase_at, cancelled_at) = match order.status.as_str() {
            "Delivered" | "Closed" => match served.or(due) {
                Some(at) if in_window(at) => (at, None),
                Some(_) => return Ok(Vec::new()),
                None => return Err(format!("order {id} has no time")),
            },
            "Cancelled" => {
                // Cancelled before it was delivered or closed: never a purchase.
                let Some(served_at) = served else {
                    return Ok(Vec::new());
                };
                let cancelled = local_time(
                    &order
                        .cancel_info
                        .as_ref()
                        .and_then(|c| c.when_cancelled.clone()),
                    "cancelInfo.whenCancelled",
                )?
                .or(due)
                .ok_or_else(|| format!("order {id} has no cancellation time"))?;
                if !in_window(cancelled) {
                    return Ok(Vec::new());
                }
                (served_at, Some(cancelled))
            }
            _ => return Ok(Vec::new()),
        };
        let amount =
            money(&order.sum).ok_or_else(|| format!("order {id} has an unreadable sum"))?;
        if amount <= Decimal::ZERO {
            return Ok(Vec::new());
        }
        let name = order.customer.as_ref().and_then(|c| {
            let parts: Vec<&str> = [c.name.as_deref(), c.surname.as_deref()]
                .into_iter()
                .flatten()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            (!parts.is_empty()).then(|| parts.join(" "))
        });
        let purchase = CrmTransaction {
            external_id: id.clone(),
            kind: CrmKind::Purchase,
            amount,
            occurred_at: purchase_at,
            customer_phone: order
                .phone
                .as_deref()
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned),
            customer_name: name,
            is_medical: false,
        };
        Ok(match cancelled_at {
            None => vec![purchase],
            Some(at) => {
                let cancellation = CrmTransaction {
                    external_id: format!("{id}:cancel"),
                    kind: CrmKind::Refund {
                        original_external_id: id.clone(),
                    },
                    occurred_at: at,
                    ..purchase.clone()
                };
                vec![purchase, cancellation]
            }
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CustomerInfo {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    surname: Option<String>,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    wallet_balances: Vec<Wallet>,
}

#[derive(Deserialize)]
struct Wallet {
    #[serde(default)]
    id: Option<String>,
    #[serde(default, rename = "type")]
    kind: Value,
}

impl Wallet {
    /// Wallet type 1 is a bonus program (the spec's `CustomerGuestBalanceInfo`).
    fn is_bonus(&self) -> bool {
        match &self.kind {
            Value::Number(n) => n.as_i64() == Some(1),
            Value::String(s) => s.trim() == "1",
            _ => false,
        }
    }
}

#[async_trait]
impl CrmClient for HttpIiko {
    fn vendor(&self) -> &'static str {
        "iiko"
    }

    fn keeps_records_for(&self) -> Option<time::Duration> {
        Some(RETENTION)
    }

    async fn fetch_transactions(&self, window: Window) -> Result<Vec<CrmTransaction>, VendorError> {
        if window.from >= window.to {
            return Ok(Vec::new());
        }
        let orders = self
            .orders(window.from - LOOKBACK, window.to + LOOKAHEAD)
            .await?;
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for order in &orders {
            let found = order
                .transactions(window)
                .map_err(|why| VendorError::unreadable(format!("iiko: {why}")))?;
            out.extend(
                found
                    .into_iter()
                    .filter(|t| seen.insert(t.external_id.clone())),
            );
        }
        out.sort_by_key(|t| t.occurred_at);
        Ok(out)
    }

    async fn find_customer(&self, phone: &str) -> Result<Option<CrmCustomer>, VendorError> {
        let Some(info) = self.customer_info("phone", phone).await? else {
            return Ok(None);
        };
        let Some(external_id) = info.id.filter(|id| !id.is_empty()) else {
            return Ok(None);
        };
        let name = [info.name, info.surname]
            .into_iter()
            .flatten()
            .filter(|s| !s.trim().is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Some(CrmCustomer {
            external_id,
            phone: info.phone,
            name: (!name.is_empty()).then_some(name),
        }))
    }

    /// Tops up the customer's bonus wallet. `Ok(false)` when there is nothing to record
    /// (a non-positive amount, an unknown customer, no bonus wallet).
    ///
    /// iiko takes no idempotency key for a top-up, so it is never retried here: a retry
    /// after a timeout could credit twice. A failure is for the caller to reconcile.
    async fn record_bonus(
        &self,
        customer: &CrmCustomer,
        amount: Decimal,
        comment: &str,
    ) -> Result<bool, VendorError> {
        if amount <= Decimal::ZERO {
            return Ok(false);
        }
        let Some(info) = self.customer_info("id", &customer.external_id).await? else {
            return Ok(false);
        };
        let Some(wallet_id) = info
            .wallet_balances
            .iter()
            .find(|w| w.is_bonus())
            .and_then(|w| w.id.clone())
        else {
            return Ok(false);
        };
        let sum = serde_json::Number::from_str(&amount.normalize().to_string()).map_err(|_| {
            VendorError::unreadable(format!("an amount iiko cannot take: {amount}"))
        })?;
        let body = json!({
            "customerId": customer.external_id,
            "walletId": wallet_id,
            "sum": sum,
            "comment": comment,
            "organizationId": self.organization_id,
        });
        let once = RetryPolicy {
            attempts: 1,
            ..self.policy
        };
        self.post(&once, "/api/1/loyalty/iiko/customer/wallet/topup", &body)
            .await?;
        Ok(true)
    }
}

/// The error code (`error`) of an iiko error reply.
fn error_code(body: &str) -> Option<String> {
    serde_json::from_str::<Value>(body)
        .ok()?
        .get("error")?
        .as_str()
        .map(str::to_owned)
}

/// `yyyy-MM-dd HH:mm:ss.fff` in the terminal's zone.
fn terminal_time(at: OffsetDateTime) -> String {
    at.to_offset(TERMINAL_OFFSET)
        .format(format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]"
        ))
        .unwrap_or_default()
}

/// A terminal-local time, with or without milliseconds.
fn parse_terminal_time(text: &str) -> Option<OffsetDateTime> {
    let with_ms = format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond]");
    let without = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    PrimitiveDateTime::parse(text, with_ms)
        .or_else(|_| PrimitiveDateTime::parse(text, without))
        .ok()
        .map(|t| t.assume_offset(TERMINAL_OFFSET))
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

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;
    use simulators::{Fault, Sale, Simulator, Vendor};
    use std::sync::atomic::Ordering;
    use time::macros::datetime;

    /// The poll window most tests ask for: one evening of deliveries.
    fn evening() -> Window {
        Window {
            from: datetime!(2026-03-02 15:00 UTC),
            to: datetime!(2026-03-02 21:00 UTC),
        }
    }

    /// Three deliveries of the evening, with kopecks that a float would lose.
    fn three_deliveries() -> Vec<Sale> {
        vec![
            Sale::purchase(
                "0f8c2a5e-0001-4c1e-9d6a-000000000001",
                dec!(1890.00),
                datetime!(2026-03-02 15:30 UTC),
                "+79991234567",
            ),
            Sale::purchase(
                "0f8c2a5e-0002-4c1e-9d6a-000000000002",
                dec!(745.37),
                datetime!(2026-03-02 18:05 UTC),
                "89991112233",
            ),
            Sale::purchase(
                "0f8c2a5e-0003-4c1e-9d6a-000000000003",
                dec!(0.01),
                datetime!(2026-03-02 20:59:59 UTC),
                "+7 999 000-11-22",
            ),
        ]
    }

    fn client(url: &str, credentials: &Value) -> Result<Box<dyn CrmClient>, ConfigError> {
        crate::crm::client(
            domain::crm::CrmType::Iiko,
            &Target::new(url, credentials, crate::test_egress()),
        )
    }

    async fn market(sales: Vec<Sale>) -> (Simulator, Box<dyn CrmClient>) {
        let sim = Simulator::start(Vendor::Iiko).await.unwrap();
        // iiko keeps orders a week: the simulated vendor's "now" is the tests' day.
        sim.set_now(datetime!(2026-03-03 00:00 UTC));
        sim.add_sales(sales);
        let client = client(&sim.url, &Vendor::Iiko.credentials()).unwrap();
        (sim, client)
    }

    fn ids(transactions: &[CrmTransaction]) -> Vec<&str> {
        transactions
            .iter()
            .map(|t| t.external_id.as_str())
            .collect()
    }

    fn short(id: &str) -> &str {
        &id[..13]
    }

    #[tokio::test]
    async fn closed_orders_of_the_window_are_purchases_with_exact_sums() {
        let (sim, client) = market(three_deliveries()).await;

        let got = client.fetch_transactions(evening()).await.unwrap();

        let amounts: Vec<Decimal> = got.iter().map(|t| t.amount).collect();
        assert_eq!(amounts, [dec!(1890.00), dec!(745.37), dec!(0.01)]);
        assert!(got.iter().all(|t| t.kind == CrmKind::Purchase));
        assert_eq!(got[1].customer_phone.as_deref(), Some("89991112233"));
        assert_eq!(got[0].occurred_at, datetime!(2026-03-02 15:30 UTC));
        // One token, then the padded window asked for one day at a time.
        assert!(sim.requests() >= 3, "{}", sim.requests());
    }

    /// The endpoint does not page: a long window is asked for a day at a time instead.
    #[tokio::test]
    async fn a_window_of_several_days_is_walked_a_day_at_a_time() {
        let sales: Vec<Sale> = (0..5)
            .map(|day| {
                Sale::purchase(
                    format!("d{day}"),
                    dec!(100),
                    datetime!(2026-03-01 12:00 UTC) + time::Duration::days(day),
                    "+79991234567",
                )
            })
            .collect();
        let (sim, client) = market(sales).await;
        let week = Window {
            from: datetime!(2026-03-01 00:00 UTC),
            to: datetime!(2026-03-06 00:00 UTC),
        };

        let got = client.fetch_transactions(week).await.unwrap();

        assert_eq!(ids(&got), ["d0", "d1", "d2", "d3", "d4"]);
        // A token, then 5 days widened by a day each way: 7 requests of a day.
        assert_eq!(sim.requests(), 1 + 7);
    }

    #[tokio::test]
    async fn orders_closed_outside_the_window_are_left_out() {
        let mut sales = three_deliveries();
        sales.push(Sale::purchase(
            "early",
            dec!(10),
            datetime!(2026-03-02 14:59:59 UTC),
            "+79991234567",
        ));
        sales.push(Sale::purchase(
            "late",
            dec!(10),
            datetime!(2026-03-02 21:00 UTC),
            "+79991234567",
        ));
        let (_sim, client) = market(sales).await;

        let got = client.fetch_transactions(evening()).await.unwrap();

        let got: Vec<&str> = ids(&got).into_iter().map(short).collect();
        assert_eq!(got, ["0f8c2a5e-0001", "0f8c2a5e-0002", "0f8c2a5e-0003"]);
    }

    /// An order cancelled after it was delivered is reported with its cancellation.
    #[tokio::test]
    async fn a_cancelled_delivery_is_reported_with_its_cancellation() {
        let mut cancelled = Sale::purchase(
            "7a1d",
            dec!(2100.40),
            datetime!(2026-03-02 19:00 UTC),
            "+79995556677",
        );
        cancelled.cancelled = true;
        let (_sim, client) = market(vec![cancelled]).await;

        let got = client.fetch_transactions(evening()).await.unwrap();

        assert_eq!(ids(&got), ["7a1d", "7a1d:cancel"]);
        assert_eq!(
            got[1].kind,
            CrmKind::Refund {
                original_external_id: "7a1d".to_owned()
            }
        );
        assert_eq!(got[1].amount, dec!(2100.40));
    }

    /// A refund is iiko's cancellation of the delivered order.
    #[tokio::test]
    async fn a_refunded_delivery_is_reported_as_its_cancellation() {
        let mut sales = three_deliveries();
        sales.push(Sale {
            refund_of: Some("0f8c2a5e-0002-4c1e-9d6a-000000000002".to_owned()),
            ..Sale::purchase(
                "refund-1",
                dec!(745.37),
                datetime!(2026-03-02 20:00 UTC),
                "89991112233",
            )
        });
        let (_sim, client) = market(sales).await;

        let got = client.fetch_transactions(evening()).await.unwrap();

        let cancellation = got
            .iter()
            .find(|t| t.external_id == "0f8c2a5e-0002-4c1e-9d6a-000000000002:cancel")
            .expect("the cancellation");
        assert_eq!(cancellation.occurred_at, datetime!(2026-03-02 20:00 UTC));
        assert_eq!(got.len(), 4);
    }

    #[tokio::test]
    async fn an_order_delivered_twice_is_reported_once() {
        let (sim, client) = market(three_deliveries()).await;
        sim.state.duplicate.store(true, Ordering::SeqCst);

        let got = client.fetch_transactions(evening()).await.unwrap();

        assert_eq!(got.len(), 3);
    }

    #[tokio::test]
    async fn a_429_is_retried_after_the_retry_after_delay() {
        let (sim, client) = market(three_deliveries()).await;
        sim.inject([Fault::RateLimited { retry_after_s: 1 }]);
        let started = std::time::Instant::now();

        let got = client.fetch_transactions(evening()).await.unwrap();

        assert_eq!(got.len(), 3);
        assert!(started.elapsed() >= Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_500_is_retried_and_then_succeeds() {
        let (sim, client) = market(three_deliveries()).await;
        client.fetch_transactions(evening()).await.unwrap();
        let before = sim.requests();
        sim.inject([Fault::ServerError]);

        let got = client.fetch_transactions(evening()).await.unwrap();

        assert_eq!(got.len(), 3);
        assert_eq!(sim.requests() - before, 3 + 1, "three slices and one retry");
    }

    #[tokio::test]
    async fn a_refused_api_login_is_unauthorized() {
        let (sim, client) = market(three_deliveries()).await;
        sim.inject([Fault::Unauthorized]);

        let error = client.fetch_transactions(evening()).await.unwrap_err();

        assert!(
            matches!(error, VendorError::Unauthorized { status: 401, .. }),
            "{error:?}"
        );
        assert_eq!(sim.requests(), 1);
    }

    #[tokio::test]
    async fn a_wrong_api_login_is_unauthorized() {
        let sim = Simulator::start(Vendor::Iiko).await.unwrap();
        let mut credentials = Vendor::Iiko.credentials();
        credentials["api_login"] = json!("someone-else");
        let client = client(&sim.url, &credentials).unwrap();

        let error = client.fetch_transactions(evening()).await.unwrap_err();

        assert!(
            matches!(error, VendorError::Unauthorized { .. }),
            "{error:?}"
        );
    }

    /// The token is fetched once and reused; a 401 later gets one new token and one retry.
    #[tokio::test]
    async fn an_expired_token_is_renewed_once_and_the_call_repeated() {
        let (sim, client) = market(three_deliveries()).await;
        client.fetch_transactions(evening()).await.unwrap();
        let first = sim.requests();
        assert_eq!(first, 1 + 3, "one token for three slices");
        sim.inject([Fault::Unauthorized]);

        let got = client.fetch_transactions(evening()).await.unwrap();

        assert_eq!(got.len(), 3);
        assert_eq!(
            sim.requests() - first,
            1 + 1 + 3,
            "the refused call, a new token, the call again and the other two slices"
        );
    }

    #[tokio::test]
    async fn a_token_refused_again_after_renewal_is_unauthorized() {
        let (sim, client) = market(three_deliveries()).await;
        client.fetch_transactions(evening()).await.unwrap();
        sim.inject([Fault::Unauthorized, Fault::Unauthorized]);

        let error = client.fetch_transactions(evening()).await.unwrap_err();

        assert!(
            matches!(error, VendorError::Unauthorized { .. }),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_malformed_body_is_reported_as_malformed() {
        let (sim, client) = market(three_deliveries()).await;
        client.fetch_transactions(evening()).await.unwrap();
        sim.inject([Fault::Malformed]);

        let error = client.fetch_transactions(evening()).await.unwrap_err();

        assert!(matches!(error, VendorError::Malformed { .. }), "{error:?}");
    }

    #[tokio::test]
    async fn a_customer_is_found_by_phone_and_an_unknown_phone_is_none() {
        let (_sim, client) = market(three_deliveries()).await;

        let found = client.find_customer("+79991112233").await.unwrap().unwrap();

        assert_eq!(found.phone.as_deref(), Some("89991112233"));
        assert!(!found.external_id.is_empty());
        assert_eq!(client.find_customer("+79997770000").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_bonus_tops_up_the_customers_bonus_wallet() {
        let (sim, client) = market(three_deliveries()).await;
        let customer = client.find_customer("+79991234567").await.unwrap().unwrap();

        let recorded = client
            .record_bonus(&customer, dec!(56.70), "Свой Круг: кешбэк")
            .await
            .unwrap();

        assert!(recorded);
        assert_eq!(bonus_balance(&sim, "+79991234567").await, dec!(56.70));
    }

    /// The bonus balance iiko shows for a phone, read the way any iiko client would.
    async fn bonus_balance(sim: &Simulator, phone: &str) -> Decimal {
        let http = crate::http_client(Duration::from_secs(5));
        let login = Vendor::Iiko.credentials();
        let token: Value = http
            .post(format!("{}/api/1/access_token", sim.url))
            .json(&json!({"apiLogin": login["api_login"]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let info: Value = http
            .post(format!("{}/api/1/loyalty/iiko/customer/info", sim.url))
            .bearer_auth(token["token"].as_str().unwrap())
            .json(&json!({"organizationId": login["organization_id"], "type": "phone", "phone": phone}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        money(&info["walletBalances"][0]["balance"]).unwrap()
    }

    #[test]
    fn terminal_times_are_moscow_wall_clock_with_milliseconds() {
        let at = datetime!(2026-03-02 15:30:00.25 UTC);
        assert_eq!(terminal_time(at), "2026-03-02 18:30:00.250");
        assert_eq!(parse_terminal_time("2026-03-02 18:30:00.250"), Some(at));
        assert_eq!(
            parse_terminal_time("2026-03-02 18:30:00"),
            Some(datetime!(2026-03-02 15:30 UTC))
        );
    }

    #[test]
    fn credentials_need_a_login_and_an_organization() {
        let mut credentials = Vendor::Iiko.credentials();
        credentials["organization_id"] = json!("");
        assert!(client("http://127.0.0.1:1", &credentials).is_err());
        credentials.as_object_mut().unwrap().remove("api_login");
        assert!(client("http://127.0.0.1:1", &credentials).is_err());
        let mut partial = simulators::iiko_application_credentials();
        partial.as_object_mut().unwrap().remove("api_key");
        assert!(client("http://127.0.0.1:1", &partial).is_err());
    }

    /// iiko answers 408 when its server-side timeout runs out (documented on every
    /// operation): the call is repeated, and the window is read.
    #[tokio::test]
    async fn a_408_is_a_transient_timeout_that_is_retried() {
        let (sim, client) = market(three_deliveries()).await;
        client.fetch_transactions(evening()).await.unwrap();
        sim.inject([Fault::RequestTimeout]);

        let got = client.fetch_transactions(evening()).await.unwrap();

        assert_eq!(got.len(), 3);
    }

    /// A 408 that does not go away is an outage to retry later, not a refusal.
    #[tokio::test]
    async fn a_408_that_persists_is_transient() {
        let (sim, client) = market(three_deliveries()).await;
        client.fetch_transactions(evening()).await.unwrap();
        sim.inject(std::iter::repeat_n(Fault::RequestTimeout, 4));

        let error = client.fetch_transactions(evening()).await.unwrap_err();

        assert!(error.is_transient(), "{error:?}");
        assert!(
            matches!(error, VendorError::Unavailable { .. }),
            "{error:?}"
        );
    }

    /// The v2 login (`appId`, `clientSecret`, `apiKey`) gets a token the API takes.
    #[tokio::test]
    async fn the_v2_application_login_reads_the_window() {
        let sim = Simulator::start(Vendor::Iiko).await.unwrap();
        sim.set_now(datetime!(2026-03-03 00:00 UTC));
        sim.add_sales(three_deliveries());
        let client = client(&sim.url, &simulators::iiko_application_credentials()).unwrap();

        let got = client.fetch_transactions(evening()).await.unwrap();

        assert_eq!(got.len(), 3);
        let mut wrong = simulators::iiko_application_credentials();
        wrong["client_secret"] = json!("revoked");
        let refused = crate::crm::client(
            domain::crm::CrmType::Iiko,
            &Target::new(&sim.url, &wrong, crate::test_egress()),
        )
        .unwrap()
        .fetch_transactions(evening())
        .await
        .unwrap_err();
        assert!(
            matches!(refused, VendorError::Unauthorized { .. }),
            "{refused:?}"
        );
    }

    /// iiko keeps orders a week: older ones are not listed any more, and the client says
    /// how long the vendor keeps them so that a longer catch-up is flagged.
    #[tokio::test]
    async fn orders_older_than_a_week_are_gone() {
        let sim = Simulator::start(Vendor::Iiko).await.unwrap();
        sim.set_now(datetime!(2026-03-12 00:00 UTC));
        sim.add_sales(three_deliveries());
        let client = client(&sim.url, &Vendor::Iiko.credentials()).unwrap();

        let got = client.fetch_transactions(evening()).await.unwrap();

        assert!(got.is_empty(), "{got:?}");
        assert_eq!(client.keeps_records_for(), Some(time::Duration::days(7)));
    }

    /// "No such customer" is read from the error code, whatever the text says.
    #[tokio::test]
    async fn an_unknown_customer_is_recognised_by_the_error_code_not_the_text() {
        use wiremock::{Mock, MockServer, ResponseTemplate, matchers::path};
        let server = MockServer::start().await;
        Mock::given(path("/api/1/access_token"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"correlationId": "c", "token": "t"})),
            )
            .mount(&server)
            .await;
        let reply = |code: &str, text: &str| {
            ResponseTemplate::new(400).set_body_json(
                json!({"correlationId": "c", "errorDescription": text, "error": code}),
            )
        };
        Mock::given(path("/api/1/loyalty/iiko/customer/info"))
            .respond_with(reply("Customer_CustomerNotFound", "Клиент не найден"))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(path("/api/1/loyalty/iiko/customer/info"))
            .respond_with(reply("Common", "There is no user with phone 79990000000"))
            .mount(&server)
            .await;
        let client = client(&server.uri(), &Vendor::Iiko.credentials()).unwrap();

        assert_eq!(client.find_customer("+79990000000").await.unwrap(), None);
        let error = client.find_customer("+79990000000").await.unwrap_err();
        assert!(
            matches!(error, VendorError::Rejected { status: 400, .. }),
            "{error:?}"
        );
    }
}
