//! 1C:Enterprise through its standard OData interface (Skinerica, Лисичкино's checkout).
//!
//! # What this client relies on, and where it was confirmed
//!
//! | what | confirmed in |
//! |---|---|
//! | `GET {base}/odata/standard.odata/{Object}?$format=json&$filter=…&$top=N&$skip=M&$orderby=Date` with HTTP Basic auth; `$filter` operators `eq`, `ge`, `lt`, `and`, `or`; spaces as `%20` (a `+` makes 1C ignore the filter silently) | «Технологии интеграции 1С:Предприятия 8.3» (rutlib.com/book/43553/p/47), 42clouds.com «Интерфейс OData: правила формирования условия отбора», 1cfresh.com/articles/data_odata, the `onec-odata` client on PyPI; the `%20` rule in a public TypeScript OData client's notes and a public Python client's tests (УТ 11, 8.3) |
//! | Date literals `Date ge datetime'2020-03-01T00:00:00'`; replies `{"odata.metadata", "value": [{Ref_Key, DataVersion, DeletionMark, Number, Date, Posted, …}]}`, dates in the infobase's local time without an offset | public Python scripts polling `Document_ЧекККМ`; a sample reply kept in a public Java client of 1C OData |
//! | Fractional numbers are `Edm.Double`, i.e. JSON numbers (read from their text, never through a float) | 42clouds.com «Интерфейс OData: представление данных» |
//! | No standard configuration puts a phone on a check: `Document_ЧекККМ` carries `Контрагент_Key` and `ДисконтнаяКарта_Key`, `СуммаДокумента` | a public Java client of a retail configuration (`@JsonProperty("Контрагент_Key")`, `("ДисконтнаяКарта_Key")`, `("СуммаДокумента")`); a public Go configuration of `Document_ЧекККМ` fields (`customer_id` ← `Контрагент_Key`) |
//! | УНФ, Розница 2 and УТ 11 keep refunds in `Document_ЧекККМВозврат`, which points at the sale through `ЧекККМ_Key` | the same Go configuration (`"refund": Document_ЧекККМВозврат`, `original_receipt_id` ← `ЧекККМ_Key`); this project's vendor notes |
//! | Older configurations keep returns inside `Document_ЧекККМ` (`ВидОперации` «Возврат», the sale in `ЧекККМПродажа_Key`, an empty reference being the zero GUID) | a public JS audit script selecting `ВидОперации`; public Python scripts filtering `ЧекККМПродажа_Key ne guid'00000000-…'` |
//! | A discount card `Catalog_ИнформационныеКарты(guid'…')` names its owner in `ВладелецКарты` (a reference of composite type, with `ВладелецКарты_Type`) | a public Python script following `ДисконтнаяКарта_Key` → `Catalog_ИнформационныеКарты` → `ВладелецКарты` |
//! | A catalog element is read by key even where `$filter` is forbidden, and carries its tabular sections (`КонтактнаяИнформация` rows with `Тип`, `Представление`, `НомерТелефона`) | a public TypeScript OData client's notes («Точечное чтение Entity(guid'...') работает даже когда $filter запрещён»); a public test fixture of `Catalog_Контрагенты` |
//! | Some publications refuse `$filter` on fields (role rights): HTTP 500 (some 400) with `odata.error` «Операция не разрешена в предложении "ГДЕ"» — a configuration error, reported as such, never retried as an outage | the public `Dastrixx/dashboard` (`server/sync/raw-source.mjs`, `isUnsupportedDateFilter`), a public TypeScript OData client's notes, a public Python client's tests |
//!
//! Assumptions (not confirmed): УНФ's discount cards are `Catalog_ДисконтныеКарты` with
//! `ВладелецКарты_Key`; УТ 11 follows Розница 2 here; the format of `НомерТелефона` (we try
//! the usual written forms); that marking a posted document for deletion also clears
//! `Posted` (we treat any deletion mark as a cancellation). OData has no change timestamp for
//! documents, so a deletion mark set after a window was polled is only seen when that
//! window is read again. A publication that refuses the `Date` filter is not read by
//! walking its whole journal instead (as `Dastrixx/dashboard` does): operators are told.
//!
//! # Presets (`settings.preset` of a `1c` integration)
//!
//! | preset | sales | refunds | the buyer |
//! |---|---|---|---|
//! | `retail_2` (default; Розница 2) | `Document_ЧекККМ` | `Document_ЧекККМВозврат`, `ЧекККМ_Key` | `Контрагент_Key` → `Catalog_Контрагенты`; else `ДисконтнаяКарта_Key` → `Catalog_ИнформационныеКарты.ВладелецКарты` |
//! | `ut_11` (УТ 11) | as `retail_2` | as `retail_2` | as `retail_2` |
//! | `unf` (УНФ) | `Document_ЧекККМ` | `Document_ЧекККМВозврат`, `ЧекККМ_Key` | `Контрагент_Key`; else `ДисконтнаяКарта_Key` → `Catalog_ДисконтныеКарты.ВладелецКарты_Key` |
//! | `retail_1` (Розница 1, УТ 10.3) | `Document_ЧекККМ` | inside it: `ВидОперации` «Возврат», `ЧекККМПродажа_Key` | as `retail_2` |
//!
//! Every name can be overridden in the settings: `document`, `refund_document` (`""` for
//! returns inside the sales document), `original_field`, `operation_field`,
//! `return_operation`, `amount_field` (`СуммаДокумента`), `counterparty_field`,
//! `counterparty_catalog`, `card_field`, `card_catalog`, `card_owner_field`, `phone_field`
//! (an installation's own phone attribute on the check, read first when set), `name_field`,
//! `utc_offset` (the infobase's zone, `+03:00`). The credentials are `username`, `password`
//! (older integrations kept the settings there too, and they are still read).
//!
//! A check whose buyer cannot be reached (the generic «Розничный покупатель», a card
//! without an owner) comes back without a phone: the caller counts it as unattributed.

use super::{ConfigError, CrmClient, CrmCustomer, CrmKind, CrmTransaction, Target, Window};
use crate::http::{Reply, RetryPolicy, VendorError, Verdict, send_classified};
use async_trait::async_trait;
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, value::RawValue};
use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};
use time::{
    OffsetDateTime, PrimitiveDateTime, UtcOffset, format_description::BorrowedFormatItem,
    macros::format_description,
};

/// 1C's `Date` literal and JSON form (local time, no offset).
const DATE: &[BorrowedFormatItem<'_>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
/// Documents per request. 1C has no server limit; a publication may still cap it, so we
/// page until an empty page rather than trusting a short one.
const PAGE: usize = 500;
/// A window that needs more pages than this is not ending: stop rather than loop forever.
const MAX_PAGES: usize = 10_000;
/// An empty reference in 1C.
const ZERO_GUID: &str = "00000000-0000-0000-0000-000000000000";
/// What 1C says when a publication refuses a filter.
const FILTER_REFUSED: [&str; 2] = [
    "Операция не разрешена в предложении",
    "operation not allowed in",
];

/// Where a configuration keeps sales, refunds and buyers.
struct Preset {
    name: &'static str,
    document: &'static str,
    /// `None`: returns are sales documents with `operation_field` = `return_operation`.
    refund_document: Option<&'static str>,
    original_field: &'static str,
    card_catalog: &'static str,
    card_owner_field: &'static str,
}

const PRESETS: [Preset; 4] = [
    Preset {
        name: "retail_2",
        document: "Document_ЧекККМ",
        refund_document: Some("Document_ЧекККМВозврат"),
        original_field: "ЧекККМ_Key",
        card_catalog: "Catalog_ИнформационныеКарты",
        card_owner_field: "ВладелецКарты",
    },
    Preset {
        name: "ut_11",
        document: "Document_ЧекККМ",
        refund_document: Some("Document_ЧекККМВозврат"),
        original_field: "ЧекККМ_Key",
        card_catalog: "Catalog_ИнформационныеКарты",
        card_owner_field: "ВладелецКарты",
    },
    Preset {
        name: "unf",
        document: "Document_ЧекККМ",
        refund_document: Some("Document_ЧекККМВозврат"),
        original_field: "ЧекККМ_Key",
        card_catalog: "Catalog_ДисконтныеКарты",
        card_owner_field: "ВладелецКарты",
    },
    Preset {
        name: "retail_1",
        document: "Document_ЧекККМ",
        refund_document: None,
        original_field: "ЧекККМПродажа_Key",
        card_catalog: "Catalog_ИнформационныеКарты",
        card_owner_field: "ВладелецКарты",
    },
];

/// The `username` and `password` of a `1c` integration.
#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: SecretString,
}

/// The settings of a `1c` integration (see the module docs); absent means the preset's.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Settings {
    preset: Option<String>,
    document: Option<String>,
    refund_document: Option<String>,
    original_field: Option<String>,
    operation_field: Option<String>,
    return_operation: Option<String>,
    amount_field: Option<String>,
    counterparty_field: Option<String>,
    /// `customer_catalog` is its older name.
    #[serde(alias = "customer_catalog")]
    counterparty_catalog: Option<String>,
    card_field: Option<String>,
    card_catalog: Option<String>,
    card_owner_field: Option<String>,
    phone_field: Option<String>,
    name_field: Option<String>,
    utc_offset: Option<String>,
}

/// A 1C infobase's standard OData interface.
pub struct HttpOneC {
    http: reqwest::Client,
    /// `{base}/odata/standard.odata`
    odata: String,
    username: String,
    password: SecretString,
    mapping: Mapping,
    policy: RetryPolicy,
}

/// Where the configuration keeps what we read.
struct Mapping {
    preset: &'static str,
    document: String,
    refund_document: Option<String>,
    original_field: String,
    operation_field: String,
    return_operation: String,
    amount_field: String,
    counterparty_field: String,
    counterparty_catalog: String,
    card_field: String,
    card_catalog: String,
    card_owner_field: String,
    phone_field: Option<String>,
    name_field: Option<String>,
    offset: UtcOffset,
}

impl HttpOneC {
    /// A client of the publication at `target.base_url` (e.g. `https://host/base`).
    pub fn new(target: &Target<'_>) -> Result<Self, ConfigError> {
        let base_url = target.checked_base()?;
        let c: Credentials = super::credentials("1c", target.credentials)?;
        // Settings over the keys older integrations kept in their credentials.
        let mut merged = serde_json::Map::new();
        for source in [target.credentials, target.settings] {
            if let Some(object) = source.as_object() {
                for (key, value) in object {
                    if key != "username" && key != "password" && !value.is_null() {
                        merged.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        let settings: Settings = serde_json::from_value(Value::Object(merged))
            .map_err(|_| ConfigError("1c settings: every setting is a string".to_owned()))?;
        let name = settings
            .preset
            .as_deref()
            .map(str::trim)
            .unwrap_or("retail_2");
        let preset = PRESETS.iter().find(|p| p.name == name).ok_or_else(|| {
            ConfigError(format!(
                "1c settings: unknown preset `{name}` (retail_2, ut_11, unf or retail_1)"
            ))
        })?;
        let pick = |given: Option<String>, default: &str| {
            given
                .map(|g| g.trim().to_owned())
                .filter(|g| !g.is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        let refund_document = match settings.refund_document {
            Some(given) if given.trim().is_empty() => None,
            Some(given) => Some(given.trim().to_owned()),
            None => preset.refund_document.map(str::to_owned),
        };
        let offset_text = settings.utc_offset.unwrap_or_else(|| "+03:00".to_owned());
        let offset = UtcOffset::parse(
            offset_text.trim(),
            format_description!("[offset_hour sign:mandatory]:[offset_minute]"),
        )
        .map_err(|_| {
            ConfigError(format!(
                "1c settings: `utc_offset` must look like +03:00, not `{offset_text}`"
            ))
        })?;
        let optional =
            |given: Option<String>| given.map(|g| g.trim().to_owned()).filter(|g| !g.is_empty());
        Ok(Self {
            http: target.egress.client(Duration::from_secs(30), Vec::new()),
            odata: format!("{base_url}/odata/standard.odata"),
            username: c.username,
            password: c.password,
            mapping: Mapping {
                preset: preset.name,
                document: pick(settings.document, preset.document),
                original_field: pick(settings.original_field, preset.original_field),
                refund_document,
                operation_field: pick(settings.operation_field, "ВидОперации"),
                return_operation: pick(settings.return_operation, "Возврат"),
                amount_field: pick(settings.amount_field, "СуммаДокумента"),
                counterparty_field: pick(settings.counterparty_field, "Контрагент_Key"),
                counterparty_catalog: pick(settings.counterparty_catalog, "Catalog_Контрагенты"),
                card_field: pick(settings.card_field, "ДисконтнаяКарта_Key"),
                card_catalog: pick(settings.card_catalog, preset.card_catalog),
                card_owner_field: pick(settings.card_owner_field, preset.card_owner_field),
                phone_field: optional(settings.phone_field),
                name_field: optional(settings.name_field),
                offset,
            },
            policy: RetryPolicy::default(),
        })
    }

    /// `GET {odata}/{path_and_query}` with Basic auth; a refused filter is a configuration
    /// error naming `object`.
    async fn get(&self, object: &str, path_and_query: &str) -> Result<Reply, VendorError> {
        let url = format!("{}/{path_and_query}", self.odata);
        send_classified(
            &self.policy,
            None,
            |status, body| {
                let detail = crate::http::reply_detail(body);
                if status >= 400 && FILTER_REFUSED.iter().any(|f| detail.contains(f)) {
                    Verdict::Fail(VendorError::Configuration(format!(
                        "this 1C publication refuses to filter {object} (HTTP {status}: «Операция не разрешена в предложении \"ГДЕ\"»): give the integration's 1C user a role that may read {object} with its fields, or publish it in the OData interface with them"
                    )))
                } else {
                    Verdict::Generic
                }
            },
            || {
                self.http
                    .get(&url)
                    .basic_auth(&self.username, Some(self.password.expose_secret()))
                    .header("Accept", "application/json")
            },
        )
        .await
    }

    /// The `value` of an OData collection reply.
    async fn list(&self, object: &str, query: &str) -> Result<Vec<Record>, VendorError> {
        let reply = self
            .get(object, &format!("{}?{query}", encode(object)))
            .await?;
        let list: Collection =
            serde_json::from_str(&reply.body).map_err(|_| VendorError::malformed(&reply.body))?;
        Ok(list.value)
    }

    /// One catalog element by key; `None` if it does not exist.
    async fn element(&self, catalog: &str, key: &str) -> Result<Option<Record>, VendorError> {
        if !is_guid(key) || key == ZERO_GUID {
            return Ok(None);
        }
        match self
            .get(
                catalog,
                &format!("{}(guid'{key}')?$format=json", encode(catalog)),
            )
            .await
        {
            Ok(reply) => serde_json::from_str(&reply.body)
                .map(Some)
                .map_err(|_| VendorError::malformed(&reply.body)),
            Err(VendorError::Rejected { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every document of `object` dated within the window (widened to whole seconds).
    async fn documents(&self, object: &str, window: Window) -> Result<Vec<Record>, VendorError> {
        let from = window.from.replace_nanosecond(0).unwrap_or(window.from);
        let to = if window.to.nanosecond() == 0 {
            window.to
        } else {
            window.to.replace_nanosecond(0).unwrap_or(window.to) + time::Duration::SECOND
        };
        let filter = format!(
            "Date ge datetime'{}' and Date lt datetime'{}'",
            self.literal(from),
            self.literal(to)
        );
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut skip = 0;
        for _ in 0..MAX_PAGES {
            let records = self
                .list(
                    object,
                    &format!(
                        "$format=json&$filter={}&$top={PAGE}&$skip={skip}&$orderby=Date",
                        encode(&filter)
                    ),
                )
                .await?;
            if records.is_empty() {
                return Ok(out);
            }
            skip += records.len();
            for record in records {
                // A document can come twice when others are added while we page.
                if let Some(key) = text(&record, "Ref_Key")
                    && seen.insert(key)
                {
                    out.push(record);
                }
            }
        }
        Err(VendorError::unreadable(format!(
            "1C kept returning {object} after {MAX_PAGES} pages"
        )))
    }

    fn local(&self, at: OffsetDateTime) -> PrimitiveDateTime {
        let local = at.to_offset(self.mapping.offset);
        PrimitiveDateTime::new(local.date(), local.time())
    }

    /// The date literal of `at`, to the second.
    fn literal(&self, at: OffsetDateTime) -> String {
        self.local(at).format(DATE).unwrap_or_default()
    }

    /// What a document of the window means to us, if anything (the buyer is found later).
    fn draft(
        &self,
        record: &Record,
        window: Window,
        refund_document: bool,
    ) -> Result<Option<Draft>, VendorError> {
        let m = &self.mapping;
        let key = text(record, "Ref_Key").ok_or_else(|| missing("Ref_Key"))?;
        let date = text(record, "Date").ok_or_else(|| missing("Date"))?;
        let occurred_at = PrimitiveDateTime::parse(&date, DATE)
            .map_err(|_| {
                VendorError::unreadable(format!("1C document {key}: unreadable Date `{date}`"))
            })?
            .assume_offset(m.offset);
        // The filter was widened to whole seconds: the window itself decides.
        if occurred_at < window.from || occurred_at >= window.to {
            return Ok(None);
        }
        let posted = flag(record, "Posted");
        let deleted = flag(record, "DeletionMark");
        if !posted && !deleted {
            // A draft (or a document un-posted for editing): nothing happened yet.
            return Ok(None);
        }
        let amount = record
            .get(&m.amount_field)
            .and_then(|raw| decimal(raw))
            .ok_or_else(|| {
                VendorError::unreadable(format!(
                    "1C document {key}: no readable `{}` (check `amount_field`)",
                    m.amount_field
                ))
            })?
            .abs();
        if amount.is_zero() {
            return Ok(None);
        }
        let is_return = refund_document
            || (m.refund_document.is_none()
                && text(record, &m.operation_field)
                    .is_some_and(|op| op.trim().eq_ignore_ascii_case(m.return_operation.trim())));
        let reference = |field: &str| text(record, field).filter(|k| is_guid(k) && k != ZERO_GUID);
        let buyer = Buyer {
            phone: m
                .phone_field
                .as_deref()
                .and_then(|f| text(record, f))
                .filter(|p| !p.trim().is_empty()),
            name: m
                .name_field
                .as_deref()
                .and_then(|f| text(record, f))
                .filter(|n| !n.trim().is_empty()),
            counterparty: reference(&m.counterparty_field),
            card: reference(&m.card_field),
        };
        let (external_id, kind, buyer) = if deleted {
            if is_return {
                // A cancelled return cannot be expressed as a transaction; the purchase's
                // refund stays recorded, which errs on the member's side of caution.
                tracing::warn!(document = %key, "1C return check marked for deletion: ignored");
                return Ok(None);
            }
            // The member is whoever the original purchase says: a cancellation of a
            // purchase we never recorded must not touch anyone's balance.
            (
                format!("{key}:cancel"),
                CrmKind::Refund {
                    original_external_id: key,
                },
                Buyer::default(),
            )
        } else if is_return {
            let original = reference(&m.original_field).unwrap_or_default();
            (
                key,
                CrmKind::Refund {
                    original_external_id: original,
                },
                buyer,
            )
        } else {
            (key, CrmKind::Purchase, buyer)
        };
        Ok(Some(Draft {
            transaction: CrmTransaction {
                external_id,
                kind,
                amount,
                occurred_at,
                customer_phone: None,
                customer_name: None,
                is_medical: false,
            },
            buyer,
        }))
    }

    /// The phone and name of the buyer a check points at, through its counterparty or its
    /// discount card's owner.
    async fn resolve(&self, buyer: &Buyer, book: &mut ContactBook) -> Result<Contact, VendorError> {
        if buyer.phone.is_some() {
            return Ok((buyer.phone.clone(), buyer.name.clone()));
        }
        let m = &self.mapping;
        if let Some(key) = &buyer.counterparty {
            let found = self.contact(&m.counterparty_catalog, key, book).await?;
            if found.0.is_some() {
                return Ok((found.0, buyer.name.clone().or(found.1)));
            }
        }
        if let Some(card) = &buyer.card {
            if !book.cards.contains_key(card) {
                let owner = self
                    .element(&m.card_catalog, card)
                    .await?
                    .and_then(|element| self.card_owner(&element));
                book.cards.insert(card.clone(), owner);
            }
            if let Some(Some((catalog, owner))) = book.cards.get(card).cloned() {
                let found = self.contact(&catalog, &owner, book).await?;
                return Ok((found.0, buyer.name.clone().or(found.1)));
            }
        }
        Ok((None, buyer.name.clone()))
    }

    /// The catalog and key of a discount card's owner: `{field}_Key`, or the composite
    /// `{field}` with its `{field}_Type` naming the catalog.
    fn card_owner(&self, card: &Record) -> Option<(String, String)> {
        let field = &self.mapping.card_owner_field;
        let owner = text(card, &format!("{field}_Key"))
            .or_else(|| text(card, field))
            .filter(|k| is_guid(k) && k != ZERO_GUID)?;
        let catalog = text(card, &format!("{field}_Type"))
            .and_then(|t| t.rsplit('.').next().map(str::to_owned))
            .filter(|t| t.starts_with("Catalog_"))
            .unwrap_or_else(|| self.mapping.counterparty_catalog.clone());
        Some((catalog, owner))
    }

    /// A catalog element's phone (its contact information) and name, once per element.
    async fn contact(
        &self,
        catalog: &str,
        key: &str,
        book: &mut ContactBook,
    ) -> Result<Contact, VendorError> {
        let id = format!("{catalog}:{key}");
        if let Some(known) = book.contacts.get(&id) {
            return Ok(known.clone());
        }
        let found = match self.element(catalog, key).await? {
            None => (None, None),
            Some(element) => (
                phone_of(&element),
                text(&element, "Description").filter(|n| !n.trim().is_empty()),
            ),
        };
        book.contacts.insert(id, found.clone());
        Ok(found)
    }
}

/// A phone and a name, either possibly unknown.
type Contact = (Option<String>, Option<String>);

/// What one poll learned of buyers, so that each is asked for once.
#[derive(Default)]
struct ContactBook {
    contacts: HashMap<String, Contact>,
    /// Card → its owner's (catalog, key).
    cards: HashMap<String, Option<(String, String)>>,
}

/// Where a check says its buyer is.
#[derive(Default, Clone)]
struct Buyer {
    /// An installation's own phone attribute.
    phone: Option<String>,
    name: Option<String>,
    counterparty: Option<String>,
    card: Option<String>,
}

/// A transaction whose buyer is still to be found.
struct Draft {
    transaction: CrmTransaction,
    buyer: Buyer,
}

#[async_trait]
impl CrmClient for HttpOneC {
    fn vendor(&self) -> &'static str {
        "1c"
    }

    #[tracing::instrument(skip_all, fields(vendor = "1c", preset = self.mapping.preset, from = %window.from, to = %window.to), err)]
    async fn fetch_transactions(&self, window: Window) -> Result<Vec<CrmTransaction>, VendorError> {
        let m = &self.mapping;
        let mut drafts = Vec::new();
        for record in self.documents(&m.document, window).await? {
            drafts.extend(self.draft(&record, window, false)?);
        }
        if let Some(refunds) = &m.refund_document {
            for record in self.documents(refunds, window).await? {
                drafts.extend(self.draft(&record, window, true)?);
            }
        }
        let mut book = ContactBook::default();
        let mut out = Vec::with_capacity(drafts.len());
        let mut seen = HashSet::new();
        for Draft {
            mut transaction,
            buyer,
        } in drafts
        {
            if !seen.insert(transaction.external_id.clone()) {
                continue;
            }
            let (phone, name) = self.resolve(&buyer, &mut book).await?;
            transaction.customer_phone = phone;
            transaction.customer_name = name;
            out.push(transaction);
        }
        out.sort_by_key(|t| t.occurred_at);
        Ok(out)
    }

    async fn find_customer(&self, phone: &str) -> Result<Option<CrmCustomer>, VendorError> {
        let forms = phone_forms(phone);
        if forms.is_empty() {
            return Ok(None);
        }
        let filter = forms
            .iter()
            .map(|f| format!("НомерТелефона eq '{}'", f.replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(" or ");
        let catalog = &self.mapping.counterparty_catalog;
        let rows = self
            .list(
                &format!("{catalog}_КонтактнаяИнформация"),
                &format!("$format=json&$filter={}&$top=1", encode(&filter)),
            )
            .await?;
        let Some(key) = rows.first().and_then(|row| text(row, "Ref_Key")) else {
            return Ok(None);
        };
        if !is_guid(&key) {
            return Err(VendorError::unreadable(
                "a 1C contact row whose Ref_Key is not a GUID",
            ));
        }
        let Some(element) = self.element(catalog, &key).await? else {
            // The row outlived its owner.
            return Ok(None);
        };
        Ok(Some(CrmCustomer {
            external_id: key,
            phone: Some(phone.to_owned()),
            name: text(&element, "Description").filter(|n| !n.trim().is_empty()),
        }))
    }

    async fn record_bonus(
        &self,
        _customer: &CrmCustomer,
        _amount: Decimal,
        _comment: &str,
    ) -> Result<bool, VendorError> {
        // Loyalty books in 1C are configuration-specific documents; we keep the ledger.
        Ok(false)
    }
}

/// One entity: its fields as the vendor wrote them, read by name when needed.
type Record = HashMap<String, Box<RawValue>>;

#[derive(Deserialize)]
struct Collection {
    value: Vec<Record>,
}

fn missing(field: &str) -> VendorError {
    VendorError::unreadable(format!("a 1C document without `{field}`"))
}

/// A string field (`None` when absent, null or not a string).
fn text(record: &Record, field: &str) -> Option<String> {
    record
        .get(field)
        .and_then(|raw| serde_json::from_str::<Option<String>>(raw.get()).ok())
        .flatten()
}

fn flag(record: &Record, field: &str) -> bool {
    record
        .get(field)
        .and_then(|raw| serde_json::from_str::<bool>(raw.get()).ok())
        .unwrap_or(false)
}

/// The phone of a catalog element: the first `Телефон` row of its contact information
/// (`НомерТелефона` when it holds a number, else `Представление`).
fn phone_of(element: &Record) -> Option<String> {
    #[derive(Deserialize)]
    struct Row {
        #[serde(rename = "Тип", default)]
        kind: Option<String>,
        #[serde(rename = "НомерТелефона", default)]
        number: Option<String>,
        #[serde(rename = "Представление", default)]
        shown: Option<String>,
    }
    let rows: Vec<Row> = element
        .get("КонтактнаяИнформация")
        .and_then(|raw| serde_json::from_str(raw.get()).ok())?;
    rows.into_iter()
        .filter(|r| r.kind.as_deref().is_some_and(|k| k.trim() == "Телефон"))
        .find_map(|r| {
            let number = r
                .number
                .filter(|n| n.chars().filter(char::is_ascii_digit).count() >= 10);
            number.or(r.shown).filter(|p| !p.trim().is_empty())
        })
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

/// Percent-encodes everything but RFC 3986 unreserved characters: object names are
/// Cyrillic and filters hold spaces and quotes (`%20`, not `+`, which OData may read
/// literally).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn is_guid(s: &str) -> bool {
    s.len() == 36
        && s.chars().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The written forms a Russian number may have in a catalog: `+7…`, `7…`, `8…`, ten digits.
fn phone_forms(phone: &str) -> Vec<String> {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 10 {
        return Vec::new();
    }
    let national = &digits[digits.len() - 10..];
    vec![
        format!("+7{national}"),
        format!("7{national}"),
        format!("8{national}"),
        national.to_owned(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;
    use serde_json::json;
    use simulators::{Fault, OneCSetup, Sale, Simulator, Vendor};
    use std::time::Instant;
    use time::macros::datetime;

    const DAY: Window = Window {
        from: datetime!(2026-03-02 00:00 UTC),
        to: datetime!(2026-03-03 00:00 UTC),
    };

    fn client_with(
        url: &str,
        credentials: &Value,
        settings: &Value,
    ) -> Result<HttpOneC, ConfigError> {
        HttpOneC::new(&Target::new(url, credentials, crate::test_egress()).with_settings(settings))
    }

    /// A Розница 2 infobase and a client with the default preset.
    async fn onec() -> (Simulator, HttpOneC) {
        let sim = Simulator::start(Vendor::OneC).await.expect("simulator");
        let client =
            client_with(&sim.url, &Vendor::OneC.credentials(), &json!({})).expect("client");
        (sim, client)
    }

    fn sale(id: &str, amount: Decimal, at: OffsetDateTime) -> Sale {
        Sale::purchase(id, amount, at, "+7 999 123-45-67")
    }

    /// Checks of one day, a few minutes apart.
    fn checks(n: usize) -> Vec<Sale> {
        (0..n)
            .map(|i| {
                sale(
                    &format!("check-{i}"),
                    dec!(100.10) + Decimal::from(i),
                    datetime!(2026-03-02 09:00 UTC) + time::Duration::minutes(i as i64),
                )
            })
            .collect()
    }

    fn digits(phone: Option<&str>) -> String {
        phone
            .unwrap_or_default()
            .chars()
            .filter(char::is_ascii_digit)
            .collect()
    }

    #[tokio::test]
    async fn every_page_of_a_window_is_read_with_exact_amounts() {
        let (sim, client) = onec().await;
        sim.add_sales(checks(5));
        sim.add_sales([sale("next-day", dec!(1), datetime!(2026-03-03 00:00 UTC))]);
        *sim.state.page_size.lock().unwrap() = Some(2);

        let got = client.fetch_transactions(DAY).await.unwrap();

        assert_eq!(got.len(), 5, "{got:?}");
        for (i, t) in got.iter().enumerate() {
            assert_eq!(t.kind, CrmKind::Purchase);
            assert_eq!(t.amount, dec!(100.10) + Decimal::from(i), "{t:?}");
            assert_eq!(
                t.occurred_at,
                datetime!(2026-03-02 09:00 UTC) + time::Duration::minutes(i as i64)
            );
            assert_eq!(digits(t.customer_phone.as_deref()), "79991234567");
            assert!(!t.is_medical);
        }
        // Three pages of checks and the empty one that ends them, the same for refunds,
        // and the one counterparty all five checks point at, asked once.
        assert_eq!(sim.requests(), 4 + 1 + 1, "{} requests", sim.requests());
    }

    /// No standard configuration puts a phone on a check: the check names its
    /// counterparty, whose contact information holds the phone.
    #[tokio::test]
    async fn a_check_without_a_phone_reaches_its_buyer_through_the_counterparty() {
        let (sim, client) = onec().await;
        let mut anna = sale("c-1", dec!(950), datetime!(2026-03-02 10:00 UTC));
        anna.phone = Some("8 (916) 555-01-02".to_owned());
        anna.name = Some("Анна Петрова".to_owned());
        sim.add_sales([anna]);
        let http = crate::http_client(Duration::from_secs(5));
        let raw: Value = http
            .get(format!(
                "{}/odata/standard.odata/Document_ЧекККМ?$format=json",
                sim.url
            ))
            .basic_auth("sim-user", Some("sim-password"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();

        let got = client.fetch_transactions(DAY).await.unwrap();

        assert!(
            !raw["value"][0]
                .as_object()
                .unwrap()
                .keys()
                .any(|k| k.contains("Телефон")),
            "the simulated check has no phone field: {raw}"
        );
        assert_eq!(got.len(), 1);
        assert_eq!(digits(got[0].customer_phone.as_deref()), "89165550102");
        assert_eq!(got[0].customer_name.as_deref(), Some("Анна Петрова"));
    }

    /// A check paid with a discount card points at «Розничный покупатель» and the card;
    /// the card's owner has the phone.
    #[tokio::test]
    async fn a_check_paid_with_a_discount_card_reaches_the_cards_owner() {
        let (sim, client) = onec().await;
        let mut with_card = sale("c-2", dec!(1200), datetime!(2026-03-02 11:00 UTC));
        with_card.phone = Some("+7 926 000-11-22".to_owned());
        with_card.card = Some("000123".to_owned());
        sim.add_sales([with_card]);

        let got = client.fetch_transactions(DAY).await.unwrap();

        assert_eq!(got.len(), 1);
        assert_eq!(digits(got[0].customer_phone.as_deref()), "79260001122");
    }

    /// УНФ keeps its cards in `Catalog_ДисконтныеКарты` with `ВладелецКарты_Key`.
    #[tokio::test]
    async fn the_unf_preset_follows_unf_discount_cards() {
        let sim = Simulator::start(Vendor::OneC).await.unwrap();
        sim.state.onec.lock().unwrap().unf_cards = true;
        let mut with_card = sale("c-3", dec!(640), datetime!(2026-03-02 12:00 UTC));
        with_card.card = Some("777".to_owned());
        sim.add_sales([with_card]);
        let retail = client_with(&sim.url, &Vendor::OneC.credentials(), &json!({})).unwrap();
        let unf = client_with(
            &sim.url,
            &Vendor::OneC.credentials(),
            &json!({"preset": "unf"}),
        )
        .unwrap();

        let as_retail = retail.fetch_transactions(DAY).await.unwrap();
        let as_unf = unf.fetch_transactions(DAY).await.unwrap();

        assert_eq!(
            as_retail[0].customer_phone, None,
            "Розница's card catalog is not there"
        );
        assert_eq!(digits(as_unf[0].customer_phone.as_deref()), "79991234567");
    }

    /// The generic retail buyer has no phone: the check comes back without one (the caller
    /// counts it as unattributed).
    #[tokio::test]
    async fn a_check_of_an_anonymous_buyer_comes_back_without_a_phone() {
        let (sim, client) = onec().await;
        let mut anonymous = sale("c-4", dec!(300), datetime!(2026-03-02 13:00 UTC));
        anonymous.phone = None;
        sim.add_sales([anonymous]);

        let got = client.fetch_transactions(DAY).await.unwrap();

        assert_eq!(got.len(), 1);
        assert_eq!(got[0].kind, CrmKind::Purchase);
        assert_eq!(got[0].customer_phone, None);
    }

    #[tokio::test]
    async fn amounts_keep_every_kopeck() {
        let (sim, client) = onec().await;
        sim.add_sales([
            sale("a", dec!(1234567.89), datetime!(2026-03-02 10:00 UTC)),
            sale("b", dec!(0.30), datetime!(2026-03-02 10:01 UTC)),
        ]);

        let got = client.fetch_transactions(DAY).await.unwrap();

        let amounts: Vec<Decimal> = got.iter().map(|t| t.amount).collect();
        assert_eq!(amounts, vec![dec!(1234567.89), dec!(0.30)]);
    }

    /// Newer configurations keep a refund in `Document_ЧекККМВозврат`, pointing at the
    /// sale through `ЧекККМ_Key`.
    #[tokio::test]
    async fn a_refund_is_its_own_document_pointing_at_the_sale() {
        let (sim, client) = onec().await;
        let original = sale("sale-1", dec!(900), datetime!(2026-03-02 10:00 UTC));
        let mut refund = sale("return-1", dec!(300), datetime!(2026-03-02 12:00 UTC));
        refund.refund_of = Some("sale-1".to_owned());
        sim.add_sales([original, refund]);

        let got = client.fetch_transactions(DAY).await.unwrap();

        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].kind, CrmKind::Purchase);
        assert_eq!(
            got[1].kind,
            CrmKind::Refund {
                original_external_id: got[0].external_id.clone()
            }
        );
        assert_eq!(got[1].amount, dec!(300));
        assert_eq!(digits(got[1].customer_phone.as_deref()), "79991234567");
    }

    /// Older configurations (the `retail_1` preset) keep returns inside `Document_ЧекККМ`;
    /// an installation may have added its own phone attribute, read when configured.
    #[tokio::test]
    async fn the_retail_1_preset_reads_returns_inside_the_check_and_a_phone_attribute() {
        let sim = Simulator::start(Vendor::OneC).await.unwrap();
        *sim.state.onec.lock().unwrap() = OneCSetup {
            separate_refunds: false,
            phone_attribute: Some("Телефон".to_owned()),
            ..OneCSetup::default()
        };
        let original = sale("sale-1", dec!(900), datetime!(2026-03-02 10:00 UTC));
        let mut refund = sale("return-1", dec!(300), datetime!(2026-03-02 12:00 UTC));
        refund.refund_of = Some("sale-1".to_owned());
        sim.add_sales([original, refund]);
        let client = client_with(
            &sim.url,
            &Vendor::OneC.credentials(),
            &json!({"preset": "retail_1", "phone_field": "Телефон"}),
        )
        .unwrap();

        let got = client.fetch_transactions(DAY).await.unwrap();

        assert_eq!(got.len(), 2);
        assert_eq!(
            got[1].kind,
            CrmKind::Refund {
                original_external_id: got[0].external_id.clone()
            }
        );
        assert_eq!(got[0].customer_phone.as_deref(), Some("+7 999 123-45-67"));
        // Read straight from the check: no counterparty was asked for.
        assert_eq!(sim.requests(), 2);
    }

    #[tokio::test]
    async fn a_deletion_mark_cancels_the_purchase_on_the_same_record() {
        let (sim, client) = onec().await;
        let mut cancelled = sale("sale-2", dec!(450.50), datetime!(2026-03-02 11:00 UTC));
        sim.add_sales([cancelled.clone()]);
        let before = client.fetch_transactions(DAY).await.unwrap();
        cancelled.cancelled = true;
        *sim.state.sales.lock().unwrap() = vec![cancelled];

        let after = client.fetch_transactions(DAY).await.unwrap();

        assert_eq!(before.len(), 1);
        assert_eq!(after.len(), 1);
        let key = before[0].external_id.clone();
        assert_eq!(after[0].external_id, format!("{key}:cancel"));
        assert_eq!(
            after[0].kind,
            CrmKind::Refund {
                original_external_id: key
            }
        );
        assert_eq!(after[0].amount, dec!(450.50));
        assert_eq!(
            after[0].customer_phone, None,
            "the purchase names the member"
        );
    }

    /// A publication whose role may not filter answers HTTP 500 «Операция не разрешена в
    /// предложении "ГДЕ"»: a configuration error the operator can act on, asked once.
    #[tokio::test]
    async fn a_publication_refusing_the_date_filter_is_a_configuration_error() {
        let (sim, client) = onec().await;
        sim.add_sales(checks(1));
        sim.state.onec.lock().unwrap().refuses_date_filter = true;

        let error = client.fetch_transactions(DAY).await.unwrap_err();

        let VendorError::Configuration(message) = &error else {
            panic!("{error:?}");
        };
        assert!(
            message.contains("Document_ЧекККМ") && message.contains("ГДЕ"),
            "{message}"
        );
        assert!(!error.is_transient());
        assert_eq!(sim.requests(), 1, "not retried as an outage");
    }

    #[tokio::test]
    async fn a_document_delivered_twice_is_reported_once() {
        let (sim, client) = onec().await;
        sim.add_sales(checks(3));
        sim.state
            .duplicate
            .store(true, std::sync::atomic::Ordering::SeqCst);
        *sim.state.page_size.lock().unwrap() = Some(2);

        let got = client.fetch_transactions(DAY).await.unwrap();

        let ids: HashSet<&str> = got.iter().map(|t| t.external_id.as_str()).collect();
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(ids.len(), 3);
    }

    #[tokio::test]
    async fn a_429_is_waited_out_as_told_then_the_window_is_read() {
        let (sim, client) = onec().await;
        sim.add_sales(checks(2));
        sim.inject([Fault::RateLimited { retry_after_s: 1 }]);
        let started = Instant::now();

        let got = client.fetch_transactions(DAY).await.unwrap();

        assert_eq!(got.len(), 2);
        assert!(started.elapsed() >= Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_500_is_retried_then_the_window_is_read() {
        let (sim, client) = onec().await;
        sim.add_sales(checks(2));
        sim.inject([Fault::ServerError]);

        let got = client.fetch_transactions(DAY).await.unwrap();

        assert_eq!(got.len(), 2);
    }

    #[tokio::test]
    async fn a_401_is_unauthorized() {
        let (sim, client) = onec().await;
        sim.inject([Fault::Unauthorized]);

        let error = client.fetch_transactions(DAY).await.unwrap_err();

        assert!(
            matches!(error, VendorError::Unauthorized { status: 401, .. }),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_wrong_password_is_unauthorized() {
        let sim = Simulator::start(Vendor::OneC).await.unwrap();
        let mut credentials = Vendor::OneC.credentials();
        credentials["password"] = "wrong".into();
        let client = client_with(&sim.url, &credentials, &json!({})).unwrap();

        let error = client.fetch_transactions(DAY).await.unwrap_err();

        assert!(
            matches!(error, VendorError::Unauthorized { .. }),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_malformed_body_is_malformed() {
        let (sim, client) = onec().await;
        sim.inject([Fault::Malformed]);

        let error = client.fetch_transactions(DAY).await.unwrap_err();

        assert!(matches!(error, VendorError::Malformed { .. }), "{error:?}");
    }

    #[tokio::test]
    async fn an_unknown_document_object_is_rejected() {
        let sim = Simulator::start(Vendor::OneC).await.unwrap();
        let client = client_with(
            &sim.url,
            &Vendor::OneC.credentials(),
            &json!({"document": "Document_НетТакого"}),
        )
        .unwrap();

        let error = client.fetch_transactions(DAY).await.unwrap_err();

        assert!(
            matches!(error, VendorError::Rejected { status: 404, .. }),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_customer_is_found_by_any_written_form_of_the_phone() {
        let (sim, client) = onec().await;
        let mut with_name = sale("c", dec!(1), datetime!(2026-03-02 10:00 UTC));
        with_name.phone = Some("8 (999) 765-43-21".to_owned());
        with_name.name = Some("Анна Петрова".to_owned());
        sim.add_sales([with_name]);

        let found = client.find_customer("+79997654321").await.unwrap();
        let missing = client.find_customer("+79990000000").await.unwrap();

        let found = found.expect("customer");
        assert_eq!(found.name.as_deref(), Some("Анна Петрова"));
        assert_eq!(found.phone.as_deref(), Some("+79997654321"));
        assert_eq!(missing, None);
    }

    #[test]
    fn credentials_without_a_password_are_a_configuration_error() {
        let error = client_with(
            "http://127.0.0.1:9/base",
            &json!({"username": "u"}),
            &json!({}),
        )
        .err()
        .expect("error");
        assert!(error.0.contains("password"), "{error}");
    }

    #[test]
    fn bad_settings_are_configuration_errors() {
        let credentials = json!({"username": "u", "password": "p"});
        for settings in [
            json!({"utc_offset": "Moscow"}),
            json!({"preset": "бухгалтерия"}),
        ] {
            assert!(
                client_with("http://127.0.0.1:9/base", &credentials, &settings).is_err(),
                "{settings}"
            );
        }
        // Settings older integrations kept in their credentials are still read.
        let legacy = json!({"username": "u", "password": "p", "document": "Document_Продажа"});
        let client = client_with("http://127.0.0.1:9/base", &legacy, &json!({})).unwrap();
        assert_eq!(client.mapping.document, "Document_Продажа");
    }

    #[test]
    fn object_names_and_filters_are_percent_encoded() {
        assert_eq!(
            encode("Document_ЧекККМ"),
            "Document_%D0%A7%D0%B5%D0%BA%D0%9A%D0%9A%D0%9C"
        );
        assert_eq!(
            encode("Date ge datetime'2026-03-02T00:00:00'"),
            "Date%20ge%20datetime%272026-03-02T00%3A00%3A00%27"
        );
    }

    #[test]
    fn amounts_are_read_from_their_text() {
        let raw = |s: &str| RawValue::from_string(s.to_owned()).unwrap();
        assert_eq!(decimal(&raw("1250.50")), Some(dec!(1250.50)));
        assert_eq!(decimal(&raw("\"1250,50\"")), Some(dec!(1250.50)));
        assert_eq!(decimal(&raw("1.5E3")), Some(dec!(1500)));
        assert_eq!(decimal(&raw("0.1")), Some(dec!(0.1)));
        assert_eq!(decimal(&raw("null")), None);
    }
}
