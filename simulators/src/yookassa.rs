//! ЮKassa, API v3, as its reference describes it (https://yookassa.ru/developers/api),
//! for the tests and the demo.
//!
//! - Every request authenticates with HTTP Basic, the shop id and its secret key; anything
//!   else gets 401 `{"type": "error", "code": "invalid_credentials", …}` ("Authentication":
//!   https://yookassa.ru/developers/api#authentication; error shape and codes:
//!   https://yookassa.ru/developers/using-api/response-handling/response-format).
//! - `POST /payments` and `POST /refunds` need an `Idempotence-Key` header (400
//!   `invalid_request` without one). The same key with the same body answers the object the
//!   first request made; the same key with another body is 400 ("Idempotence":
//!   https://yookassa.ru/developers/using-api/interaction-format#idempotence).
//! - `POST /payments {amount: {value, currency}, capture, confirmation: {type: "redirect",
//!   return_url}, description, metadata}` answers a payment in status `pending`, `paid:
//!   false`, with `confirmation.confirmation_url` where the payer pays
//!   (https://yookassa.ru/developers/api#create_payment). `GET /payments/{id}` answers it as
//!   it is now, 404 `not_found` for an id the shop does not have
//!   (https://yookassa.ru/developers/api#get_payment).
//! - The payer acts on the confirmation page: paying moves the payment to `succeeded` (with
//!   `capture: true`) or `waiting_for_capture` (with `capture: false`); leaving or failing
//!   moves it to `canceled` with `cancellation_details: {party, reason}` ("Payment
//!   statuses": https://yookassa.ru/developers/payment-acceptance/getting-started/payment-process#lifecycle).
//!   Here the page is `{base}/checkout/{id}` with `POST …/pay` and `POST …/cancel`, and
//!   tests may call [`FakeYooKassa::pay`] and [`FakeYooKassa::cancel`] instead.
//! - `POST /refunds {payment_id, amount, description}`: only a `succeeded` payment, at most
//!   what is left of it (400 otherwise); the refund is `succeeded` at once, as refunds of
//!   bank-card payments are (https://yookassa.ru/developers/api#create_refund);
//!   `GET /refunds/{id}` (https://yookassa.ru/developers/api#get_refund).
//! - Notifications (`{"type": "notification", "event": "payment.succeeded" |
//!   "payment.canceled" | "refund.succeeded", "object": {…}}`,
//!   https://yookassa.ru/developers/using-api/webhooks) are sent by ЮKassa to the URL in the
//!   shop's settings and repeated for 24 hours until it answers 200. The fake hands them to
//!   the caller ([`FakeYooKassa::notification`]) instead: a test delivers them, repeats them,
//!   or forges one.

use base64::Engine;
use poem::{
    EndpointExt, Request, Response, Route, Server, handler,
    http::StatusCode,
    listener::{Acceptor, Listener, TcpListener},
    web::{Data, Json, Path},
};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use tokio::sync::oneshot;

/// What the fake holds and saw.
#[derive(Default)]
pub struct KassaState {
    shop_id: String,
    secret_key: String,
    base: Mutex<String>,
    payments: Mutex<HashMap<String, Value>>,
    refunds: Mutex<HashMap<String, Value>>,
    /// (path, Idempotence-Key) → (the request body, the answer).
    idempotence: Mutex<HashMap<(String, String), (Value, Value)>>,
    counter: AtomicUsize,
    /// Payments created (replays of a key not counted).
    pub payments_created: AtomicUsize,
    /// Refunds made (replays of a key not counted).
    pub refunds_created: AtomicUsize,
    /// Requests refused for their credentials.
    pub unauthorized: AtomicUsize,
}

/// A running fake ЮKassa.
pub struct FakeYooKassa {
    /// The API's base (`YOOKASSA_BASE_URL`), ending in `/v3`.
    pub url: String,
    pub state: Arc<KassaState>,
    stop: Option<oneshot::Sender<()>>,
}

impl FakeYooKassa {
    /// A shop `shop_id` whose secret key is `secret_key`.
    pub async fn start(shop_id: &str, secret_key: &str) -> std::io::Result<Self> {
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await?;
        let addr = acceptor.local_addr()[0]
            .as_socket_addr()
            .copied()
            .expect("a TCP listener has a socket address");
        let base = format!("http://{addr}");
        let state = Arc::new(KassaState {
            shop_id: shop_id.to_owned(),
            secret_key: secret_key.to_owned(),
            base: Mutex::new(base.clone()),
            ..KassaState::default()
        });
        let app = Route::new()
            .at("/v3/payments", poem::post(create_payment))
            .at("/v3/payments/:id", poem::get(get_payment))
            .at("/v3/refunds", poem::post(create_refund))
            .at("/v3/refunds/:id", poem::get(get_refund))
            .at("/checkout/:id/pay", poem::post(checkout_pay))
            .at("/checkout/:id/cancel", poem::post(checkout_cancel))
            .data(state.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor)
                .run_with_graceful_shutdown(
                    app,
                    async {
                        let _ = stopped.await;
                    },
                    None,
                )
                .await;
        });
        Ok(Self {
            url: format!("{base}/v3"),
            state,
            stop: Some(stop),
        })
    }

    /// The payer pays on the confirmation page. False if the payment is not `pending`.
    pub fn pay(&self, id: &str) -> bool {
        self.state.pay(id)
    }

    /// The payer gives up (or the bank declines): the payment is `canceled`. False if it
    /// is not `pending`.
    pub fn cancel(&self, id: &str) -> bool {
        self.state
            .cancel(id, "yoo_money", "expired_on_confirmation")
    }

    /// The payment as ЮKassa holds it now.
    pub fn payment(&self, id: &str) -> Option<Value> {
        self.state.payments.lock().unwrap().get(id).cloned()
    }

    /// The refunds made of payment `payment_id`.
    pub fn refunds_of(&self, payment_id: &str) -> Vec<Value> {
        self.state
            .refunds
            .lock()
            .unwrap()
            .values()
            .filter(|r| r["payment_id"] == payment_id)
            .cloned()
            .collect()
    }

    /// The notification ЮKassa would send for `event` about object `id` (a payment, or a
    /// refund for `refund.*`), as it is now; `None` if the fake does not hold it.
    pub fn notification(&self, event: &str, id: &str) -> Option<Value> {
        let object = if event.starts_with("refund.") {
            self.state.refunds.lock().unwrap().get(id).cloned()
        } else {
            self.payment(id)
        }?;
        Some(json!({"type": "notification", "event": event, "object": object}))
    }

    pub fn payments_created(&self) -> usize {
        self.state.payments_created.load(Ordering::SeqCst)
    }

    pub fn refunds_created(&self) -> usize {
        self.state.refunds_created.load(Ordering::SeqCst)
    }
}

impl Drop for FakeYooKassa {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl KassaState {
    /// An id in ЮKassa's shape (`22e12f66-000f-5000-8000-18db351245c7`).
    fn next_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::SeqCst) as u64;
        let seed = (OffsetDateTime::now_utc().unix_timestamp_nanos() as u64) ^ (n << 40);
        format!(
            "{:08x}-000f-5000-{:04x}-{:012x}",
            (seed >> 16) as u32,
            0x8000 | (n as u16 & 0x0fff),
            seed & 0xffff_ffff_ffff
        )
    }

    fn pay(&self, id: &str) -> bool {
        let mut payments = self.payments.lock().unwrap();
        let Some(payment) = payments.get_mut(id) else {
            return false;
        };
        if payment["status"] != "pending" {
            return false;
        }
        let captured = payment["capture"].as_bool().unwrap_or(false);
        payment["status"] = json!(if captured {
            "succeeded"
        } else {
            "waiting_for_capture"
        });
        payment["paid"] = json!(true);
        payment["refundable"] = json!(captured);
        if captured {
            payment["captured_at"] = json!(now());
        }
        true
    }

    fn cancel(&self, id: &str, party: &str, reason: &str) -> bool {
        let mut payments = self.payments.lock().unwrap();
        let Some(payment) = payments.get_mut(id) else {
            return false;
        };
        if payment["status"] != "pending" {
            return false;
        }
        payment["status"] = json!("canceled");
        payment["cancellation_details"] = json!({"party": party, "reason": reason});
        true
    }
}

fn now() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .expect("now formats")
}

fn reply(status: StatusCode, body: Value) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(body.to_string())
}

fn error(status: StatusCode, code: &str, description: &str) -> Response {
    reply(
        status,
        json!({"type": "error", "id": "0000-fake", "code": code, "description": description}),
    )
}

fn authorized(req: &Request, state: &KassaState) -> bool {
    let expected = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", state.shop_id, state.secret_key));
    let ok = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        == Some(expected.as_str());
    if !ok {
        state.unauthorized.fetch_add(1, Ordering::SeqCst);
    }
    ok
}

fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "Authentication by given credentials failed",
    )
}

/// Answers a replay of an Idempotence-Key, or runs `make` once and remembers what it made.
/// The key's slot stays locked while `make` runs, so two requests racing with one key make
/// one object.
fn idempotent(
    req: &Request,
    state: &KassaState,
    body: &Value,
    make: impl FnOnce() -> Result<Value, Response>,
) -> Response {
    let Some(key) = req
        .headers()
        .get("idempotence-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty() && k.len() <= 64)
        .map(str::to_owned)
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Idempotence-Key header is required",
        );
    };
    let slot = (req.uri().path().to_owned(), key);
    let mut seen = state.idempotence.lock().unwrap();
    if let Some((first_body, answer)) = seen.get(&slot) {
        return if first_body == body {
            reply(StatusCode::OK, answer.clone())
        } else {
            error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Idempotence key duplicated with another request body",
            )
        };
    }
    match make() {
        Ok(answer) => {
            seen.insert(slot, (body.clone(), answer.clone()));
            reply(StatusCode::OK, answer)
        }
        Err(refused) => refused,
    }
}

fn parse_money(value: &Value) -> Option<Decimal> {
    if value["currency"] != "RUB" {
        return None;
    }
    value["value"]
        .as_str()?
        .parse::<Decimal>()
        .ok()
        .filter(|v| *v > Decimal::ZERO && v.scale() <= 2)
}

#[handler]
fn create_payment(
    req: &Request,
    Json(body): Json<Value>,
    Data(state): Data<&Arc<KassaState>>,
) -> Response {
    if !authorized(req, state) {
        return unauthorized();
    }
    idempotent(req, state, &body, || {
        let Some(amount) = parse_money(&body["amount"]) else {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Invalid amount",
            ));
        };
        if body["confirmation"]["type"] != "redirect" {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Only the redirect confirmation is simulated",
            ));
        }
        let id = state.next_id();
        let base = state.base.lock().unwrap().clone();
        let payment = json!({
            "id": id,
            "status": "pending",
            "paid": false,
            "amount": {"value": format!("{:.2}", amount), "currency": "RUB"},
            "confirmation": {
                "type": "redirect",
                "return_url": body["confirmation"]["return_url"],
                "confirmation_url": format!("{base}/checkout/{id}"),
            },
            "capture": body["capture"].as_bool().unwrap_or(false),
            "created_at": now(),
            "description": body["description"],
            "metadata": body["metadata"].as_object().cloned().unwrap_or_default(),
            "recipient": {"account_id": state.shop_id, "gateway_id": "1"},
            "refundable": false,
            "test": true,
        });
        state
            .payments
            .lock()
            .unwrap()
            .insert(id.clone(), payment.clone());
        state.payments_created.fetch_add(1, Ordering::SeqCst);
        Ok(payment)
    })
}

/// A payment or refund as it is now.
fn current(map: &Mutex<HashMap<String, Value>>, id: &str) -> Response {
    match map.lock().unwrap().get(id) {
        Some(object) => reply(StatusCode::OK, object.clone()),
        None => error(StatusCode::NOT_FOUND, "not_found", "Object not found"),
    }
}

#[handler]
fn get_payment(
    req: &Request,
    Path(id): Path<String>,
    Data(state): Data<&Arc<KassaState>>,
) -> Response {
    if !authorized(req, state) {
        return unauthorized();
    }
    current(&state.payments, &id)
}

#[handler]
fn create_refund(
    req: &Request,
    Json(body): Json<Value>,
    Data(state): Data<&Arc<KassaState>>,
) -> Response {
    if !authorized(req, state) {
        return unauthorized();
    }
    idempotent(req, state, &body, || {
        let Some(amount) = parse_money(&body["amount"]) else {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Invalid amount",
            ));
        };
        let payment_id = body["payment_id"].as_str().unwrap_or_default().to_owned();
        let mut payments = state.payments.lock().unwrap();
        let Some(payment) = payments.get_mut(&payment_id) else {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Payment not found",
            ));
        };
        if payment["status"] != "succeeded" {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Only a succeeded payment can be refunded",
            ));
        }
        let paid: Decimal = payment["amount"]["value"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or_default();
        let refunded: Decimal = payment["refunded_amount"]["value"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or_default();
        if refunded + amount > paid {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Refund amount exceeds the amount left to refund",
            ));
        }
        payment["refunded_amount"] =
            json!({"value": format!("{:.2}", refunded + amount), "currency": "RUB"});
        payment["refundable"] = json!(refunded + amount < paid);
        let id = state.next_id();
        let refund = json!({
            "id": id,
            "payment_id": payment_id,
            "status": "succeeded",
            "amount": {"value": format!("{:.2}", amount), "currency": "RUB"},
            "created_at": now(),
            "description": body["description"],
        });
        state
            .refunds
            .lock()
            .unwrap()
            .insert(id.clone(), refund.clone());
        state.refunds_created.fetch_add(1, Ordering::SeqCst);
        Ok(refund)
    })
}

#[handler]
fn get_refund(
    req: &Request,
    Path(id): Path<String>,
    Data(state): Data<&Arc<KassaState>>,
) -> Response {
    if !authorized(req, state) {
        return unauthorized();
    }
    current(&state.refunds, &id)
}

/// The confirmation page's "Pay" button.
#[handler]
fn checkout_pay(Path(id): Path<String>, Data(state): Data<&Arc<KassaState>>) -> Response {
    if state.pay(&id) {
        reply(StatusCode::OK, json!({"paid": true}))
    } else {
        error(
            StatusCode::CONFLICT,
            "invalid_request",
            "Payment is not pending",
        )
    }
}

/// The confirmation page's "Cancel": the payer leaves.
#[handler]
fn checkout_cancel(Path(id): Path<String>, Data(state): Data<&Arc<KassaState>>) -> Response {
    if state.cancel(&id, "yoo_money", "expired_on_confirmation") {
        reply(StatusCode::OK, json!({"canceled": true}))
    } else {
        error(
            StatusCode::CONFLICT,
            "invalid_request",
            "Payment is not pending",
        )
    }
}
