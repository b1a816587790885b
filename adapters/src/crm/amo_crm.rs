//! AMO CRM through its API v4 (wellness centre Стим Центр).
//!
//! # What this client relies on, and where it was confirmed
//!
//! - Base `https://{subdomain}.amocrm.ru/api/v4`, `Authorization: Bearer {access_token}`;
//!   `401` when the token is refused. amocrm.ru/developers «Сделки» (leads-api) and the
//!   official PHP library amocrm/amocrm-api-php (`src/AmoCRM/Client/AmoCRMApiRequest.php`).
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
//! - 7 requests a second, `429` beyond (with `Retry-After`): the vendor page of this
//!   project (`shared/vendors/README.md`); not found in amoCRM's own pages we could read.
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

use super::{ConfigError, CrmClient, CrmCustomer, CrmKind, CrmTransaction, Window};
use crate::http::{RateLimiter, Reply, RetryPolicy, VendorError, send};
use async_trait::async_trait;
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::{
    collections::{HashMap, HashSet},
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
/// AMO's documented request rate per integration.
const REQUESTS_PER_SECOND: u32 = 7;

/// The `crm_credentials` of an `amo_crm` business.
#[derive(Deserialize)]
struct Credentials {
    access_token: SecretString,
}

/// An AMO CRM account.
pub struct HttpAmoCrm {
    http: reqwest::Client,
    /// `https://{subdomain}.amocrm.ru/api/v4`
    base: String,
    token: SecretString,
    policy: RetryPolicy,
    limiter: RateLimiter,
}

/// Builds the AMO CRM client.
pub fn client(
    base_url: &str,
    credentials: &serde_json::Value,
) -> Result<Box<dyn CrmClient>, ConfigError> {
    Ok(Box::new(HttpAmoCrm::new(base_url, credentials)?))
}

impl HttpAmoCrm {
    /// A client of the account at `base_url` (`https://{subdomain}.amocrm.ru/api/v4`).
    pub fn new(base_url: &str, credentials: &serde_json::Value) -> Result<Self, ConfigError> {
        let c: Credentials = super::credentials("amo_crm", credentials)?;
        if c.access_token.expose_secret().trim().is_empty() {
            return Err(ConfigError(
                "amo_crm credentials: `access_token` is empty".to_owned(),
            ));
        }
        Ok(Self {
            http: crate::http_client(Duration::from_secs(30)),
            base: base_url.trim_end_matches('/').to_owned(),
            token: c.access_token,
            policy: RetryPolicy::default(),
            limiter: RateLimiter::per_second(REQUESTS_PER_SECOND),
        })
    }

    /// `GET {base}/{path}?{query}`, within the rate limit. `None` on `204 No Content`.
    async fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Option<Reply>, VendorError> {
        let url = format!("{}/{path}", self.base);
        let reply = send(&self.policy, Some(&self.limiter), || {
            self.http
                .get(&url)
                .query(query)
                .bearer_auth(self.token.expose_secret())
                .header("Accept", "application/hal+json")
        })
        .await?;
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
                        VendorError::Malformed {
                            excerpt: format!(
                                "AMO lead {}: updated_at {}",
                                lead.id, lead.updated_at
                            ),
                        }
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
        Err(VendorError::Malformed {
            excerpt: format!("AMO kept returning leads after {MAX_PAGES} pages"),
        })
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
                    return Err(VendorError::Malformed {
                        excerpt: format!("AMO lead {}: unreadable price", lead.id),
                    });
                }
                None => Decimal::ZERO,
            };
            if amount.is_zero() {
                // Nothing was paid: nothing to accrue or reverse.
                continue;
            }
            let at = lead.closed_at.unwrap_or(lead.updated_at);
            let occurred_at =
                OffsetDateTime::from_unix_timestamp(at).map_err(|_| VendorError::Malformed {
                    excerpt: format!("AMO lead {}: closed_at {at}", lead.id),
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
    use simulators::{Fault, Sale, Simulator, Vendor};
    use std::time::Instant;
    use time::macros::datetime;

    const DAY: Window = Window {
        from: datetime!(2026-03-02 00:00 UTC),
        to: datetime!(2026-03-03 00:00 UTC),
    };

    async fn amo() -> (Simulator, HttpAmoCrm) {
        let sim = Simulator::start(Vendor::AmoCrm).await.expect("simulator");
        let client = HttpAmoCrm::new(&sim.url, &Vendor::AmoCrm.credentials()).expect("client");
        (sim, client)
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
        let client =
            HttpAmoCrm::new(&sim.url, &serde_json::json!({"access_token": "expired"})).unwrap();

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
        let client = HttpAmoCrm::new(
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
    fn an_empty_token_is_a_configuration_error() {
        assert!(
            HttpAmoCrm::new("http://x/api/v4", &serde_json::json!({"access_token": " "})).is_err()
        );
        assert!(HttpAmoCrm::new("http://x/api/v4", &serde_json::json!({})).is_err());
    }
}
