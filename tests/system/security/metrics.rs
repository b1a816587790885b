//! `/metrics`: a client cannot grow the API's memory one series per path it makes up.

use crate::helpers::{TestApp, http, member_phone};
use std::collections::BTreeSet;
use uuid::Uuid;

/// The `route` label values of `http_request_duration_seconds` on `/metrics`.
async fn routes(app: &TestApp) -> BTreeSet<String> {
    let text = http()
        .get(format!("{}/metrics", app.api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("http_request_duration_seconds_count{"))
        .filter_map(|l| l.split("route=\"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

/// Requests to paths nobody serves (`/x1`, `/x2`, … under the API and outside it) each made
/// a new series when the label was the raw path. Labelled by the matched route, they all
/// count as `other`, and a route with an id in it is one series whatever the id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_paths_make_no_new_metric_series() {
    let app = TestApp::spawn().await;
    let member = app.sign_in(&member_phone()).await;
    let marker = Uuid::new_v4().simple().to_string();
    let client = http();
    for i in 0..20 {
        for path in [
            format!("/api/v1/x{marker}{i}"),
            format!("/y{marker}{i}"),
            format!("/api/v1/businesses/{marker}{i}/nothing"),
        ] {
            let response = client
                .get(format!("{}{path}", app.api.base))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 404, "{path}");
        }
        let _ = member
            .get(&format!("/businesses/{}", Uuid::new_v4()))
            .await
            .unwrap();
    }

    let routes = routes(&app).await;
    let leaked: Vec<&String> = routes.iter().filter(|r| r.contains(&marker)).collect();
    assert!(leaked.is_empty(), "made-up paths became series: {leaked:?}");
    assert!(routes.contains("other"), "{routes:?}");
    assert!(routes.contains("/api/v1/businesses/{id}"), "{routes:?}");
    assert!(routes.contains("/api/v1/auth/send-code"), "{routes:?}");
    assert!(
        routes.iter().all(|r| r == "other" || r.starts_with('/')),
        "{routes:?}"
    );
}
