//! Errors: the one `ApiError` handlers build, the `Errors<S>` each operation declares (the
//! statuses its spec lists), and the middleware that gives poem's own errors (unknown
//! route, wrong method, oversized or malformed body) the same envelope.

use crate::envelope::ErrorEnvelope;
use poem::{Endpoint, IntoResponse, Request, Response, http::StatusCode};
use poem_openapi::{
    ApiResponse,
    payload::Json,
    registry::{MetaResponses, Registry},
};

/// Every error the API answers with. Expected outcomes carry their own code; unexpected
/// failures are logged with their cause and answered with a generic message. An operation
/// declares the part of it that it can answer as `Errors<S>`.
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

impl ApiError {
    /// The status this error answers with.
    fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Unauthorized(_) => 401,
            Self::Forbidden(_) => 403,
            Self::NotFound(_) => 404,
            Self::Conflict(_) => 409,
            Self::PayloadTooLarge(_) => 413,
            Self::UnsupportedMediaType(_) => 415,
            Self::Unprocessable(_) => 422,
            Self::TooManyRequests(..) => 429,
            Self::Internal(_) => 500,
            Self::Unavailable(_) => 503,
        }
    }
}

// The statuses an operation can answer with besides its successes, as bits of the `S` of
// `Errors<S>`: each operation's spec lists its own, not every status `ApiError` has.
pub const BAD_REQUEST: u16 = 1 << 0;
pub const UNAUTHORIZED: u16 = 1 << 1;
pub const FORBIDDEN: u16 = 1 << 2;
pub const NOT_FOUND: u16 = 1 << 3;
pub const CONFLICT: u16 = 1 << 4;
pub const PAYLOAD_TOO_LARGE: u16 = 1 << 5;
pub const UNSUPPORTED_MEDIA_TYPE: u16 = 1 << 6;
pub const UNPROCESSABLE: u16 = 1 << 7;
pub const TOO_MANY_REQUESTS: u16 = 1 << 8;
pub const INTERNAL: u16 = 1 << 9;
pub const UNAVAILABLE: u16 = 1 << 10;

/// What anything that reads the database can answer: 500, and 503 while it is down.
pub const SERVER: u16 = INTERNAL | UNAVAILABLE;
/// What a bearer token's check answers (`crate::auth`), before the operation runs: 401 for
/// a missing, invalid or ended token, 403 for a blocked member's or another role's token,
/// and the database's answers (an ended session's owner is looked up).
pub const SIGNED_IN: u16 = UNAUTHORIZED | FORBIDDEN | SERVER;
/// What reading a JSON body answers: 400 when it does not parse or fit the schema, 413
/// over `MAX_BODY_BYTES`, 415 when it is not `application/json`.
pub const JSON_BODY: u16 = BAD_REQUEST | PAYLOAD_TOO_LARGE | UNSUPPORTED_MEDIA_TYPE;

/// The bit of `status` in an `Errors<S>` set.
const fn bit(status: u16) -> u16 {
    match status {
        400 => BAD_REQUEST,
        401 => UNAUTHORIZED,
        403 => FORBIDDEN,
        404 => NOT_FOUND,
        409 => CONFLICT,
        413 => PAYLOAD_TOO_LARGE,
        415 => UNSUPPORTED_MEDIA_TYPE,
        422 => UNPROCESSABLE,
        429 => TOO_MANY_REQUESTS,
        500 => INTERNAL,
        503 => UNAVAILABLE,
        _ => 0,
    }
}

/// The error type an operation declares: an `ApiError` whose spec lists only the statuses
/// in `S` (e.g. `Errors<{ SIGNED_IN | NOT_FOUND }>`). Handlers build `ApiError`s and
/// convert with `?` or `.into()`; answering a status outside `S` is a bug in the
/// operation's declaration, caught by a debug assertion (the system tests run debug
/// builds).
#[derive(Debug)]
pub struct Errors<const S: u16>(ApiError);

impl<const S: u16, E: Into<ApiError>> From<E> for Errors<S> {
    fn from(error: E) -> Self {
        let error = error.into();
        debug_assert!(
            S & bit(error.status()) != 0,
            "an operation answered {}, which its declared statuses do not list: {error:?}",
            error.status()
        );
        Self(error)
    }
}

impl<const S: u16> From<Errors<S>> for poem::Error {
    fn from(errors: Errors<S>) -> Self {
        errors.0.into()
    }
}

impl<const S: u16> ApiResponse for Errors<S> {
    fn meta() -> MetaResponses {
        let mut meta = ApiError::meta();
        meta.responses
            .retain(|response| response.status.is_some_and(|status| S & bit(status) != 0));
        meta
    }

    fn register(registry: &mut Registry) {
        ApiError::register(registry);
    }
}

/// The result of an operation that can fail with the statuses in `S`.
pub type ApiResult<T, const S: u16> = Result<T, Errors<S>>;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn listed<const S: u16>() -> Vec<u16> {
        Errors::<S>::meta()
            .responses
            .iter()
            .filter_map(|r| r.status)
            .collect()
    }

    #[test]
    fn every_status_of_api_error_has_its_own_bit() {
        let statuses: Vec<u16> = ApiError::meta()
            .responses
            .iter()
            .map(|r| r.status.expect("each variant has one status"))
            .collect();
        let bits: u16 = statuses.iter().map(|s| bit(*s)).fold(0, |all, b| {
            assert_eq!(all & b, 0, "two statuses share a bit");
            all | b
        });
        assert!(statuses.iter().all(|s| bit(*s) != 0), "{statuses:?}");
        assert_eq!(bits.count_ones() as usize, statuses.len());
    }

    #[test]
    fn an_operation_lists_only_the_statuses_it_declares() {
        assert_eq!(
            listed::<{ SIGNED_IN | CONFLICT }>(),
            [401, 403, 409, 500, 503]
        );
        assert_eq!(
            listed::<{ JSON_BODY | UNAVAILABLE }>(),
            [400, 413, 415, 503]
        );
        assert_eq!(listed::<0>(), Vec::<u16>::new());
    }

    #[test]
    fn a_declared_status_converts_into_the_operation_error() {
        let error: Errors<NOT_FOUND> = ApiError::not_found("x", "y").into();
        assert_eq!(error.0.status(), 404);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "which its declared statuses do not list")]
    fn an_undeclared_status_is_a_bug_caught_in_debug_builds() {
        let _: Errors<NOT_FOUND> = ApiError::conflict("x", "y").into();
    }
}
