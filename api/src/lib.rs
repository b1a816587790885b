#![doc = include_str!("../README.md")]

pub mod audit;
pub mod auth;
pub mod balances;
pub mod client_ip;
pub mod csp;
pub mod envelope;
pub mod error;
pub mod gauges;
pub mod jwt;
pub mod limits;
pub mod proxies;
pub mod routes;
pub mod sessions;
pub mod state;
pub mod wire;

use envelope::{Envelope, ErrorEnvelope, REQUEST_ID};
use poem::{
    Endpoint, EndpointExt, IntoResponse, Request, Response, Route, get, handler,
    http::{HeaderValue, StatusCode},
    listener::Acceptor,
    web::Data,
};
use poem_openapi::{Object, OpenApiService, payload::Json};
use prometheus::{HistogramVec, register_histogram_vec};
use routes::{
    admin::AdminApi,
    admin_users::AdminUsersApi,
    analytics::AnalyticsApi,
    audit::AuditApi,
    auth::AuthApi,
    business::BusinessApi,
    events::{AdminEventsApi, EventsApi},
    loyalty::LoyaltyApi,
    media::MediaApi,
    operations::OperationsApi,
    partner::PartnerApi,
    payments::PaymentsApi,
    referral::ReferralApi,
    search::SearchApi,
    settlement::SettlementApi,
    support::SupportApi,
    users::UserApi,
};
use state::AppState;
use std::{
    sync::{Arc, LazyLock},
    time::{Duration, Instant},
};
use storage::history::ReplicaState;
use tracing::Instrument;

pub use state::AppState as State;

/// Request bodies above this are refused with 413: nothing we accept comes near it.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

static HTTP_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "http_request_duration_seconds",
        "HTTP requests, by method, route and status",
        &["method", "route", "status"],
        vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5
        ]
    )
    .expect("metric registers once")
});

/// The OpenAPI service of `/api/v1`.
pub fn api_service(
    state: &Arc<AppState>,
) -> OpenApiService<
    (
        AuthApi,
        UserApi,
        LoyaltyApi,
        BusinessApi,
        AdminApi,
        AdminUsersApi,
        OperationsApi,
        AnalyticsApi,
        EventsApi,
        AdminEventsApi,
        AuditApi,
        SearchApi,
        MediaApi,
        ReferralApi,
        PartnerApi,
        (SupportApi, SettlementApi, PaymentsApi),
    ),
    (),
> {
    OpenApiService::new(
        (
            AuthApi {
                state: state.clone(),
            },
            UserApi {
                state: state.clone(),
            },
            LoyaltyApi {
                state: state.clone(),
            },
            BusinessApi {
                state: state.clone(),
            },
            AdminApi {
                state: state.clone(),
            },
            AdminUsersApi {
                state: state.clone(),
            },
            OperationsApi {
                state: state.clone(),
            },
            AnalyticsApi {
                state: state.clone(),
            },
            EventsApi {
                state: state.clone(),
            },
            AdminEventsApi {
                state: state.clone(),
            },
            AuditApi {
                state: state.clone(),
            },
            SearchApi {
                state: state.clone(),
            },
            MediaApi {
                state: state.clone(),
            },
            ReferralApi {
                state: state.clone(),
            },
            PartnerApi {
                state: state.clone(),
            },
            // poem-openapi takes at most 16 APIs in a tuple: the last ones nest.
            (
                SupportApi {
                    state: state.clone(),
                },
                SettlementApi {
                    state: state.clone(),
                },
                PaymentsApi {
                    state: state.clone(),
                },
            ),
        ),
        "Свой Круг API",
        env!("CARGO_PKG_VERSION"),
    )
    .server("/api/v1")
}

/// The whole HTTP application.
pub fn app(state: Arc<AppState>) -> impl Endpoint<Output = Response> {
    let api = api_service(&state);
    let methods = Arc::new(error::Methods::from_spec(&api.spec(), "/api/v1"));
    let spec = api.spec_endpoint();
    let docs = api.swagger_ui();
    Route::new()
        .nest("/api/v1", api)
        .nest("/docs", docs.around(csp::pages))
        .at("/openapi.json", spec)
        .at("/health", get(health))
        .at("/ready", get(ready))
        .at("/metrics", get(metrics))
        .at("/board", get(board).around(csp::pages))
        .at("/partner", get(partner_page).around(csp::pages))
        .data(state)
        .around(limit_body)
        .around({
            let methods = methods.clone();
            move |next, req| {
                let methods = methods.clone();
                async move { error::envelope_errors(&methods, next, req).await }
            }
        })
        .around(move |next, req| {
            let methods = methods.clone();
            async move { request_context(&methods, next, req).await }
        })
}

/// Serves the app on `acceptor` until `shutdown` resolves, then lets requests in flight
/// finish (up to 10 s).
pub async fn serve<A: Acceptor + 'static>(
    acceptor: A,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    limits::SMS_BUDGET_LIMIT.set(state.limits.sms_budget_per_hour as i64);
    let announcements = balances::spawn_listener(
        state.balances.clone(),
        state.redis_url.clone(),
        state.cache.balances_channel(),
    );
    let revocations = sessions::spawn_sync(state.revoked.clone(), state.cache.clone());
    let gauges = gauges::spawn_refresh(state.clone(), gauges::REFRESH_EVERY);
    let served = poem::Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(app(state), shutdown, Some(Duration::from_secs(10)))
        .await;
    announcements.abort();
    revocations.abort();
    gauges.abort();
    served
}

/// Refuses bodies over [`MAX_BODY_BYTES`] with 413, whatever their headers say: every body
/// is read up to the cap before a route sees it. A declared length over the cap is refused
/// without reading; a body without `Content-Length` or `Transfer-Encoding` (a cleartext
/// HTTP/2 stream has neither) is capped as it is read. (poem's `SizeLimit` insists on
/// `Content-Length`, which would refuse chunked bodies and bodiless GETs alike.)
async fn limit_body<E: Endpoint>(next: E, mut req: Request) -> poem::Result<Response> {
    let too_large = || poem::Error::from_status(StatusCode::PAYLOAD_TOO_LARGE);
    let declared = req
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES) {
        return Err(too_large());
    }
    let body = req
        .take_body()
        .into_bytes_limit(MAX_BODY_BYTES)
        .await
        .map_err(|_| too_large())?;
    req.set_body(body);
    Ok(next.call(req).await?.into_response())
}

/// Gives every request an id (the client's `x-request-id` if it is sane), a log span, a
/// log line and a latency sample.
async fn request_context<E: Endpoint>(
    routes: &error::Methods,
    next: E,
    req: Request,
) -> poem::Result<Response> {
    let id = req
        .header("x-request-id")
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let method = req.method().to_string();
    let route = route_label(routes, req.uri().path());
    let span = tracing::info_span!("request", request_id = %id, method = %method, route = %route);
    let started = Instant::now();
    let result = REQUEST_ID
        .scope(id.clone(), next.call(req))
        .instrument(span.clone())
        .await;
    let mut response = match result {
        Ok(response) => response.into_response(),
        Err(error) => error.into_response(),
    };
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    HTTP_DURATION
        .with_label_values(&[method.as_str(), route.as_str(), &status.to_string()])
        .observe(elapsed.as_secs_f64());
    span.in_scope(|| {
        tracing::info!(
            status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "request"
        )
    });
    Ok(response)
}

/// The route a request is on, as the metrics' `route` label: the spec's template for the
/// API (`/api/v1/businesses/{id}`), the fixed paths as they are, `/docs` for everything under
/// it, and `other` for any path no route serves. The label's values are a fixed set: a
/// client requesting `/x1`, `/x2`, … makes no new series.
fn route_label(routes: &error::Methods, path: &str) -> String {
    if let Some(template) = routes.route(path) {
        return template;
    }
    match path {
        "/health" | "/ready" | "/metrics" | "/board" | "/partner" | "/openapi.json" => {
            path.to_owned()
        }
        _ if path == "/docs" || path.starts_with("/docs/") => "/docs".to_owned(),
        _ => "other".to_owned(),
    }
}

#[derive(Debug, Object)]
struct Health {
    status: String,
}

/// Liveness: the process answers.
#[handler]
fn health() -> Json<Envelope<Health>> {
    Json(Envelope::new(Health {
        status: "ok".to_owned(),
    }))
}

#[derive(Debug, Object)]
struct Readiness {
    status: String,
    postgres: String,
    redis: String,
    clickhouse: String,
    /// The history replica (`DATABASE_REPLICA_URL`): `ok`, `lagging` (over
    /// `storage::history::MAX_LAG` behind) or `unavailable` — history is read from the
    /// primary meanwhile, so the API stays ready — or `none`.
    replica: String,
}

/// Readiness: Postgres, Redis and ClickHouse all answer within two seconds. The replica's
/// state is shown, not required.
#[handler]
async fn ready(state: Data<&Arc<AppState>>) -> Response {
    let timeout = Duration::from_secs(2);
    let check = |ok: bool| if ok { "ok" } else { "unavailable" }.to_owned();
    let (postgres, redis, clickhouse) = tokio::join!(
        tokio::time::timeout(timeout, sqlx::query("SELECT 1").execute(&state.db)),
        tokio::time::timeout(timeout, state.cache.ping()),
        tokio::time::timeout(timeout, storage::analytics::ping(&state.clickhouse)),
    );
    let readiness = Readiness {
        postgres: check(matches!(postgres, Ok(Ok(_)))),
        redis: check(matches!(redis, Ok(Ok(_)))),
        clickhouse: check(matches!(clickhouse, Ok(Ok(_)))),
        replica: match state.history.replica_state() {
            None => "none",
            Some(ReplicaState::Answers) => "ok",
            Some(ReplicaState::Lagging) => "lagging",
            Some(ReplicaState::Unavailable) => "unavailable",
        }
        .to_owned(),
        status: String::new(),
    };
    let down: Vec<&str> = [
        ("postgres", &readiness.postgres),
        ("redis", &readiness.redis),
        ("clickhouse", &readiness.clickhouse),
    ]
    .into_iter()
    .filter(|(_, s)| s.as_str() != "ok")
    .map(|(name, _)| name)
    .collect();
    if down.is_empty() {
        Json(Envelope::new(Readiness {
            status: "ready".to_owned(),
            ..readiness
        }))
        .into_response()
    } else {
        let mut response = Json(ErrorEnvelope::new(
            "not_ready",
            format!("Unavailable: {}", down.join(", ")),
        ))
        .into_response();
        response.set_status(StatusCode::SERVICE_UNAVAILABLE);
        response
    }
}

/// The operations board: a static page over the admin API. The page holds no data; every
/// number on it comes from operator-only routes, after an operator's SMS sign-in.
#[handler]
fn board() -> poem::web::Html<&'static str> {
    poem::web::Html(include_str!("../assets/board.html"))
}

/// The partner page: a static page over the partners' API (`/business/…`), like the board.
/// The page holds no data; every number on it comes from routes that check the partner's
/// role at her business, after her SMS sign-in.
#[handler]
fn partner_page() -> poem::web::Html<&'static str> {
    poem::web::Html(include_str!("../assets/partner.html"))
}

/// Prometheus metrics of this process, with the system-wide gauges as last refreshed
/// ([`gauges`]). When `KRUG_METRICS_BIND` is set, `krug api` serves them there instead and
/// this public route answers 404.
#[handler]
async fn metrics(state: Data<&Arc<AppState>>) -> poem::Result<Response> {
    if !state.public_metrics {
        return Err(poem::Error::from_status(StatusCode::NOT_FOUND));
    }
    Ok(Response::builder()
        .content_type("text/plain; version=0.0.4")
        .body(jobs::metrics::render()))
}
