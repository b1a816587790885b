//! 1C:Enterprise's standard OData interface (`/odata/standard.odata`), as a retail
//! configuration publishes it (Розница / УТ style `Document_ЧекККМ`).
//!
//! - `GET {base}/odata/standard.odata/Document_ЧекККМ?$format=json&$filter=Date ge
//!   datetime'…' and Date lt datetime'…'&$top=N&$skip=M&$orderby=Date` with HTTP Basic
//!   auth → `{"odata.metadata": "…", "value": [{Ref_Key, DataVersion, DeletionMark, Number,
//!   Date, Posted, ВидОперации, ЧекККМПродажа_Key, СуммаДокумента, Телефон, …}]}`.
//! - A sale is a posted check (`ВидОперации: "Продажа"`); a refund is a posted check with
//!   `ВидОперации: "Возврат"` pointing at the sale through `ЧекККМПродажа_Key`; a cancelled
//!   sale is marked for deletion, which in 1C also clears `Posted`.
//! - Customers: `Catalog_Контрагенты_КонтактнаяИнформация?$filter=НомерТелефона eq '…'`
//!   (the contact-information tabular section) and `Catalog_Контрагенты(guid'…')`.
//! - Dates are the infobase's local time (Moscow here) without an offset, as 1C writes them.
//! - 1C itself has no server page limit; `State::page_size` caps `$top` to force paging.
//! - `Телефон` is not a standard attribute of a check: it is the installation-specific
//!   field the adapter reads by default (its `phone_field` credential).

use crate::{Sale, State, Vendor};
use base64::Engine;
use poem::{
    EndpointExt, Request, Response, Route, get, handler,
    http::StatusCode,
    web::{Data, Path},
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::{collections::HashMap, str::FromStr, sync::Arc};
use time::{
    OffsetDateTime, PrimitiveDateTime, UtcOffset,
    format_description::BorrowedFormatItem,
    macros::{format_description, offset},
};

/// The infobase's time zone: 1C writes local times without an offset.
const LOCAL: UtcOffset = offset!(+3);
/// 1C's `Date` literal and JSON form.
const DATE: &[BorrowedFormatItem<'_>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
const DOCUMENT: &str = "Document_ЧекККМ";
const CUSTOMERS: &str = "Catalog_Контрагенты";
const CONTACT_INFO: &str = "Catalog_Контрагенты_КонтактнаяИнформация";
/// An empty reference in 1C.
const ZERO_GUID: &str = "00000000-0000-0000-0000-000000000000";

pub(crate) fn routes(state: Arc<State>) -> Route {
    let base = super::base_path(Vendor::OneC);
    Route::new().nest(
        format!("{base}/odata/standard.odata"),
        Route::new().at("/*resource", get(resource)).data(state),
    )
}

#[handler]
fn resource(
    req: &Request,
    Path(resource): Path<String>,
    Data(state): Data<&Arc<State>>,
) -> Response {
    if !authorized(req) {
        // What the 1C web server answers without valid Basic credentials.
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header("WWW-Authenticate", "Basic realm=\"1C\"")
            .body("");
    }
    let query: HashMap<String, String> = req.params().unwrap_or_default();
    if resource == DOCUMENT {
        documents(state, &query)
    } else if resource == CONTACT_INFO {
        contact_info(state, &query)
    } else if let Some(key) = resource
        .strip_prefix(&format!("{CUSTOMERS}(guid'"))
        .and_then(|rest| rest.strip_suffix("')"))
    {
        customer(state, key)
    } else {
        odata_error(
            StatusCode::NOT_FOUND,
            &format!("Не найден объект {resource}"),
        )
    }
}

fn authorized(req: &Request) -> bool {
    let credentials = Vendor::OneC.credentials();
    let expected = format!(
        "{}:{}",
        credentials["username"].as_str().unwrap_or_default(),
        credentials["password"].as_str().unwrap_or_default()
    );
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(expected)
    );
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        == Some(expected.as_str())
}

fn documents(state: &State, query: &HashMap<String, String>) -> Response {
    let filter = query.get("$filter").map(String::as_str).unwrap_or_default();
    let from = filter_date(filter, "Date ge datetime'").unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let to = filter_date(filter, "Date lt datetime'")
        .unwrap_or_else(|| OffsetDateTime::now_utc() + time::Duration::days(3650));
    let sales = state.sales_between(from, to);
    let skip = number_param(query, "$skip").unwrap_or(0);
    let top = number_param(query, "$top").unwrap_or(usize::MAX);
    let page = top.min(state.page_size_or(usize::MAX));
    let value: Vec<Value> = sales.iter().skip(skip).take(page).map(document).collect();
    ok(json!({
        "odata.metadata": format!("http://localhost/base/odata/standard.odata/$metadata#{DOCUMENT}"),
        "value": value,
    }))
}

fn document(sale: &Sale) -> Value {
    let operation = if sale.refund_of.is_some() {
        "Возврат"
    } else {
        "Продажа"
    };
    json!({
        "Ref_Key": guid(&sale.id),
        "DataVersion": "AAAAAQAAAAA=",
        // Marking a posted document for deletion un-posts it in 1C.
        "DeletionMark": sale.cancelled,
        "Number": sale.id,
        "Date": local(sale.at),
        "Posted": !sale.cancelled,
        "ВидОперации": operation,
        "ЧекККМПродажа_Key": sale.refund_of.as_deref().map(guid).unwrap_or_else(|| ZERO_GUID.to_owned()),
        "СуммаДокумента": decimal_number(sale.amount),
        "Телефон": sale.phone.clone().unwrap_or_default(),
        "Комментарий": "",
        "Товары": [],
    })
}

/// Rows of the contact-information tabular section whose `НомерТелефона` is one of the
/// `НомерТелефона eq '…'` alternatives of the filter. Numbers are stored as digits.
fn contact_info(state: &State, query: &HashMap<String, String>) -> Response {
    let filter = query.get("$filter").map(String::as_str).unwrap_or_default();
    let wanted: Vec<&str> = filter
        .split(" or ")
        .filter_map(|clause| {
            clause
                .trim()
                .strip_prefix("НомерТелефона eq '")
                .and_then(|rest| rest.strip_suffix('\''))
        })
        .collect();
    let mut rows = Vec::new();
    let mut seen = Vec::new();
    for sale in state.all_sales() {
        let Some(phone) = sale.phone.as_deref() else {
            continue;
        };
        let number = digits(phone);
        if number.is_empty() || seen.contains(&number) || !wanted.contains(&number.as_str()) {
            continue;
        }
        rows.push(json!({
            "Ref_Key": guid(&format!("customer:{number}")),
            "LineNumber": "1",
            "Тип": "Телефон",
            "Представление": phone,
            "НомерТелефона": number,
        }));
        seen.push(number);
    }
    let top = number_param(query, "$top").unwrap_or(usize::MAX);
    rows.truncate(top);
    ok(json!({
        "odata.metadata": format!("http://localhost/base/odata/standard.odata/$metadata#{CONTACT_INFO}"),
        "value": rows,
    }))
}

fn customer(state: &State, key: &str) -> Response {
    let found = state.all_sales().into_iter().find(|sale| {
        sale.phone
            .as_deref()
            .is_some_and(|p| guid(&format!("customer:{}", digits(p))) == key)
    });
    match found {
        Some(sale) => ok(json!({
            "odata.metadata": format!("http://localhost/base/odata/standard.odata/$metadata#{CUSTOMERS}/@Element"),
            "Ref_Key": key,
            "DeletionMark": false,
            "Description": sale.name.unwrap_or_default(),
        })),
        None => odata_error(StatusCode::NOT_FOUND, "Объект не найден"),
    }
}

fn ok(body: Value) -> Response {
    Response::builder()
        .content_type("application/json;odata=minimalmetadata;charset=utf-8")
        .body(body.to_string())
}

/// 1C's OData error body.
fn odata_error(status: StatusCode, message: &str) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json;charset=utf-8")
        .body(
            json!({"odata.error": {"code": "-1", "message": {"lang": "ru", "value": message}}})
                .to_string(),
        )
}

fn filter_date(filter: &str, prefix: &str) -> Option<OffsetDateTime> {
    let start = filter.find(prefix)? + prefix.len();
    let end = start + filter[start..].find('\'')?;
    PrimitiveDateTime::parse(&filter[start..end], DATE)
        .ok()
        .map(|t| t.assume_offset(LOCAL))
}

fn number_param(query: &HashMap<String, String>, name: &str) -> Option<usize> {
    query.get(name).and_then(|v| v.trim().parse().ok())
}

fn local(at: OffsetDateTime) -> String {
    at.to_offset(LOCAL).format(DATE).unwrap_or_default()
}

/// A JSON number with the amount's digits (1C sends `Edm.Double` sums as numbers).
fn decimal_number(amount: rust_decimal::Decimal) -> Value {
    serde_json::Number::from_str(&amount.normalize().to_string())
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// The sale's id if it already is a GUID, else a stable GUID made from it.
fn guid(id: &str) -> String {
    let is_guid = id.len() == 36
        && id.chars().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    if is_guid {
        return id.to_ascii_lowercase();
    }
    let hash = hex::encode(Sha256::digest(id.as_bytes()));
    format!(
        "{}-{}-{}-{}-{}",
        &hash[0..8],
        &hash[8..12],
        &hash[12..16],
        &hash[16..20],
        &hash[20..32]
    )
}

fn digits(phone: &str) -> String {
    phone.chars().filter(char::is_ascii_digit).collect()
}
