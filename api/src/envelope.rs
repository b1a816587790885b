//! The response envelope of DESIGN.md and the request id it carries.

use poem_openapi::{
    Object,
    types::{ParseFromJSON, ToJSON},
};
use time::OffsetDateTime;

tokio::task_local! {
    /// The id of the request being served, set by the request middleware.
    pub static REQUEST_ID: String;
}

/// The current request's id (empty outside a request).
pub fn request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

/// Facts about the response itself.
#[derive(Debug, Clone, Object)]
pub struct Meta {
    /// When the response was made (RFC 3339, UTC).
    pub timestamp: OffsetDateTime,
    /// Also in the `x-request-id` header and in every log line of the request.
    pub request_id: String,
}

impl Meta {
    pub fn now() -> Self {
        Self {
            timestamp: OffsetDateTime::now_utc(),
            request_id: request_id(),
        }
    }
}

/// A successful response.
#[derive(Debug, Clone, Object)]
pub struct Envelope<T: ParseFromJSON + ToJSON> {
    /// Always `true`.
    pub success: bool,
    pub data: T,
    pub meta: Meta,
}

impl<T: ParseFromJSON + ToJSON> Envelope<T> {
    pub fn new(data: T) -> Self {
        Self {
            success: true,
            data,
            meta: Meta::now(),
        }
    }
}

/// What went wrong, for people (`message`) and programs (`code`).
#[derive(Debug, Clone, Object)]
pub struct ErrorBody {
    /// Stable snake_case code, e.g. `invalid_phone`.
    pub code: String,
    /// A sentence for people.
    pub message: String,
}

/// A failed response.
#[derive(Debug, Clone, Object)]
pub struct ErrorEnvelope {
    /// Always `false`.
    pub success: bool,
    pub error: ErrorBody,
    pub meta: Meta,
}

impl ErrorEnvelope {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            success: false,
            error: ErrorBody {
                code: code.into(),
                message: message.into(),
            },
            meta: Meta::now(),
        }
    }
}

/// A page of a list.
#[derive(Debug, Clone, Object)]
pub struct Page<T: ParseFromJSON + ToJSON> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}
