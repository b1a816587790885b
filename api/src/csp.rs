//! Content-Security-Policy for the HTML pages we serve (`/board`, `/docs`): no page of ours
//! may be framed by another site (clickjacking an operator into retrying or discarding
//! jobs), and only the scripts and styles the page itself carries may run — an injected
//! `<script>` or a script from elsewhere is refused by the browser.
//!
//! The policy allows each inline `<script>` and `<style>` block by its SHA-256, computed
//! from the page as served, so it stays right when the page (or poem-openapi's Swagger UI)
//! changes.

use base64::{Engine, engine::general_purpose::STANDARD};
use poem::{Endpoint, IntoResponse, Request, Response, http::HeaderValue};
use sha2::{Digest, Sha256};

/// Adds the policy (and the older headers with the same intent) to an HTML response.
pub async fn pages<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    let mut response = next.call(req).await?.into_response();
    let is_html = response
        .content_type()
        .is_some_and(|ct| ct.starts_with("text/html"));
    if !is_html {
        return Ok(response);
    }
    let body = response.take_body().into_bytes().await?;
    let policy = policy(std::str::from_utf8(&body).unwrap_or(""));
    response.set_body(body);
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&policy) {
        headers.insert("content-security-policy", value);
    }
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    Ok(response)
}

/// The policy for `html`: its own inline scripts and styles, requests to this origin only,
/// never framed.
pub fn policy(html: &str) -> String {
    let hashes = |tag| {
        inline_blocks(html, tag)
            .map(|block| format!("'sha256-{}'", STANDARD.encode(Sha256::digest(block))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let or_none = |s: String| if s.is_empty() { "'none'".to_owned() } else { s };
    format!(
        "default-src 'none'; script-src {}; style-src {}; img-src 'self' data:; \
         font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'",
        or_none(hashes("script")),
        or_none(hashes("style")),
    )
}

/// The text of each inline `<tag …>…</tag>` block (those with a `src` are not inline).
fn inline_blocks<'a>(html: &'a str, tag: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    let open = format!("<{tag}");
    let close = format!("</{tag}");
    let mut rest = html;
    std::iter::from_fn(move || {
        loop {
            let at = rest.find(&open)?;
            let after = &rest[at + open.len()..];
            if !after.starts_with(['>', ' ', '\t', '\n', '\r']) {
                rest = after;
                continue;
            }
            let start = after.find('>')?;
            let attributes = &after[..start];
            let content = &after[start + 1..];
            let end = content.find(&close)?;
            rest = &content[end..];
            if attributes.contains("src=") {
                continue;
            }
            return Some(&content[..end]);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_inline_block_is_allowed_by_its_hash_and_nothing_else() {
        let html = "<style>a{}</style><script>one()</script>\
                    <script src=\"/x.js\"></script><scripts></scripts><script type=\"module\">two()</script>";
        let policy = policy(html);
        let hash = |s: &str| format!("'sha256-{}'", STANDARD.encode(Sha256::digest(s)));
        assert!(policy.contains(&format!("script-src {} {};", hash("one()"), hash("two()"))));
        assert!(policy.contains(&format!("style-src {};", hash("a{}"))));
        assert!(policy.contains("frame-ancestors 'none'"));
        assert!(policy.starts_with("default-src 'none';"));
        assert!(super::policy("<p>no scripts</p>").contains("script-src 'none';"));
    }
}
