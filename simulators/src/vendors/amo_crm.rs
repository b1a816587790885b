//! AMO CRM's API v4 (`https://{subdomain}.amocrm.ru/api/v4`), as the wellness centre uses it:
//! a sale is a lead moved to the system status 142 («Успешно реализовано»).
//!
//! - `GET /api/v4/leads?with=contacts&page=N&limit=L&filter[updated_at][from]=…&filter[updated_at][to]=…&order[updated_at]=asc|desc`
//!   with `Authorization: Bearer …` → `{"_page": N, "_links": {"self", "next"?},
//!   "_embedded": {"leads": [{id, name, price, status_id, pipeline_id, closed_at,
//!   created_at, updated_at, _embedded: {contacts: [{id, is_main}]}}]}}`, or `204 No Content`
//!   when the page is empty. `limit` is at most 250; `State::page_size` caps it further.
//!   The `to` bound is inclusive, as AMO's range filters are.
//! - A cancelled sale (or a refund of one) is the lead in status 143 («Закрыто и не
//!   реализовано»), changed at the time of the cancellation: AMO keeps no refund records.
//! - `GET /api/v4/contacts/{id}` → `{id, name, custom_fields_values: [{field_code: "PHONE",
//!   values: [{value, enum_code}]}]}`; `GET /api/v4/contacts?query=…` searches them;
//!   `204 No Content` when nothing matches.
//! - Without the right token: `401` with a `application/problem+json` body. A token is
//!   right if it is the long-lived one of `Vendor::AmoCrm.credentials()`, or an OAuth
//!   access token issued here and not expired (`TokenBook::expire_all` expires them).
//! - `POST /oauth2/access_token {client_id, client_secret, grant_type: "refresh_token",
//!   refresh_token, redirect_uri}` → `{token_type: "Bearer", expires_in: 86400,
//!   server_time, access_token, refresh_token}`: a new pair, and the refresh token spent
//!   (developers.kommo.com «Get token»). A spent or unknown refresh token gets 400
//!   problem+json (the body is our assumption).
//! - `Fault::Blocked`: 403, AMO's restriction of an abusive address.
//!
//! Lead and contact ids are numbers in AMO: a sale id that is not one gets a stable number.

use crate::{Sale, State, Vendor};
use poem::{
    EndpointExt, Request, Response, Route, get, handler,
    http::StatusCode,
    web::{Data, Path},
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::{collections::HashMap, str::FromStr, sync::Arc};
use time::OffsetDateTime;

/// AMO's system statuses, the same in every pipeline.
const WON: u64 = 142;
const LOST: u64 = 143;
const PIPELINE: u64 = 3_177_727;
/// The refresh token of `amo_oauth_credentials()`, good once.
pub(crate) const FIRST_REFRESH_TOKEN: &str = "sim-refresh-token-0";
/// AMO's own maximum page size.
const MAX_LIMIT: usize = 250;
/// AMO's default page size when `limit` is not given.
const DEFAULT_LIMIT: usize = 50;

pub(crate) fn routes(state: Arc<State>) -> Route {
    let base = super::base_path(Vendor::AmoCrm);
    state.tokens.accept_refresh(FIRST_REFRESH_TOKEN);
    Route::new()
        .at(
            "/oauth2/access_token",
            poem::post(access_token).data(state.clone()),
        )
        .nest(
            base,
            Route::new()
                .at("/leads", get(list_leads))
                .at("/contacts", get(search_contacts))
                .at("/contacts/:id", get(one_contact))
                .data(state),
        )
}

#[handler]
fn access_token(
    poem::web::Json(body): poem::web::Json<Value>,
    Data(state): Data<&Arc<State>>,
) -> Response {
    let expected = crate::amo_oauth_credentials();
    let field = |name: &str| body.get(name).and_then(Value::as_str).unwrap_or_default();
    let problem = |hint: &str| {
        Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .content_type("application/problem+json")
            .body(
                json!({"hint": hint, "title": "Некорректный запрос",
                       "type": "https://developers.amocrm.ru/v3/errors/OAuthProblemJson",
                       "status": 400, "detail": "В запросе отсутствует ряд параметров или параметры невалидны"})
                .to_string(),
            )
    };
    if field("grant_type") != "refresh_token"
        || field("client_id") != expected["client_id"]
        || field("client_secret") != expected["client_secret"]
        || field("redirect_uri") != expected["redirect_uri"]
    {
        return problem("Client authentication failed");
    }
    if state.tokens.spend_refresh(field("refresh_token")).is_err() {
        return problem("Token has been revoked");
    }
    hal(json!({
        "token_type": "Bearer",
        "expires_in": 86_400,
        "server_time": OffsetDateTime::now_utc().unix_timestamp(),
        "access_token": state.tokens.issue_access("amo"),
        "refresh_token": state.tokens.issue_refresh("amo"),
    }))
}

#[handler]
fn list_leads(req: &Request, Data(state): Data<&Arc<State>>) -> Response {
    if let Some(denied) = unauthorized(req, state) {
        return denied;
    }
    let query: HashMap<String, String> = req.params().unwrap_or_default();
    let number = |name: &str| query.get(name).and_then(|v| v.trim().parse::<i64>().ok());
    let from = number("filter[updated_at][from]")
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    // Inclusive upper bound: everything within that second.
    let to = number("filter[updated_at][to]")
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s + 1).ok())
        .unwrap_or_else(|| OffsetDateTime::now_utc() + time::Duration::days(3650));
    let mut sales = state.sales_between(from, to);
    if query.get("order[updated_at]").map(String::as_str) == Some("desc") {
        sales.reverse();
    }
    let page = number("page").unwrap_or(1).max(1) as usize;
    let limit = number("limit")
        .map(|l| l.clamp(1, MAX_LIMIT as i64) as usize)
        .unwrap_or(DEFAULT_LIMIT);
    let size = limit.min(state.page_size_or(MAX_LIMIT));
    let with_contacts = query
        .get("with")
        .is_some_and(|w| w.split(',').any(|p| p.trim() == "contacts"));
    let start = (page - 1).saturating_mul(size);
    let items: Vec<Value> = sales
        .iter()
        .skip(start)
        .take(size)
        .map(|s| lead(s, with_contacts))
        .collect();
    if items.is_empty() {
        return Response::builder().status(StatusCode::NO_CONTENT).finish();
    }
    let base = "https://sim.amocrm.ru/api/v4/leads";
    let mut links = json!({"self": {"href": format!("{base}?page={page}&limit={size}")}});
    if start + size < sales.len() {
        links["next"] = json!({"href": format!("{base}?page={}&limit={size}", page + 1)});
    }
    if page > 1 {
        links["prev"] = json!({"href": format!("{base}?page={}&limit={size}", page - 1)});
    }
    hal(json!({"_page": page, "_links": links, "_embedded": {"leads": items}}))
}

fn lead(sale: &Sale, with_contacts: bool) -> Value {
    // A refund is the original lead, lost at the time of the refund.
    let id = sale.refund_of.as_deref().unwrap_or(&sale.id);
    let lost = sale.cancelled || sale.refund_of.is_some();
    let at = sale.at.unix_timestamp();
    let mut lead = json!({
        "id": number_id(id),
        "name": format!("Сделка {id}"),
        "price": decimal_number(sale.amount),
        "responsible_user_id": 504_141,
        "group_id": 0,
        "status_id": if lost { LOST } else { WON },
        "pipeline_id": PIPELINE,
        "loss_reason_id": null,
        "created_by": 504_141,
        "updated_by": 504_141,
        "created_at": at - 86_400,
        "updated_at": at,
        "closed_at": at,
        "closest_task_at": null,
        "is_deleted": false,
        "custom_fields_values": null,
        "score": null,
        "account_id": 28_805_383,
        "_links": {"self": {"href": format!("https://sim.amocrm.ru/api/v4/leads/{}", number_id(id))}},
    });
    if with_contacts {
        let contacts: Vec<Value> = sale
            .phone
            .as_deref()
            .map(|p| json!({"id": contact_id(p), "is_main": true}))
            .into_iter()
            .collect();
        lead["_embedded"] = json!({"tags": [], "companies": [], "contacts": contacts});
    }
    lead
}

#[handler]
fn one_contact(req: &Request, Path(id): Path<u64>, Data(state): Data<&Arc<State>>) -> Response {
    if let Some(denied) = unauthorized(req, state) {
        return denied;
    }
    match people(state).into_iter().find(|(cid, _)| *cid == id) {
        Some((_, person)) => hal(person),
        None => Response::builder().status(StatusCode::NO_CONTENT).finish(),
    }
}

/// `?query=` searches the contacts' fields; for phones, by digits.
#[handler]
fn search_contacts(req: &Request, Data(state): Data<&Arc<State>>) -> Response {
    if let Some(denied) = unauthorized(req, state) {
        return denied;
    }
    let query: HashMap<String, String> = req.params().unwrap_or_default();
    let wanted = digits(query.get("query").map(String::as_str).unwrap_or_default());
    let found: Vec<Value> = people(state)
        .into_iter()
        .filter(|(_, person)| {
            !wanted.is_empty()
                && person["custom_fields_values"][0]["values"][0]["value"]
                    .as_str()
                    .is_some_and(|p| digits(p).contains(&wanted))
        })
        .map(|(_, person)| person)
        .collect();
    if found.is_empty() {
        return Response::builder().status(StatusCode::NO_CONTENT).finish();
    }
    hal(json!({
        "_page": 1,
        "_links": {"self": {"href": "https://sim.amocrm.ru/api/v4/contacts?page=1"}},
        "_embedded": {"contacts": found},
    }))
}

/// One contact per phone among the sales, with the latest name given.
fn people(state: &State) -> Vec<(u64, Value)> {
    let mut out: Vec<(u64, Value)> = Vec::new();
    for sale in state.all_sales() {
        let Some(phone) = sale.phone.as_deref() else {
            continue;
        };
        let id = contact_id(phone);
        let person = json!({
            "id": id,
            "name": sale.name.clone().unwrap_or_default(),
            "responsible_user_id": 504_141,
            "custom_fields_values": [{
                "field_id": 1_698_052,
                "field_name": "Телефон",
                "field_code": "PHONE",
                "field_type": "multitext",
                "values": [{"value": phone, "enum_id": 1_037_745, "enum_code": "MOB"}],
            }],
            "_links": {"self": {"href": format!("https://sim.amocrm.ru/api/v4/contacts/{id}")}},
        });
        match out.iter_mut().find(|(cid, _)| *cid == id) {
            Some(existing) => existing.1 = person,
            None => out.push((id, person)),
        }
    }
    out
}

fn unauthorized(req: &Request, state: &State) -> Option<Response> {
    let credentials = Vendor::AmoCrm.credentials();
    let long_lived = credentials["access_token"].as_str().unwrap_or_default();
    let given = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    (given != long_lived && !state.tokens.is_live(given)).then(|| {
        Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .content_type("application/problem+json")
            .body(
                json!({"title": "Unauthorized", "type": "https://httpstatus.es/401",
                       "status": 401, "detail": "Unauthorized"})
                .to_string(),
            )
    })
}

fn hal(body: Value) -> Response {
    Response::builder()
        .content_type("application/hal+json")
        .body(body.to_string())
}

/// The sale's id if it is a number, else a stable one (below 2^48, as AMO's ids are).
fn number_id(id: &str) -> u64 {
    id.parse()
        .unwrap_or_else(|_| hash_id(&format!("lead:{id}")))
}

fn contact_id(phone: &str) -> u64 {
    hash_id(&format!("contact:{}", digits(phone)))
}

fn hash_id(seed: &str) -> u64 {
    let hash = Sha256::digest(seed.as_bytes());
    let mut bytes = [0u8; 8];
    bytes[2..].copy_from_slice(&hash[..6]);
    u64::from_be_bytes(bytes).max(1)
}

/// AMO budgets are whole roubles in practice; the simulator still sends what it holds.
fn decimal_number(amount: rust_decimal::Decimal) -> Value {
    serde_json::Number::from_str(&amount.normalize().to_string())
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}
