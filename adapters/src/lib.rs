#![doc = include_str!("../README.md")]

pub mod crm;
pub mod http;
pub mod push;
pub mod sms;

use std::{sync::Once, time::Duration};

/// A reqwest client with rustls on the `ring` provider, installed once per process.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    static PROVIDER: Once = Once::new();
    PROVIDER.call_once(|| {
        // Another part of the process may have installed one already: that is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("svoy-krug/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the HTTP client configuration is static and valid")
}

/// The first `max` characters of a vendor's body, for error messages and logs.
pub fn excerpt(body: &str, max: usize) -> String {
    let mut out: String = body.chars().take(max).collect();
    if body.chars().count() > max {
        out.push('…');
    }
    out
}
