#![doc = include_str!("../README.md")]

pub mod crm;
pub mod egress;
pub mod email;
pub mod http;
pub mod objects;
pub mod payments;
pub mod push;
pub mod sms;

use std::{sync::Once, time::Duration};

/// Installs rustls's `ring` provider for the process, once: every HTTPS client of ours
/// (reqwest here, the object store's own) uses it.
pub fn install_tls_provider() {
    static PROVIDER: Once = Once::new();
    PROVIDER.call_once(|| {
        // Another part of the process may have installed one already: that is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A reqwest client with rustls on the `ring` provider.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    http_client_builder(timeout)
        .build()
        .expect("the HTTP client configuration is static and valid")
}

/// What every client of ours starts from (vendor clients add the rules of [`egress`]).
pub(crate) fn http_client_builder(timeout: Duration) -> reqwest::ClientBuilder {
    install_tls_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("svoy-krug/", env!("CARGO_PKG_VERSION")))
}

/// The first `max` characters of a provider's body, for SMS and push receipts.
pub fn excerpt(body: &str, max: usize) -> String {
    let mut out: String = body.chars().take(max).collect();
    if body.chars().count() > max {
        out.push('…');
    }
    out
}

/// The egress rule of unit tests: simulators listen on loopback.
#[cfg(test)]
pub(crate) fn test_egress() -> &'static egress::Egress {
    static EGRESS: std::sync::LazyLock<egress::Egress> =
        std::sync::LazyLock::new(|| egress::Egress::new(["127.0.0.1"]));
    &EGRESS
}
