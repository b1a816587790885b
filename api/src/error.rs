//! Errors: the one `ApiError` of every operation, and the middleware that gives poem's own
//! errors (unknown route, wrong method, oversized or malformed body) the same envelope.

use crate::envelope::ErrorEnvelope;
use poem::{Endpoint, IntoResponse, Request, Response, http::StatusCode};
use poem_openapi::{ApiResponse, payload::Json};

/// Every error an operation can answer with. Expected outcomes carry their own code;
/// unexpected failures are logged with their cause and answered with a generic message.
#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// The request is malformed.
    #[oai(status = 400)]
    BadRequest(Json<ErrorEnvelope>),
    /// Missing, expired or invalid credentials.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorEnvelope>),
    /// Authenticated, but not allowed.
    #[oai(status = 403)]
    Forbidden(Json<ErrorEnvelope>),
    /// No such thing (or not yours).
    #[oai(status = 404)]
    NotFound(Json<ErrorEnvelope>),
    /// Conflicts with the current state.
    #[oai(status = 409)]
    Conflict(Json<ErrorEnvelope>),
    /// The body is larger than the API accepts.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorEnvelope>),
    /// The body is not JSON (`Content-Type: application/json`).
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorEnvelope>),
    /// Well-formed, but a value is not acceptable.
    #[oai(status = 422)]
    Unprocessable(Json<ErrorEnvelope>),
    /// Too many requests: wait `Retry-After` seconds.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorEnvelope>, #[oai(header = "Retry-After")] String),
    /// Something failed on our side; the request id finds it in the logs.
    #[oai(status = 500)]
    Internal(Json<ErrorEnvelope>),
    /// A service we depend on is down; try again shortly.
    #[oai(status = 503)]
    Unavailable(Json<ErrorEnvelope>),
}

fn body(code: &str, message: impl Into<String>) -> Json<ErrorEnvelope> {
    Json(ErrorEnvelope::new(code, message))
}

impl ApiError {
    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::BadRequest(body(code, message))
    }
    pub fn unauthorized(code: &str, message: impl Into<String>) -> Self {
        Self::Unauthorized(body(code, message))
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden(body("forbidden", message))
    }
    /// The member is blocked by an operator (DESIGN.md round 2): she cannot sign in, scan
    /// or register.
    pub fn member_blocked() -> Self {
        Self::Forbidden(body(
            "member_blocked",
            "This account is blocked; contact support.",
        ))
    }
    pub fn not_found(code: &str, message: impl Into<String>) -> Self {
        Self::NotFound(body(code, message))
    }
    pub fn conflict(code: &str, message: impl Into<String>) -> Self {
        Self::Conflict(body(code, message))
    }
    pub fn unprocessable(code: &str, message: impl Into<String>) -> Self {
        Self::Unprocessable(body(code, message))
    }
    pub fn too_many(code: &str, message: impl Into<String>, retry_after_s: u64) -> Self {
        Self::TooManyRequests(body(code, message), retry_after_s.to_string())
    }
    pub fn queue_unavailable() -> Self {
        Self::Unavailable(body(
            "queue_unavailable",
            "The job queue is unavailable; nothing was done. Try again shortly.",
        ))
    }
    /// An unexpected failure: logged with its whole cause chain, answered without it.
    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        let error = error.into();
        jobs::metrics::note_error_chain(&error);
        tracing::error!(error.cause_chain = ?error, error.message = %error, "request failed");
        Self::Internal(body("internal_error", "Something went wrong on our side."))
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) => {
                jobs::metrics::note_database_error(&error);
                tracing::error!(error = %error, "database unavailable");
                Self::Unavailable(body(
                    "database_unavailable",
                    "The database is unavailable; try again shortly.",
                ))
            }
            other => Self::internal(other),
        }
    }
}

/// The result of every operation.
pub type ApiResult<T> = Result<T, ApiError>;

/// The methods each route of the spec answers, for the `Allow` header of a 405.
#[derive(Debug, Default)]
pub struct Methods {
    /// (path template split at `/`, methods), e.g. (["", "admin", "jobs", "{queue}", "{id}"], "GET").
    routes: Vec<(Vec<String>, Vec<String>)>,
}

impl Methods {
    /// Reads the paths of an OpenAPI document served under `prefix`.
    pub fn from_spec(spec: &str, prefix: &str) -> Self {
        let spec: serde_json::Value = serde_json::from_str(spec).unwrap_or_default();
        let routes = spec["paths"]
            .as_object()
            .map(|paths| {
                paths
                    .iter()
                    .map(|(path, ops)| {
                        let template = format!("{prefix}{path}")
                            .split('/')
                            .map(str::to_owned)
                            .collect();
                        let mut methods: Vec<String> = ops
                            .as_object()
                            .map(|o| o.keys().map(|m| m.to_ascii_uppercase()).collect())
                            .unwrap_or_default();
                        methods.sort();
                        (template, methods)
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self { routes }
    }

    fn allowed(&self, path: &str) -> Option<String> {
        self.matching(path).map(|(_, methods)| methods.join(", "))
    }

    /// The spec's template of the route `path` is on, e.g. `/api/v1/admin/jobs/{queue}/{id}`:
    /// a literal segment wins over a parameter (`/businesses/search` over `/businesses/{id}`).
    pub fn route(&self, path: &str) -> Option<String> {
        self.matching(path).map(|(template, _)| template.join("/"))
    }

    fn matching(&self, path: &str) -> Option<&(Vec<String>, Vec<String>)> {
        let segments: Vec<&str> = path.split('/').collect();
        self.routes
            .iter()
            .filter(|(template, _)| {
                template.len() == segments.len()
                    && template
                        .iter()
                        .zip(&segments)
                        .all(|(t, s)| t == s || (t.starts_with('{') && !s.is_empty()))
            })
            .max_by_key(|(template, _)| template.iter().filter(|t| !t.starts_with('{')).count())
    }
}

/// Puts every error response that did not come from an `ApiError` (poem's 404, 405, 413,
/// request parse failures, the auth checker) into the error envelope; a 405 says which
/// methods the route does take (`Allow`).
pub async fn envelope_errors<E: Endpoint>(
    methods: &Methods,
    next: E,
    req: Request,
) -> poem::Result<Response> {
    let path = req.uri().path().to_owned();
    let mut response = match next.call(req).await {
        Ok(response) => enveloped(response.into_response(), None),
        Err(error) => {
            let message = error.to_string();
            enveloped(error.into_response(), Some(message))
        }
    };
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && !response.headers().contains_key("allow")
    {
        if let Some(allow) = methods
            .allowed(&path)
            .and_then(|a| poem::http::HeaderValue::from_str(&a).ok())
        {
            response.headers_mut().insert("allow", allow);
        }
    }
    Ok(response)
}
fn enveloped(response: Response, message: Option<String>) -> Response {
    let status = response.status();
    let is_json = response
        .content_type()
        .is_some_and(|ct| ct.starts_with("application/json"));
    if status.is_success() || status.is_redirection() || is_json {
        return response;
    }
    let (code, default_message) = match status {
        StatusCode::BAD_REQUEST => ("bad_request", "The request could not be read."),
        StatusCode::UNAUTHORIZED => ("unauthorized", "Authentication is required."),
        StatusCode::FORBIDDEN => ("forbidden", "You are not allowed to do this."),
        StatusCode::NOT_FOUND => ("not_found", "There is nothing at this address."),
        StatusCode::METHOD_NOT_ALLOWED => {
            ("method_not_allowed", "This method is not allowed here.")
        }
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "The request body is too large."),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ("unsupported_media_type", "Send JSON (application/json).")
        }
        StatusCode::TOO_MANY_REQUESTS => ("too_many_requests", "Too many requests."),
        s if s.is_server_error() => ("internal_error", "Something went wrong on our side."),
        _ => ("error", "The request failed."),
    };
    // Parse and client errors explain themselves; server errors never leak their cause.
    let message = match message {
        Some(m) if status.is_client_error() && !m.is_empty() => m,
        _ => default_message.to_owned(),
    };
    let mut out = Json(ErrorEnvelope::new(code, message)).into_response();
    out.set_status(status);
    for (name, value) in response.headers() {
        if name == "retry-after" || name == "allow" || name == "www-authenticate" {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}
