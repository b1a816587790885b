//! Members-only events: the list, registration with a tier gate and a seat limit, proposals
//! by VIP and Elite members, and operators' approval (`PATCH /admin/events/{id}`).
//!
//! Paid events (a `price`, set by operators): registering holds a seat for
//! [`PAYMENT_HOLD`] and answers where to pay it at ЮKassa; the seat is confirmed when ЮKassa
//! says the payment succeeded (`routes::payments`, the `payments` job). Cancelling a paid
//! seat [`REFUND_NOTICE`] or more before the event refunds it.

use crate::{
    audit::{self, Change},
    auth::{Auth, Operator},
    envelope::{Envelope, ErrorEnvelope, Page},
    error::{
        ApiError, ApiResult, BAD_REQUEST, CONFLICT, JSON_BODY, NOT_FOUND, SIGNED_IN, UNPROCESSABLE,
    },
    routes::media::{ImageView, image_views},
    routes::{page_limit, parse_cursor},
    state::AppState,
    wire::{Amount, Text},
};
use adapters::payments::{NewPayment, PaymentError};
use domain::Tier;
use domain::local_time::start_of_day;
use poem_openapi::{
    ApiResponse, Object, OpenApi, Tags,
    param::{Path, Query},
    payload::Json,
};
use std::sync::Arc;
use storage::{
    events::{
        self, Cancellation, Event, EventFilter, EventStatus, NewEvent, Registration, StatusChange,
        Viewer,
    },
    payments::{self as paid, EventPayment, Hold, PaidCancellation},
    users,
};
use time::{Date, Duration, OffsetDateTime};
use uuid::Uuid;

/// Title length, in characters: long enough for "Дегустация сыров с шеф-поваром
/// Лисичкино", short enough for a push notification's title line.
const TITLE_CHARS: std::ops::RangeInclusive<usize> = 3..=200;
const DESCRIPTION_MAX_CHARS: usize = 5_000;
const LOCATION_MAX_CHARS: usize = 300;
/// Seats: at least one; the largest venue of the coalition seats far fewer than this.
const PARTICIPANTS: std::ops::RangeInclusive<i64> = 1..=10_000;
/// How long a seat is held while its member pays (issue 16).
pub const PAYMENT_HOLD: Duration = Duration::minutes(15);
/// Cancelling a paid seat at least this long before the event refunds it (issue 16).
pub const REFUND_NOTICE: Duration = Duration::hours(48);

#[derive(Tags)]
enum Tag {
    /// Members-only events.
    Events,
    /// Operators: approving and closing events.
    EventModeration,
}

/// Member routes: `/events…`.
pub struct EventsApi {
    pub state: Arc<AppState>,
}

/// Operator routes: `PATCH /admin/events/{id}`.
pub struct AdminEventsApi {
    pub state: Arc<AppState>,
}

/// An event, as the signed-in user sees it.
#[derive(Debug, Object)]
pub struct EventView {
    pub id: Uuid,
    pub title: String,
    pub description: String,
    /// When it starts (RFC 3339).
    pub date: OffsetDateTime,
    pub location: String,
    pub max_participants: u32,
    /// The lowest status that may register: `Insider`, `VIP`, `Elite` or `InnerCircle`.
    pub min_status_tier: String,
    /// `proposed`, `approved`, `active`, `completed` or `cancelled`.
    pub status: String,
    /// Seats taken.
    pub registered_count: u32,
    /// Whether the signed-in user holds a seat (a seat held while she pays is not one yet).
    pub is_registered: bool,
    /// What a seat costs (roubles, paid through ЮKassa); null: free.
    pub price: Option<Amount>,
    /// The cover, when one is uploaded.
    pub images: Vec<ImageView>,
}

/// Where to pay for a held seat.
#[derive(Debug, Object)]
pub struct PaymentView {
    /// Our payment's id.
    pub payment_id: Uuid,
    /// ЮKassa's payment page: open it to pay.
    pub confirmation_url: String,
    /// The seat is held until then; unpaid, it goes back on sale.
    pub expires_at: OffsetDateTime,
    pub amount: Amount,
}

impl PaymentView {
    fn of(payment: &EventPayment, confirmation_url: String) -> Self {
        Self {
            payment_id: payment.id,
            confirmation_url,
            expires_at: payment.hold_until,
            amount: payment.amount.into(),
        }
    }
}

/// What became of the money of a cancelled paid seat.
#[derive(Debug, Object)]
pub struct SeatRefundView {
    /// `requested` (ЮKassa is refunding it), `succeeded` (refunded), or `none` (no refund:
    /// cancelled less than 48 hours before the event, or nothing was paid).
    pub status: String,
    pub amount: Amount,
    /// In words, for the member.
    pub message: String,
}

/// An event after a cancellation, with what became of a paid seat's money.
#[derive(Debug, Object)]
pub struct CancellationView {
    #[oai(flatten)]
    pub event: EventView,
    /// Only for paid events.
    pub refund: Option<SeatRefundView>,
}

/// Events as the signed-in user sees them, with their covers.
async fn event_views(state: &AppState, events: Vec<Event>) -> Result<Vec<EventView>, ApiError> {
    let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    let media = storage::media::of_events(&state.db, &ids).await?;
    let mut views = Vec::with_capacity(events.len());
    for event in events {
        let own: Vec<_> = media
            .iter()
            .filter(|m| m.event_id == Some(event.id))
            .cloned()
            .collect();
        let images = image_views(&state.objects, &own).await;
        views.push(bare_view(event, images));
    }
    Ok(views)
}

async fn event_view(state: &AppState, event: Event) -> Result<EventView, ApiError> {
    Ok(event_views(state, vec![event]).await?.remove(0))
}

fn bare_view(e: Event, images: Vec<ImageView>) -> EventView {
    EventView {
        id: e.id,
        title: e.title,
        description: e.description,
        date: e.date,
        location: e.location,
        max_participants: e.max_participants.max(0) as u32,
        min_status_tier: e.min_status_tier.as_str().to_owned(),
        status: e.status.as_str().to_owned(),
        registered_count: e.registered_count.max(0) as u32,
        is_registered: e.is_registered,
        price: e.price.map(Amount),
        images,
    }
}

/// A proposal for an event (VIP and Elite members).
#[derive(Debug, Object)]
pub struct ProposeEvent {
    /// 3 to 200 characters.
    pub title: Text,
    /// Up to 5 000 characters.
    #[oai(nullable)]
    pub description: Option<Text>,
    /// When it starts (RFC 3339); must be in the future.
    pub date: OffsetDateTime,
    /// Up to 300 characters.
    #[oai(nullable)]
    pub location: Option<Text>,
    /// 1 to 10 000.
    pub max_participants: i64,
    /// `Insider` (the default), `VIP`, `Elite` or `InnerCircle` (its members only).
    #[oai(nullable)]
    pub min_status_tier: Option<Text>,
    /// What a seat costs, paid through ЮKassa (operators only); null or absent: free.
    #[oai(nullable)]
    pub price: Option<Amount>,
}

/// An operator's decision about an event.
#[derive(Debug, Object)]
pub struct UpdateEventStatus {
    /// `approved`, `active`, `completed` or `cancelled`. Proposals are approved or
    /// cancelled; approved events become active, completed or cancelled; active events
    /// completed or cancelled. Completed and cancelled are final.
    pub status: Text,
}

#[derive(ApiResponse)]
pub enum ProposeResponse {
    /// The proposal waits for an operator (status `proposed`).
    #[oai(status = 201)]
    Created(Json<Envelope<EventView>>),
}

#[derive(ApiResponse)]
pub enum RegisterResponse {
    /// A seat is yours.
    #[oai(status = 201)]
    Registered(Json<Envelope<EventView>>),
    /// You already had a seat; nothing changed.
    #[oai(status = 200)]
    AlreadyRegistered(Json<Envelope<EventView>>),
    /// A paid event: a seat is held for you for 15 minutes; pay at `confirmation_url`.
    /// Asking again while it is held answers the same payment.
    #[oai(status = 202)]
    PaymentRequired(Json<Envelope<PaymentView>>),
}

fn invalid(code: &str, message: impl Into<String>) -> ApiError {
    ApiError::unprocessable(code, message)
}

fn event_not_found() -> ApiError {
    ApiError::not_found("event_not_found", "No such event.")
}

fn tier_too_low(message: impl Into<String>) -> ApiError {
    ApiError::Forbidden(Json(ErrorEnvelope::new("tier_too_low", message)))
}

fn parse_status(value: &str, field: &str) -> Result<EventStatus, ApiError> {
    value
        .parse()
        .map_err(|e| invalid("invalid_status", format!("{field}: {e}")))
}

fn parse_tier(value: &str) -> Result<Tier, ApiError> {
    value.parse().map_err(|_| {
        invalid(
            "invalid_tier",
            "min_status_tier must be Insider, VIP, Elite or InnerCircle",
        )
    })
}

/// Checks a proposal and puts it in the shape it is stored in.
fn new_event(body: ProposeEvent, proposed_by: Uuid) -> Result<NewEvent, ApiError> {
    let title = body.title.trim().to_owned();
    if !TITLE_CHARS.contains(&title.chars().count()) {
        return Err(invalid(
            "invalid_title",
            format!(
                "title must be {} to {} characters",
                TITLE_CHARS.start(),
                TITLE_CHARS.end()
            ),
        ));
    }
    let description = body.description.unwrap_or_default().trim().to_owned();
    if description.chars().count() > DESCRIPTION_MAX_CHARS {
        return Err(invalid(
            "invalid_description",
            format!("description must be at most {DESCRIPTION_MAX_CHARS} characters"),
        ));
    }
    let location = body.location.unwrap_or_default().trim().to_owned();
    if location.chars().count() > LOCATION_MAX_CHARS {
        return Err(invalid(
            "invalid_location",
            format!("location must be at most {LOCATION_MAX_CHARS} characters"),
        ));
    }
    if body.date <= OffsetDateTime::now_utc() {
        return Err(invalid("invalid_date", "date must be in the future"));
    }
    if !PARTICIPANTS.contains(&body.max_participants) {
        return Err(invalid(
            "invalid_max_participants",
            format!(
                "max_participants must be between {} and {}",
                PARTICIPANTS.start(),
                PARTICIPANTS.end()
            ),
        ));
    }
    let tier = match body.min_status_tier.as_deref() {
        None => Tier::Insider,
        Some(name) => parse_tier(name.trim())?,
    };
    let price = body.price.map(Amount::value);
    if price.is_some_and(|p| p <= rust_decimal::Decimal::ZERO || p.scale() > 2) {
        return Err(invalid(
            "invalid_price",
            "price must be a positive amount of roubles with at most two decimals",
        ));
    }
    Ok(NewEvent {
        title,
        description,
        date: body.date,
        location,
        max_participants: body.max_participants as i32,
        min_status_tier: tier,
        proposed_by,
        price,
    })
}

impl EventsApi {
    fn viewer(auth: &Auth) -> Viewer {
        Viewer {
            user_id: auth.user_id(),
            operator: auth.0.is_operator(),
        }
    }

    /// The member's tier as stored now: access tokens do not carry it, and it changes
    /// with purchases and the nightly tier review.
    async fn tier(&self, user_id: Uuid) -> Result<Tier, ApiError> {
        let user = users::get(&self.state.db, user_id).await?.ok_or_else(|| {
            ApiError::not_found("user_not_found", "This account no longer exists.")
        })?;
        Ok(user.tier())
    }
}

#[OpenApi(tag = "Tag::Events")]
impl EventsApi {
    /// Events, soonest first. Members see approved, active and completed events, their
    /// own proposals and the events they registered for; operators see all.
    ///
    /// `from` and `to` are local dates (`KRUG_TIMEZONE`), both included.
    #[oai(path = "/events", method = "get")]
    async fn list(
        &self,
        auth: Auth,
        status: Query<Option<String>>,
        from: Query<Option<Date>>,
        to: Query<Option<Date>>,
        cursor: Query<Option<String>>,
        limit: Query<Option<u32>>,
    ) -> ApiResult<Json<Envelope<Page<EventView>>>, { SIGNED_IN | BAD_REQUEST | UNPROCESSABLE }>
    {
        let tz = self.state.timezone;
        let status = status
            .0
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| parse_status(s, "status"))
            .transpose()?;
        if let (Some(from), Some(to)) = (from.0, to.0)
            && from > to
        {
            return Err(invalid("invalid_range", "from must not be after to").into());
        }
        let filter = EventFilter {
            status,
            from: from.0.map(|d| start_of_day(tz, d)),
            // `to` is included: the window ends where the next day begins.
            until: to
                .0
                .and_then(Date::next_day)
                .map(|next| start_of_day(tz, next)),
        };
        let page = events::list(
            &self.state.db,
            Self::viewer(&auth),
            filter,
            parse_cursor(cursor.0.as_deref())?,
            page_limit(limit.0)?,
        )
        .await?;
        Ok(Json(Envelope::new(Page {
            items: event_views(&self.state, page.items).await?,
            next_cursor: page.next_cursor,
        })))
    }

    /// One event.
    #[oai(path = "/events/:id", method = "get")]
    async fn get(
        &self,
        auth: Auth,
        id: Path<Uuid>,
    ) -> ApiResult<Json<Envelope<EventView>>, { SIGNED_IN | BAD_REQUEST | NOT_FOUND }> {
        let event = events::get_visible(&self.state.db, id.0, Self::viewer(&auth))
            .await?
            .ok_or_else(event_not_found)?;
        Ok(Json(Envelope::new(event_view(&self.state, event).await?)))
    }

    /// Propose an event (VIP and Elite members). It is published once an operator
    /// approves it.
    #[oai(path = "/events", method = "post")]
    async fn propose(
        &self,
        auth: Auth,
        body: Json<ProposeEvent>,
    ) -> ApiResult<ProposeResponse, { SIGNED_IN | JSON_BODY | NOT_FOUND | UNPROCESSABLE }> {
        let user_id = auth.user_id();
        if !auth.0.is_operator() && self.tier(user_id).await? < Tier::Vip {
            return Err(
                tier_too_low("Proposing events needs VIP, Elite or Inner Circle status.").into(),
            );
        }
        if body.price.is_some() && !auth.0.is_operator() {
            return Err(ApiError::forbidden("Only operators set a price.").into());
        }
        let new = new_event(body.0, user_id)?;
        let event = events::create(&self.state.db, &new).await?;
        tracing::info!(event_id = %event.id, "event proposed");
        Ok(ProposeResponse::Created(Json(Envelope::new(
            event_view(&self.state, event).await?,
        ))))
    }

    /// Take a seat. Idempotent: a second call answers 200 and changes nothing. A full
    /// event answers 409 `event_full`; one that does not take registrations (proposed,
    /// completed, cancelled) 409 `registration_closed`; a member below the event's
    /// `min_status_tier` 403 `tier_too_low`.
    ///
    /// A paid event answers 202 with a ЮKassa payment to make within 15 minutes
    /// (`expires_at`); the seat is held meanwhile and confirmed when ЮKassa says it is
    /// paid. 503 `payments_unavailable`: ЮKassa could not take the payment (no seat is
    /// held).
    #[oai(path = "/events/:id/register", method = "post")]
    async fn register(
        &self,
        auth: Auth,
        id: Path<Uuid>,
    ) -> ApiResult<RegisterResponse, { SIGNED_IN | BAD_REQUEST | NOT_FOUND | CONFLICT }> {
        let db = &self.state.db;
        let user_id = auth.user_id();
        let event = events::get_visible(db, id.0, Self::viewer(&auth))
            .await?
            .ok_or_else(event_not_found)?;
        if !event.status().takes_registrations() {
            return Err(registration_closed(event.status()).into());
        }
        if event.is_registered {
            return Ok(RegisterResponse::AlreadyRegistered(Json(Envelope::new(
                event_view(&self.state, event).await?,
            ))));
        }
        let required = event.min_status_tier;
        if self.tier(user_id).await? < required {
            return Err(tier_too_low(if required.is_by_invitation() {
                "This event is for the Inner Circle only.".to_owned()
            } else {
                format!("This event is for {required} members and above.")
            })
            .into());
        }
        if event.price.is_some() {
            return Ok(self.register_paid(event, user_id).await?);
        }
        match events::register(db, event.id, user_id).await? {
            Registration::Registered(event) => Ok(RegisterResponse::Registered(Json(
                Envelope::new(event_view(&self.state, event).await?),
            ))),
            Registration::AlreadyRegistered(event) => Ok(RegisterResponse::AlreadyRegistered(
                Json(Envelope::new(event_view(&self.state, event).await?)),
            )),
            Registration::Full => Err(event_full().into()),
            Registration::Closed(status) => Err(registration_closed(status).into()),
        }
    }

    /// Give your seat back. Idempotent: without a seat it answers 200 and changes
    /// nothing. A completed event answers 409 `event_completed`.
    ///
    /// A paid seat given back 48 hours or more before the event is refunded through
    /// ЮKassa (`refund.status` `requested` or `succeeded`); later, it is not (`none`, and
    /// `refund.message` says so). A seat held for an unpaid payment is simply released.
    #[oai(path = "/events/:id/register", method = "delete")]
    async fn unregister(
        &self,
        auth: Auth,
        id: Path<Uuid>,
    ) -> ApiResult<
        Json<Envelope<CancellationView>>,
        { SIGNED_IN | BAD_REQUEST | NOT_FOUND | CONFLICT },
    > {
        let db = &self.state.db;
        let event = events::get_visible(db, id.0, Self::viewer(&auth))
            .await?
            .ok_or_else(event_not_found)?;
        if event.price.is_some() {
            return Ok(self.unregister_paid(event, auth.user_id()).await?);
        }
        match events::unregister(db, event.id, auth.user_id()).await? {
            Cancellation::Cancelled(event) | Cancellation::NotRegistered(event) => {
                Ok(Json(Envelope::new(CancellationView {
                    event: event_view(&self.state, event).await?,
                    refund: None,
                })))
            }
            Cancellation::Completed => Err(ApiError::conflict(
                "event_completed",
                "This event is over; its registrations are kept.",
            )
            .into()),
        }
    }
}

impl EventsApi {
    /// Holds a seat at a paid event and asks ЮKassa for its payment (see `register`).
    async fn register_paid(
        &self,
        event: Event,
        user_id: Uuid,
    ) -> Result<RegisterResponse, ApiError> {
        let db = &self.state.db;
        let (Some(kassa), Some(price)) = (self.state.payments.as_deref(), event.price) else {
            return Err(payments_unavailable(
                "Paid events are not available: payments are not configured.",
            ));
        };
        let hold_until = self.state.clock.now() + PAYMENT_HOLD;
        let payment = match paid::hold_seat(db, event.id, user_id, price, hold_until).await? {
            Hold::Held(payment) => payment,
            Hold::Open(open) => {
                return match open.confirmation_url.clone() {
                    Some(url) => Ok(RegisterResponse::PaymentRequired(Json(Envelope::new(
                        PaymentView::of(&open, url),
                    )))),
                    None => Err(ApiError::conflict(
                        "payment_in_progress",
                        "Your payment is being created; try again in a moment.",
                    )),
                };
            }
            Hold::AlreadyRegistered => {
                let event = events::get_for(db, event.id, user_id).await?;
                return Ok(RegisterResponse::AlreadyRegistered(Json(Envelope::new(
                    event_view(&self.state, event).await?,
                ))));
            }
            Hold::Full => return Err(event_full()),
            Hold::Closed(status) => return Err(registration_closed(status)),
        };
        let new = NewPayment {
            // Our id: a retry of this very creation can only answer the same payment.
            idempotence_key: payment.id.to_string(),
            amount: price,
            description: format!("Свой Круг: {}", event.title),
            return_url: self.state.payment_return_url.clone(),
            metadata: [
                ("krug_payment_id".to_owned(), payment.id.to_string()),
                ("event_id".to_owned(), event.id.to_string()),
                ("user_id".to_owned(), user_id.to_string()),
            ]
            .into(),
        };
        match kassa.create_payment(&new).await {
            Ok(made) => {
                let Some(url) = made.confirmation_url.clone() else {
                    paid::end_open(db, payment.id, paid::PaymentState::Failed).await?;
                    return Err(ApiError::internal(anyhow::anyhow!(
                        "ЮKassa created payment {} without a confirmation URL",
                        made.id
                    )));
                };
                let payment = paid::created(db, payment.id, &made.id, Some(&url))
                    .await?
                    .unwrap_or(payment);
                tracing::info!(payment_id = %payment.id, event_id = %event.id, "seat held for payment");
                Ok(RegisterResponse::PaymentRequired(Json(Envelope::new(
                    PaymentView::of(&payment, url),
                ))))
            }
            Err(error) => {
                // Nobody can pay a payment she never saw: the seat goes straight back.
                paid::end_open(db, payment.id, paid::PaymentState::Failed).await?;
                tracing::error!(payment_id = %payment.id, error = %error, "ЮKassa refused a payment");
                Err(payments_unavailable(match error {
                    PaymentError::Unauthorized => {
                        "Payments are unavailable: ЮKassa refused the shop's credentials. No seat was taken; try again later."
                    }
                    _ => "ЮKassa could not take the payment. No seat was taken; try again later.",
                }))
            }
        }
    }

    /// Gives a paid seat back, refunding it when it is early enough (see `unregister`).
    async fn unregister_paid(
        &self,
        event: Event,
        user_id: Uuid,
    ) -> Result<Json<Envelope<CancellationView>>, ApiError> {
        let db = &self.state.db;
        let early = event.date - self.state.clock.now() >= REFUND_NOTICE;
        let refund = match paid::unregister_paid(db, event.id, user_id, early).await? {
            PaidCancellation::Completed => {
                return Err(ApiError::conflict(
                    "event_completed",
                    "This event is over; its registrations are kept.",
                ));
            }
            PaidCancellation::NotRegistered => None,
            PaidCancellation::HoldReleased => Some(SeatRefundView {
                status: "none".to_owned(),
                amount: rust_decimal::Decimal::ZERO.into(),
                message: "Your held seat is released; nothing was paid.".to_owned(),
            }),
            PaidCancellation::Cancelled {
                payment: Some(payment),
                refund: true,
            } => {
                // Asked now; if ЮKassa does not answer, the `payments` job asks again.
                let status = match self.state.payments.as_deref() {
                    Some(kassa) => {
                        match jobs::handlers::payments::refund(
                            db,
                            &self.state.queue,
                            kassa,
                            &payment,
                        )
                        .await
                        {
                            Ok(Some(adapters::payments::RefundStatus::Succeeded)) => "succeeded",
                            Ok(_) => "requested",
                            Err(e) => {
                                tracing::warn!(payment_id = %payment.id, error = %e, "refund not made yet; the payments job retries it");
                                "requested"
                            }
                        }
                    }
                    None => "requested",
                };
                Some(SeatRefundView {
                    status: status.to_owned(),
                    amount: payment.amount.into(),
                    message: format!("{} ₽ are refunded to your card.", payment.amount),
                })
            }
            PaidCancellation::Cancelled { payment, .. } => Some(SeatRefundView {
                status: "none".to_owned(),
                amount: rust_decimal::Decimal::ZERO.into(),
                message: if payment.is_some() {
                    "No refund: the seat was cancelled less than 48 hours before the event."
                } else {
                    "No refund: nothing was paid for this seat."
                }
                .to_owned(),
            }),
        };
        let event = events::get_for(db, event.id, user_id).await?;
        Ok(Json(Envelope::new(CancellationView {
            event: event_view(&self.state, event).await?,
            refund,
        })))
    }
}

fn event_full() -> ApiError {
    ApiError::conflict("event_full", "Every seat at this event is taken.")
}

fn payments_unavailable(message: &str) -> ApiError {
    ApiError::Unavailable(Json(ErrorEnvelope::new("payments_unavailable", message)))
}

fn registration_closed(status: EventStatus) -> ApiError {
    ApiError::conflict(
        "registration_closed",
        format!("This event does not take registrations: it is {status}."),
    )
}

#[OpenApi(prefix_path = "/admin", tag = "Tag::EventModeration")]
impl AdminEventsApi {
    /// Approve, start, complete or cancel an event. Setting the status it already has
    /// changes nothing; a move its status does not allow answers 422 `invalid_transition`.
    #[oai(path = "/events/:id", method = "patch")]
    async fn update_status(
        &self,
        operator: Operator,
        id: Path<Uuid>,
        body: Json<UpdateEventStatus>,
    ) -> ApiResult<Json<Envelope<EventView>>, { SIGNED_IN | JSON_BODY | NOT_FOUND | UNPROCESSABLE }>
    {
        let to = parse_status(body.status.trim(), "status")?;
        let viewer = Viewer {
            user_id: operator.user_id(),
            operator: true,
        };
        let mut tx = self.state.db.begin().await?;
        match events::set_status(&mut tx, id.0, to, viewer).await? {
            StatusChange::Changed(event) => {
                let view = event_view(&self.state, event).await?;
                audit::record(
                    &mut *tx,
                    operator.user_id(),
                    Change::new("event.status", "event", view.id)
                        .after_value(serde_json::json!({"status": to.as_str()})),
                )
                .await?;
                tx.commit().await?;
                tracing::info!(event_id = %view.id, status = %to, "event status changed");
                Ok(Json(Envelope::new(view)))
            }
            StatusChange::Unchanged(event) => {
                Ok(Json(Envelope::new(event_view(&self.state, event).await?)))
            }
            StatusChange::NotAllowed(from) => Err(invalid(
                "invalid_transition",
                format!("status: a {from} event cannot become {to}"),
            )
            .into()),
            StatusChange::NotFound => Err(event_not_found().into()),
        }
    }
}
