#![doc = include_str!("../README.md")]

mod vendors;

use poem::{
    Endpoint, EndpointExt, IntoResponse, Request, Response, Route, Server,
    http::StatusCode,
    listener::{Acceptor, Listener, TcpListener},
};
use rust_decimal::Decimal;
use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
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

    /// The `crm_type` of DESIGN.md.
    pub fn crm_type(self) -> &'static str {
        match self {
            Self::Yclients => "yclients",
            Self::Iiko => "iiko",
            Self::OneC => "1c",
            Self::AmoCrm => "amo_crm",
            Self::Renovatio => "renovatio",
        }
    }

    /// The credentials this simulator accepts, in the shape of DESIGN.md's `crm_credentials`.
    pub fn credentials(self) -> serde_json::Value {
        vendors::credentials(self)
    }
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
}

impl State {
    /// Sales with `from <= at < to`, in time order, duplicated if asked.
    pub fn sales_between(&self, from: OffsetDateTime, to: OffsetDateTime) -> Vec<Sale> {
        let mut sales: Vec<Sale> = self
            .sales
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.at >= from && s.at < to)
            .cloned()
            .collect();
        sales.sort_by(|a, b| a.at.cmp(&b.at).then(a.id.cmp(&b.id)));
        if self.duplicate.load(Ordering::SeqCst) {
            sales = sales.into_iter().flat_map(|s| [s.clone(), s]).collect();
        }
        sales
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
        self.state.sales.lock().unwrap().extend(sales);
    }

    /// Queues faults: each is used by one request, in order.
    pub fn inject(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.faults.lock().unwrap().extend(faults);
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
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
    })
}

/// The route table of a vendor (used by `vendors`).
pub(crate) type Routes = Route;
