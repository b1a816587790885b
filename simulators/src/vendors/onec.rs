//! 1C:Enterprise's standard OData interface (`/odata/standard.odata`), as a retail
//! configuration publishes it. By default it is Розница 2 (`State::onec` changes that):
//!
//! - `GET {base}/odata/standard.odata/Document_ЧекККМ?$format=json&$filter=Date ge
//!   datetime'…' and Date lt datetime'…'&$top=N&$skip=M&$orderby=Date` with HTTP Basic
//!   auth → `{"odata.metadata": "…", "value": [{Ref_Key, DataVersion, DeletionMark, Number,
//!   Date, Posted, ВидОперации, Контрагент_Key, ДисконтнаяКарта_Key, СуммаДокумента, …}]}`.
//!   A check carries **no phone**: the buyer is the counterparty (`Контрагент_Key`), or the
//!   owner of the discount card (`ДисконтнаяКарта_Key`) a check paid with a card points at
//!   (its counterparty is then the generic «Розничный покупатель», who has no phone).
//! - Refunds are `Document_ЧекККМВозврат` (`ЧекККМ_Key` → the sale); an older
//!   configuration (`separate_refunds: false`) keeps them in `Document_ЧекККМ` with
//!   `ВидОперации: "Возврат"` and `ЧекККМПродажа_Key`. A cancelled sale is marked for
//!   deletion, which in 1C also clears `Posted`.
//! - `Catalog_Контрагенты(guid'…')` → the element with its `КонтактнаяИнформация` rows
//!   (`Тип: "Телефон"`, `Представление`, `НомерТелефона` as digits);
//!   `Catalog_Контрагенты_КонтактнаяИнформация?$filter=НомерТелефона eq '…'` searches them.
//! - Discount cards: `Catalog_ИнформационныеКарты(guid'…')` with the composite
//!   `ВладелецКарты` + `ВладелецКарты_Type` (Розница), or `Catalog_ДисконтныеКарты(guid'…')`
//!   with `ВладелецКарты_Key` (УНФ, `unf_cards`).
//! - `refuses_date_filter`: any `$filter` on `Date` gets HTTP 500 with `odata.error`
//!   «Операция не разрешена в предложении "ГДЕ"», as publications whose role may not
//!   filter answer.
//! - `phone_attribute`: an installation that added its own phone attribute to checks.
//! - Dates are the infobase's local time (Moscow here) without an offset, as 1C writes them.
//! - 1C itself has no server page limit; `State::page_size` caps `$top` to force paging.
//!
//! Where each behaviour was confirmed is written in the adapter (`adapters::crm::onec`).

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
const SALES: &str = "Document_ЧекККМ";
const REFUNDS: &str = "Document_ЧекККМВозврат";
const CUSTOMERS: &str = "Catalog_Контрагенты";
const CONTACT_INFO: &str = "Catalog_Контрагенты_КонтактнаяИнформация";
const RETAIL_CARDS: &str = "Catalog_ИнформационныеКарты";
const UNF_CARDS: &str = "Catalog_ДисконтныеКарты";
/// An empty reference in 1C.
const ZERO_GUID: &str = "00000000-0000-0000-0000-000000000000";
/// «Розничный покупатель»: the counterparty of anonymous checks, without a phone.
const RETAIL_BUYER: &str = "a0000000-0000-4000-8000-000000000001";

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
    let setup = state.onec.lock().unwrap().clone();
    let filter = query.get("$filter").map(String::as_str).unwrap_or_default();
    if setup.refuses_date_filter && filter.contains("Date") {
        return odata_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Ошибка при выполнении запроса POST к ресурсу /e1cib/odata/standard.odata/: Операция не разрешена в предложении \"ГДЕ\"",
        );
    }
    let element = |catalog: &str| {
        resource
            .strip_prefix(&format!("{catalog}(guid'"))
            .and_then(|rest| rest.strip_suffix("')"))
            .map(str::to_owned)
    };
    if resource == SALES {
        documents(state, &setup, &query, false)
    } else if resource == REFUNDS && setup.separate_refunds {
        documents(state, &setup, &query, true)
    } else if resource == CONTACT_INFO {
        contact_info(state, &query)
    } else if let Some(key) = element(CUSTOMERS) {
        customer(state, &key)
    } else if let Some(key) = element(if setup.unf_cards {
        UNF_CARDS
    } else {
        RETAIL_CARDS
    }) {
        card(state, &setup, &key)
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

/// The sales (or, with `refunds`, the refund documents) dated in the filter's range.
fn documents(
    state: &State,
    setup: &crate::OneCSetup,
    query: &HashMap<String, String>,
    refunds: bool,
) -> Response {
    let filter = query.get("$filter").map(String::as_str).unwrap_or_default();
    let from = filter_date(filter, "Date ge datetime'").unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let to = filter_date(filter, "Date lt datetime'")
        .unwrap_or_else(|| OffsetDateTime::now_utc() + time::Duration::days(3650));
    let skip = number_param(query, "$skip").unwrap_or(0);
    let top = number_param(query, "$top").unwrap_or(usize::MAX);
    let page = top.min(state.page_size_or(usize::MAX));
    let sales = state.page_between(
        from,
        to,
        // With separate refund documents, a refund is not a check of sales and vice versa.
        |s| !setup.separate_refunds || s.refund_of.is_some() == refunds,
        skip,
        page,
    );
    let value: Vec<Value> = sales
        .iter()
        .map(|sale| document(sale, setup, state))
        .collect();
    let object = if refunds { REFUNDS } else { SALES };
    ok(json!({
        "odata.metadata": format!("http://localhost/base/odata/standard.odata/$metadata#{object}"),
        "value": value,
    }))
}

fn document(sale: &Sale, setup: &crate::OneCSetup, state: &State) -> Value {
    // The buyer: the counterparty, or the card's owner behind «Розничный покупатель».
    let original = sale.refund_of.as_deref().and_then(|id| state.sale(id));
    let buyer = original.as_ref().unwrap_or(sale);
    let counterparty = match (&buyer.card, &buyer.phone) {
        (None, Some(phone)) => customer_key(phone),
        _ => RETAIL_BUYER.to_owned(),
    };
    let card = buyer
        .card
        .as_deref()
        .map(card_key)
        .unwrap_or_else(|| ZERO_GUID.to_owned());
    let mut doc = json!({
        "Ref_Key": guid(&sale.id),
        "DataVersion": "AAAAAQAAAAA=",
        // Marking a posted document for deletion un-posts it in 1C.
        "DeletionMark": sale.cancelled,
        "Number": sale.id,
        "Date": local(sale.at),
        "Posted": !sale.cancelled,
        "Контрагент_Key": counterparty,
        "ДисконтнаяКарта_Key": card,
        "СуммаДокумента": decimal_number(sale.amount),
        "Комментарий": "",
        "Товары": [],
    });
    let original = sale
        .refund_of
        .as_deref()
        .map(guid)
        .unwrap_or_else(|| ZERO_GUID.to_owned());
    if setup.separate_refunds {
        if sale.refund_of.is_some() {
            doc["ЧекККМ_Key"] = json!(original);
        } else {
            doc["ВидОперации"] = json!("Продажа");
        }
    } else {
        doc["ВидОперации"] = json!(if sale.refund_of.is_some() {
            "Возврат"
        } else {
            "Продажа"
        });
        doc["ЧекККМПродажа_Key"] = json!(original);
    }
    if let Some(attribute) = &setup.phone_attribute {
        doc[attribute.as_str()] = json!(buyer.phone.clone().unwrap_or_default());
    }
    doc
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
        let mut row = contact_row(phone);
        row["Ref_Key"] = json!(customer_key(phone));
        rows.push(row);
        seen.push(number);
    }
    let top = number_param(query, "$top").unwrap_or(usize::MAX);
    rows.truncate(top);
    ok(json!({
        "odata.metadata": format!("http://localhost/base/odata/standard.odata/$metadata#{CONTACT_INFO}"),
        "value": rows,
    }))
}

fn contact_row(phone: &str) -> Value {
    json!({
        "LineNumber": "1",
        "Тип": "Телефон",
        "Вид_Key": "b0000000-0000-4000-8000-0000000000a1",
        "Представление": phone,
        "НомерТелефона": digits(phone),
    })
}

/// A counterparty: one per phone of the sales, and «Розничный покупатель» without one.
fn customer(state: &State, key: &str) -> Response {
    let element = |description: &str, rows: Vec<Value>| {
        ok(json!({
            "odata.metadata": format!("http://localhost/base/odata/standard.odata/$metadata#{CUSTOMERS}/@Element"),
            "Ref_Key": key,
            "DeletionMark": false,
            "Description": description,
            "КонтактнаяИнформация": rows,
        }))
    };
    if key == RETAIL_BUYER {
        return element("Розничный покупатель", Vec::new());
    }
    let found = state.all_sales().into_iter().rev().find(|sale| {
        sale.phone
            .as_deref()
            .is_some_and(|p| customer_key(p) == key)
    });
    match found {
        Some(sale) => {
            let phone = sale.phone.clone().unwrap_or_default();
            element(&sale.name.unwrap_or_default(), vec![contact_row(&phone)])
        }
        None => odata_error(StatusCode::NOT_FOUND, "Объект не найден"),
    }
}

/// A discount card and its owner (the counterparty of the phone of the sales paid with it).
fn card(state: &State, setup: &crate::OneCSetup, key: &str) -> Response {
    let found = state
        .all_sales()
        .into_iter()
        .find(|sale| sale.card.as_deref().is_some_and(|c| card_key(c) == key));
    let Some(sale) = found else {
        return odata_error(StatusCode::NOT_FOUND, "Объект не найден");
    };
    let owner = sale
        .phone
        .as_deref()
        .map(customer_key)
        .unwrap_or_else(|| ZERO_GUID.to_owned());
    let number = sale.card.clone().unwrap_or_default();
    let mut element = json!({
        "Ref_Key": key,
        "DeletionMark": false,
        "Description": format!("Карта {number}"),
        "КодКарты": number,
    });
    if setup.unf_cards {
        element["ВладелецКарты_Key"] = json!(owner);
    } else {
        element["ВладелецКарты"] = json!(owner);
        element["ВладелецКарты_Type"] = json!("StandardODATA.Catalog_Контрагенты");
    }
    ok(element)
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

fn customer_key(phone: &str) -> String {
    guid(&format!("customer:{}", digits(phone)))
}

fn card_key(number: &str) -> String {
    guid(&format!("card:{number}"))
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
