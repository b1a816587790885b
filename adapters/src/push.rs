//! Push notifications.
//!
//! FCM HTTP v1 (firebase.google.com/docs/reference/fcm/rest/v1/projects.messages/send):
//! `POST {base}/v1/projects/{project_id}/messages:send` with `Authorization: Bearer`, body
//! `{"message": {"token", "notification": {"title", "body"}, "data"}}`, reply
//! `{"name": "projects/{id}/messages/{message_id}"}`. Errors carry
//! `error.details[].errorCode` (type `google.firebase.fcm.v1.FcmError`): `UNREGISTERED` and
//! `INVALID_ARGUMENT` mean this token will never work; 429 and 5xx are transient and may
//! carry `Retry-After` (docs: "Best practices for FCM registration token management" and
//! the `FcmError` reference).

use crate::http::{RetryPolicy, VendorError, send};
use async_trait::async_trait;
use serde_json::{Value, json};
use std::{collections::BTreeMap, time::Duration};

/// Proof that the provider accepted a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushReceipt {
    pub provider_id: Option<String>,
    pub reply: String,
}

/// Why a push was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The device token is dead (app uninstalled, token rotated): forget it.
    #[error("the device token is no longer valid ({0})")]
    TokenInvalid(String),
    /// Worth retrying later.
    #[error("push provider unavailable: {0}")]
    Transient(String),
    /// Will fail again for every token (credentials, project): an operator must look.
    #[error("push rejected: {0}")]
    Permanent(String),
}

/// A message for one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushMessage<'a> {
    pub token: &'a str,
    pub title: &'a str,
    pub body: &'a str,
    pub data: BTreeMap<String, String>,
}

#[async_trait]
pub trait PushSender: Send + Sync {
    fn name(&self) -> &'static str;
    async fn send(&self, message: &PushMessage<'_>) -> Result<PushReceipt, PushError>;
}

/// Development provider: prints and accepts.
#[derive(Debug, Default, Clone)]
pub struct LogPush;

#[async_trait]
impl PushSender for LogPush {
    fn name(&self) -> &'static str {
        "log"
    }

    async fn send(&self, message: &PushMessage<'_>) -> Result<PushReceipt, PushError> {
        println!("[push:log] {}: {}", message.title, message.body);
        Ok(PushReceipt {
            provider_id: None,
            reply: "logged".to_owned(),
        })
    }
}

/// FCM HTTP v1.
#[derive(Debug, Clone)]
pub struct HttpFcm {
    client: reqwest::Client,
    url: String,
    token: String,
    policy: RetryPolicy,
}

impl HttpFcm {
    pub fn new(base_url: &str, project_id: &str, access_token: String) -> Self {
        Self {
            client: crate::http_client(Duration::from_secs(10)),
            url: format!(
                "{}/v1/projects/{project_id}/messages:send",
                base_url.trim_end_matches('/')
            ),
            token: access_token,
            policy: RetryPolicy::default(),
        }
    }
}

/// The FCM error code of an error body, if it has one.
fn fcm_error_code(body: &str) -> Option<String> {
    let value: Value = serde_json::from_str(body).ok()?;
    value["error"]["details"]
        .as_array()?
        .iter()
        .find_map(|d| d["errorCode"].as_str().map(str::to_owned))
}

#[async_trait]
impl PushSender for HttpFcm {
    fn name(&self) -> &'static str {
        "fcm"
    }

    async fn send(&self, message: &PushMessage<'_>) -> Result<PushReceipt, PushError> {
        let body = json!({"message": {
            "token": message.token,
            "notification": {"title": message.title, "body": message.body},
            "data": message.data,
        }});
        let reply = send(&self.policy, None, || {
            self.client
                .post(&self.url)
                .bearer_auth(&self.token)
                .json(&body)
        })
        .await;
        match reply {
            Ok(reply) => {
                let name = serde_json::from_str::<Value>(&reply.body)
                    .ok()
                    .and_then(|v| v["name"].as_str().map(str::to_owned));
                Ok(PushReceipt {
                    provider_id: name,
                    reply: crate::excerpt(&reply.body, 500),
                })
            }
            Err(VendorError::Rejected { excerpt, .. }) => match fcm_error_code(&excerpt) {
                Some(code) if code == "UNREGISTERED" || code == "INVALID_ARGUMENT" => {
                    Err(PushError::TokenInvalid(code))
                }
                _ => Err(PushError::Permanent(excerpt)),
            },
            Err(e @ VendorError::Unauthorized { .. }) => Err(PushError::Permanent(e.to_string())),
            Err(e) if e.is_transient() => Err(PushError::Transient(e.to_string())),
            Err(e) => Err(PushError::Permanent(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::{
        Mock, MockServer, ResponseTemplate,
        matchers::{body_partial_json, header, method, path},
    };

    fn message() -> PushMessage<'static> {
        PushMessage {
            token: "device-token-1",
            title: "Свой Круг",
            body: "Купон на 15 %",
            data: BTreeMap::from([("coupon_id".to_owned(), "c-1".to_owned())]),
        }
    }

    async fn fcm(reply: ResponseTemplate) -> (MockServer, HttpFcm) {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/projects/krug-test/messages:send"))
            .and(header("authorization", "Bearer oauth-token"))
            .and(body_partial_json(json!({"message": {"token": "device-token-1", "notification": {"title": "Свой Круг"}}})))
            .respond_with(reply)
            .mount(&server)
            .await;
        let mut client = HttpFcm::new(&server.uri(), "krug-test", "oauth-token".to_owned());
        client.policy.base_delay = Duration::from_millis(10);
        (server, client)
    }

    #[tokio::test]
    async fn an_accepted_push_returns_the_message_name() {
        let (_server, client) = fcm(ResponseTemplate::new(200)
            .set_body_json(json!({"name": "projects/krug-test/messages/0:123"})))
        .await;
        let receipt = client.send(&message()).await.unwrap();
        assert_eq!(
            receipt.provider_id.as_deref(),
            Some("projects/krug-test/messages/0:123")
        );
    }

    #[tokio::test]
    async fn unregistered_and_invalid_tokens_are_reported_as_dead() {
        for (status, code) in [(404, "UNREGISTERED"), (400, "INVALID_ARGUMENT")] {
            let (_server, client) = fcm(ResponseTemplate::new(status).set_body_json(json!({"error": {
                "code": status, "message": "x", "status": "NOT_FOUND",
                "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}]
            }})))
            .await;
            assert_eq!(
                client.send(&message()).await,
                Err(PushError::TokenInvalid(code.to_owned()))
            );
        }
    }

    #[tokio::test]
    async fn server_errors_are_transient_and_bad_credentials_permanent() {
        let (_server, client) =
            fcm(ResponseTemplate::new(503).set_body_string("unavailable")).await;
        assert!(matches!(
            client.send(&message()).await,
            Err(PushError::Transient(_))
        ));
        let (_server, client) = fcm(ResponseTemplate::new(401).set_body_string("{}")).await;
        assert!(matches!(
            client.send(&message()).await,
            Err(PushError::Permanent(_))
        ));
    }
}
