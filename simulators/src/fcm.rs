//! Google's side of push: the OAuth token endpoint of service accounts and FCM HTTP v1,
//! one server, as the tests need them together.
//!
//! - `POST /token` (form `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`,
//!   `assertion`): the assertion must be an RS256 JWT signed with the service account's key,
//!   `iss` the account, `scope` FCM's, `aud` this endpoint, `exp` at most an hour after
//!   `iat`; the reply is `{access_token, expires_in: 3599, token_type: "Bearer"}`
//!   (developers.google.com/identity/protocols/oauth2/service-account). Otherwise 400
//!   `{"error": "invalid_grant", "error_description": …}`.
//! - `POST /v1/projects/{project}/messages:send` with `Authorization: Bearer {token}` of a
//!   live token: `{"name": "projects/{project}/messages/{n}"}`; an expired or unknown token
//!   gets 401 `UNAUTHENTICATED`. Tokens expire when a test says so ([`FakeFcm::expire_tokens`]),
//!   as Google's do after an hour.
//! - A device token in [`FakeFcm::unregister`] gets 404 with `errorCode: "UNREGISTERED"`.

use poem::{
    EndpointExt, Request, Response, Route, Server, handler,
    http::StatusCode,
    listener::{Acceptor, Listener, TcpListener},
    web::{Data, Form, Json, Path},
};
use serde_json::{Value, json};
use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};
use tokio::sync::oneshot;

/// FCM's scope, the only one this fake grants.
const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// What the fake saw and holds.
#[derive(Default)]
pub struct FcmState {
    /// Access token → still live.
    tokens: Mutex<HashMap<String, bool>>,
    unregistered: Mutex<HashSet<String>>,
    /// Access tokens minted so far.
    pub minted: AtomicUsize,
    /// Messages accepted: (device token, title, body).
    pub sent: Mutex<Vec<(String, String, String)>>,
    /// Sends refused for a dead bearer token.
    pub refused_bearer: AtomicUsize,
    public_pem: Vec<u8>,
    client_email: String,
    token_url: Mutex<String>,
}

/// A running fake of Google's token endpoint and FCM.
pub struct FakeFcm {
    /// FCM's base URL (`FCM_BASE_URL`).
    pub url: String,
    /// The token endpoint (`token_uri` of the service account).
    pub token_url: String,
    pub state: Arc<FcmState>,
    stop: Option<oneshot::Sender<()>>,
}

impl FakeFcm {
    /// A fake that trusts assertions of `client_email` signed by the key of `public_pem`.
    pub async fn start(client_email: &str, public_pem: &[u8]) -> std::io::Result<Self> {
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await?;
        let addr = acceptor.local_addr()[0]
            .as_socket_addr()
            .copied()
            .expect("a TCP listener has a socket address");
        let url = format!("http://{addr}");
        let token_url = format!("{url}/token");
        let state = Arc::new(FcmState {
            public_pem: public_pem.to_vec(),
            client_email: client_email.to_owned(),
            token_url: Mutex::new(token_url.clone()),
            ..FcmState::default()
        });
        let app = Route::new()
            .at("/token", poem::post(token))
            // `messages:send` is one segment; poem reads `:` as a parameter, hence the rest.
            .at("/v1/projects/*rest", poem::post(send))
            .data(state.clone());
        let (stop, stopped) = oneshot::channel::<()>();
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
            url,
            token_url,
            state,
            stop: Some(stop),
        })
    }

    /// Every access token minted so far has expired.
    pub fn expire_tokens(&self) {
        for live in self.state.tokens.lock().unwrap().values_mut() {
            *live = false;
        }
    }

    /// From now on, this device token is answered `UNREGISTERED`.
    pub fn unregister(&self, device_token: &str) {
        self.state
            .unregistered
            .lock()
            .unwrap()
            .insert(device_token.to_owned());
    }

    pub fn minted(&self) -> usize {
        self.state.minted.load(Ordering::SeqCst)
    }

    pub fn sent(&self) -> Vec<(String, String, String)> {
        self.state.sent.lock().unwrap().clone()
    }
}

impl Drop for FakeFcm {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn json_reply(status: StatusCode, body: Value) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(body.to_string())
}

#[handler]
fn token(Form(form): Form<HashMap<String, String>>, Data(state): Data<&Arc<FcmState>>) -> Response {
    let refuse = |why: &str| {
        json_reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_grant", "error_description": why}),
        )
    };
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return refuse("Invalid grant_type");
    }
    let Ok(key) = jsonwebtoken::DecodingKey::from_rsa_pem(&state.public_pem) else {
        return refuse("Invalid key");
    };
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[state.token_url.lock().unwrap().clone()]);
    validation.set_issuer(std::slice::from_ref(&state.client_email));
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
    let assertion = form
        .get("assertion")
        .map(String::as_str)
        .unwrap_or_default();
    let claims = match jsonwebtoken::decode::<Value>(assertion, &key, &validation) {
        Ok(data) => data.claims,
        Err(_) => return refuse("Invalid JWT Signature."),
    };
    let lifetime = claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0);
    if claims["scope"] != SCOPE || !(1..=3600).contains(&lifetime) {
        return refuse("Invalid scope or lifetime");
    }
    let n = state.minted.fetch_add(1, Ordering::SeqCst);
    let access = format!("ya29.fake-{n}");
    state.tokens.lock().unwrap().insert(access.clone(), true);
    json_reply(
        StatusCode::OK,
        json!({"access_token": access, "expires_in": 3599, "token_type": "Bearer"}),
    )
}

#[handler]
fn send(
    req: &Request,
    Path(rest): Path<String>,
    Json(body): Json<Value>,
    Data(state): Data<&Arc<FcmState>>,
) -> Response {
    let Some(project) = rest.strip_suffix("/messages:send").map(str::to_owned) else {
        return json_reply(StatusCode::NOT_FOUND, json!({"error": {"code": 404}}));
    };
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if state.tokens.lock().unwrap().get(bearer) != Some(&true) {
        state.refused_bearer.fetch_add(1, Ordering::SeqCst);
        return json_reply(
            StatusCode::UNAUTHORIZED,
            json!({"error": {"code": 401, "status": "UNAUTHENTICATED",
                   "message": "Request had invalid authentication credentials."}}),
        );
    }
    let message = &body["message"];
    let device = message["token"].as_str().unwrap_or_default().to_owned();
    if state.unregistered.lock().unwrap().contains(&device) {
        return json_reply(
            StatusCode::NOT_FOUND,
            json!({"error": {"code": 404, "status": "NOT_FOUND", "message": "Requested entity was not found.",
                   "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}]}}),
        );
    }
    let mut sent = state.sent.lock().unwrap();
    sent.push((
        device,
        message["notification"]["title"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        message["notification"]["body"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    ));
    json_reply(
        StatusCode::OK,
        json!({"name": format!("projects/{project}/messages/{}", sent.len())}),
    )
}
