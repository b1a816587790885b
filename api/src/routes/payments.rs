//! `POST /payments/yookassa`: ЮKassa's notifications (https://yookassa.ru/developers/using-api/webhooks).
//!
//! The route is public, as a webhook must be; nothing in the body is believed. Its event
//! name says only *what to look at*: the payment (or refund) is fetched from ЮKassa by its
//! id with the shop's credentials and acted on as ЮKassa says it is
//! (`jobs::handlers::payments`). A forged notification can therefore only make us look at
//! a payment; a repeated one finds the work done.
//!
//! What ЮKassa expects back: HTTP 200 once the notification is handled; anything else and
//! it sends the notification again for 24 hours. So a notification we cannot act on for
//! good (a payment we never created, an event we do not subscribe to) is answered 200 with
//! `outcome` saying so, and only a failure worth repeating (ЮKassa or our database
//! unreachable) answers 503.

use crate::{
    envelope::{Envelope, ErrorEnvelope},
    error::{ApiError, ApiResult, JSON_BODY, UNAVAILABLE},
    state::AppState,
    wire::Text,
};
use jobs::{JobError, handlers::payments as settle};
use poem_openapi::{Object, OpenApi, Tags, payload::Json};
use std::sync::Arc;

#[derive(Tags)]
enum Tag {
    /// Notifications from the payment provider.
    Payments,
}

pub struct PaymentsApi {
    pub state: Arc<AppState>,
}

/// A notification as ЮKassa sends it: `{"type": "notification", "event": …, "object":
/// {…}}`. Only the event and the object's id are read.
#[derive(Debug, Object)]
pub struct YooKassaNotification {
    /// `notification` (ЮKassa always sends it).
    #[oai(rename = "type")]
    pub kind: Text,
    /// `payment.succeeded`, `payment.canceled`, `refund.succeeded` (others are ignored).
    pub event: Text,
    pub object: NotifiedObject,
}

/// The payment or refund a notification is about.
#[derive(Debug, Object)]
pub struct NotifiedObject {
    /// ЮKassa's id of it.
    pub id: Text,
}

/// What the notification came to.
#[derive(Debug, Object)]
pub struct NotificationReceipt {
    /// `confirmed`, `canceled`, `pending` (ЮKassa still waits for the payer), `refunding`,
    /// `refund_recorded`, `unknown` (no such payment of ours, or ЮKassa knows none),
    /// `mismatch` (ЮKassa's object is not what we created) or `ignored` (an event we do
    /// not act on).
    pub outcome: String,
}

#[OpenApi(tag = "Tag::Payments")]
impl PaymentsApi {
    /// ЮKassa's webhook. Public: each notification is verified by fetching its payment or
    /// refund from ЮKassa, and acted on as ЮKassa says it is; repeating one changes
    /// nothing. 200 once handled (whatever the outcome); 503 `payments_unavailable` when
    /// it cannot be checked now (ЮKassa then sends it again).
    #[oai(path = "/payments/yookassa", method = "post")]
    async fn yookassa(
        &self,
        body: Json<YooKassaNotification>,
    ) -> ApiResult<Json<Envelope<NotificationReceipt>>, { JSON_BODY | UNAVAILABLE }> {
        let Some(kassa) = self.state.payments.as_deref() else {
            return Err(unavailable("Payments are not configured.").into());
        };
        let db = &self.state.db;
        let id = body.object.id.trim();
        let outcome = match body.event.trim() {
            "payment.succeeded" | "payment.canceled" | "payment.waiting_for_capture" => {
                settle::act_on_payment(db, &self.state.queue, kassa, id).await
            }
            "refund.succeeded" => settle::act_on_refund(db, &self.state.queue, kassa, id).await,
            other => {
                tracing::info!(event = other, "ЮKassa notification ignored");
                return Ok(receipt("ignored"));
            }
        };
        match outcome {
            Ok(outcome) => {
                tracing::info!(event = %body.event.trim(), outcome = outcome.as_str(), "ЮKassa notification handled");
                Ok(receipt(outcome.as_str()))
            }
            Err(JobError::Retry(error) | JobError::Permanent(error)) => {
                tracing::warn!(error = %error, "ЮKassa notification not handled; ЮKassa will repeat it");
                Err(unavailable(
                    "The notification could not be checked with ЮKassa now; send it again.",
                )
                .into())
            }
        }
    }
}

fn receipt(outcome: &str) -> Json<Envelope<NotificationReceipt>> {
    Json(Envelope::new(NotificationReceipt {
        outcome: outcome.to_owned(),
    }))
}

fn unavailable(message: &str) -> ApiError {
    ApiError::Unavailable(Json(ErrorEnvelope::new("payments_unavailable", message)))
}
