//! YCLIENTS: the records ("visits") of one company and its client search, in the v2 format
//! of YCLIENTS' API Blueprint (`{"success", "data", "meta"}`).
//!
//! - `GET /api/v1/records/{company_id}` with `page`, `count`, `changed_after`,
//!   `changed_before` (read in the company's zone, Moscow, as they carry no offset) and
//!   `with_deleted`; `meta: {page, total_count}`.
//! - `POST /api/v1/company/{company_id}/clients/search` with a `quick_search` filter; no
//!   match is `404 {"success": false, "meta": {"message": "Не найдено"}}`.
//! - 5 requests a second and 200 a minute per IP ("Лимиты" of the blueprint) when
//!   `Simulator::limit_rate` turns them on: beyond them, 429.
//! - Every call needs `Authorization: Bearer {partner_token}, User {user_token}` (401
//!   otherwise) and `Accept: application/vnd.yclients.v2+json` (400 otherwise).
//!
//! Each sale is a served visit (`attendance: 1`). YCLIENTS has no refund documents for a
//! visit: a cancelled sale is its record `deleted`, and a refund of sale `X` is record `X`
//! deleted at the refund's time, for the visit's full cost (a visit cannot be partly
//! cancelled). A record changes when it is deleted, so `last_change_date` is the sale's time.

use crate::{Sale, State, Vendor};
use poem::{
    EndpointExt, Request, Response, Route, handler,
    http::StatusCode,
    web::{Data, Json, Path, Query},
};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{Value, json};
use std::{str::FromStr, sync::Arc};
use time::{
    OffsetDateTime, PrimitiveDateTime, UtcOffset,
    macros::{format_description, offset},
};

/// The company's zone: dates without an offset are read in it, and written with it.
const COMPANY_OFFSET: UtcOffset = offset!(+3);
/// YCLIENTS' page size when `count` is not given, and the most it serves.
const MAX_COUNT: usize = 300;

pub(crate) fn routes(state: Arc<State>) -> Route {
    Route::new()
        .at(
            "/api/v1/records/:company_id",
            poem::get(records).data(state.clone()),
        )
        .at(
            "/api/v1/company/:company_id/clients/search",
            poem::post(clients_search).data(state),
        )
}

#[derive(Debug, Deserialize)]
struct RecordsQuery {
    page: Option<usize>,
    count: Option<usize>,
    changed_after: Option<String>,
    changed_before: Option<String>,
    with_deleted: Option<String>,
}

#[handler]
fn records(
    req: &Request,
    Path(company_id): Path<String>,
    Query(query): Query<RecordsQuery>,
    Data(state): Data<&Arc<State>>,
) -> Response {
    if let Some(refusal) = check(req, &company_id) {
        return refusal;
    }
    let after = match query.changed_after.as_deref().map(company_time) {
        None => OffsetDateTime::UNIX_EPOCH,
        Some(Some(t)) => t,
        Some(None) => return failure(StatusCode::BAD_REQUEST, "Неверный формат changed_after"),
    };
    let before = match query.changed_before.as_deref().map(company_time) {
        None => OffsetDateTime::now_utc() + time::Duration::days(3650),
        Some(Some(t)) => t,
        Some(None) => return failure(StatusCode::BAD_REQUEST, "Неверный формат changed_before"),
    };
    let with_deleted = query.with_deleted.as_deref() == Some("1");
    let all = state.all_sales();
    let records: Vec<Value> = state
        .sales_between(after, before)
        .iter()
        .filter(|sale| with_deleted || !(sale.cancelled || sale.refund_of.is_some()))
        .map(|sale| record(sale, &all))
        .collect();

    let page = query.page.unwrap_or(1).max(1);
    let size = query
        .count
        .unwrap_or(MAX_COUNT)
        .clamp(1, MAX_COUNT)
        .min(state.page_size_or(MAX_COUNT));
    let items: Vec<Value> = records
        .iter()
        .skip((page - 1).saturating_mul(size))
        .take(size)
        .cloned()
        .collect();
    ok(
        Value::Array(items),
        json!({"page": page, "total_count": records.len()}),
    )
}

#[handler]
fn clients_search(
    req: &Request,
    Path(company_id): Path<String>,
    Json(body): Json<Value>,
    Data(state): Data<&Arc<State>>,
) -> Response {
    if let Some(refusal) = check(req, &company_id) {
        return refusal;
    }
    let wanted: Vec<String> = body
        .get("filters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|f| f.get("type").and_then(Value::as_str) == Some("quick_search"))
        .filter_map(|f| f.pointer("/state/value").and_then(Value::as_str))
        .map(str::to_lowercase)
        .collect();
    let mut clients: Vec<Value> = Vec::new();
    let mut known: Vec<String> = Vec::new();
    for sale in state.all_sales() {
        let Some(phone) = sale.phone.as_deref() else {
            continue;
        };
        let key = digits(phone);
        if key.is_empty() || known.contains(&key) {
            continue;
        }
        known.push(key.clone());
        let name = sale.name.clone().unwrap_or_default();
        let matches = wanted.iter().all(|w| {
            let w_digits = digits(w);
            (!w_digits.is_empty() && key.contains(&w_digits)) || name.to_lowercase().contains(w)
        });
        if matches {
            clients
                .push(json!({"id": client_id(phone), "name": name, "phone": phone, "email": ""}));
        }
    }
    let page = body.get("page").and_then(Value::as_u64).unwrap_or(1).max(1) as usize;
    let size = body
        .get("page_size")
        .and_then(Value::as_u64)
        .unwrap_or(25)
        .clamp(1, 200) as usize;
    if clients.is_empty() {
        // What YCLIENTS answers a search that matches nobody (strukovsv/yclients-micro
        // reads it as an empty list; the status is our assumption).
        return failure(StatusCode::NOT_FOUND, "Не найдено");
    }
    let total = clients.len();
    let items: Vec<Value> = clients
        .into_iter()
        .skip((page - 1).saturating_mul(size))
        .take(size)
        .collect();
    ok(Value::Array(items), json!({"total_count": total}))
}

/// The partner and user tokens, the v2 format and the company of the credentials: the
/// refusal if any is wrong.
fn check(req: &Request, company_id: &str) -> Option<Response> {
    let credentials = Vendor::Yclients.credentials();
    let text = |key: &str| match &credentials[key] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let expected = [
        format!("Bearer {}", text("partner_token")),
        format!("User {}", text("user_token")),
    ];
    let given: Vec<String> = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .split(',')
        .map(|part| part.trim().to_owned())
        .collect();
    if given != expected {
        return Some(failure(StatusCode::UNAUTHORIZED, "Необходима авторизация"));
    }
    let accept = req
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !accept.contains("application/vnd.yclients.v2+json") {
        return Some(failure(
            StatusCode::BAD_REQUEST,
            "Укажите версию: Accept: application/vnd.yclients.v2+json",
        ));
    }
    if company_id != text("company_id") {
        return Some(failure(StatusCode::NOT_FOUND, "Не найдено"));
    }
    None
}

/// A sale as the record YCLIENTS would list.
fn record(sale: &Sale, all: &[Sale]) -> Value {
    // A refund shows as the refunded visit's record, deleted.
    let original = sale
        .refund_of
        .as_deref()
        .and_then(|id| all.iter().find(|s| s.id == id && s.refund_of.is_none()));
    let id = sale.refund_of.as_deref().unwrap_or(&sale.id);
    let amount = original.map_or(sale.amount, |o| o.amount);
    let visit_at = original.map_or(sale.at, |o| o.at);
    let phone = sale
        .phone
        .clone()
        .or_else(|| original.and_then(|o| o.phone.clone()));
    let name = sale
        .name
        .clone()
        .or_else(|| original.and_then(|o| o.name.clone()));
    let client = match (&phone, &name) {
        (None, None) => Value::Null,
        _ => json!({
            "id": phone.as_deref().map_or(json!(0), client_id),
            "name": name.clone().unwrap_or_default(),
            "phone": phone.clone().unwrap_or_default(),
            "email": "",
        }),
    };
    let cost = number(amount);
    json!({
        "id": id.parse::<u64>().map_or_else(|_| json!(id), |n| json!(n)),
        "company_id": Vendor::Yclients.credentials()["company_id"],
        "staff_id": 9,
        "services": [{
            "id": 1,
            "title": "Услуга",
            "cost": cost,
            "cost_to_pay": cost,
            "manual_cost": cost,
            "cost_per_unit": cost,
            "discount": 0,
            "first_cost": cost,
            "amount": 1,
        }],
        "goods_transactions": [],
        "client": client,
        "date": local(visit_at, format_description!("[year]-[month]-[day] [hour]:[minute]:[second]")),
        "datetime": local(visit_at, format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second][offset_hour sign:mandatory]:[offset_minute]"
        )),
        "create_date": local(visit_at, OFFSET_WITHOUT_COLON),
        "last_change_date": local(sale.at, OFFSET_WITHOUT_COLON),
        "comment": "",
        "online": false,
        "visit_attendance": 1,
        "attendance": 1,
        "confirmed": 1,
        "seance_length": 3600,
        "length": 3600,
        "visit_id": format!("{id}"),
        "deleted": sale.cancelled || sale.refund_of.is_some(),
        "paid_full": 1,
        "prepaid": false,
        "record_labels": [],
        "custom_fields": [],
        "documents": [],
    })
}

/// `2019-01-16T20:35:15+0900`: how YCLIENTS writes `create_date` and `last_change_date`.
const OFFSET_WITHOUT_COLON: &[time::format_description::BorrowedFormatItem<'static>] = format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second][offset_hour sign:mandatory][offset_minute]"
);

fn local(
    at: OffsetDateTime,
    format: &[time::format_description::BorrowedFormatItem<'_>],
) -> String {
    at.to_offset(COMPANY_OFFSET)
        .format(format)
        .unwrap_or_default()
}

/// `2016-02-23T12:00:00` (or a bare date) in the company's zone.
fn company_time(text: &str) -> Option<OffsetDateTime> {
    let text = text.trim();
    let full = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let spaced = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let date = format_description!("[year]-[month]-[day]");
    PrimitiveDateTime::parse(text, full)
        .or_else(|_| PrimitiveDateTime::parse(text, spaced))
        .or_else(|_| time::Date::parse(text, date).map(|d| d.midnight()))
        .ok()
        .map(|t| t.assume_offset(COMPANY_OFFSET))
}

/// A money amount as a JSON number (YCLIENTS writes costs as numbers).
fn number(amount: Decimal) -> Value {
    serde_json::Number::from_str(&amount.normalize().to_string())
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

fn digits(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

/// A stable client id for a phone: its last nine digits.
fn client_id(phone: &str) -> Value {
    let digits = digits(phone);
    let tail = &digits[digits.len().saturating_sub(9)..];
    json!(tail.parse::<u64>().unwrap_or(0))
}

fn ok(data: Value, meta: Value) -> Response {
    Response::builder()
        .content_type("application/json")
        .body(json!({"success": true, "data": data, "meta": meta}).to_string())
}

fn failure(status: StatusCode, message: &str) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(json!({"success": false, "data": null, "meta": {"message": message}}).to_string())
}
