//! Attacks through CRM settings: credentials sent to a host they were not given for, the
//! server made to call our own network (SSRF), and vendor replies leaking into what
//! operators read.

use crate::helpers::{Options, TestApp};
use krug_client::{ApiClient, expect};
use serde_json::{Value, json};
use simulators::{Fault, Simulator, Vendor};
use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};
use uuid::Uuid;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path_regex},
};

async fn moderator(app: &TestApp) -> ApiClient {
    let phone = "+79000000002";
    krug::commands::grant(app.services.clone(), phone, "moderator", None)
        .await
        .unwrap();
    app.sign_in(phone).await
}

fn integration_of(business: &Value) -> Uuid {
    business["integrations"][0]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// A clinic's Renovatio `api_key` is stored for its host. Moving the URL to a host the
/// attacker controls (a moderator may not even try; a superadmin's PATCH without new
/// credentials) drops the key: no poll, scheduled or forced, ever sends it there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_crm_url_drops_the_credentials_so_they_never_reach_the_new_host() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let clinic_crm = Simulator::start(Vendor::Renovatio).await.unwrap();
    clinic_crm.open_renovatio_invoices();
    let attacker = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"error": 0, "data": []})))
        .mount(&attacker)
        .await;
    let clinic = app
        .create_business(
            &operator,
            json!({"name": "Миллениум", "category": "health", "cashback_percent": "4", "is_medical": true,
                   "crm_type": "renovatio", "crm_base_url": clinic_crm.url,
                   "crm_credentials": Vendor::Renovatio.credentials()}),
        )
        .await;
    let id = clinic["id"].as_str().unwrap();
    let integration = integration_of(&clinic);
    let stolen_url = format!("{}/api/public", attacker.uri());

    let as_moderator = moderator(&app)
        .await
        .patch(
            &format!("/admin/businesses/{id}"),
            &json!({"crm_base_url": stolen_url}),
        )
        .await
        .unwrap();
    let moved = expect(
        operator
            .patch(
                &format!("/admin/businesses/{id}"),
                &json!({"crm_base_url": stolen_url}),
            )
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    let moved_too = expect(
        operator
            .patch(
                &format!("/admin/businesses/{id}/integrations/{integration}"),
                &json!({"crm_type": "renovatio", "crm_base_url": format!("{stolen_url}/v2")}),
            )
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    expect(
        operator
            .post(&format!("/admin/businesses/{id}/poll"), &json!({}))
            .await
            .unwrap(),
        202,
    )
    .unwrap();
    expect(
        operator
            .post("/admin/schedules/crm_poll/trigger", &json!({}))
            .await
            .unwrap(),
        202,
    )
    .unwrap();
    // The worker's own path, forced, as the operator's poll-now runs it.
    jobs::handlers::crm::poll(&app.env, integration, true)
        .await
        .unwrap();

    assert_eq!(
        (as_moderator.status, as_moderator.error_code()),
        (403, Some("forbidden"))
    );
    assert_eq!(moved.data()["has_crm_credentials"], false, "{}", moved.body);
    assert_eq!(moved.data()["integration_status"], "disabled");
    assert!(
        moved.data()["integration_error"]
            .as_str()
            .unwrap()
            .contains("credentials needed"),
        "{}",
        moved.body
    );
    assert_eq!(moved_too.data()["has_credentials"], false);
    let stored: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT credentials FROM integrations WHERE id = $1")
            .bind(integration)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(stored, None, "the key is gone from the database too");
    let requests = attacker.received_requests().await.unwrap();
    assert!(
        requests
            .iter()
            .all(|r| !String::from_utf8_lossy(&r.body).contains("sim-api-key")),
        "the api_key reached the new host"
    );
    assert!(requests.is_empty(), "nothing at all was sent there");
}

/// Counts TCP connections to a port that nobody should connect to.
async fn tripwire() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (port, connections)
}

/// With no host listed in `KRUG_CRM_ALLOWED_HOSTS`, a CRM URL cannot point into our own
/// network: plain http, loopback (however it is spelled), the cloud metadata address and a
/// name that resolves to loopback are refused when typed; and a name stored earlier that
/// resolves to loopback now is refused by the worker's resolver, before any connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crm_urls_cannot_reach_private_addresses() {
    let app = TestApp::spawn_with(Options {
        crm_allowed_hosts: Some(Vec::new()),
        ..Default::default()
    })
    .await;
    let operator = app.operator().await;
    let created = app
        .create_business(
            &operator,
            json!({"name": "Миндаль", "category": "beauty", "cashback_percent": "5"}),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let (port, connections) = tripwire().await;
    let attempts = [
        format!("http://127.0.0.1:{port}/api/v1"),
        format!("https://127.0.0.1:{port}/api/v1"),
        format!("https://2130706433:{port}/api/v1"),
        format!("https://[::1]:{port}/api/v1"),
        "https://169.254.169.254/latest/meta-data".to_owned(),
        "https://10.0.0.7/api/v1".to_owned(),
        format!("https://localhost:{port}/api/v1"),
    ];
    for url in &attempts {
        let refused = operator
            .post(
                "/admin/businesses",
                &json!({"name": "Чужой", "category": "beauty", "cashback_percent": "5",
                        "crm_type": "yclients", "crm_base_url": url,
                        "crm_credentials": Vendor::Yclients.credentials()}),
            )
            .await
            .unwrap();
        assert_eq!(
            (refused.status, refused.error_code()),
            (422, Some("crm_url_not_allowed")),
            "{url}: {}",
            refused.body
        );
        let again = operator
            .post(
                &format!("/admin/businesses/{id}/integrations"),
                &json!({"crm_type": "yclients", "crm_base_url": url,
                        "crm_credentials": Vendor::Yclients.credentials()}),
            )
            .await
            .unwrap();
        assert_eq!(again.status, 422, "{url}: {}", again.body);
    }
    // Stored when its name still resolved to a public address; loopback now.
    let stored = storage::integrations::create(
        &mut *app.db.acquire().await.unwrap(),
        &app.services.secrets,
        id.parse().unwrap(),
        &storage::integrations::NewIntegration {
            crm_type: domain::crm::CrmType::Yclients,
            base_url: format!("https://localhost:{port}/api/v1"),
            credentials: Some(Vendor::Yclients.credentials()),
            settings: json!({}),
        },
    )
    .await
    .unwrap();

    let outcome = jobs::handlers::crm::poll(&app.env, stored.id, true).await;

    assert!(outcome.is_err(), "the poll fails");
    assert_eq!(connections.load(Ordering::SeqCst), 0, "nothing connected");
    let (status, error): (String, String) =
        sqlx::query_as("SELECT status, last_error FROM integrations WHERE id = $1")
            .bind(stored.id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(status, "failing");
    assert!(error.contains("not a public address"), "{error}");
}

/// A vendor (or a host posing as one) answering `307` would have the form with the key
/// posted again wherever it points: redirects are never followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_from_a_crm_are_not_followed() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let collector = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"error": 0, "data": []})))
        .mount(&collector)
        .await;
    let redirector = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(307)
                .insert_header("Location", format!("{}/collect", collector.uri())),
        )
        .mount(&redirector)
        .await;
    let clinic = app
        .create_business(
            &operator,
            json!({"name": "Миллениум", "category": "health", "cashback_percent": "4", "is_medical": true,
                   "crm_type": "renovatio", "crm_base_url": format!("{}/api/public", redirector.uri()),
                   "crm_credentials": Vendor::Renovatio.credentials()}),
        )
        .await;

    let outcome = jobs::handlers::crm::poll(&app.env, integration_of(&clinic), true).await;

    assert!(
        outcome.is_err(),
        "a redirect is a refused request, not data"
    );
    assert!(
        collector.received_requests().await.unwrap().is_empty(),
        "the form with the api_key was not posted on"
    );
    assert_eq!(redirector.received_requests().await.unwrap().len(), 1);
}

async fn connect(
    app: &TestApp,
    operator: &ApiClient,
    name: &str,
    crm_type: &str,
    url: String,
    medical: bool,
) -> Uuid {
    let credentials = if crm_type == "renovatio" {
        Vendor::Renovatio.credentials()
    } else {
        Vendor::Yclients.credentials()
    };
    let body = json!({"name": name, "category": if medical { "health" } else { "beauty" },
                      "cashback_percent": "5", "is_medical": medical,
                      "crm_type": crm_type, "crm_base_url": url, "crm_credentials": credentials});
    integration_of(&app.create_business(operator, body).await)
}

/// What operators read of a failed poll (the integration's `last_error`, the dead job's
/// error) holds no raw reply: a phone or an e-mail in a vendor's message is masked, and of
/// a medical business's replies nothing at all is kept. A reply larger than 8 MiB is not
/// read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendor_replies_never_reach_operators_raw_and_are_capped() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let patient = "Иванова Анна Сергеевна, +7 916 555-01-02, diagnosis J45";
    let medical_vendor = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex("getInvoices"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"error": 0, "data": {"unexpected": patient}})),
        )
        .mount(&medical_vendor)
        .await;
    let salon_vendor = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "success": false,
            "meta": {"message": "Клиент +7 916 555-01-02 (anna@example.ru) не найден"}
        })))
        .mount(&salon_vendor)
        .await;
    // A vendor gone wrong (or a host posing as one) answering 9 MiB.
    let huge = Simulator::start(Vendor::Yclients).await.unwrap();
    huge.inject([Fault::Huge {
        bytes: 9 * 1024 * 1024,
    }]);
    let clinic = connect(
        &app,
        &operator,
        "Миллениум",
        "renovatio",
        format!("{}/api/public", medical_vendor.uri()),
        true,
    )
    .await;
    let salon = connect(
        &app,
        &operator,
        "Миндаль",
        "yclients",
        format!("{}/api/v1", salon_vendor.uri()),
        false,
    )
    .await;
    let market = connect(
        &app,
        &operator,
        "Лисичкино",
        "yclients",
        huge.url.clone(),
        false,
    )
    .await;

    for integration in [clinic, salon, market] {
        let outcome = jobs::handlers::crm::poll(&app.env, integration, true).await;
        assert!(outcome.is_err(), "{integration}");
    }

    let listed = expect(operator.get("/admin/businesses").await.unwrap(), 200).unwrap();
    // What operators read of the integrations: their errors and warnings.
    let shown: Vec<String> = listed.data()["items"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| {
            let mut texts = vec![b["integration_error"].to_string()];
            for i in b["integrations"].as_array().unwrap() {
                texts.push(i["last_error"].to_string());
                texts.push(i["warning"].to_string());
            }
            texts
        })
        .collect();
    let shown = shown.join("\n");
    for secret in ["Иванова", "916 555", "555-01-02", "J45", "anna@example.ru"] {
        assert!(
            !shown.contains(secret),
            "`{secret}` shown to operators: {shown}"
        );
    }
    let error_of = |integration: Uuid| {
        let db = app.db.clone();
        async move {
            sqlx::query_scalar::<_, Option<String>>(
                "SELECT last_error FROM integrations WHERE id = $1",
            )
            .bind(integration)
            .fetch_one(&db)
            .await
            .unwrap()
            .unwrap_or_default()
        }
    };
    let clinic_error = error_of(clinic).await;
    assert_eq!(clinic_error, "unexpected reply from the vendor");
    let salon_error = error_of(salon).await;
    assert!(
        salon_error.contains("HTTP 400") && salon_error.contains("не найден"),
        "the vendor's message stays, masked: {salon_error}"
    );
    let market_error = error_of(market).await;
    assert!(market_error.contains("8 MiB"), "{market_error}");
}
