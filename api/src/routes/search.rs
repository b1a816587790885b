//! `GET /search`: businesses and events, with Russian morphology and typo tolerance
//! (`storage::search` says how).

use crate::{
    auth::Auth,
    envelope::Envelope,
    error::{ApiError, ApiResult, BAD_REQUEST, SIGNED_IN, UNPROCESSABLE},
    routes::page_limit,
    state::AppState,
};
use domain::Category;
use poem_openapi::{Enum, Object, OpenApi, Tags, param::Query, payload::Json};
use std::sync::Arc;
use storage::search::{self, Scope};
use time::OffsetDateTime;
use uuid::Uuid;

/// Queries longer than this are refused: nobody types a paragraph into a search box.
const QUERY_MAX_CHARS: usize = 100;

#[derive(Tags)]
enum Tag {
    /// Finding businesses and events.
    Search,
}

pub struct SearchApi {
    pub state: Arc<AppState>,
}

/// What a result is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum HitType {
    Business,
    Event,
}

/// A business category, to narrow the search to.
#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "lowercase")]
pub enum CategoryParam {
    Beauty,
    Wellness,
    Gastronomy,
    Health,
}

impl From<CategoryParam> for Category {
    fn from(value: CategoryParam) -> Self {
        match value {
            CategoryParam::Beauty => Category::Beauty,
            CategoryParam::Wellness => Category::Wellness,
            CategoryParam::Gastronomy => Category::Gastronomy,
            CategoryParam::Health => Category::Health,
        }
    }
}

/// One result: a business (`GET /businesses/{id}`) or an event (`GET /events/{id}`).
#[derive(Debug, Object)]
pub struct SearchHit {
    #[oai(rename = "type")]
    pub hit_type: HitType,
    pub id: Uuid,
    /// The business's name or the event's title.
    pub name: String,
    /// Businesses: `beauty`, `wellness`, `gastronomy` or `health`.
    #[oai(nullable)]
    pub category: Option<String>,
    /// Events: when it starts.
    #[oai(nullable)]
    pub date: Option<OffsetDateTime>,
    /// Events: where.
    #[oai(nullable)]
    pub location: Option<String>,
}

#[derive(Debug, Object)]
pub struct SearchResults {
    /// Businesses first (those whose name matches, then those matched by their category,
    /// each in name order), then published events, soonest first.
    pub items: Vec<SearchHit>,
}

#[OpenApi(tag = "Tag::Search")]
impl SearchApi {
    /// Search businesses and published events. Words are matched by their Russian stem
    /// (`красоты` finds `красота`, and a beauty business by its category) and names forgive
    /// typos (`лисичкно` finds Лисичкино). `type` narrows to `business` or `event`;
    /// `category` narrows to businesses of that category. `limit` (default 20) applies to
    /// businesses and to events each.
    #[oai(path = "/search", method = "get")]
    async fn search(
        &self,
        _auth: Auth,
        q: Query<String>,
        #[oai(name = "type")] hit_type: Query<Option<HitType>>,
        category: Query<Option<CategoryParam>>,
        limit: Query<Option<u32>>,
    ) -> ApiResult<Json<Envelope<SearchResults>>, { SIGNED_IN | BAD_REQUEST | UNPROCESSABLE }> {
        let text = q.0.trim();
        // Control characters (a NUL in particular, which Postgres refuses in text) mean
        // nothing in a search box.
        if text.is_empty()
            || text.chars().count() > QUERY_MAX_CHARS
            || text.chars().any(char::is_control)
        {
            return Err(ApiError::unprocessable(
                "invalid_query",
                format!("q must be 1 to {QUERY_MAX_CHARS} characters"),
            )
            .into());
        }
        let scope = match hit_type.0 {
            None => Scope::All,
            Some(HitType::Business) => Scope::Businesses,
            Some(HitType::Event) => Scope::Events,
        };
        let found = search::search(
            &self.state.db,
            &search::Query {
                text,
                scope,
                category: category.0.map(Category::from),
                limit: page_limit(limit.0)?,
            },
        )
        .await?;
        let businesses = found.businesses.into_iter().map(|b| SearchHit {
            hit_type: HitType::Business,
            id: b.id,
            name: b.name,
            category: Some(b.category),
            date: None,
            location: None,
        });
        let events = found.events.into_iter().map(|e| SearchHit {
            hit_type: HitType::Event,
            id: e.id,
            name: e.title,
            category: None,
            date: Some(e.date),
            location: Some(e.location),
        });
        Ok(Json(Envelope::new(SearchResults {
            items: businesses.chain(events).collect(),
        })))
    }
}
