//! Where calls to a partner's CRM may go.
//!
//! A CRM URL is typed in by an operator, so it must not become a way into our own network
//! (server-side request forgery): the loopback ClickHouse, a cloud metadata address, an
//! internal admin page. A CRM URL must be `https` to a public address, unless its host is
//! listed in `KRUG_CRM_ALLOWED_HOSTS` (tests and the demo list `127.0.0.1`; a self-hosted
//! installation on a private network is listed by its operator).
//!
//! The address is checked where it is used, not only where it is typed: the HTTP client's
//! DNS resolver refuses names that resolve to non-public addresses (a name that changes its
//! answer between the check and the call gains nothing), addresses written as IP literals
//! (which never reach a resolver) are checked before every client is built, and redirects
//! are never followed (a `307` would re-post the form with the key to wherever it points).

use reqwest::{
    Url,
    dns::{Addrs, Name, Resolve, Resolving},
};
use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

/// Why a CRM URL may not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EgressError {
    /// Not an absolute http(s) URL.
    #[error("the CRM URL is not an http(s) URL")]
    Invalid,
    /// `http` to a host that is not listed.
    #[error("the CRM URL must use https (plain http only for hosts in KRUG_CRM_ALLOWED_HOSTS)")]
    NotHttps,
    /// `user:password@` in the URL.
    #[error("the CRM URL must not carry a user name or password (give them as credentials)")]
    Userinfo,
    /// The host is, or resolves to, an address that is not public.
    #[error(
        "the CRM host `{0}` is not a public address (list it in KRUG_CRM_ALLOWED_HOSTS if it is meant to be reached)"
    )]
    NotPublic(String),
}

/// The rule for reaching vendors: public https, or a listed host.
#[derive(Debug, Clone, Default)]
pub struct Egress {
    /// Host names and IP literals, lower case.
    allowed: Arc<HashSet<String>>,
}

impl Egress {
    /// Public https only, plus these hosts (names or addresses, as written in URLs).
    pub fn new<S: AsRef<str>>(allowed_hosts: impl IntoIterator<Item = S>) -> Self {
        Self {
            allowed: Arc::new(
                allowed_hosts
                    .into_iter()
                    .map(|h| normalize_host(h.as_ref()))
                    .filter(|h| !h.is_empty())
                    .collect(),
            ),
        }
    }

    /// This rule with one more allowed host.
    pub fn allowing(&self, host: &str) -> Self {
        let mut allowed = (*self.allowed).clone();
        allowed.insert(normalize_host(host));
        Self {
            allowed: Arc::new(allowed),
        }
    }

    fn is_listed(&self, host: &str) -> bool {
        self.allowed.contains(&normalize_host(host))
    }

    /// Checks what can be checked without DNS: scheme, credentials in the URL, and a host
    /// written as an address.
    pub fn check_url(&self, url: &str) -> Result<Url, EgressError> {
        let parsed = Url::parse(url.trim()).map_err(|_| EgressError::Invalid)?;
        let host = match parsed.host() {
            Some(url::Host::Domain(name)) => name.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(EgressError::Invalid),
        };
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(EgressError::Userinfo);
        }
        let listed = self.is_listed(&host);
        match parsed.scheme() {
            "https" => {}
            "http" if listed => {}
            "http" => return Err(EgressError::NotHttps),
            _ => return Err(EgressError::Invalid),
        }
        if !listed
            && let Ok(ip) = host.parse::<IpAddr>()
            && !is_public(ip)
        {
            return Err(EgressError::NotPublic(host));
        }
        Ok(parsed)
    }

    /// [`Self::check_url`], then the addresses the host resolves to now: for an early answer
    /// to whoever types the URL. A name that cannot be resolved passes (the poll will say);
    /// the resolver of [`Self::client`] checks again at every connection.
    pub async fn check_url_resolved(&self, url: &str) -> Result<Url, EgressError> {
        let parsed = self.check_url(url)?;
        let Some(url::Host::Domain(name)) = parsed.host() else {
            return Ok(parsed);
        };
        if self.is_listed(name) {
            return Ok(parsed);
        }
        // Early feedback only: a slow or absent resolver does not hold up the request.
        let lookup =
            tokio::time::timeout(Duration::from_secs(2), tokio::net::lookup_host((name, 443)));
        if let Ok(Ok(addrs)) = lookup.await {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if !addrs.is_empty() && !addrs.iter().all(|a| is_public(a.ip())) {
                return Err(EgressError::NotPublic(name.to_owned()));
            }
        }
        Ok(parsed)
    }

    /// An HTTP client for vendor calls under this rule: the resolver refuses non-public
    /// addresses of unlisted hosts, redirects are not followed, and `extra_roots` (the CA of
    /// a self-hosted installation) are trusted besides the system's roots.
    pub fn client(
        &self,
        timeout: Duration,
        extra_roots: Vec<reqwest::Certificate>,
    ) -> reqwest::Client {
        let mut builder = crate::http_client_builder(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(PublicOnly {
                allowed: self.allowed.clone(),
            }));
        if !extra_roots.is_empty() {
            builder = builder.tls_certs_merge(extra_roots);
        }
        builder
            .build()
            .expect("the HTTP client configuration is static and valid")
    }
}

fn normalize_host(host: &str) -> String {
    host.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// The resolver of vendor clients: the system's answer, without the non-public addresses
/// (unless the host is listed). A name left with no address fails to connect.
struct PublicOnly {
    allowed: Arc<HashSet<String>>,
}

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = normalize_host(name.as_str());
        let listed = self.allowed.contains(&host);
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| listed || is_public(a.ip()))
                .collect();
            if found.is_empty() {
                return Err(Box::new(EgressError::NotPublic(host)) as _);
            }
            Ok(Box::new(found.into_iter()) as Addrs)
        })
    }
}

/// Whether `ip` is an address of the public internet (not loopback, private, link-local,
/// shared, documentation, multicast, reserved or unspecified).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        // 100.64.0.0/10, carrier-grade NAT (shared address space).
        || (a == 100 && (b & 0xc0) == 64)
        // 192.0.0.0/24, IETF protocol assignments.
        || (a == 192 && b == 0 && c == 0)
        // 198.18.0.0/15, benchmarking.
        || (a == 198 && (b & 0xfe) == 18)
        // 240.0.0.0/4, reserved.
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // fc00::/7, unique local.
        || (first & 0xfe00) == 0xfc00
        // fe80::/10, link-local.
        || (first & 0xffc0) == 0xfe80
        // 2001:db8::/32, documentation.
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)
        // ::/96 (IPv4-compatible) and 64:ff9b::/96 (NAT64) hide an IPv4 address.
        || ip.segments()[..6].iter().all(|s| *s == 0)
        || (first == 0x0064 && ip.segments()[1] == 0xff9b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_and_metadata_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2a00:1450:4010:c0e::64", "::ffff:8.8.8.8"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn urls_must_be_https_to_a_public_address_unless_listed() {
        let egress = Egress::new(["crm.internal"]);
        let refused = [
            ("http://api.yclients.com/api/v1", EgressError::NotHttps),
            (
                "https://10.0.0.5/base",
                EgressError::NotPublic("10.0.0.5".into()),
            ),
            (
                "https://169.254.169.254/latest",
                EgressError::NotPublic("169.254.169.254".into()),
            ),
            // The URL parser reads other spellings of an address as the address.
            (
                "https://2130706433:8123/",
                EgressError::NotPublic("127.0.0.1".into()),
            ),
            (
                "https://0x7f.1/",
                EgressError::NotPublic("127.0.0.1".into()),
            ),
            ("https://[::1]:8123/", EgressError::NotPublic("::1".into())),
            ("https://user:pw@api.yclients.com/", EgressError::Userinfo),
            ("ftp://files.example.ru/", EgressError::Invalid),
            ("not a url", EgressError::Invalid),
        ];
        for (url, error) in refused {
            assert_eq!(egress.check_url(url).unwrap_err(), error, "{url}");
        }
        for url in [
            "https://api.yclients.com/api/v1",
            "https://93.184.216.34/base",
            "http://crm.internal/odata",
            "https://CRM.internal./odata",
        ] {
            assert!(egress.check_url(url).is_ok(), "{url}");
        }
        let loopback_listed = egress.allowing("127.0.0.1");
        assert!(loopback_listed.check_url("http://127.0.0.1:8123/").is_ok());
        assert!(loopback_listed.check_url("http://2130706433:8123/").is_ok());
        assert!(loopback_listed.check_url("https://10.0.0.5/").is_err());
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_unless_listed() {
        let egress = Egress::new(["127.0.0.1"]);
        assert_eq!(
            egress
                .check_url_resolved("https://localhost:9/")
                .await
                .unwrap_err(),
            EgressError::NotPublic("localhost".into())
        );
        assert!(
            Egress::new(["localhost"])
                .check_url_resolved("https://localhost:9/")
                .await
                .is_ok()
        );
    }
}
