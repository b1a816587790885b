//! The HTML pages (`/board`, `/partner`, `/docs`): never framed by another site, and only their own
//! scripts run.

use crate::helpers::{Options, TestApp, http};
use base64::{Engine, engine::general_purpose::STANDARD};

/// A site that frames the board can trick a signed-in operator into clicking "retry" or
/// "discard" (clickjacking); a script injected into a page, or loaded from elsewhere, could
/// read the operator's tokens. Each page answers with a policy that forbids framing and
/// allows exactly its own inline scripts, by hash — no `unsafe-inline`, no other origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_and_the_docs_refuse_framing_and_foreign_scripts() {
    let app = TestApp::spawn_with(Options {
        no_worker: true,
        ..Default::default()
    })
    .await;
    for path in ["/board", "/partner", "/docs", "/docs/oauth-receiver.html"] {
        let response = http()
            .get(format!("{}{path}", app.api.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let policy = response
            .headers()
            .get("content-security-policy")
            .unwrap_or_else(|| panic!("{path} has no Content-Security-Policy"))
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(response.headers()["x-frame-options"], "DENY", "{path}");
        let html = response.text().await.unwrap();
        let directive = |name: &str| {
            policy
                .split(';')
                .map(str::trim)
                .find_map(|d| d.strip_prefix(name))
                .unwrap_or_else(|| panic!("{path}: no {name} in {policy}"))
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(directive("frame-ancestors "), ["'none'"], "{path}");
        assert_eq!(directive("default-src "), ["'none'"], "{path}");
        let scripts = directive("script-src ");
        assert!(
            scripts.iter().all(|s| s.starts_with("'sha256-")),
            "{path}: script-src allows more than hashed inline scripts: {scripts:?}"
        );
        // Every inline script of the page is allowed, so the page still works.
        let mut rest = html.as_str();
        let mut seen = 0;
        while let Some(at) = rest.find("<script") {
            let open_end = rest[at..].find('>').unwrap() + at + 1;
            let close = rest[open_end..].find("</script>").unwrap() + open_end;
            let hash = format!(
                "'sha256-{}'",
                STANDARD.encode(aws_lc_rs::digest::digest(
                    &aws_lc_rs::digest::SHA256,
                    rest[open_end..close].as_bytes()
                ))
            );
            assert!(
                scripts.contains(&hash),
                "{path}: a script of the page is not allowed"
            );
            seen += 1;
            rest = &rest[close..];
        }
        assert!(seen >= 1, "{path} has its scripts inline");
    }
}
