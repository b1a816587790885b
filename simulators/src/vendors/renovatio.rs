//! Renovatio's public API (`https://app.rnova.org/api/public/{method}`), as the medical
//! centre uses it: paid invoices are sales.
//!
//! - Every method is `POST {base}/{method}` with a form body carrying `api_key`; replies are
//!   `{"error": 0, "data": …}` or `{"error": 1, "data": {"code": …, "desc": "…"}}`, with HTTP
//!   200 either way.
//! - `getInvoices` (`clinic_id`, `date_from`, `date_to` as `dd.mm.yyyy`, whole days, both
//!   inclusive; `offset`/`count` paging, capped by `State::page_size`) → invoices
//!   `{id, patient_id, clinic_id, date: "dd.mm.yyyy HH:MM", value: "1250.50", status}`:
//!   status 2 is paid, 3 cancelled. A refund shows as its original invoice cancelled at the
//!   time of the refund; a cancelled sale likewise.
//! - Methods are opened per key by the clinic: `getInvoices` is closed until
//!   `Simulator::open_renovatio_invoices`, and answers
//!   `{"error":1,"data":{"code":403,"desc":"No access to method"}}` meanwhile.
//! - A missing required parameter is a body-level code 500.
//! - `getPatient` (`patient_id`, or `mobile`) → `{patient_id, number, last_name,
//!   first_name, third_name, mobile, …}`; an unknown patient is an error reply.
//! - A wrong `api_key` is an error reply with code 401.
//! - Times are the clinic's local time (Moscow here), to the minute.
//!
//! What of this is confirmed, and what is our assumption, is written in the adapter
//! (`adapters::crm::renovatio`); this simulator speaks exactly what the adapter expects.

use crate::{Sale, State, Vendor};
use poem::{
    EndpointExt, Response, Route, handler, post,
    web::{Data, Form, Path},
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::{collections::HashMap, sync::Arc};
use time::{
    Date, OffsetDateTime, UtcOffset,
    format_description::BorrowedFormatItem,
    macros::{format_description, offset},
};

/// The clinic's time zone: Renovatio writes local times.
const LOCAL: UtcOffset = offset!(+3);
const DAY: &[BorrowedFormatItem<'_>] = format_description!("[day].[month].[year]");
const MINUTE: &[BorrowedFormatItem<'_>] =
    format_description!("[day].[month].[year] [hour]:[minute]");
const PAID: u8 = 2;
const CANCELLED: u8 = 3;

pub(crate) fn routes(state: Arc<State>) -> Route {
    let base = super::base_path(Vendor::Renovatio);
    Route::new().nest(base, Route::new().at("/:method", post(call)).data(state))
}

#[handler]
fn call(
    Path(method): Path<String>,
    Form(params): Form<HashMap<String, String>>,
    Data(state): Data<&Arc<State>>,
) -> Response {
    let credentials = Vendor::Renovatio.credentials();
    if params.get("api_key").map(String::as_str) != credentials["api_key"].as_str() {
        return error(401, "Неверный api_key");
    }
    match method.as_str() {
        "getInvoices"
            if !state
                .renovatio_invoices_open
                .load(std::sync::atomic::Ordering::SeqCst) =>
        {
            error(403, "No access to method")
        }
        "getInvoices" => invoices(state, &params, &credentials),
        "getPatient" => patient(state, &params),
        "getClinics" => ok(json!([{"id": credentials["clinic_id"], "title": "Миллениум"}])),
        _ => error(404, "Метод не найден"),
    }
}

fn invoices(state: &State, params: &HashMap<String, String>, credentials: &Value) -> Response {
    let clinic = credentials["clinic_id"].to_string();
    for required in ["clinic_id", "date_from", "date_to"] {
        if params.get(required).is_none_or(|v| v.trim().is_empty()) {
            return error(500, &format!("Не передан обязательный параметр {required}"));
        }
    }
    if params.get("clinic_id").map(|c| c.trim()) != Some(clinic.as_str()) {
        return ok(json!([]));
    }
    let day = |name: &str| {
        params
            .get(name)
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| Date::parse(v, DAY).ok())
    };
    let (Some(first), Some(last)) = (day("date_from"), day("date_to")) else {
        return error(400, "Не указан период");
    };
    let from = first.midnight().assume_offset(LOCAL);
    let to = last.midnight().assume_offset(LOCAL) + time::Duration::days(1);
    let number = |name: &str| {
        params
            .get(name)
            .and_then(|v| v.trim().parse::<usize>().ok())
    };
    let offset = number("offset").unwrap_or(0);
    let count = number("count").unwrap_or(usize::MAX);
    let page = count.min(state.page_size_or(usize::MAX));
    let items: Vec<Value> = state
        .sales_between(from, to)
        .iter()
        .skip(offset)
        .take(page)
        .map(|s| invoice(s, &credentials["clinic_id"]))
        .collect();
    ok(Value::Array(items))
}

fn invoice(sale: &Sale, clinic: &Value) -> Value {
    let id = sale.refund_of.as_deref().unwrap_or(&sale.id);
    let cancelled = sale.cancelled || sale.refund_of.is_some();
    json!({
        "id": number_id(id),
        "number": id,
        "patient_id": sale.phone.as_deref().map(patient_id),
        "clinic_id": clinic,
        "date": local(sale.at),
        "value": format!("{:.2}", sale.amount),
        "status": if cancelled { CANCELLED } else { PAID },
    })
}

fn patient(state: &State, params: &HashMap<String, String>) -> Response {
    let by_id = params
        .get("patient_id")
        .and_then(|v| v.trim().parse::<u64>().ok());
    let by_mobile = params
        .get("mobile")
        .map(|m| national(m))
        .filter(|m| m.len() == 10);
    let found = state.all_sales().into_iter().rev().find(|sale| {
        sale.phone.as_deref().is_some_and(|phone| {
            by_id == Some(patient_id(phone))
                || by_mobile.as_deref() == Some(national(phone).as_str())
        })
    });
    let Some(sale) = found else {
        return error(404, "Пациент не найден");
    };
    let phone = sale.phone.unwrap_or_default();
    let name = sale.name.unwrap_or_default();
    let mut words: Vec<&str> = name.split_whitespace().collect();
    let last_name = if words.len() > 1 {
        words.pop().unwrap_or_default()
    } else {
        ""
    };
    ok(json!({
        "patient_id": patient_id(&phone),
        "number": format!("{:06}", patient_id(&phone) % 1_000_000),
        "last_name": last_name,
        "first_name": words.join(" "),
        "third_name": "",
        "mobile": phone,
        "birth_date": "",
        "gender": null,
    }))
}

fn ok(data: Value) -> Response {
    reply(json!({"error": 0, "data": data}))
}

fn error(code: u16, desc: &str) -> Response {
    reply(json!({"error": 1, "data": {"code": code, "desc": desc}}))
}

fn reply(body: Value) -> Response {
    Response::builder()
        .content_type("application/json; charset=utf-8")
        .body(body.to_string())
}

fn local(at: OffsetDateTime) -> String {
    at.to_offset(LOCAL).format(MINUTE).unwrap_or_default()
}

/// The sale's id if it is a number, else a stable one.
fn number_id(id: &str) -> u64 {
    id.parse()
        .unwrap_or_else(|_| hash_id(&format!("invoice:{id}")))
}

fn patient_id(phone: &str) -> u64 {
    hash_id(&format!("patient:{}", national(phone)))
}

fn hash_id(seed: &str) -> u64 {
    let hash = Sha256::digest(seed.as_bytes());
    let mut bytes = [0u8; 8];
    bytes[4..].copy_from_slice(&hash[..4]);
    u64::from_be_bytes(bytes).max(1)
}

/// The last ten digits: how the simulator matches `+7…`, `7…` and `8…` forms.
fn national(phone: &str) -> String {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    digits[digits.len().saturating_sub(10)..].to_owned()
}
