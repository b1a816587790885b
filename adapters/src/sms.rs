//! Sending SMS.
//!
//! SMS.ru's HTTP API (`POST {base}/sms/send`, form fields `api_id`, `to`, `msg`, `json=1`)
//! as documented on sms.ru/api/send and used by its public example clients (the PHP
//! example class posting these fields with `json=1`; the Python `smsru_api` client).
//! Reply: `{"status": "OK", "status_code": 100, "sms": {"7999…": {"status": "OK",
//! "status_code": 100, "sms_id": "…"}}, "balance": 4122.56}`; a failed number carries its
//! own `status: "ERROR"`, `status_code` and `status_text`; a failed request has a top-level
//! `status: "ERROR"`.

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::{collections::HashMap, time::Duration};

/// Proof that the provider accepted a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsReceipt {
    /// The provider's message id.
    pub provider_id: Option<String>,
    /// The provider's reply, for the notification record.
    pub reply: String,
}

/// Why a message was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SmsError {
    /// Worth retrying later: network trouble, a 5xx, SMS.ru code 220 (service unavailable).
    #[error("SMS provider unavailable: {0}")]
    Transient(String),
    /// Will fail again: bad number, no money, bad credentials, stop-list, limits.
    #[error("SMS rejected ({code}): {reason}")]
    Permanent { code: i64, reason: String },
}

/// Sends a text to a phone (digits only, `79991234567`).
#[async_trait]
pub trait SmsSender: Send + Sync {
    /// The provider's name, recorded with every message.
    fn name(&self) -> &'static str;
    async fn send(&self, to_digits: &str, text: &str) -> Result<SmsReceipt, SmsError>;
}

/// Development provider: prints the message on standard output and accepts it.
/// The caller records every message in Postgres, so the text is there too.
#[derive(Debug, Default, Clone)]
pub struct LogSms;

#[async_trait]
impl SmsSender for LogSms {
    fn name(&self) -> &'static str {
        "log"
    }

    async fn send(&self, to_digits: &str, text: &str) -> Result<SmsReceipt, SmsError> {
        println!("[sms:log] to +{to_digits}: {text}");
        Ok(SmsReceipt {
            provider_id: None,
            reply: "logged".to_owned(),
        })
    }
}

/// SMS.ru over HTTPS.
#[derive(Debug, Clone)]
pub struct HttpSmsRu {
    client: reqwest::Client,
    base_url: String,
    api_id: SecretString,
    sender: Option<String>,
}

impl HttpSmsRu {
    pub fn new(base_url: &str, api_id: String, sender: Option<String>) -> Self {
        Self {
            client: crate::http_client(Duration::from_secs(10)),
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_id: api_id.into(),
            sender,
        }
    }
}

#[derive(Debug, Deserialize)]
struct SmsRuReply {
    status: String,
    status_code: i64,
    #[serde(default)]
    status_text: Option<String>,
    #[serde(default)]
    sms: HashMap<String, SmsRuNumber>,
}

#[derive(Debug, Deserialize)]
struct SmsRuNumber {
    status: String,
    status_code: i64,
    #[serde(default)]
    status_text: Option<String>,
    #[serde(default)]
    sms_id: Option<String>,
}

/// SMS.ru codes that are worth another try: 220 "service temporarily unavailable".
fn is_transient_code(code: i64) -> bool {
    code == 220
}

#[async_trait]
impl SmsSender for HttpSmsRu {
    fn name(&self) -> &'static str {
        "smsru"
    }

    async fn send(&self, to_digits: &str, text: &str) -> Result<SmsReceipt, SmsError> {
        let mut form = vec![
            ("api_id", self.api_id.expose_secret()),
            ("to", to_digits),
            ("msg", text),
            ("json", "1"),
        ];
        if let Some(sender) = &self.sender {
            form.push(("from", sender));
        }
        let response = self
            .client
            .post(format!("{}/sms/send", self.base_url))
            .form(&form)
            .send()
            .await
            .map_err(|e| SmsError::Transient(format!("request failed: {}", without_url(e))))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| {
            SmsError::Transient(format!("reading the reply failed: {}", without_url(e)))
        })?;
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(SmsError::Transient(format!(
                "HTTP {status}: {}",
                crate::excerpt(&body, 200)
            )));
        }
        let reply: SmsRuReply = serde_json::from_str(&body).map_err(|_| {
            SmsError::Transient(format!(
                "unexpected reply (HTTP {status}): {}",
                crate::excerpt(&body, 200)
            ))
        })?;
        if reply.status != "OK" {
            let reason = reply
                .status_text
                .unwrap_or_else(|| "request rejected".to_owned());
            return Err(if is_transient_code(reply.status_code) {
                SmsError::Transient(format!("{} ({})", reason, reply.status_code))
            } else {
                SmsError::Permanent {
                    code: reply.status_code,
                    reason,
                }
            });
        }
        let Some(number) = reply.sms.get(to_digits) else {
            return Err(SmsError::Transient(format!(
                "reply does not mention the recipient: {}",
                crate::excerpt(&body, 200)
            )));
        };
        if number.status != "OK" {
            let reason = number
                .status_text
                .clone()
                .unwrap_or_else(|| "recipient rejected".to_owned());
            return Err(if is_transient_code(number.status_code) {
                SmsError::Transient(format!("{} ({})", reason, number.status_code))
            } else {
                SmsError::Permanent {
                    code: number.status_code,
                    reason,
                }
            });
        }
        Ok(SmsReceipt {
            provider_id: number.sms_id.clone(),
            reply: crate::excerpt(&body, 1000),
        })
    }
}

/// reqwest errors carry the URL, and SMS.ru's URL would carry nothing secret (the api_id
/// travels in the body), but we keep the habit: no URLs in errors that reach logs.
fn without_url(error: reqwest::Error) -> String {
    error.without_url().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::{
        Mock, MockServer, ResponseTemplate,
        matchers::{body_string_contains, method, path},
    };

    async fn smsru(reply: ResponseTemplate) -> (MockServer, HttpSmsRu) {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/sms/send"))
            .and(body_string_contains("api_id=test-key"))
            .and(body_string_contains("json=1"))
            .and(body_string_contains("to=79991234567"))
            .respond_with(reply)
            .mount(&server)
            .await;
        let client = HttpSmsRu::new(&server.uri(), "test-key".to_owned(), None);
        (server, client)
    }

    #[tokio::test]
    async fn an_accepted_message_returns_its_sms_id() {
        let (_server, client) = smsru(ResponseTemplate::new(200).set_body_string(
            r#"{"status":"OK","status_code":100,"sms":{"79991234567":{"status":"OK","status_code":100,"sms_id":"000000-10000000"}},"balance":4122.56}"#,
        ))
        .await;
        let receipt = client.send("79991234567", "Код: 123456").await.unwrap();
        assert_eq!(receipt.provider_id.as_deref(), Some("000000-10000000"));
    }

    #[tokio::test]
    async fn a_bad_number_is_permanent_with_the_providers_reason() {
        let (_server, client) = smsru(ResponseTemplate::new(200).set_body_string(
            r#"{"status":"OK","status_code":100,"sms":{"79991234567":{"status":"ERROR","status_code":202,"status_text":"Неправильно указан номер телефона получателя"}},"balance":4122.56}"#,
        ))
        .await;
        let error = client.send("79991234567", "x").await.unwrap_err();
        assert_eq!(
            error,
            SmsError::Permanent {
                code: 202,
                reason: "Неправильно указан номер телефона получателя".to_owned()
            }
        );
    }

    #[tokio::test]
    async fn no_money_is_permanent() {
        let (_server, client) = smsru(ResponseTemplate::new(200).set_body_string(
            r#"{"status":"ERROR","status_code":201,"status_text":"Не хватает средств на лицевом счету"}"#,
        ))
        .await;
        assert!(matches!(
            client.send("79991234567", "x").await,
            Err(SmsError::Permanent { code: 201, .. })
        ));
    }

    #[tokio::test]
    async fn server_errors_and_code_220_are_transient() {
        let (_server, client) = smsru(ResponseTemplate::new(503).set_body_string("busy")).await;
        assert!(matches!(
            client.send("79991234567", "x").await,
            Err(SmsError::Transient(_))
        ));
        let (_server, client) = smsru(ResponseTemplate::new(200).set_body_string(
            r#"{"status":"ERROR","status_code":220,"status_text":"Сервис временно недоступен"}"#,
        ))
        .await;
        assert!(matches!(
            client.send("79991234567", "x").await,
            Err(SmsError::Transient(_))
        ));
    }

    #[tokio::test]
    async fn a_timeout_is_transient() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
            .mount(&server)
            .await;
        let mut client = HttpSmsRu::new(&server.uri(), "k".to_owned(), None);
        client.client = crate::http_client(Duration::from_millis(200));
        assert!(matches!(
            client.send("79991234567", "x").await,
            Err(SmsError::Transient(_))
        ));
    }
}
