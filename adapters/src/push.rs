//! Push notifications.
//!
//! FCM HTTP v1 (firebase.google.com/docs/reference/fcm/rest/v1/projects.messages/send):
//! `POST {base}/v1/projects/{project_id}/messages:send` with `Authorization: Bearer`, body
//! `{"message": {"token", "notification": {"title", "body"}, "data"}}`, reply
//! `{"name": "projects/{id}/messages/{message_id}"}`. Errors carry
//! `error.details[].errorCode` (type `google.firebase.fcm.v1.FcmError`): `UNREGISTERED` and
//! `INVALID_ARGUMENT` mean this token will never work (the device is forgotten); 429 and
//! 5xx are transient and may carry `Retry-After`, which is waited out when short and
//! otherwise handed to the caller ([`PushError::Throttled`]) (docs: "Best practices for FCM
//! registration token management" and the `FcmError` reference).
//!
//! The bearer token is an OAuth 2 access token minted from a service account
//! (`FCM_SERVICE_ACCOUNT_FILE`, Google's JSON key file: `client_email`, `private_key`,
//! `private_key_id`, `token_uri`): a JWT signed RS256 with the account's key, claims `iss`
//! (the account), `scope` (`https://www.googleapis.com/auth/firebase.messaging`), `aud`
//! (`token_uri`), `iat`, `exp` (at most an hour later), exchanged at `token_uri` with
//! `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=…` for
//! `{access_token, expires_in, token_type}` (developers.google.com/identity/protocols/
//! oauth2/service-account, "Preparing to make an authorized API call"; the scope constant
//! of Google's FCM v1 client libraries). The token is kept until five minutes before it
//! expires, and renewed at once when FCM answers 401.

use crate::http::{RetryPolicy, VendorError, Verdict, send, send_classified};
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// The OAuth scope of FCM HTTP v1.
pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// A minted token is renewed this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);

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
    /// The provider asked us (429, 503) to come back after this long.
    #[error("push provider asked to retry after {retry_after:?}")]
    Throttled { retry_after: Duration },
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

/// A Google service account, as its JSON key file describes it.
#[derive(Clone, Deserialize)]
pub struct ServiceAccount {
    pub client_email: String,
    private_key: SecretString,
    #[serde(default)]
    private_key_id: Option<String>,
    pub token_uri: String,
    #[serde(default)]
    pub project_id: Option<String>,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

impl ServiceAccount {
    /// Reads a key file's JSON. The error names what is wrong, never the key.
    pub fn from_json(json: &str) -> Result<Self, String> {
        let account: Self = serde_json::from_str(json).map_err(|_| {
            "not a service-account key file (client_email, private_key, token_uri)".to_owned()
        })?;
        jsonwebtoken::EncodingKey::from_rsa_pem(account.private_key.expose_secret().as_bytes())
            .map_err(|_| "its private_key is not an RSA key in PEM".to_owned())?;
        Ok(account)
    }

    /// A signed assertion asking for `scope`, valid an hour from `now` (Unix seconds).
    fn assertion(&self, scope: &str, now: u64) -> Result<String, PushError> {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = self.private_key_id.clone();
        let claims = json!({
            "iss": self.client_email,
            "scope": scope,
            "aud": self.token_uri,
            "iat": now,
            "exp": now + 3600,
        });
        let key =
            jsonwebtoken::EncodingKey::from_rsa_pem(self.private_key.expose_secret().as_bytes())
                .map_err(|_| {
                    PushError::Permanent("the service account's key is unusable".to_owned())
                })?;
        jsonwebtoken::encode(&header, &claims, &key).map_err(|_| {
            PushError::Permanent("signing the service-account assertion failed".to_owned())
        })
    }
}

/// Where FCM's bearer token comes from.
pub enum FcmAuth {
    /// Minted from a service account and renewed before it expires (production).
    ServiceAccount(ServiceAccount),
    /// A fixed token (`FCM_TOKEN`): it expires within the hour, so tests only.
    Static(SecretString),
}

/// A minted access token and when it stops being used.
struct Minted {
    token: SecretString,
    renew_at: SystemTime,
}

/// FCM HTTP v1.
pub struct HttpFcm {
    client: reqwest::Client,
    url: String,
    auth: FcmAuth,
    minted: tokio::sync::Mutex<Option<Minted>>,
    policy: RetryPolicy,
}

impl HttpFcm {
    pub fn new(base_url: &str, project_id: &str, auth: FcmAuth) -> Self {
        Self {
            client: crate::http_client(Duration::from_secs(10)),
            url: format!(
                "{}/v1/projects/{project_id}/messages:send",
                base_url.trim_end_matches('/')
            ),
            auth,
            minted: tokio::sync::Mutex::new(None),
            policy: RetryPolicy::default(),
        }
    }

    /// The bearer token to use now (`stale`: one FCM just refused, not to be used again).
    async fn bearer(&self, stale: Option<&str>) -> Result<SecretString, PushError> {
        let account = match &self.auth {
            FcmAuth::Static(token) => return Ok(token.clone()),
            FcmAuth::ServiceAccount(account) => account,
        };
        let mut minted = self.minted.lock().await;
        if let Some(current) = minted.as_ref()
            && current.renew_at > SystemTime::now()
            && stale != Some(current.token.expose_secret())
        {
            return Ok(current.token.clone());
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let assertion = account.assertion(FCM_SCOPE, now)?;
        let form = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion.as_str()),
        ];
        let reply = send(&self.policy, None, || {
            self.client.post(&account.token_uri).form(&form)
        })
        .await
        .map_err(|e| match e {
            e if e.is_transient() => PushError::Transient(e.to_string()),
            e => PushError::Permanent(format!("the service account was refused: {e}")),
        })?;
        #[derive(Deserialize)]
        struct TokenReply {
            access_token: String,
            expires_in: u64,
        }
        let token: TokenReply = serde_json::from_str(&reply.body).map_err(|_| {
            PushError::Transient("the token endpoint answered in another format".to_owned())
        })?;
        let lifetime = Duration::from_secs(token.expires_in);
        let secret = SecretString::from(token.access_token);
        *minted = Some(Minted {
            token: secret.clone(),
            renew_at: SystemTime::now() + lifetime.saturating_sub(RENEW_BEFORE),
        });
        Ok(secret)
    }

    async fn post(
        &self,
        bearer: &SecretString,
        body: &Value,
    ) -> Result<crate::http::Reply, VendorError> {
        send_classified(
            &self.policy,
            None,
            |status, body| match (status, fcm_error_code(body)) {
                // The FCM error code is an enum: safe to keep, and what decides.
                (400..=499, Some(code)) if status != 401 && status != 429 => {
                    Verdict::Fail(VendorError::Rejected {
                        status,
                        detail: code,
                    })
                }
                _ => Verdict::Generic,
            },
            || {
                self.client
                    .post(&self.url)
                    .bearer_auth(bearer.expose_secret())
                    .json(body)
            },
        )
        .await
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
        let bearer = self.bearer(None).await?;
        let reply = match self.post(&bearer, &body).await {
            // An expired or revoked token: one new one, one more try.
            Err(VendorError::Unauthorized { status: 401, .. })
                if matches!(self.auth, FcmAuth::ServiceAccount(_)) =>
            {
                let renewed = self.bearer(Some(bearer.expose_secret())).await?;
                self.post(&renewed, &body).await
            }
            other => other,
        };
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
            Err(VendorError::Rejected { detail, .. })
                if detail == "UNREGISTERED" || detail == "INVALID_ARGUMENT" =>
            {
                Err(PushError::TokenInvalid(detail))
            }
            Err(e) => match e.retry_after() {
                Some(retry_after) => Err(PushError::Throttled { retry_after }),
                None if e.is_transient() => Err(PushError::Transient(e.to_string())),
                None => Err(PushError::Permanent(e.to_string())),
            },
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
        let mut client = HttpFcm::new(
            &server.uri(),
            "krug-test",
            FcmAuth::Static("oauth-token".to_owned().into()),
        );
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

    // The service-account flow against the fakes of Google's token endpoint and FCM is
    // tested end to end in `tests/system/push.rs`.

    #[test]
    fn a_key_file_without_an_rsa_key_is_refused_without_quoting_it() {
        let error = ServiceAccount::from_json(
            &json!({"client_email": "a@b", "private_key": "SECRET-NOT-A-KEY", "token_uri": "https://x"})
                .to_string(),
        )
        .unwrap_err();
        assert!(!error.contains("SECRET"), "{error}");
        assert!(ServiceAccount::from_json("{}").is_err());
    }

    /// 429 and 503 name a time to come back: a short one is waited out here, a long one
    /// is handed to the caller (the job is scheduled for then).
    #[tokio::test]
    async fn retry_after_is_honoured_on_429_and_503() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(503).insert_header("Retry-After", "1"))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"name": "projects/p/messages/1"})),
            )
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "120"))
            .mount(&server)
            .await;
        let client = HttpFcm::new(&server.uri(), "p", FcmAuth::Static("t".to_owned().into()));
        let started = std::time::Instant::now();

        let first = client.send(&message()).await;
        let waited = started.elapsed();
        let second = client.send(&message()).await;

        assert!(first.is_ok(), "{first:?}");
        assert!(waited >= Duration::from_secs(1), "{waited:?}");
        assert_eq!(
            second,
            Err(PushError::Throttled {
                retry_after: Duration::from_secs(120)
            })
        );
    }
}
