//! The client's address as an operation sees it: the TCP peer, or the address our own proxies
//! report for it (`crate::proxies`).

use crate::state::AppState;
use poem::{FromRequest, Request, RequestBody};
use std::{net::IpAddr, sync::Arc};

/// The client's address, as an extractor for operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl<'a> FromRequest<'a> for ClientIp {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        let state = req
            .data::<Arc<AppState>>()
            .expect("the app registers its state as request data");
        // A peer that is not a TCP socket (a Unix socket, an in-process test client) is
        // the machine itself.
        let peer = req
            .remote_addr()
            .as_socket_addr()
            .map(|a| a.ip())
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let forwarded: Vec<&str> = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        Ok(Self(state.limits.trusted_proxies.client(peer, &forwarded)))
    }
}
