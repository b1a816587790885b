//! Taking money: ЮKassa's API v3 (https://yookassa.ru/developers/api), behind
//! [`PaymentGateway`].
//!
//! What we use of it, as its reference documents:
//! - Authentication is HTTP Basic with the shop id as user and the secret key as password;
//!   wrong credentials answer 401 `invalid_credentials`.
//! - `POST /payments` and `POST /refunds` carry an `Idempotence-Key` header (up to 64
//!   characters): the same key with the same body within 24 hours answers the object the
//!   first request made, so a retry after a timeout never charges twice.
//! - A payment is `{id, status, paid, amount: {value, currency}, confirmation: {type:
//!   "redirect", confirmation_url, return_url}, metadata, …}`; its status goes `pending` →
//!   `succeeded` (with `capture: true`; `waiting_for_capture` only when we capture
//!   ourselves) or `canceled` (`cancellation_details: {party, reason}`).
//! - A refund is `{id, payment_id, status: pending | succeeded | canceled, amount}`.
//! - Errors are `{"type": "error", "code": …, "description": …}`: 400 `invalid_request`,
//!   401 `invalid_credentials`, 403 `forbidden`, 404 `not_found`, 429 `too_many_requests`,
//!   500 `internal_server_error` ("the result is unknown: repeat the request with the same
//!   Idempotence-Key").

use async_trait::async_trait;
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::{collections::BTreeMap, time::Duration};

/// Where a payment is, as ЮKassa says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Created; the payer has not paid (yet).
    Pending,
    /// Paid, waiting for the shop to capture or cancel it (two-stage payments only).
    WaitingForCapture,
    /// Paid and captured: the money is the shop's.
    Succeeded,
    /// Canceled: by the payer, the shop, the bank, or because it expired unpaid.
    Canceled,
}

/// Where a refund is, as ЮKassa says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    Pending,
    Succeeded,
    Canceled,
}

/// A payment as ЮKassa holds it (the part we read).
#[derive(Debug, Clone, PartialEq)]
pub struct Payment {
    pub id: String,
    pub status: PaymentStatus,
    /// Roubles.
    pub amount: Decimal,
    /// Where the payer pays (a `redirect` confirmation), while she may.
    pub confirmation_url: Option<String>,
    /// What we attached when creating it.
    pub metadata: BTreeMap<String, String>,
}

/// A refund as ЮKassa holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Refund {
    pub id: String,
    pub payment_id: String,
    pub status: RefundStatus,
    pub amount: Decimal,
}

/// A payment to create.
#[derive(Debug, Clone)]
pub struct NewPayment {
    /// Sent as `Idempotence-Key`: the same key answers the same payment.
    pub idempotence_key: String,
    pub amount: Decimal,
    /// Shown to the payer (up to 128 characters).
    pub description: String,
    /// Where ЮKassa sends the payer back after paying.
    pub return_url: String,
    pub metadata: BTreeMap<String, String>,
}

/// A refund to make.
#[derive(Debug, Clone)]
pub struct NewRefund {
    pub idempotence_key: String,
    pub payment_id: String,
    pub amount: Decimal,
    pub description: String,
}

/// Why ЮKassa did not do what we asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PaymentError {
    /// 401: the shop id or secret key is wrong. Nothing works until an operator fixes them.
    #[error("ЮKassa refused the shop's credentials (YOOKASSA_SHOP_ID / YOOKASSA_SECRET_KEY)")]
    Unauthorized,
    /// 404: no such payment or refund in this shop.
    #[error("ЮKassa knows no such object")]
    NotFound,
    /// 400 or 403: ЮKassa refused the request itself; repeating it will not help.
    #[error("ЮKassa refused the request ({code}): {description}")]
    Refused { code: String, description: String },
    /// Network trouble, 429 or 5xx: repeat later with the same Idempotence-Key.
    #[error("ЮKassa unavailable: {0}")]
    Unavailable(String),
}

/// Takes and returns money.
#[async_trait]
pub trait PaymentGateway: Send + Sync {
    async fn create_payment(&self, new: &NewPayment) -> Result<Payment, PaymentError>;
    async fn payment(&self, id: &str) -> Result<Payment, PaymentError>;
    async fn create_refund(&self, new: &NewRefund) -> Result<Refund, PaymentError>;
    async fn refund(&self, id: &str) -> Result<Refund, PaymentError>;
}

/// ЮKassa over HTTPS.
#[derive(Debug, Clone)]
pub struct HttpYooKassa {
    client: reqwest::Client,
    base_url: String,
    shop_id: String,
    secret_key: SecretString,
}

impl HttpYooKassa {
    /// `base_url` is `YOOKASSA_BASE_URL` (`https://api.yookassa.ru/v3`).
    pub fn new(base_url: &str, shop_id: String, secret_key: SecretString) -> Self {
        Self {
            // A member waits on the creation: ten seconds is already long.
            client: crate::http_client(Duration::from_secs(10)),
            base_url: base_url.trim_end_matches('/').to_owned(),
            shop_id,
            secret_key,
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        idempotence_key: Option<&str>,
        body: Option<Value>,
    ) -> Result<Value, PaymentError> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base_url))
            .basic_auth(&self.shop_id, Some(self.secret_key.expose_secret()));
        if let Some(key) = idempotence_key {
            request = request.header("Idempotence-Key", key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| PaymentError::Unavailable(e.without_url().to_string()))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| PaymentError::Unavailable(e.without_url().to_string()))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        let code = value["code"].as_str().unwrap_or_default().to_owned();
        let description = value["description"]
            .as_str()
            .map(|d| crate::excerpt(d, 200))
            .unwrap_or_else(|| crate::excerpt(&text, 200));
        Err(match status.as_u16() {
            401 => PaymentError::Unauthorized,
            404 => PaymentError::NotFound,
            400 | 403 => PaymentError::Refused { code, description },
            _ => PaymentError::Unavailable(format!("HTTP {status}: {description}")),
        })
    }
}

fn amount_json(amount: Decimal) -> Value {
    let mut value = amount.round_dp(2);
    value.rescale(2);
    json!({"value": value.to_string(), "currency": "RUB"})
}

fn malformed(what: &str) -> PaymentError {
    PaymentError::Unavailable(format!("ЮKassa's reply has no valid {what}"))
}

fn parse_amount(value: &Value) -> Result<Decimal, PaymentError> {
    value["value"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| malformed("amount"))
}

fn parse_payment(value: Value) -> Result<Payment, PaymentError> {
    Ok(Payment {
        id: value["id"]
            .as_str()
            .ok_or_else(|| malformed("id"))?
            .to_owned(),
        status: serde_json::from_value(value["status"].clone()).map_err(|_| malformed("status"))?,
        amount: parse_amount(&value["amount"])?,
        confirmation_url: value["confirmation"]["confirmation_url"]
            .as_str()
            .map(str::to_owned),
        metadata: value["metadata"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

fn parse_refund(value: Value) -> Result<Refund, PaymentError> {
    Ok(Refund {
        id: value["id"]
            .as_str()
            .ok_or_else(|| malformed("id"))?
            .to_owned(),
        payment_id: value["payment_id"]
            .as_str()
            .ok_or_else(|| malformed("payment_id"))?
            .to_owned(),
        status: serde_json::from_value(value["status"].clone()).map_err(|_| malformed("status"))?,
        amount: parse_amount(&value["amount"])?,
    })
}

/// An id we put in a URL path: ЮKassa's ids are letters, digits and dashes.
fn path_id(id: &str) -> Result<&str, PaymentError> {
    if !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        Ok(id)
    } else {
        Err(PaymentError::NotFound)
    }
}

#[async_trait]
impl PaymentGateway for HttpYooKassa {
    async fn create_payment(&self, new: &NewPayment) -> Result<Payment, PaymentError> {
        let body = json!({
            "amount": amount_json(new.amount),
            "capture": true,
            "confirmation": {"type": "redirect", "return_url": new.return_url},
            "description": new.description.chars().take(128).collect::<String>(),
            "metadata": new.metadata,
        });
        let reply = self
            .call(
                reqwest::Method::POST,
                "/payments",
                Some(&new.idempotence_key),
                Some(body),
            )
            .await?;
        parse_payment(reply)
    }

    async fn payment(&self, id: &str) -> Result<Payment, PaymentError> {
        let path = format!("/payments/{}", path_id(id)?);
        parse_payment(self.call(reqwest::Method::GET, &path, None, None).await?)
    }

    async fn create_refund(&self, new: &NewRefund) -> Result<Refund, PaymentError> {
        let body = json!({
            "payment_id": new.payment_id,
            "amount": amount_json(new.amount),
            "description": new.description.chars().take(250).collect::<String>(),
        });
        let reply = self
            .call(
                reqwest::Method::POST,
                "/refunds",
                Some(&new.idempotence_key),
                Some(body),
            )
            .await?;
        parse_refund(reply)
    }

    async fn refund(&self, id: &str) -> Result<Refund, PaymentError> {
        let path = format!("/refunds/{}", path_id(id)?);
        parse_refund(self.call(reqwest::Method::GET, &path, None, None).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;
    use simulators::yookassa::FakeYooKassa;

    fn new_payment(key: &str) -> NewPayment {
        NewPayment {
            idempotence_key: key.to_owned(),
            amount: dec!(1500),
            description: "Дегустация".to_owned(),
            return_url: "https://example.org/back".to_owned(),
            metadata: [("krug_payment_id".to_owned(), key.to_owned())].into(),
        }
    }

    #[tokio::test]
    async fn a_payment_is_created_once_per_key_paid_and_refunded() {
        let kassa = FakeYooKassa::start("shop-1", "secret-1").await.unwrap();
        let client = HttpYooKassa::new(&kassa.url, "shop-1".into(), "secret-1".to_owned().into());
        let first = client.create_payment(&new_payment("k-1")).await.unwrap();
        assert_eq!(first.status, PaymentStatus::Pending);
        assert_eq!(first.amount, dec!(1500));
        assert!(first.confirmation_url.is_some());
        assert_eq!(first.metadata["krug_payment_id"], "k-1");
        let again = client.create_payment(&new_payment("k-1")).await.unwrap();
        assert_eq!(
            again.id, first.id,
            "the same Idempotence-Key answers the same payment"
        );

        kassa.pay(&first.id);
        assert_eq!(
            client.payment(&first.id).await.unwrap().status,
            PaymentStatus::Succeeded
        );
        let refund = client
            .create_refund(&NewRefund {
                idempotence_key: "r-1".into(),
                payment_id: first.id.clone(),
                amount: dec!(1500),
                description: "Отмена".into(),
            })
            .await
            .unwrap();
        assert_eq!(refund.status, RefundStatus::Succeeded);
        assert_eq!(client.refund(&refund.id).await.unwrap(), refund);
    }

    #[tokio::test]
    async fn wrong_credentials_and_unknown_payments_are_named() {
        let kassa = FakeYooKassa::start("shop-1", "secret-1").await.unwrap();
        let wrong = HttpYooKassa::new(&kassa.url, "shop-1".into(), "nope".to_owned().into());
        assert_eq!(
            wrong.create_payment(&new_payment("k-2")).await,
            Err(PaymentError::Unauthorized)
        );
        let client = HttpYooKassa::new(&kassa.url, "shop-1".into(), "secret-1".to_owned().into());
        assert_eq!(
            client.payment("2f0b-unknown").await,
            Err(PaymentError::NotFound)
        );
        assert_eq!(
            client.payment("../refunds").await,
            Err(PaymentError::NotFound)
        );
    }
}
