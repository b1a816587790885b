#![doc = include_str!("../README.md")]

pub mod fcm;
mod vendors;
pub mod yookassa;

use domain::crm::CrmType;
use poem::{
    Endpoint, EndpointExt, IntoResponse, Request, Response, Route, Server,
    http::StatusCode,
    listener::{Acceptor, Listener, TcpListener},
};
use rust_decimal::Decimal;
use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};
use time::OffsetDateTime;
use tokio::sync::oneshot;

/// The vendors we simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Yclients,
    Iiko,
    OneC,
    AmoCrm,
    Renovatio,
}

impl Vendor {
    pub const ALL: [Vendor; 5] = [
        Self::Yclients,
        Self::Iiko,
        Self::OneC,
        Self::AmoCrm,
        Self::Renovatio,
    ];

    /// The CRM it simulates (its `crm_type`).
    pub fn crm_type(self) -> CrmType {
        match self {
            Self::Yclients => CrmType::Yclients,
            Self::Iiko => CrmType::Iiko,
            Self::OneC => CrmType::OneC,
            Self::AmoCrm => CrmType::AmoCrm,
            Self::Renovatio => CrmType::Renovatio,
        }
    }

    /// The credentials this simulator accepts, in the shape of DESIGN.md's `crm_credentials`.
    pub fn credentials(self) -> serde_json::Value {
        vendors::credentials(self)
    }
}

/// iiko's v2 login (`/api/v2/access_token`), which the iiko simulator accepts too.
pub fn iiko_application_credentials() -> serde_json::Value {
    vendors::iiko_application_credentials()
}

/// AMO CRM's OAuth credentials the AMO simulator accepts (its first refresh token is
/// accepted once, as AMO's are).
pub fn amo_oauth_credentials() -> serde_json::Value {
    vendors::amo_oauth_credentials()
}

/// A sale as the simulated business recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sale {
    /// The vendor's record id.
    pub id: String,
    /// Positive, roubles.
    pub amount: Decimal,
    /// When it happened (and was last changed).
    pub at: OffsetDateTime,
    /// As the vendor stores it (any common written form).
    pub phone: Option<String>,
    pub name: Option<String>,
    /// A refund of the sale with this id.
    pub refund_of: Option<String>,
    /// Cancelled after the fact (YCLIENTS `deleted`, iiko `Cancelled`, 1C `DeletionMark`, …).
    pub cancelled: bool,
    /// Paid with this discount card (1C: the check points at the card, whose owner has the
    /// phone, instead of at a counterparty).
    pub card: Option<String>,
}

impl Sale {
    pub fn purchase(
        id: impl Into<String>,
        amount: Decimal,
        at: OffsetDateTime,
        phone: &str,
    ) -> Self {
        Self {
            id: id.into(),
            amount,
            at,
            phone: Some(phone.to_owned()),
            name: None,
            refund_of: None,
            cancelled: false,
            card: None,
        }
    }
}

/// How the simulated 1C infobase is configured (its defaults are Розница 2's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneCSetup {
    /// Refunds are `Document_ЧекККМВозврат` pointing at the sale by `ЧекККМ_Key` (УНФ,
    /// Розница 2, УТ 11); otherwise returns are `Document_ЧекККМ` with `ВидОперации`
    /// «Возврат» and `ЧекККМПродажа_Key` (older configurations).
    pub separate_refunds: bool,
    /// The installation's own phone attribute on checks, if it added one.
    pub phone_attribute: Option<String>,
    /// УНФ's discount cards (`Catalog_ДисконтныеКарты`, `ВладелецКарты_Key`) instead of
    /// Розница's (`Catalog_ИнформационныеКарты`, composite `ВладелецКарты`).
    pub unf_cards: bool,
    /// The publication refuses `$filter` on `Date`: HTTP 500 «Операция не разрешена в
    /// предложении "ГДЕ"».
    pub refuses_date_filter: bool,
}

impl Default for OneCSetup {
    fn default() -> Self {
        Self {
            separate_refunds: true,
            phone_attribute: None,
            unf_cards: false,
            refuses_date_filter: false,
        }
    }
}

/// A way to misbehave, used once, on the next request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 429 with `Retry-After: seconds`.
    RateLimited { retry_after_s: u64 },
    /// 500.
    ServerError,
    /// 401.
    Unauthorized,
    /// 200 with a body that is not the vendor's format.
    Malformed,
    /// 408: the vendor's own server-side timeout ran out (iiko documents it everywhere).
    RequestTimeout,
    /// 403 with a body saying our address is blocked (AMO CRM's answer to abuse).
    Blocked,
    /// 200 with a body of this many bytes (a vendor gone wrong, or a hostile one).
    Huge { bytes: usize },
}

/// What a simulator holds and how it behaves.
#[derive(Debug, Default)]
pub struct State {
    pub sales: Mutex<Vec<Sale>>,
    faults: Mutex<VecDeque<Fault>>,
    requests: AtomicUsize,
    /// Records per page (each vendor's own maximum applies on top).
    pub page_size: Mutex<Option<usize>>,
    /// Deliver every sale twice within a listing (a vendor's duplicate delivery).
    pub duplicate: std::sync::atomic::AtomicBool,
    /// The vendor's rate limits, `(n, period)`, when enforced (`Simulator::limit_rate`).
    rate_limits: Mutex<Vec<(u32, Duration)>>,
    /// When the accepted requests arrived, oldest first.
    arrivals: Mutex<VecDeque<Instant>>,
    refused_over_limit: AtomicUsize,
    /// OAuth tokens the vendor issued (AMO CRM).
    pub tokens: TokenBook,
    /// The vendor's "now", when a test fixes it (records a vendor keeps for a while only).
    now: Mutex<Option<OffsetDateTime>>,
    /// The simulated 1C configuration.
    pub onec: Mutex<OneCSetup>,
    /// Renovatio: whether the clinic opened `getInvoices` for our key (closed by default,
    /// as it is in Renovatio).
    pub renovatio_invoices_open: std::sync::atomic::AtomicBool,
}

/// Access and refresh tokens a simulated vendor issued, as an OAuth server keeps them:
/// access tokens expire, refresh tokens are single use.
#[derive(Debug, Default)]
pub struct TokenBook {
    access: Mutex<HashMap<String, bool>>,
    refresh: Mutex<HashMap<String, bool>>,
    counter: AtomicUsize,
    /// Refresh tokens exchanged for a new pair.
    pub refreshes: AtomicUsize,
    /// Attempts to spend a refresh token that was already spent (each one a bug of ours).
    pub reused_refresh_tokens: AtomicUsize,
}

/// Why a refresh token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshRefusal {
    Unknown,
    AlreadySpent,
}

impl TokenBook {
    /// A live access token, known from now on.
    pub fn issue_access(&self, prefix: &str) -> String {
        let token = format!(
            "{prefix}-access-{}",
            self.counter.fetch_add(1, Ordering::SeqCst)
        );
        self.access.lock().unwrap().insert(token.clone(), true);
        token
    }

    /// A refresh token that may be spent once.
    pub fn issue_refresh(&self, prefix: &str) -> String {
        let token = format!(
            "{prefix}-refresh-{}",
            self.counter.fetch_add(1, Ordering::SeqCst)
        );
        self.refresh.lock().unwrap().insert(token.clone(), false);
        token
    }

    /// Accepts `token` as a refresh token that may be spent once (a seeded one).
    pub fn accept_refresh(&self, token: &str) {
        self.refresh.lock().unwrap().insert(token.to_owned(), false);
    }

    /// Accepts `token` as a live access token (a seeded one).
    pub fn accept_access(&self, token: &str) {
        self.access.lock().unwrap().insert(token.to_owned(), true);
    }

    pub fn is_live(&self, token: &str) -> bool {
        self.access.lock().unwrap().get(token) == Some(&true)
    }

    /// Every access token issued so far has expired.
    pub fn expire_all(&self) {
        for live in self.access.lock().unwrap().values_mut() {
            *live = false;
        }
    }

    /// Spends a refresh token.
    pub fn spend_refresh(&self, token: &str) -> Result<(), RefreshRefusal> {
        let mut refresh = self.refresh.lock().unwrap();
        match refresh.get_mut(token) {
            None => Err(RefreshRefusal::Unknown),
            Some(spent) if *spent => {
                self.reused_refresh_tokens.fetch_add(1, Ordering::SeqCst);
                Err(RefreshRefusal::AlreadySpent)
            }
            Some(spent) => {
                *spent = true;
                self.refreshes.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        }
    }
}

impl State {
    /// The vendor's clock: the time a test fixed, or the real one.
    pub fn now(&self) -> OffsetDateTime {
        self.now
            .lock()
            .unwrap()
            .unwrap_or_else(OffsetDateTime::now_utc)
    }

    /// Sales with `from <= at < to`, in time order, duplicated if asked.
    pub fn sales_between(&self, from: OffsetDateTime, to: OffsetDateTime) -> Vec<Sale> {
        self.page_between(from, to, |_| true, 0, usize::MAX)
    }

    /// One page of [`State::sales_between`] restricted to the sales `keep` keeps: `take`
    /// after `skip`. Only the page is copied: the benchmark's simulator lists 100 000 sales
    /// in 200 pages, on the cores of the system it measures.
    pub fn page_between(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
        keep: impl Fn(&Sale) -> bool,
        skip: usize,
        take: usize,
    ) -> Vec<Sale> {
        let sales = self.sales.lock().unwrap();
        // Kept in time order by `Simulator::add_sales`.
        let start = sales.partition_point(|s| s.at < from);
        let end = sales.partition_point(|s| s.at < to).max(start);
        let copies = if self.duplicate.load(Ordering::SeqCst) {
            2
        } else {
            1
        };
        sales[start..end]
            .iter()
            .filter(|s| keep(s))
            .flat_map(|s| std::iter::repeat_n(s, copies))
            .skip(skip)
            .take(take)
            .cloned()
            .collect()
    }

    /// The sale with this id.
    pub fn sale(&self, id: &str) -> Option<Sale> {
        self.sales
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.id == id)
            .cloned()
    }

    /// All sales, in time order.
    pub fn all_sales(&self) -> Vec<Sale> {
        self.sales_between(
            OffsetDateTime::UNIX_EPOCH,
            OffsetDateTime::now_utc() + time::Duration::days(3650),
        )
    }

    /// The page size to use, given the vendor's default.
    pub fn page_size_or(&self, default: usize) -> usize {
        self.page_size.lock().unwrap().unwrap_or(default).max(1)
    }
}

/// A running simulator: its base URL and state.
pub struct Simulator {
    pub vendor: Vendor,
    /// What to configure as the business's `crm_base_url`.
    pub url: String,
    pub state: Arc<State>,
    stop: Option<oneshot::Sender<()>>,
}

impl Simulator {
    /// Starts a simulator of `vendor` on a free loopback port.
    pub async fn start(vendor: Vendor) -> std::io::Result<Self> {
        let state = Arc::new(State::default());
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await?;
        let addr = acceptor.local_addr()[0]
            .as_socket_addr()
            .copied()
            .expect("a TCP listener has a socket address");
        let (stop, stopped) = oneshot::channel::<()>();
        let app = vendors::routes(vendor, state.clone()).around({
            let state = state.clone();
            move |next, req| misbehave(state.clone(), next, req)
        });
        tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor)
                .run_with_graceful_shutdown(
                    app,
                    async {
                        let _ = stopped.await;
                    },
                    None,
                )
                .await;
        });
        Ok(Self {
            vendor,
            url: format!("http://{addr}{}", vendors::base_path(vendor)),
            state,
            stop: Some(stop),
        })
    }

    pub fn add_sales(&self, sales: impl IntoIterator<Item = Sale>) {
        let mut all = self.state.sales.lock().unwrap();
        all.extend(sales);
        // In time order, as the vendors list them (`State::page_between` relies on it).
        all.sort_by(|a, b| a.at.cmp(&b.at).then(a.id.cmp(&b.id)));
    }

    /// Queues faults: each is used by one request, in order.
    pub fn inject(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.faults.lock().unwrap().extend(faults);
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Renovatio: the clinic opens `getInvoices` for our key.
    pub fn open_renovatio_invoices(&self) {
        self.state
            .renovatio_invoices_open
            .store(true, Ordering::SeqCst);
    }

    /// Fixes the vendor's "now" (for vendors that keep records a limited time).
    pub fn set_now(&self, now: OffsetDateTime) {
        *self.state.now.lock().unwrap() = Some(now);
    }

    /// Enforces the vendor's rate limits from now on: a request beyond any `(n, period)`
    /// (counting the requests accepted within the last `period`) gets 429.
    pub fn limit_rate(&self, limits: &[(u32, Duration)]) {
        *self.state.rate_limits.lock().unwrap() = limits.to_vec();
    }

    /// Requests refused for going beyond a rate limit.
    pub fn refused_over_limit(&self) -> usize {
        self.state.refused_over_limit.load(Ordering::SeqCst)
    }
}

impl State {
    /// Counts an arriving request against the rate limits; `false` when it goes beyond one.
    fn within_rate_limits(&self) -> bool {
        let limits = self.rate_limits.lock().unwrap().clone();
        if limits.is_empty() {
            return true;
        }
        let now = Instant::now();
        let mut arrivals = self.arrivals.lock().unwrap();
        let over = limits.iter().any(|(n, period)| {
            arrivals
                .iter()
                .filter(|at| now.duration_since(**at) < *period)
                .count()
                >= *n as usize
        });
        if over {
            self.refused_over_limit.fetch_add(1, Ordering::SeqCst);
            return false;
        }
        arrivals.push_back(now);
        let longest = limits.iter().map(|(_, p)| *p).max().unwrap_or_default();
        while arrivals
            .front()
            .is_some_and(|at| now.duration_since(*at) >= longest)
        {
            arrivals.pop_front();
        }
        true
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Counts the request and answers with the next queued fault, if any.
async fn misbehave<E: Endpoint>(
    state: Arc<State>,
    next: E,
    req: Request,
) -> poem::Result<Response> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    if !state.within_rate_limits() {
        return Ok(Response::builder()
            .status(StatusCode::TOO_MANY_REQUESTS)
            .header("Retry-After", "1")
            .content_type("application/json")
            .body(
                r#"{"success":false,"data":null,"meta":{"message":"Превышен лимит запросов"}}"#,
            ));
    }
    let fault = state.faults.lock().unwrap().pop_front();
    Ok(match fault {
        None => next.call(req).await?.into_response(),
        Some(Fault::RateLimited { retry_after_s }) => Response::builder()
            .status(StatusCode::TOO_MANY_REQUESTS)
            .header("Retry-After", retry_after_s.to_string())
            .body("Too Many Requests"),
        Some(Fault::ServerError) => Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body("Internal Server Error"),
        Some(Fault::Unauthorized) => Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .content_type("application/json")
            .body(r#"{"success":false,"meta":{"message":"Authentication required"}}"#),
        Some(Fault::Malformed) => Response::builder()
            .status(StatusCode::OK)
            .content_type("application/json")
            .body(r#"{"unexpected": [1, 2, "#),
        // iiko's ErrorResponse; the other vendors would answer in their own words.
        Some(Fault::RequestTimeout) => Response::builder()
            .status(StatusCode::REQUEST_TIMEOUT)
            .content_type("application/json")
            .body(r#"{"correlationId":"00000000-0000-4000-8000-000000000408","errorDescription":"Timeout","error":"Common"}"#),
        // AMO CRM's problem+json.
        Some(Fault::Blocked) => Response::builder()
            .status(StatusCode::FORBIDDEN)
            .content_type("application/problem+json")
            .body(r#"{"title":"Forbidden","type":"https://httpstatus.es/403","status":403,"detail":"Access from your IP address is restricted"}"#),
        Some(Fault::Huge { bytes }) => Response::builder()
            .status(StatusCode::OK)
            .content_type("application/json")
            .body(format!("{{\"padding\": \"{}\"}}", "x".repeat(bytes))),
    })
}

/// The route table of a vendor (used by `vendors`).
pub(crate) type Routes = Route;
