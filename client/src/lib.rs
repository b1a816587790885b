//! A small HTTP client of our own API, for `krug demo` and the black-box tests: they drive
//! the system exactly as the mobile app and operators do.

use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use std::time::{Duration, Instant};
use storage::cache::Cache;

/// An API response: status, JSON body (the envelope) and headers.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl ApiResponse {
    /// `body.data`.
    pub fn data(&self) -> &Value {
        &self.body["data"]
    }

    /// `body.error.code`, if this is an error.
    pub fn error_code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }
}

/// A client of `/api/v1`, optionally signed in.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    /// `http://host:port`.
    pub base: String,
    token: Option<String>,
}

impl ApiClient {
    pub fn new(base: impl Into<String>) -> Self {
        Self {
            http: adapters::http_client(Duration::from_secs(30)),
            base: base.into(),
            token: None,
        }
    }

    /// The same client, signed in with `access_token`.
    pub fn signed_in(&self, access_token: &str) -> Self {
        Self {
            token: Some(access_token.to_owned()),
            ..self.clone()
        }
    }

    /// The same client, signed in with the access token of a `POST /auth/verify-code` answer.
    pub fn signed_in_session(&self, session: &Value) -> anyhow::Result<Self> {
        let token = session["access_token"]
            .as_str()
            .context("no access token")?;
        Ok(self.signed_in(token))
    }

    /// `path` is relative to `/api/v1` unless it starts with `//` (then it is from the root).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<ApiResponse> {
        self.call_with_headers(method, path, body, &[]).await
    }

    /// [`ApiClient::call`] with extra request headers (`Idempotency-Key`, …).
    pub async fn call_with_headers(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<ApiResponse> {
        let url = match path.strip_prefix("//") {
            Some(root) => format!("{}/{root}", self.base),
            None => format!("{}/api/v1{path}", self.base),
        };
        let mut request = self.http.request(method, url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(ApiResponse {
            status,
            body,
            headers,
        })
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<ApiResponse> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<ApiResponse> {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> anyhow::Result<ApiResponse> {
        self.call(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<ApiResponse> {
        self.call(Method::DELETE, path, None).await
    }
}

/// The login code that the development SMS provider (`log`) sent for the `otp_send` job
/// `job_id` (what `POST /auth/send-code` returned), once it is sent: how a developer, the
/// demo and the tests read their SMS.
pub async fn dev_otp_code(db: &PgPool, job_id: &str) -> anyhow::Result<Option<String>> {
    let body: Option<String> = sqlx::query_scalar(
        "SELECT body FROM notifications WHERE dedupe_key = $1 AND provider = 'log' AND status = 'sent'",
    )
    .bind(format!("otp:{job_id}"))
    .fetch_optional(db)
    .await?;
    Ok(body.and_then(|b| {
        b.split(|c: char| !c.is_ascii_digit())
            .find(|part| part.len() == 6)
            .map(str::to_owned)
    }))
}

/// Fails unless the response has `status`; the error shows the body.
pub fn expect(response: ApiResponse, status: u16) -> anyhow::Result<ApiResponse> {
    if response.status != status {
        bail!(
            "expected HTTP {status}, got {}: {}",
            response.status,
            response.body
        );
    }
    Ok(response)
}

/// Signs in by SMS as the app does: asks for a code, reads it from the development SMS
/// record, verifies it. Lifts the phone's one-code-a-minute limit first, so that a demo or
/// test may sign the same phone in again.
pub async fn sign_in(
    db: &PgPool,
    cache: &Cache,
    api: &ApiClient,
    phone: &str,
) -> anyhow::Result<ApiClient> {
    let session = sign_in_session(db, cache, api, phone, json!({})).await?;
    api.signed_in_session(&session)
}

/// Signs `phone` in as [`sign_in`] does, with `extra` fields in `POST /auth/verify-code`
/// (`referral_code`), and returns the session as answered.
pub async fn sign_in_session(
    db: &PgPool,
    cache: &Cache,
    api: &ApiClient,
    phone: &str,
    extra: Value,
) -> anyhow::Result<Value> {
    cache.release_otp_send(phone).await?;
    let sent = expect(
        api.post("/auth/send-code", &json!({"phone": phone}))
            .await?,
        202,
    )?;
    let job_id = sent.data()["job_id"]
        .as_str()
        .context("no job id")?
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(code) = dev_otp_code(db, &job_id).await? {
            break code;
        }
        if Instant::now() > deadline {
            bail!("no login code reached {phone} within 10 s: is the otp_send worker running?");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let mut body = json!({"phone": phone, "code": code});
    if let Some(extra) = extra.as_object() {
        for (key, value) in extra {
            body[key] = value.clone();
        }
    }
    let session = expect(api.post("/auth/verify-code", &body).await?, 200)?;
    Ok(session.data().clone())
}

/// Polls a scan until it is `done` or `failed` and returns its status object.
pub async fn wait_for_scan(member: &ApiClient, job_id: &str) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = expect(
            member.get(&format!("/transactions/scan/{job_id}")).await?,
            200,
        )?;
        if matches!(status.data()["state"].as_str(), Some("done" | "failed")) {
            return Ok(status.data().clone());
        }
        if Instant::now() > deadline {
            bail!("scan {job_id} not processed within 15 s: is the qr_scan worker running?");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Scans (`POST /transactions/scan` with `body`) and waits for the outcome.
pub async fn scan_and_wait(member: &ApiClient, body: &Value) -> anyhow::Result<Value> {
    let accepted = expect(member.post("/transactions/scan", body).await?, 202)?;
    let job_id = accepted.data()["job_id"]
        .as_str()
        .context("no job id")?
        .to_owned();
    wait_for_scan(member, &job_id).await
}
