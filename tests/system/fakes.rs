//! Fake third-party servers that answer in the vendors' documented formats, so that the real
//! adapters (reqwest and all) run in tests.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
};
use wiremock::{
    Mock, MockServer, Request, Respond, ResponseTemplate,
    matchers::{method, path},
};

/// How the fake SMS.ru answers.
#[derive(Debug, Clone, Copy)]
pub enum SmsRuMode {
    /// Accept every message.
    Accept,
    /// HTTP 503 for the first `n` requests, then accept.
    UnavailableFirst(usize),
    /// Refuse the recipient with code 202 ("bad number"), a permanent error.
    BadNumber,
}

/// A message the fake received.
#[derive(Debug, Clone)]
pub struct SentSms {
    pub api_id: String,
    pub to: String,
    pub msg: String,
}

/// SMS.ru `POST /sms/send` with `json=1` (sms.ru/api/send).
pub struct FakeSmsRu {
    pub server: MockServer,
    sent: Arc<Mutex<Vec<SentSms>>>,
    mode: Arc<Mutex<SmsRuMode>>,
}

struct SmsRuResponder {
    mode: Arc<Mutex<SmsRuMode>>,
    calls: AtomicUsize,
    sent: Arc<Mutex<Vec<SentSms>>>,
}

impl Respond for SmsRuResponder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        let form: Vec<(String, String)> = url::form_urlencoded::parse(&request.body)
            .into_owned()
            .collect();
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let to = field("to");
        let mode = *self.mode.lock().unwrap();
        if let SmsRuMode::UnavailableFirst(n) = mode {
            if call < n {
                return ResponseTemplate::new(503).set_body_string("Service Unavailable");
            }
        }
        if field("json") != "1" {
            return ResponseTemplate::new(200).set_body_string("100\n000000-1\nbalance=1");
        }
        let number = match mode {
            SmsRuMode::BadNumber => serde_json::json!({
                "status": "ERROR", "status_code": 202,
                "status_text": "Неправильно указан номер телефона получателя, либо на него нет маршрута"
            }),
            _ => {
                self.sent.lock().unwrap().push(SentSms {
                    api_id: field("api_id"),
                    to: to.clone(),
                    msg: field("msg"),
                });
                serde_json::json!({"status": "OK", "status_code": 100, "sms_id": format!("000000-{}", 10_000_000 + call)})
            }
        };
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "status": "OK", "status_code": 100, "sms": { to: number }, "balance": 4122.56
        }))
    }
}

impl FakeSmsRu {
    pub async fn start(mode: SmsRuMode) -> Self {
        let server = MockServer::start().await;
        let sent = Arc::new(Mutex::new(Vec::new()));
        let mode = Arc::new(Mutex::new(mode));
        Mock::given(method("POST"))
            .and(path("/sms/send"))
            .respond_with(SmsRuResponder {
                mode: mode.clone(),
                calls: AtomicUsize::new(0),
                sent: sent.clone(),
            })
            .mount(&server)
            .await;
        Self { server, sent, mode }
    }

    /// Changes how the fake answers from now on.
    pub fn set_mode(&self, mode: SmsRuMode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn url(&self) -> String {
        self.server.uri()
    }

    /// Messages accepted so far.
    pub fn sent(&self) -> Vec<SentSms> {
        self.sent.lock().unwrap().clone()
    }

    /// Requests received, accepted or not.
    pub async fn requests(&self) -> usize {
        self.server.received_requests().await.map_or(0, |r| r.len())
    }
}
