//! `GET /search`: businesses and events by Russian full-text search, with typo tolerance.
//!
//! How a query runs (migration `…070001_search_and_settings.sql` has the schema):
//! 1. It is cut into words (letters and digits).
//! 2. A word the lexicon does not know (`search_lexicon`: the words of business names, event
//!    titles and places, and of the category words) gets the lexicon's nearest words by
//!    trigram similarity (≥ [`MIN_SIMILARITY`]) as alternatives: «лисичкно» → «лисичкино».
//!    This is the PostgreSQL manual's way of joining pg_trgm to full-text search: trigrams on
//!    a few thousand distinct words, never on every document.
//! 3. The words and their alternatives become a `tsquery` (`russian` configuration, so
//!    «красоты» and «красота» share the stem `красот`) matched against GIN-indexed
//!    documents. A business's document carries its category's words, so «салон красоты»
//!    finds a beauty business whatever its name.
//!
//! Businesses whose name matches come first, then those matched by their category, each in
//! name order; published events come soonest first. Ordering by an indexed column rather
//! than a computed rank keeps a word that half the catalogue contains cheap: Postgres walks
//! the index until the page is full instead of ranking every match. Each statement is
//! planned for its own query words (a generic plan cannot know whether a word is rare or
//! everywhere).

use domain::Category;
use sqlx::{FromRow, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

/// Words a query keeps at most: more is not a search, and each costs a lexicon look-up.
pub const MAX_WORDS: usize = 8;
/// Lexicon words at least this similar to an unknown query word stand in for it
/// («лисичкно» ~ «лисичкино»: 0.58; «ромашко» ~ «ромашка»: 0.6).
pub const MIN_SIMILARITY: f32 = 0.5;
/// Alternatives per unknown word.
const ALTERNATIVES: i64 = 2;

/// What to look for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    All,
    Businesses,
    Events,
}

/// A search request, already checked by the caller.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    pub text: &'a str,
    pub scope: Scope,
    /// Businesses of this category only (events have no category, so none are returned).
    pub category: Option<Category>,
    /// Per kind: at most this many businesses and this many events.
    pub limit: usize,
}

/// A matching business.
#[derive(Debug, Clone, FromRow)]
pub struct BusinessHit {
    pub id: Uuid,
    pub name: String,
    pub category: String,
}

/// A matching published event.
#[derive(Debug, Clone, FromRow)]
pub struct EventHit {
    pub id: Uuid,
    pub title: String,
    pub date: OffsetDateTime,
    pub location: String,
}

/// What a search found.
#[derive(Debug, Clone, Default)]
pub struct Results {
    /// Name matches first, then matches by category; each in name order.
    pub businesses: Vec<BusinessHit>,
    /// Soonest first.
    pub events: Vec<EventHit>,
}

/// The words of a query, lower-cased: letters and digits only, so that none of them can
/// be `tsquery` syntax.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .take(MAX_WORDS)
        .collect()
}

/// `(w1 | alt1 | alt2) & (w2)`; with `weight`, every term restricted to it (`w1:A`).
fn tsquery_text(alternatives: &[Vec<String>], weight: Option<char>) -> String {
    let suffix = weight.map(|w| format!(":{w}")).unwrap_or_default();
    alternatives
        .iter()
        .map(|words| {
            let terms: Vec<String> = words.iter().map(|w| format!("{w}{suffix}")).collect();
            format!("({})", terms.join(" | "))
        })
        .collect::<Vec<_>>()
        .join(" & ")
}

/// How many of the soonest published events are searched first for a page of a common
/// word (about a millisecond's reading).
const SOONEST_EVENTS: i64 = 2000;

pub async fn search(db: &PgPool, query: &Query<'_>) -> sqlx::Result<Results> {
    let words = words(query.text);
    if words.is_empty() {
        return Ok(Results::default());
    }
    let limit = query.limit as i64;
    let mut tx = crate::begin_batch(db).await?;
    // Each word with the lexicon's stand-ins when the lexicon does not know it.
    let corrections: Vec<Vec<String>> = sqlx::query_scalar(
        "SELECT ARRAY(
                    SELECT l.word FROM search_lexicon l
                    WHERE length(q.w) >= 3 AND l.word % q.w AND similarity(l.word, q.w) >= $2
                      AND NOT EXISTS (SELECT 1 FROM search_lexicon k WHERE k.word = q.w)
                    ORDER BY similarity(l.word, q.w) DESC, l.word LIMIT $3)
         FROM unnest($1::text[]) WITH ORDINALITY AS q(w, n) ORDER BY q.n",
    )
    .bind(&words)
    .bind(MIN_SIMILARITY)
    .bind(ALTERNATIVES)
    .fetch_all(&mut *tx)
    .await?;
    let alternatives: Vec<Vec<String>> = words
        .into_iter()
        .zip(corrections)
        .map(|(word, mut stand_ins)| {
            stand_ins.insert(0, word);
            stand_ins
        })
        .collect();
    let anywhere = tsquery_text(&alternatives, None);
    let mut results = Results::default();
    if query.scope != Scope::Events {
        let category = query.category.map(Category::as_str);
        // `name || ''`: at most 10 000 businesses, so their matches come from the GIN index
        // and are sorted; walking the name index instead reads all of them for a word none
        // has.
        let by_name: Vec<BusinessHit> = sqlx::query_as(
            "SELECT id, name, category FROM businesses
             WHERE is_active AND ($2::text IS NULL OR category = $2)
               AND search_document @@ to_tsquery('russian', $1)
             ORDER BY name || '', id LIMIT $3",
        )
        .bind(tsquery_text(&alternatives, Some('A')))
        .bind(category)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let room = query.limit - by_name.len();
        results.businesses = by_name;
        if room > 0 {
            // Every match, minus the name matches already in hand.
            let all: Vec<BusinessHit> = sqlx::query_as(
                "SELECT id, name, category FROM businesses
                 WHERE is_active AND ($2::text IS NULL OR category = $2)
                   AND search_document @@ to_tsquery('russian', $1)
                 ORDER BY name || '', id LIMIT $3",
            )
            .bind(&anywhere)
            .bind(category)
            .bind(limit + results.businesses.len() as i64)
            .fetch_all(&mut *tx)
            .await?;
            let seen: Vec<Uuid> = results.businesses.iter().map(|b| b.id).collect();
            results
                .businesses
                .extend(all.into_iter().filter(|b| !seen.contains(&b.id)).take(room));
        }
    }
    if query.scope != Scope::Businesses && query.category.is_none() {
        // Published events only: what every member may see and register for. A word many
        // events have is answered from the first published events in date order (the
        // partial index on date): if they hold a whole page of matches, that page is the
        // answer. A rarer word takes its matches from the GIN index and sorts them; walking
        // the date index for it would read every published event (32 ms over 50 000 for a
        // word none has, against 0.3 ms). Postgres cannot tell the two apart for a query of
        // OR-ed stand-ins, hence the two steps.
        let page: Vec<EventHit> = sqlx::query_as(
            "SELECT id, title, date, location FROM (
                 SELECT id, title, date, location, search_document FROM events
                 WHERE status IN ('approved', 'active')
                 ORDER BY date, id LIMIT $3) AS soonest
             WHERE search_document @@ to_tsquery('russian', $1)
             ORDER BY date, id LIMIT $2",
        )
        .bind(&anywhere)
        .bind(limit)
        .bind(SOONEST_EVENTS)
        .fetch_all(&mut *tx)
        .await?;
        results.events = if page.len() as i64 == limit {
            page
        } else {
            // Sorted by an expression, so that Postgres takes the GIN index's matches and
            // never walks the date index for them.
            sqlx::query_as(
                "SELECT id, title, date, location FROM events
                 WHERE status IN ('approved', 'active')
                   AND search_document @@ to_tsquery('russian', $1)
                 ORDER BY date + interval '0 s', id LIMIT $2",
            )
            .bind(&anywhere)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?
        };
    }
    tx.commit().await?;
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_keep_words_only_so_no_tsquery_syntax_gets_through() {
        assert_eq!(
            words("Салон  красоты, «Миндаль»!"),
            ["салон", "красоты", "миндаль"]
        );
        assert_eq!(words("a & b | !c:* <-> (d)"), ["a", "b", "c", "d"]);
        assert!(words(" ,.;").is_empty());
        assert_eq!(words(&"слово ".repeat(20)).len(), MAX_WORDS);
    }

    #[test]
    fn alternatives_are_ored_and_words_anded() {
        let alternatives = vec![
            vec!["лисичкно".to_owned(), "лисичкино".to_owned()],
            vec!["сыры".to_owned()],
        ];
        assert_eq!(
            tsquery_text(&alternatives, None),
            "(лисичкно | лисичкино) & (сыры)"
        );
        assert_eq!(
            tsquery_text(&alternatives, Some('A')),
            "(лисичкно:A | лисичкино:A) & (сыры:A)"
        );
    }
}
