//! AMO CRM through its API v4 (wellness centre Стим Центр).
//!
//! # What this client relies on, and where it was confirmed
//!
//! - Base `https://{subdomain}.amocrm.ru/api/v4`, `Authorization: Bearer {access_token}`;
//!   `401` when the token is refused. amocrm.ru/developers «Сделки» (leads-api) and the
//!   official PHP library amocrm/amocrm-api-php (`src/AmoCRM/Client/AmoCRMApiRequest.php`).
//! - OAuth: access tokens expire (`expires_in`, 86 400 s in the examples); `POST
//!   https://{subdomain}.amocrm.ru/oauth2/access_token` with `client_id`, `client_secret`,
//!   `grant_type: "refresh_token"`, `refresh_token`, `redirect_uri` returns `token_type`,
//!   `expires_in`, `access_token` and a **new** `refresh_token`; the old one stops working
//!   (single use). developers.kommo.com «Get token» (the same API as amoCRM), the official
//!   `amocrm/oauth2-amocrm` provider's README («Обновление access токена»), and the Python
//!   `amocrm_api` README («Рефреш токен одноразовый и обновляется при каждом получении
//!   аксесс токена»). What AMO answers a spent refresh token (a 400 problem+json) is our
//!   assumption: any 400/401 from the token endpoint means re-authorizing.
//! - Long-lived tokens of private integrations (1 day to 5 years, no refresh token): the
//!   second mode, `{"access_token"}` alone. developers.kommo.com «Long-lived token».
//! - 7 requests a second, and "in the event of suspicious activity … requests from your IP
//!   address will be restricted": developers.kommo.com «Limitations» («Requests and IP
//!   block»). A 403 is that restriction (or an IP whitelist: amoCRM's error list, code 113,
//!   «Access to this account is prohibited from your IP address»), not a refused
//!   credential, which is a 401 (codes 110–112): amocrm.com/developers «List of API error».
//! - `GET /leads` with `with`, `page`, `limit` (at most 250), `filter`, `order[updated_at]=
//!   asc|desc`; leads carry `id`, `name`, `price` (int), `status_id`, `pipeline_id`,
//!   `closed_at`, `created_at`, `updated_at` (Unix seconds); replies are `application/
//!   hal+json` with `_links` and `_embedded`: amocrm.com/developers «Leads» (api_v4/leads-2),
//!   amocrm.ru leads-api.
//! - `filter[updated_at][from]` / `[to]` as a range: `LeadsFilter::setUpdatedAt` and
//!   `BaseRangeFilter::toFilter()` (`from`, `to`) in amocrm/amocrm-api-php. The filter API
//!   is «in alpha, for a limited list of accounts» (amocrm.ru/developers filters-api), so an
//!   account may ignore it: we re-check every lead's `updated_at` against the window.
//! - `204 No Content` means no results: `AmoCRMApiRequest::checkHttpStatus` throws
//!   `AmoCRMApiNoContentException` on 204.
//! - `with=contacts` gives `_embedded.contacts: [{id, is_main}]`; `GET /contacts/{id}` has
//!   `custom_fields_values: [{field_code: "PHONE", values: [{value, enum_code}]}]`; `GET
//!   /contacts?query=` searches contacts: amocrm.ru custom-fields docs, public clients and
//!   test fixtures using exactly these shapes.
//! - Status 142 «успешно реализовано» and 143 «закрыто и не реализовано» are system
//!   statuses of every pipeline: `LeadModel::WON_STATUS_ID` / `LOST_STATUS_ID` in
//!   amocrm/amocrm-api-php; amocrm.com API v2 leads docs.
//! - `429` beyond the rate (with `Retry-After`): the vendor page of this project
//!   (`shared/vendors/README.md`); not found in amoCRM's own pages we could read.
//!
//! # Tokens, shared
//!
//! The rotated pair is persisted through the integration's [`TokenStore`] while its lock is
//! held: a worker that takes the lock first reads the stored pair again, and uses a pair
//! another worker has just stored instead of spending a refresh token twice. A token is
//! renewed five minutes before it expires, and once when a call meets a 401. Every AMO
//! client of the process shares one limiter of 7 requests a second: the limit is AMO's per
//! caller, and the block that follows abuse hits the address, not one integration.
//!
//! # What a transaction is
//!
//! A lead in status 142 is a purchase of `price` roubles at `closed_at`, by the phone of its
//! main contact. A lead in status 143 is reported as the cancellation `{id}:cancel` of
//! purchase `{id}`, **without a phone**: AMO keeps no status history in the lead, so a lead
//! lost without ever being won looks the same, and only the original purchase (if we ever
//! recorded it) may name the member. A cancellation of a purchase nobody recorded is then
//! dropped by the caller instead of taking bonuses from someone.
//!
//! We ask for `order[updated_at]=desc`: a lead changed while we page moves to the front,
//! so we may see it twice (deduplicated) but never skip one; once a sorted page ends
//! before the window, an account that ignored the filter has nothing more for us.

use super::{
    ConfigError, CrmClient, CrmCustomer, CrmKind, CrmTransaction, Target, TokenStore, Window,
};
use crate::http::{RateLimiter, Reply, RetryPolicy, VendorError, Verdict, send_classified};
use async_trait::async_trait;
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, value::RawValue};
use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, LazyLock},
    time::Duration,
};
use time::OffsetDateTime;

/// «Успешно реализовано», the same id in every pipeline.
const WON: i64 = 142;
/// «Закрыто и не реализовано», the same id in every pipeline.
const LOST: i64 = 143;
/// AMO's maximum page size.
const LIMIT: usize = 250;
/// A window that needs more pages than this is not ending: stop rather than loop forever.
const MAX_PAGES: usize = 10_000;
/// AMO's documented request rate.
const REQUESTS_PER_SECOND: u32 = 7;
/// Shared by every AMO client of the process (see the module docs).
static LIMITER: LazyLock<RateLimiter> =
    LazyLock::new(|| RateLimiter::per_second(REQUESTS_PER_SECOND));
/// A token this close to its expiry is renewed before use.
const RENEW_BEFORE_S: i64 = 5 * 60;

/// The `crm_credentials` of an `amo_crm` integration: a long-lived `access_token`, or the
/// OAuth set (`client_id`, `client_secret`, `redirect_uri`, `refresh_token`, and the current
/// `access_token` with its `expires_at`, Unix seconds, as we store them after a renewal).
#[derive(Deserialize, Default)]
struct Credentials {
    #[serde(default)]
    access_token: Option<SecretString>,
    #[serde(default)]
    expires_at: Option<i64>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_secret: Option<SecretString>,
    #[serde(default)]
    redirect_uri: Option<String>,
    #[serde(default)]
    refresh_token: Option<SecretString>,
}

impl Credentials {
    fn is_oauth(&self) -> bool {
        self.refresh_token.is_some()
    }

    /// The stored access token, if it is good for a while yet.
    fn fresh_token(&self, now: i64) -> Option<AccessToken> {
        let token = self.access_token.clone()?;
        let expires_at = self.expires_at?;
        (expires_at - RENEW_BEFORE_S > now).then_some(AccessToken { token, expires_at })
    }
}

#[derive(Clone)]
struct AccessToken {
    token: SecretString,
    expires_at: i64,
}

/// How this client authenticates.
enum Auth {
    /// A long-lived token of a private integration.
    LongLived(SecretString),
    /// OAuth with rotating refresh tokens, kept in the integration's store.
    OAuth {
        client_id: String,
        client_secret: SecretString,
        redirect_uri: String,
        store: Arc<dyn TokenStore>,
        current: tokio::sync::Mutex<Option<AccessToken>>,
    },
}

/// An AMO CRM account.
pub struct HttpAmoCrm {
    http: reqwest::Client,
    /// `https://{subdomain}.amocrm.ru/api/v4`
    base: String,
    /// `https://{subdomain}.amocrm.ru/oauth2/access_token`
    token_url: String,
    auth: Auth,
    policy: RetryPolicy,
}

impl HttpAmoCrm {
    /// A client of the account at `target.base_url` (`https://{subdomain}.amocrm.ru/api/v4`).
    /// OAuth credentials need `target.tokens`, where rotated tokens are kept.
    pub fn new(target: &Target<'_>) -> Result<Self, ConfigError> {
        let base = target.checked_base()?;
        let c: Credentials = super::credentials("amo_crm", target.credentials)?;
        let filled = |s: &Option<SecretString>| {
            s.as_ref()
                .filter(|s| !s.expose_secret().trim().is_empty())
                .cloned()
        };
        let auth = if c.is_oauth() {
            let (Some(client_id), Some(client_secret), Some(redirect_uri), Some(_)) = (
                c.client_id.clone().filter(|s| !s.trim().is_empty()),
                filled(&c.client_secret),
                c.redirect_uri.clone().filter(|s| !s.trim().is_empty()),
                filled(&c.refresh_token),
            ) else {
                return Err(ConfigError(
                    "amo_crm credentials: OAuth needs client_id, client_secret, redirect_uri and refresh_token"
                        .to_owned(),
                ));
            };
            let store = target.tokens.clone().ok_or_else(|| {
                ConfigError(
                    "amo_crm OAuth credentials need a place to keep rotated tokens".to_owned(),
                )
            })?;
            let now = OffsetDateTime::now_utc().unix_timestamp();
            Auth::OAuth {
                client_id,
                client_secret,
                redirect_uri,
                store,
                current: tokio::sync::Mutex::new(c.fresh_token(now)),
            }
        } else {
            Auth::LongLived(filled(&c.access_token).ok_or_else(|| {
                ConfigError(
                    "amo_crm credentials: give a long-lived access_token, or the OAuth set (client_id, client_secret, redirect_uri, refresh_token)"
                        .to_owned(),
                )
            })?)
        };
        let origin = base.strip_suffix("/api/v4").unwrap_or(&base).to_owned();
        Ok(Self {
            http: target.egress.client(Duration::from_secs(30), Vec::new()),
            token_url: format!("{origin}/oauth2/access_token"),
            base,
            auth,
            policy: RetryPolicy::default(),
        })
    }

    /// The access token to use now: the long-lived one, or a current OAuth token (renewed
    /// first when it is about to expire).
    async fn access_token(&self) -> Result<SecretString, VendorError> {
        match &self.auth {
            Auth::LongLived(token) => Ok(token.clone()),
            Auth::OAuth { current, .. } => {
                let now = OffsetDateTime::now_utc().unix_timestamp();
                let held = current.lock().await.clone();
                match held.filter(|t| t.expires_at - RENEW_BEFORE_S > now) {
                    Some(token) => Ok(token.token),
                    None => self.renew(None).await,
                }
            }
        }
    }

    /// A new access token: under the integration's lock, the stored pair is read again;
    /// a token another worker stored meanwhile (other than `stale`) is taken as it is,
    /// otherwise the stored refresh token is spent and the new pair stored.
    async fn renew(&self, stale: Option<&str>) -> Result<SecretString, VendorError> {
        let Auth::OAuth {
            client_id,
            client_secret,
            redirect_uri,
            store,
            current,
        } = &self.auth
        else {
            return Err(VendorError::Unauthorized {
                status: 401,
                detail: "the long-lived token was refused: issue a new one in AMO".to_owned(),
            });
        };
        let mut current = current.lock().await;
        let lease = store.lease().await?;
        let stored: Credentials = serde_json::from_value(lease.credentials().clone())
            .map_err(|_| VendorError::unreadable("stored AMO credentials of another shape"))?;
        let now = OffsetDateTime::now_utc().unix_timestamp();
        if let Some(fresh) = stored.fresh_token(now)
            && stale != Some(fresh.token.expose_secret())
        {
            // Another worker renewed it while we waited for the lock.
            let token = fresh.token.clone();
            *current = Some(fresh);
            return Ok(token);
        }
        let refresh_token = stored.refresh_token.clone().ok_or_else(|| {
            VendorError::unreadable("stored AMO credentials without a refresh_token")
        })?;
        let body = json!({
            "client_id": client_id,
            "client_secret": client_secret.expose_secret(),
            "grant_type": "refresh_token",
            "refresh_token": refresh_token.expose_secret(),
            "redirect_uri": redirect_uri,
        });
        let reply = send_classified(
            &self.policy,
            Some(&LIMITER),
            |status, _| match status {
                400 | 401 => Verdict::Fail(VendorError::Unauthorized {
                    status,
                    detail: "AMO refused the refresh token: authorize the integration again and store the new pair"
                        .to_owned(),
                }),
                _ => Verdict::Generic,
            },
            || self.http.post(&self.token_url).json(&body),
        )
        .await?;
        let pair: TokenReply =
            serde_json::from_str(&reply.body).map_err(|_| VendorError::malformed(&reply.body))?;
        let expires_at = now + pair.expires_in.max(0);
        let mut renewed = lease.credentials().clone();
        renewed["access_token"] = json!(pair.access_token);
        renewed["refresh_token"] = json!(pair.refresh_token);
        renewed["expires_at"] = json!(expires_at);
        // Stored before the token is used: a crash now loses nothing, and the spent refresh
        // token is never needed again.
        lease.save(renewed).await?;
        let token = SecretString::from(pair.access_token);
        *current = Some(AccessToken {
            token: token.clone(),
            expires_at,
        });
        Ok(token)
    }

    /// `GET {base}/{path}?{query}`, within the rate limit; an OAuth token refused with a
    /// 401 is renewed once. `None` on `204 No Content`.
    async fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Option<Reply>, VendorError> {
        let url = format!("{}/{path}", self.base);
        let call = |token: SecretString| {
            let url = &url;
            async move {
                send_classified(
                    &self.policy,
                    Some(&LIMITER),
                    |status, body| match status {
                        403 => Verdict::Fail(VendorError::Blocked {
                            detail: crate::http::reply_detail(body),
                        }),
                        _ => Verdict::Generic,
                    },
                    || {
                        self.http
                            .get(url)
                            .query(query)
                            .bearer_auth(token.expose_secret())
                            .header("Accept", "application/hal+json")
                    },
                )
                .await
            }
        };
        let token = self.access_token().await?;
        let reply = match call(token.clone()).await {
            Err(VendorError::Unauthorized { status: 401, .. })
                if matches!(self.auth, Auth::OAuth { .. }) =>
            {
                let renewed = self.renew(Some(token.expose_secret())).await?;
                call(renewed).await?
            }
            other => other?,
        };
        Ok((reply.status != 204 && !reply.body.trim().is_empty()).then_some(reply))
    }

    /// The main contact's phone and name, once per contact.
    async fn contact(
        &self,
        id: u64,
        cache: &mut HashMap<u64, (Option<String>, Option<String>)>,
    ) -> Result<(Option<String>, Option<String>), VendorError> {
        if let Some(known) = cache.get(&id) {
            return Ok(known.clone());
        }
        let found = match self.get(&format!("contacts/{id}"), &[]).await? {
            None => (None, None),
            Some(reply) => {
                let contact: Contact = serde_json::from_str(&reply.body)
                    .map_err(|_| VendorError::malformed(&reply.body))?;
                let phone = contact.phones().next();
                (phone, contact.name.filter(|n| !n.trim().is_empty()))
            }
        };
        cache.insert(id, found.clone());
        Ok(found)
    }

    /// Every lead changed within the window, newest first, each once.
    async fn leads(&self, window: Window) -> Result<Vec<Lead>, VendorError> {
        let from = window.from.unix_timestamp();
        // AMO's range is inclusive; the window's end is not, which the re-check handles.
        let to = window.to.unix_timestamp();
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for page in 1..=MAX_PAGES {
            let query = [
                ("with", "contacts".to_owned()),
                ("page", page.to_string()),
                ("limit", LIMIT.to_string()),
                ("filter[updated_at][from]", from.to_string()),
                ("filter[updated_at][to]", to.to_string()),
                ("order[updated_at]", "desc".to_owned()),
            ];
            let Some(reply) = self.get("leads", &query).await? else {
                return Ok(out);
            };
            let page: LeadsPage = serde_json::from_str(&reply.body)
                .map_err(|_| VendorError::malformed(&reply.body))?;
            let leads = page.embedded.leads;
            let sorted = leads.windows(2).all(|w| w[0].updated_at >= w[1].updated_at);
            let past_the_window = leads.last().is_some_and(|l| l.updated_at < from);
            for lead in leads {
                let changed =
                    OffsetDateTime::from_unix_timestamp(lead.updated_at).map_err(|_| {
                        VendorError::unreadable(format!(
                            "AMO lead {}: updated_at {}",
                            lead.id, lead.updated_at
                        ))
                    })?;
                // The account may have ignored the filter: the window decides.
                if changed >= window.from && changed < window.to && seen.insert(lead.id) {
                    out.push(lead);
                }
            }
            if page.links.next.is_none() || (sorted && past_the_window) {
                return Ok(out);
            }
        }
        Err(VendorError::unreadable(format!(
            "AMO kept returning leads after {MAX_PAGES} pages"
        )))
    }
}

#[async_trait]
impl CrmClient for HttpAmoCrm {
    fn vendor(&self) -> &'static str {
        "amo_crm"
    }

    #[tracing::instrument(skip_all, fields(vendor = "amo_crm", from = %window.from, to = %window.to), err)]
    async fn fetch_transactions(&self, window: Window) -> Result<Vec<CrmTransaction>, VendorError> {
        let mut contacts = HashMap::new();
        let mut out = Vec::new();
        for lead in self.leads(window).await? {
            if lead.status_id != WON && lead.status_id != LOST {
                continue;
            }
            let amount = match lead.price.as_deref().map(decimal) {
                Some(Some(amount)) => amount.abs(),
                Some(None) => {
                    return Err(VendorError::unreadable(format!(
                        "AMO lead {}: unreadable price",
                        lead.id
                    )));
                }
                None => Decimal::ZERO,
            };
            if amount.is_zero() {
                // Nothing was paid: nothing to accrue or reverse.
                continue;
            }
            let at = lead.closed_at.unwrap_or(lead.updated_at);
            let occurred_at = OffsetDateTime::from_unix_timestamp(at).map_err(|_| {
                VendorError::unreadable(format!("AMO lead {}: closed_at {at}", lead.id))
            })?;
            let id = lead.id.to_string();
            if lead.status_id == LOST {
                out.push(CrmTransaction {
                    external_id: format!("{id}:cancel"),
                    kind: CrmKind::Refund {
                        original_external_id: id,
                    },
                    amount,
                    occurred_at,
                    // See the module docs: the original purchase names the member.
                    customer_phone: None,
                    customer_name: None,
                    is_medical: false,
                });
                continue;
            }
            let (phone, name) = match lead.main_contact() {
                Some(contact) => self.contact(contact, &mut contacts).await?,
                None => (None, None),
            };
            out.push(CrmTransaction {
                external_id: id,
                kind: CrmKind::Purchase,
                amount,
                occurred_at,
                customer_phone: phone,
                customer_name: name,
                is_medical: false,
            });
        }
        Ok(out)
    }

    async fn find_customer(&self, phone: &str) -> Result<Option<CrmCustomer>, VendorError> {
        let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
        if digits.len() < 10 {
            return Ok(None);
        }
        // Searching by the ten national digits matches +7…, 8… and spaced forms alike.
        let national = &digits[digits.len() - 10..];
        let query = [("query", national.to_owned()), ("limit", "50".to_owned())];
        let Some(reply) = self.get("contacts", &query).await? else {
            return Ok(None);
        };
        let page: ContactsPage =
            serde_json::from_str(&reply.body).map_err(|_| VendorError::malformed(&reply.body))?;
        for contact in page.embedded.contacts {
            let matching = contact.phones().find(|p| {
                let d: String = p.chars().filter(char::is_ascii_digit).collect();
                d.ends_with(national)
            });
            if let Some(found) = matching {
                return Ok(Some(CrmCustomer {
                    external_id: contact.id.to_string(),
                    phone: Some(found),
                    name: contact.name.filter(|n| !n.trim().is_empty()),
                }));
            }
        }
        Ok(None)
    }

    async fn record_bonus(
        &self,
        _customer: &CrmCustomer,
        _amount: Decimal,
        _comment: &str,
    ) -> Result<bool, VendorError> {
        // Leads and contacts have no loyalty books; we keep the ledger.
        Ok(false)
    }
}

/// The token endpoint's reply.
#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
    refresh_token: String,
    expires_in: i64,
}

#[derive(Deserialize)]
struct LeadsPage {
    #[serde(rename = "_links", default)]
    links: Links,
    #[serde(rename = "_embedded")]
    embedded: EmbeddedLeads,
}

#[derive(Deserialize, Default)]
struct Links {
    #[serde(default)]
    next: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct EmbeddedLeads {
    leads: Vec<Lead>,
}

#[derive(Deserialize)]
struct Lead {
    id: u64,
    #[serde(default)]
    price: Option<Box<RawValue>>,
    status_id: i64,
    #[serde(default)]
    closed_at: Option<i64>,
    updated_at: i64,
    #[serde(rename = "_embedded", default)]
    embedded: Option<LeadEmbedded>,
}

impl Lead {
    /// The main contact, or the first one.
    fn main_contact(&self) -> Option<u64> {
        let contacts = &self.embedded.as_ref()?.contacts;
        contacts
            .iter()
            .find(|c| c.is_main == Some(true))
            .or_else(|| contacts.first())
            .map(|c| c.id)
    }
}

#[derive(Deserialize)]
struct LeadEmbedded {
    #[serde(default)]
    contacts: Vec<ContactRef>,
}

#[derive(Deserialize)]
struct ContactRef {
    id: u64,
    #[serde(default)]
    is_main: Option<bool>,
}

#[derive(Deserialize)]
struct ContactsPage {
    #[serde(rename = "_embedded")]
    embedded: EmbeddedContacts,
}

#[derive(Deserialize)]
struct EmbeddedContacts {
    contacts: Vec<Contact>,
}

#[derive(Deserialize)]
struct Contact {
    id: u64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    custom_fields_values: Option<Vec<CustomField>>,
}

impl Contact {
    /// The values of the contact's `PHONE` field, as written.
    fn phones(&self) -> impl Iterator<Item = String> + '_ {
        self.custom_fields_values
            .iter()
            .flatten()
            .filter(|f| f.field_code.as_deref() == Some("PHONE"))
            .flat_map(|f| f.values.iter())
            .filter_map(|v| v.value.as_str().map(str::to_owned))
            .filter(|p| !p.trim().is_empty())
    }
}

#[derive(Deserialize)]
struct CustomField {
    #[serde(default)]
    field_code: Option<String>,
    #[serde(default)]
    values: Vec<CustomValue>,
}

#[derive(Deserialize)]
struct CustomValue {
    #[serde(default)]
    value: serde_json::Value,
}

/// An amount from the JSON text the vendor sent (a number or a numeric string), never
/// through a float.
fn decimal(raw: &RawValue) -> Option<Decimal> {
    let text = raw.get().trim();
    let text = if text.starts_with('"') {
        serde_json::from_str::<String>(text).ok()?.replace(',', ".")
    } else {
        text.to_owned()
    };
    let text = text.trim();
    Decimal::from_str_exact(text)
        .or_else(|_| Decimal::from_scientific(text))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;
    use serde_json::Value;
    use simulators::{Fault, Sale, Simulator, Vendor};
    use std::time::Instant;
    use time::macros::datetime;

    const DAY: Window = Window {
        from: datetime!(2026-03-02 00:00 UTC),
        to: datetime!(2026-03-03 00:00 UTC),
    };

    fn client(url: &str, credentials: &Value) -> Result<HttpAmoCrm, ConfigError> {
        HttpAmoCrm::new(&Target::new(url, credentials, crate::test_egress()))
    }

    async fn amo() -> (Simulator, HttpAmoCrm) {
        let sim = Simulator::start(Vendor::AmoCrm).await.expect("simulator");
        let client = client(&sim.url, &Vendor::AmoCrm.credentials()).expect("client");
        (sim, client)
    }

    /// Credentials kept the way the integration keeps them: one copy, one lock.
    #[derive(Clone)]
    struct SharedTokens(Arc<tokio::sync::Mutex<Value>>);

    struct HeldTokens(tokio::sync::OwnedMutexGuard<Value>);

    #[async_trait]
    impl TokenStore for SharedTokens {
        async fn lease(&self) -> Result<Box<dyn super::super::TokenLease>, VendorError> {
            Ok(Box::new(HeldTokens(self.0.clone().lock_owned().await)))
        }
    }

    #[async_trait]
    impl super::super::TokenLease for HeldTokens {
        fn credentials(&self) -> &Value {
            &self.0
        }
        async fn save(mut self: Box<Self>, credentials: Value) -> Result<(), VendorError> {
            *self.0 = credentials;
            Ok(())
        }
    }

    fn oauth_client(url: &str, tokens: &SharedTokens) -> HttpAmoCrm {
        let credentials = tokens.0.try_lock().unwrap().clone();
        HttpAmoCrm::new(
            &Target::new(url, &credentials, crate::test_egress())
                .with_tokens(Arc::new(tokens.clone())),
        )
        .unwrap()
    }

    fn won(id: u64, amount: Decimal, minute: i64) -> Sale {
        let mut sale = Sale::purchase(
            id.to_string(),
            amount,
            datetime!(2026-03-02 09:00 UTC) + time::Duration::minutes(minute),
            "+7 (916) 555-01-02",
        );
        sale.name = Some("Ольга".to_owned());
        sale
    }

    fn deals(n: u64) -> Vec<Sale> {
        (0..n)
            .map(|i| won(1000 + i, dec!(5000) + Decimal::from(i), i as i64))
            .collect()
    }

    #[tokio::test]
    async fn every_page_of_won_leads_is_read_and_the_contact_asked_once() {
        let (sim, client) = amo().await;
        sim.add_sales(deals(5));
        *sim.state.page_size.lock().unwrap() = Some(2);

        let got = client.fetch_transactions(DAY).await.unwrap();

        assert_eq!(got.len(), 5, "{got:?}");
        let mut ids: Vec<&str> = got.iter().map(|t| t.external_id.as_str()).collect();
        ids.sort();
        assert_eq!(ids, ["1000", "1001", "1002", "1003", "1004"]);
        for t in &got {
            let i: i64 = t.external_id.parse::<i64>().unwrap() - 1000;
            assert_eq!(t.kind, CrmKind::Purchase);
            assert_eq!(t.amount, dec!(5000) + Decimal::from(i));
            assert_eq!(
                t.occurred_at,
                datetime!(2026-03-02 09:00 UTC) + time::Duration::minutes(i)
            );
            assert_eq!(t.customer_phone.as_deref(), Some("+7 (916) 555-01-02"));
            assert_eq!(t.customer_name.as_deref(), Some("Ольга"));
        }
        // Three pages (the last has no `next` link) and one contact for all five leads.
        assert_eq!(sim.requests(), 4);
    }

    #[tokio::test]
    async fn a_lead_lost_after_being_won_is_a_cancellation_without_a_phone() {
        let (sim, client) = amo().await;
        let mut deal = won(2001, dec!(12000), 0);
        sim.add_sales([deal.clone()]);
        let before = client.fetch_transactions(DAY).await.unwrap();
        deal.cancelled = true;
        deal.at = datetime!(2026-03-02 15:00 UTC);
        *sim.state.sales.lock().unwrap() = vec![deal];

        let after = client.fetch_transactions(DAY).await.unwrap();

        assert_eq!(before[0].kind, CrmKind::Purchase);
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].external_id, "2001:cancel");
        assert_eq!(
            after[0].kind,
            CrmKind::Refund {
                original_external_id: "2001".to_owned()
            }
        );
        assert_eq!(after[0].amount, dec!(12000));
        assert_eq!(after[0].occurred_at, datetime!(2026-03-02 15:00 UTC));
        assert_eq!(after[0].customer_phone, None);
    }

    #[tokio::test]
    async fn a_refund_shows_as_the_original_lead_lost() {
        let (sim, client) = amo().await;
        let mut refund = won(9, dec!(3000), 30);
        refund.id = "refund-9".to_owned();
        refund.refund_of = Some("2002".to_owned());
        sim.add_sales([won(2002, dec!(3000), 0), refund]);

        let got = client.fetch_transactions(DAY).await.unwrap();

        // Lead 2002 was won and lost within the window; AMO shows a lead in its latest
        // state only, so the purchase is never seen and its cancellation (phoneless) will
        // be dropped by the caller: nothing accrued, nothing reversed.
        let kinds: Vec<(&str, &CrmKind)> = got
            .iter()
            .map(|t| (t.external_id.as_str(), &t.kind))
            .collect();
        assert_eq!(
            kinds,
            [(
                "2002:cancel",
                &CrmKind::Refund {
                    original_external_id: "2002".to_owned()
                }
            )]
        );
    }

    #[tokio::test]
    async fn a_lead_delivered_twice_is_reported_once() {
        let (sim, client) = amo().await;
        sim.add_sales(deals(3));
        sim.state
            .duplicate
            .store(true, std::sync::atomic::Ordering::SeqCst);
        *sim.state.page_size.lock().unwrap() = Some(2);

        let got = client.fetch_transactions(DAY).await.unwrap();

        assert_eq!(got.len(), 3, "{got:?}");
    }

    #[tokio::test]
    async fn leads_outside_the_window_are_dropped_even_when_the_account_sends_them() {
        let (sim, client) = amo().await;
        // AMO's `to` is inclusive: a lead changed exactly at the window's end comes back.
        let mut at_the_end = won(3001, dec!(700), 0);
        at_the_end.at = DAY.to;
        sim.add_sales([won(3000, dec!(500), 0), at_the_end]);

        let got = client.fetch_transactions(DAY).await.unwrap();

        let ids: Vec<&str> = got.iter().map(|t| t.external_id.as_str()).collect();
        assert_eq!(ids, ["3000"]);
    }

    #[tokio::test]
    async fn no_content_means_no_leads() {
        let (sim, client) = amo().await;

        let got = client.fetch_transactions(DAY).await.unwrap();

        assert!(got.is_empty());
        assert_eq!(sim.requests(), 1);
    }

    #[tokio::test]
    async fn requests_are_spaced_to_seven_a_second() {
        let (sim, client) = amo().await;
        sim.add_sales(deals(7));
        *sim.state.page_size.lock().unwrap() = Some(1);
        let started = Instant::now();

        let got = client.fetch_transactions(DAY).await.unwrap();

        assert_eq!(got.len(), 7);
        // Seven pages and one contact: seven gaps of a seventh of a second.
        assert_eq!(sim.requests(), 8);
        assert!(
            started.elapsed() >= Duration::from_millis(990),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_429_is_waited_out_as_told_then_the_window_is_read() {
        let (sim, client) = amo().await;
        sim.add_sales(deals(2));
        sim.inject([Fault::RateLimited { retry_after_s: 1 }]);
        let started = Instant::now();

        let got = client.fetch_transactions(DAY).await.unwrap();

        assert_eq!(got.len(), 2);
        assert!(started.elapsed() >= Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_500_is_retried_then_the_window_is_read() {
        let (sim, client) = amo().await;
        sim.add_sales(deals(2));
        sim.inject([Fault::ServerError]);

        let got = client.fetch_transactions(DAY).await.unwrap();

        assert_eq!(got.len(), 2);
    }

    #[tokio::test]
    async fn a_401_is_unauthorized() {
        let (sim, client) = amo().await;
        sim.inject([Fault::Unauthorized]);

        let error = client.fetch_transactions(DAY).await.unwrap_err();

        assert!(
            matches!(error, VendorError::Unauthorized { status: 401, .. }),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_wrong_token_is_unauthorized() {
        let sim = Simulator::start(Vendor::AmoCrm).await.unwrap();
        let client = client(&sim.url, &serde_json::json!({"access_token": "expired"})).unwrap();

        let error = client.fetch_transactions(DAY).await.unwrap_err();

        assert!(
            matches!(error, VendorError::Unauthorized { .. }),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_malformed_body_is_malformed() {
        let (sim, client) = amo().await;
        sim.add_sales(deals(1));
        sim.inject([Fault::Malformed]);

        let error = client.fetch_transactions(DAY).await.unwrap_err();

        assert!(matches!(error, VendorError::Malformed { .. }), "{error:?}");
    }

    #[tokio::test]
    async fn a_customer_is_found_by_phone_and_a_stranger_is_not() {
        let (sim, client) = amo().await;
        sim.add_sales(deals(1));

        let found = client.find_customer("+79165550102").await.unwrap();
        let stranger = client.find_customer("+79990000000").await.unwrap();

        let found = found.expect("contact");
        assert_eq!(found.phone.as_deref(), Some("+7 (916) 555-01-02"));
        assert_eq!(found.name.as_deref(), Some("Ольга"));
        assert_eq!(stranger, None);
    }

    /// An account without API filtering sends every lead, newest first: once a page
    /// reaches leads older than the window, the rest is not asked for.
    #[tokio::test]
    async fn an_account_ignoring_the_filter_is_read_only_down_to_the_window() {
        use wiremock::{
            Mock, MockServer, ResponseTemplate,
            matchers::{method, path, query_param},
        };
        let server = MockServer::start().await;
        let inside = DAY.from.unix_timestamp() + 3600;
        let before = DAY.from.unix_timestamp() - 3600;
        Mock::given(method("GET"))
            .and(path("/api/v4/leads"))
            .and(query_param("page", "1"))
            .and(query_param("order[updated_at]", "desc"))
            .respond_with(ResponseTemplate::new(200).set_body_string(format!(
                r#"{{"_page":1,"_links":{{"next":{{"href":"x?page=2"}}}},"_embedded":{{"leads":[
                    {{"id":1,"price":1500,"status_id":142,"closed_at":{inside},"updated_at":{inside}}},
                    {{"id":2,"price":900,"status_id":142,"closed_at":{before},"updated_at":{before}}}]}}}}"#
            )))
            .expect(1)
            .mount(&server)
            .await;
        let client = client(
            &format!("{}/api/v4", server.uri()),
            &Vendor::AmoCrm.credentials(),
        )
        .unwrap();

        let got = client.fetch_transactions(DAY).await.unwrap();

        let ids: Vec<&str> = got.iter().map(|t| t.external_id.as_str()).collect();
        assert_eq!(ids, ["1"]);
        assert_eq!(got[0].amount, dec!(1500));
        assert_eq!(
            got[0].customer_phone, None,
            "a lead without contacts has no phone"
        );
    }

    #[test]
    fn incomplete_credentials_are_a_configuration_error() {
        let url = "http://127.0.0.1:9/api/v4";
        assert!(client(url, &serde_json::json!({"access_token": " "})).is_err());
        assert!(client(url, &serde_json::json!({})).is_err());
        let mut oauth = simulators::amo_oauth_credentials();
        assert!(client(url, &oauth).is_err(), "OAuth needs a token store");
        oauth.as_object_mut().unwrap().remove("client_secret");
        let tokens = SharedTokens(Arc::new(tokio::sync::Mutex::new(oauth.clone())));
        assert!(
            HttpAmoCrm::new(
                &Target::new(url, &oauth, crate::test_egress()).with_tokens(Arc::new(tokens))
            )
            .is_err()
        );
    }

    /// OAuth tokens expire: the first call gets a pair with the stored refresh token, an
    /// expired access token (401) gets one renewal and the call again, and each renewal
    /// rotates the refresh token, which is stored before it is needed.
    #[tokio::test]
    async fn an_expired_token_is_renewed_and_the_rotated_pair_stored() {
        let sim = Simulator::start(Vendor::AmoCrm).await.unwrap();
        sim.add_sales(deals(2));
        let tokens = SharedTokens(Arc::new(tokio::sync::Mutex::new(
            simulators::amo_oauth_credentials(),
        )));
        let client = oauth_client(&sim.url, &tokens);

        let first = client.fetch_transactions(DAY).await.unwrap();
        let stored_first = tokens.0.lock().await.clone();
        sim.state.tokens.expire_all();
        let second = client.fetch_transactions(DAY).await.unwrap();
        let stored_second = tokens.0.lock().await.clone();

        assert_eq!((first.len(), second.len()), (2, 2));
        assert_eq!(
            sim.state
                .tokens
                .refreshes
                .load(std::sync::atomic::Ordering::SeqCst),
            2
        );
        assert_eq!(
            sim.state
                .tokens
                .reused_refresh_tokens
                .load(std::sync::atomic::Ordering::SeqCst),
            0
        );
        assert_ne!(
            stored_first["refresh_token"],
            simulators::amo_oauth_credentials()["refresh_token"]
        );
        assert_ne!(
            stored_second["refresh_token"],
            stored_first["refresh_token"]
        );
        assert_ne!(stored_second["access_token"], stored_first["access_token"]);
        assert!(
            stored_second["expires_at"].as_i64().unwrap()
                > OffsetDateTime::now_utc().unix_timestamp()
        );
    }

    /// Two workers with clients of the same integration and an expired token: the lock
    /// lets one spend the refresh token; the other finds the new pair stored and uses it.
    #[tokio::test]
    async fn two_workers_never_spend_the_same_refresh_token() {
        let sim = Simulator::start(Vendor::AmoCrm).await.unwrap();
        sim.add_sales(deals(3));
        let tokens = SharedTokens(Arc::new(tokio::sync::Mutex::new(
            simulators::amo_oauth_credentials(),
        )));
        let (one, two) = (
            oauth_client(&sim.url, &tokens),
            oauth_client(&sim.url, &tokens),
        );

        let (a, b) = tokio::join!(one.fetch_transactions(DAY), two.fetch_transactions(DAY));
        sim.state.tokens.expire_all();
        let (c, d) = tokio::join!(one.fetch_transactions(DAY), two.fetch_transactions(DAY));

        for got in [a, b, c, d] {
            assert_eq!(got.unwrap().len(), 3);
        }
        assert_eq!(
            sim.state
                .tokens
                .reused_refresh_tokens
                .load(std::sync::atomic::Ordering::SeqCst),
            0
        );
        assert_eq!(
            sim.state
                .tokens
                .refreshes
                .load(std::sync::atomic::Ordering::SeqCst),
            2,
            "one renewal per expiry"
        );
    }

    /// A refresh token AMO no longer takes means re-authorizing: refused credentials.
    #[tokio::test]
    async fn a_spent_refresh_token_is_refused_credentials() {
        let sim = Simulator::start(Vendor::AmoCrm).await.unwrap();
        let tokens = SharedTokens(Arc::new(tokio::sync::Mutex::new(
            simulators::amo_oauth_credentials(),
        )));
        oauth_client(&sim.url, &tokens)
            .fetch_transactions(DAY)
            .await
            .unwrap();
        // Someone restores the first pair from a backup: its refresh token is spent.
        *tokens.0.lock().await = simulators::amo_oauth_credentials();

        let error = oauth_client(&sim.url, &tokens)
            .fetch_transactions(DAY)
            .await
            .unwrap_err();

        assert!(
            matches!(error, VendorError::Unauthorized { status: 400, .. }),
            "{error:?}"
        );
    }

    /// A 403 is AMO restricting our address, not our credentials: a block, transient.
    #[tokio::test]
    async fn a_403_is_a_block_not_a_refused_credential() {
        let (sim, client) = amo().await;
        sim.inject([Fault::Blocked]);

        let error = client.fetch_transactions(DAY).await.unwrap_err();

        assert!(matches!(error, VendorError::Blocked { .. }), "{error:?}");
        assert!(error.is_transient());
        assert_eq!(sim.requests(), 1, "a block is not hammered");
    }
}
