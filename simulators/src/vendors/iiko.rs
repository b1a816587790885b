//! iiko (iikoCloud API): delivery orders of one organization and its iikoCard customers, in
//! the shapes of iiko's OpenAPI document.
//!
//! - `POST /api/v2/access_token {"appId", "clientSecret", "apiKey"}` and the deprecated
//!   `POST /api/1/access_token {"apiLogin"}` → `{"correlationId", "token"}`; every other
//!   call needs `Authorization: Bearer {token}` of a token issued here (401 otherwise).
//!   Tokens do not expire here: an expired one is simulated with `Fault::Unauthorized`.
//! - Delivery orders are kept 7 days (before the vendor's "now", `Simulator::set_now`):
//!   older ones are not listed, as the spec of `by_delivery_date_and_status` says.
//! - `Fault::RequestTimeout` is iiko's 408 (its server-side timeout, on every operation).
//! - `POST /api/1/deliveries/by_delivery_date_and_status` with `organizationIds`,
//!   `deliveryDateFrom` / `deliveryDateTo` (`yyyy-MM-dd HH:mm:ss.fff`, Moscow time, the
//!   terminal's) and `statuses`. Like iiko, it answers the whole period at once: there is no
//!   paging, so `State::page_size` does not apply.
//! - `POST /api/1/loyalty/iiko/customer/info` (`type: "phone"` or `"id"`) and
//!   `POST /api/1/loyalty/iiko/customer/wallet/topup`. Customers are the phones of the
//!   sales; each has one bonus wallet (type 1), starting empty. An unknown phone is a 400
//!   with "There is no user with phone …", as public integrations show iiko answering.
//! - Errors are `{"correlationId", "errorDescription", "error"}`.
//!
//! Each sale is a delivery order, delivered and closed at the sale's time (its delivery
//! date). Orders are shown in their current state: a cancelled sale, or a sale with a
//! refund, is its order `Cancelled` (iiko has no refund documents for a delivery), still
//! carrying the time it was delivered.

use crate::{Sale, State, Vendor};
use poem::{
    EndpointExt, Request, Response, Route, handler,
    http::StatusCode,
    web::{Data, Json},
};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::{
    collections::{HashMap, HashSet},
    str::FromStr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};
use time::{
    OffsetDateTime, PrimitiveDateTime, UtcOffset,
    macros::{format_description, offset},
};

/// The terminal's zone: iiko's dates are local to it and carry no offset.
const TERMINAL_OFFSET: UtcOffset = offset!(+3);
/// How long iiko keeps delivery orders.
const RETENTION: time::Duration = time::Duration::days(7);
/// The id of every customer's bonus wallet.
const BONUS_WALLET_ID: &str = "5b1b4a36-2d53-4c8a-9f0e-b0b0b0b0b0b1";

/// What the iiko simulator keeps besides the sales: issued tokens and wallet balances.
struct Iiko {
    state: Arc<State>,
    tokens: Mutex<HashSet<String>>,
    wallets: Mutex<HashMap<String, Decimal>>,
    counter: AtomicU64,
}

impl Iiko {
    fn correlation_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        format!("00000000-0000-4000-8000-{n:012x}")
    }

    fn error(&self, status: StatusCode, description: &str, code: &str) -> Response {
        Response::builder()
            .status(status)
            .content_type("application/json")
            .body(
                json!({
                    "correlationId": self.correlation_id(),
                    "errorDescription": description,
                    "error": code,
                })
                .to_string(),
            )
    }

    /// The refusal, unless the bearer token of the request was issued here.
    fn check_token(&self, req: &Request) -> Option<Response> {
        let token = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match token {
            Some(token) if self.tokens.lock().unwrap().contains(token) => None,
            _ => Some(self.error(
                StatusCode::UNAUTHORIZED,
                "Authorization failed: the token is missing, invalid or expired",
                "Unauthorized",
            )),
        }
    }

    /// The refusal, unless the request names our organization (and no other).
    fn check_organization(&self, ids: &[&str]) -> Option<Response> {
        let ours = organization_id();
        if ids.is_empty() || ids.iter().any(|id| *id != ours) {
            return Some(self.error(
                StatusCode::BAD_REQUEST,
                "Access to the organization is denied for this apiLogin",
                "Common",
            ));
        }
        None
    }
}

pub(crate) fn routes(state: Arc<State>) -> Route {
    let iiko = Arc::new(Iiko {
        state,
        tokens: Mutex::new(HashSet::new()),
        wallets: Mutex::new(HashMap::new()),
        counter: AtomicU64::new(1),
    });
    Route::new()
        .at(
            "/api/1/access_token",
            poem::post(access_token).data(iiko.clone()),
        )
        .at(
            "/api/v2/access_token",
            poem::post(access_token_v2).data(iiko.clone()),
        )
        .at(
            "/api/1/deliveries/by_delivery_date_and_status",
            poem::post(deliveries).data(iiko.clone()),
        )
        .at(
            "/api/1/loyalty/iiko/customer/info",
            poem::post(customer_info).data(iiko.clone()),
        )
        .at(
            "/api/1/loyalty/iiko/customer/wallet/topup",
            poem::post(wallet_topup).data(iiko),
        )
}

#[handler]
fn access_token(Json(body): Json<Value>, Data(iiko): Data<&Arc<Iiko>>) -> Response {
    let expected = Vendor::Iiko.credentials()["api_login"].clone();
    let given = body.get("apiLogin").cloned().unwrap_or(Value::Null);
    if given != expected {
        return iiko.error(
            StatusCode::UNAUTHORIZED,
            "Login is not authorized: unknown apiLogin",
            "Unauthorized",
        );
    }
    iiko.issue_token(&given.to_string())
}

#[handler]
fn access_token_v2(Json(body): Json<Value>, Data(iiko): Data<&Arc<Iiko>>) -> Response {
    let expected = crate::iiko_application_credentials();
    let given = |ours: &str, theirs: &str| {
        body.get(theirs).cloned().unwrap_or(Value::Null) == expected[ours]
    };
    if !(given("app_id", "appId")
        && given("client_secret", "clientSecret")
        && given("api_key", "apiKey"))
    {
        return iiko.error(
            StatusCode::UNAUTHORIZED,
            "Application is not authorized: check appId, clientSecret and apiKey",
            "Unauthorized",
        );
    }
    iiko.issue_token(&body.to_string())
}

impl Iiko {
    fn issue_token(&self, seed: &str) -> Response {
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let token = hex::encode(Sha256::digest(format!("{seed}:{n}")));
        self.tokens.lock().unwrap().insert(token.clone());
        ok(json!({"correlationId": self.correlation_id(), "token": token}))
    }
}

#[handler]
fn deliveries(req: &Request, Json(body): Json<Value>, Data(iiko): Data<&Arc<Iiko>>) -> Response {
    if let Some(refusal) = iiko.check_token(req) {
        return refusal;
    }
    let organizations: Vec<&str> = body
        .get("organizationIds")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if let Some(refusal) = iiko.check_organization(&organizations) {
        return refusal;
    }
    let Some(from) = body
        .get("deliveryDateFrom")
        .and_then(Value::as_str)
        .and_then(terminal_time)
    else {
        return iiko.error(
            StatusCode::BAD_REQUEST,
            "deliveryDateFrom is required, as yyyy-MM-dd HH:mm:ss.fff",
            "Common",
        );
    };
    let to = match body.get("deliveryDateTo") {
        None | Some(Value::Null) => OffsetDateTime::now_utc() + time::Duration::days(3650),
        Some(text) => match text.as_str().and_then(terminal_time) {
            Some(to) => to,
            None => {
                return iiko.error(
                    StatusCode::BAD_REQUEST,
                    "deliveryDateTo must be yyyy-MM-dd HH:mm:ss.fff",
                    "Common",
                );
            }
        },
    };
    let statuses: Option<Vec<&str>> = body
        .get("statuses")
        .and_then(Value::as_array)
        .map(|s| s.iter().filter_map(Value::as_str).collect());

    let all = iiko.state.all_sales();
    let kept_since = iiko.state.now() - RETENTION;
    let mut orders = Vec::new();
    for (position, sale) in iiko
        .state
        .sales_between(from.max(kept_since), to)
        .iter()
        .enumerate()
    {
        let Some(order) = order(sale, &all, position + 1) else {
            continue;
        };
        let status = order["order"]["status"].as_str().unwrap_or_default();
        if statuses.as_ref().is_none_or(|s| s.contains(&status)) {
            orders.push(order);
        }
    }
    let max_revision = orders
        .iter()
        .filter_map(|o| o["timestamp"].as_i64())
        .max()
        .unwrap_or(0);
    ok(json!({
        "correlationId": iiko.correlation_id(),
        "maxRevision": max_revision,
        "ordersByOrganizations": [{"organizationId": organization_id(), "orders": orders}],
    }))
}

#[handler]
fn customer_info(req: &Request, Json(body): Json<Value>, Data(iiko): Data<&Arc<Iiko>>) -> Response {
    if let Some(refusal) = iiko.check_token(req) {
        return refusal;
    }
    let organization = body.get("organizationId").and_then(Value::as_str);
    if let Some(refusal) = iiko.check_organization(&organization.into_iter().collect::<Vec<_>>()) {
        return refusal;
    }
    let customers = customers(&iiko.state);
    let (found, asked) = match body.get("type").and_then(Value::as_str) {
        Some("phone") => {
            let phone = body
                .get("phone")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let wanted = national_digits(phone);
            let found = customers
                .iter()
                .find(|c| !wanted.is_empty() && national_digits(&c.phone) == wanted);
            (found, format!("phone {phone}"))
        }
        Some("id") => {
            let id = body.get("id").and_then(Value::as_str).unwrap_or_default();
            (customers.iter().find(|c| c.id == id), format!("id {id}"))
        }
        _ => {
            return iiko.error(
                StatusCode::BAD_REQUEST,
                "type must be phone, cardTrack, cardNumber, email or id",
                "Common",
            );
        }
    };
    let Some(customer) = found else {
        return iiko.error(
            StatusCode::BAD_REQUEST,
            &format!("There is no user with {asked}"),
            "Customer_CustomerNotFound",
        );
    };
    let balance = iiko
        .wallets
        .lock()
        .unwrap()
        .get(&customer.id)
        .copied()
        .unwrap_or_default();
    ok(json!({
        "id": customer.id,
        "referrerId": null,
        "name": customer.name,
        "surname": null,
        "middleName": null,
        "comment": null,
        "phone": customer.phone,
        "cultureName": "ru-RU",
        "birthday": null,
        "email": null,
        "sex": 0,
        "consentStatus": 0,
        "anonymized": false,
        "cards": [],
        "categories": [],
        "walletBalances": [{"id": BONUS_WALLET_ID, "name": "Бонусы", "type": 1, "balance": number(balance)}],
        "isDeleted": false,
    }))
}

#[handler]
fn wallet_topup(req: &Request, Json(body): Json<Value>, Data(iiko): Data<&Arc<Iiko>>) -> Response {
    if let Some(refusal) = iiko.check_token(req) {
        return refusal;
    }
    let organization = body.get("organizationId").and_then(Value::as_str);
    if let Some(refusal) = iiko.check_organization(&organization.into_iter().collect::<Vec<_>>()) {
        return refusal;
    }
    let customer_id = body
        .get("customerId")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !customers(&iiko.state).iter().any(|c| c.id == customer_id) {
        return iiko.error(
            StatusCode::BAD_REQUEST,
            "Customer not found",
            "Customer_CustomerNotFound",
        );
    }
    if body.get("walletId").and_then(Value::as_str) != Some(BONUS_WALLET_ID) {
        return iiko.error(StatusCode::BAD_REQUEST, "Wallet not found", "Common");
    }
    let sum = match body.get("sum") {
        Some(Value::Number(n)) => Decimal::from_str(&n.to_string()).ok(),
        _ => None,
    };
    let Some(sum) = sum.filter(|s| *s > Decimal::ZERO) else {
        return iiko.error(
            StatusCode::BAD_REQUEST,
            "sum must be a positive number",
            "Common",
        );
    };
    *iiko
        .wallets
        .lock()
        .unwrap()
        .entry(customer_id.to_owned())
        .or_default() += sum;
    ok(json!({}))
}

/// A sale as the order iiko lists (`position` is its delivery number), in its current
/// state; `None` for a refund, whose order is listed under its own delivery date.
fn order(sale: &Sale, all: &[Sale], position: usize) -> Option<Value> {
    let (id, delivered_at, cancelled_at) = match &sale.refund_of {
        Some(original)
            if all
                .iter()
                .any(|s| &s.id == original && s.refund_of.is_none()) =>
        {
            return None;
        }
        // A refund of an order we never saw: the order, cancelled when refunded.
        Some(original) => (original.clone(), sale.at, Some(sale.at)),
        None => {
            let refunded = all
                .iter()
                .find(|s| s.refund_of.as_deref() == Some(&sale.id))
                .map(|refund| refund.at);
            let cancelled = sale.cancelled.then_some(sale.at).or(refunded);
            (sale.id.clone(), sale.at, cancelled)
        }
    };
    let at = |t: OffsetDateTime| json!(local(t));
    let cancel_info = cancelled_at.map_or(Value::Null, |when| {
        json!({
            "whenCancelled": local(when),
            "cause": {"id": "3b5a7a1c-0000-4000-8000-00000000c0de", "name": "Возврат"},
            "comment": null,
        })
    });
    let customer = json!({
        "type": "regular",
        "id": sale.phone.as_deref().map(customer_id),
        "name": sale.name.clone().unwrap_or_else(|| "Гость".to_owned()),
        "surname": null,
        "comment": null,
        "gender": "NotSpecified",
        "inBlacklist": false,
    });
    let details = json!({
        "parentDeliveryId": null,
        "customer": customer,
        "phone": sale.phone,
        "deliveryPoint": null,
        "status": if cancelled_at.is_some() { "Cancelled" } else { "Closed" },
        "cancelInfo": cancel_info,
        "courierInfo": null,
        "completeBefore": at(delivered_at),
        "whenCreated": at(delivered_at - time::Duration::hours(1)),
        "whenConfirmed": at(delivered_at - time::Duration::minutes(55)),
        "whenPrinted": null,
        "whenCookingCompleted": at(delivered_at - time::Duration::minutes(30)),
        "whenSended": at(delivered_at - time::Duration::minutes(20)),
        "whenDelivered": at(delivered_at),
        "whenClosed": if cancelled_at.is_some() { Value::Null } else { at(delivered_at) },
        "comment": null,
        "problem": null,
        "operator": null,
        "sum": number(sale.amount),
        "number": position,
        "sourceKey": null,
        "whenBillPrinted": null,
        "conception": null,
        "guestsInfo": {"count": 1, "splitBetweenPersons": false},
        "items": [],
        "combos": [],
        "payments": [],
        "tips": [],
        "discounts": [],
        "orderType": null,
        "terminalGroupId": "d7f5e4b1-0000-4000-8000-00000000fe11",
        "processedPaymentsSum": number(sale.amount),
        "loyaltyInfo": null,
        "externalData": null,
    });
    Some(json!({
        "id": id,
        "posId": null,
        "externalNumber": null,
        "organizationId": organization_id(),
        "timestamp": (cancelled_at.unwrap_or(sale.at).unix_timestamp_nanos() / 1_000_000) as i64,
        "creationStatus": "Success",
        "errorInfo": null,
        "order": details,
    }))
}

/// An iikoCard customer, one per phone of the sales.
struct Customer {
    id: String,
    name: Option<String>,
    phone: String,
}

fn customers(state: &State) -> Vec<Customer> {
    let mut out: Vec<Customer> = Vec::new();
    for sale in state.all_sales() {
        let Some(phone) = sale.phone.as_deref() else {
            continue;
        };
        let id = customer_id(phone);
        if national_digits(phone).is_empty() || out.iter().any(|c| c.id == id) {
            continue;
        }
        out.push(Customer {
            id,
            name: sale.name.clone(),
            phone: phone.to_owned(),
        });
    }
    out
}

/// A stable customer id (a UUID, as iiko's are) for a phone.
fn customer_id(phone: &str) -> String {
    format!("c0000000-0000-4000-8000-{:0>12}", national_digits(phone))
}

fn national_digits(phone: &str) -> String {
    let digits: Vec<char> = phone.chars().filter(char::is_ascii_digit).collect();
    digits[digits.len().saturating_sub(10)..].iter().collect()
}

fn organization_id() -> String {
    Vendor::Iiko.credentials()["organization_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// `yyyy-MM-dd HH:mm:ss.fff` in the terminal's zone.
fn local(at: OffsetDateTime) -> String {
    at.to_offset(TERMINAL_OFFSET)
        .format(format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]"
        ))
        .unwrap_or_default()
}

fn terminal_time(text: &str) -> Option<OffsetDateTime> {
    let with_ms = format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond]");
    let without = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    PrimitiveDateTime::parse(text.trim(), with_ms)
        .or_else(|_| PrimitiveDateTime::parse(text.trim(), without))
        .ok()
        .map(|t| t.assume_offset(TERMINAL_OFFSET))
}

/// A money amount as a JSON number (iiko writes sums as numbers).
fn number(amount: Decimal) -> Value {
    serde_json::Number::from_str(&amount.normalize().to_string())
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

fn ok(body: Value) -> Response {
    Response::builder()
        .content_type("application/json")
        .body(body.to_string())
}
