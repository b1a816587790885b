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
//!    «красоты» and «красота» share the stem `красот`). A business is found when its name
//!    and its category's words hold every word between them, so «салон красоты» finds a
//!    beauty business whatever its name; each part is asked of an index of its own (the
//!    name's GIN document, the category's businesses in name order: see [`businesses`]).
//!    Events are matched against their GIN-indexed documents (title, place, description).
//!
//! Businesses whose name matches come first, then those matched with their category's
//! words, each in name order; published events come soonest first. Ordering by an indexed
//! column rather than a computed rank keeps a word that half the catalogue contains cheap:
//! Postgres walks the index until the page is full instead of ranking every match. Each
//! statement is planned for its own query words (a generic plan cannot know whether a word
//! is rare or everywhere).

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

/// `(w1 | alt1 | alt2) & (w2)`: each word or one of its stand-ins.
fn tsquery_text(words: &[Word]) -> String {
    words
        .iter()
        .map(|w| format!("({})", w.alternatives.join(" | ")))
        .collect::<Vec<_>>()
        .join(" & ")
}

/// How many of the soonest published events are searched first for a page of a common
/// word (about a millisecond's reading).
const SOONEST_EVENTS: i64 = 2000;

/// A query word with its stand-ins, and the categories whose words it names.
#[derive(Debug, Clone)]
struct Word {
    alternatives: Vec<String>,
    categories: Vec<String>,
}

pub async fn search(db: &PgPool, query: &Query<'_>) -> sqlx::Result<Results> {
    let words = words(query.text);
    if words.is_empty() {
        return Ok(Results::default());
    }
    let limit = query.limit as i64;
    let mut tx = db.begin().await?;
    // Planned for these words; and never a sequential scan, which the planner takes for a
    // word common among events as a whole that published events lack («йога»): it cannot
    // see that the partial index of published events holds none.
    sqlx::query(
        "SELECT set_config('plan_cache_mode', 'force_custom_plan', true),
                set_config('enable_seqscan', 'off', true)",
    )
    .execute(&mut *tx)
    .await?;
    // Each word with the lexicon's stand-ins when the lexicon does not know it, the
    // categories whose words it names, and whether it is a stop word (no lexeme: «и»).
    let rows: Vec<(Vec<String>, Vec<String>, bool)> = sqlx::query_as(
        "SELECT q.w || a.stand_ins,
                ARRAY(SELECT c FROM unnest($4::text[]) AS c
                      WHERE to_tsvector('russian', krug_category_words(c)) @@ t.query),
                numnode(t.query) = 0
         FROM unnest($1::text[]) WITH ORDINALITY AS q(w, n)
         CROSS JOIN LATERAL (SELECT ARRAY(
                    SELECT l.word FROM search_lexicon l
                    WHERE length(q.w) >= 3 AND l.word % q.w AND similarity(l.word, q.w) >= $2
                      AND NOT EXISTS (SELECT 1 FROM search_lexicon k WHERE k.word = q.w)
                    ORDER BY similarity(l.word, q.w) DESC, l.word LIMIT $3) AS stand_ins) AS a
         CROSS JOIN LATERAL (SELECT to_tsquery('russian',
                    array_to_string(q.w || a.stand_ins, ' | ')) AS query) AS t
         ORDER BY q.n",
    )
    .bind(&words)
    .bind(MIN_SIMILARITY)
    .bind(ALTERNATIVES)
    .bind(Category::ALL.map(Category::as_str).as_slice())
    .fetch_all(&mut *tx)
    .await?;
    // A stop word matches everything, as in a `tsquery`, where it is dropped.
    let words: Vec<Word> = rows
        .into_iter()
        .filter(|(_, _, stop_word)| !stop_word)
        .map(|(alternatives, categories, _)| Word {
            alternatives,
            categories,
        })
        .collect();
    if words.is_empty() {
        return Ok(Results::default());
    }
    let anywhere = tsquery_text(&words);
    let mut results = Results::default();
    if query.scope != Scope::Events {
        results.businesses = businesses(&mut tx, &words, query.category, query.limit).await?;
    }
    if query.scope != Scope::Businesses && query.category.is_none() {
        // Published events only: what every member may see and register for. A word many
        // events have is answered from the first published events in date order (the
        // partial index on date): if they hold a whole page of matches, that page is the
        // answer. A rarer word takes its matches from the published events' own GIN index
        // and sorts them; walking the date index for it would read every published event
        // (32 ms over 50 000 for a word none has, against 0.3 ms). Postgres cannot tell the
        // two apart for a query of OR-ed stand-ins, hence the two steps.
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

/// The businesses a query finds, in one statement: those whose name has every word, in name
/// order; then those whose name and category's words have them between them (in name order
/// too). A business of a category whose words name every query word is found by walking
/// that category's businesses in name order until the page is full («красоты»: the beauty
/// businesses), whatever their number; of a category naming some of them, by its name's
/// index for the others («миндаль красоты»); a category naming none adds nothing to the
/// name matches.
async fn businesses(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    words: &[Word],
    only: Option<Category>,
    limit: usize,
) -> sqlx::Result<Vec<BusinessHit>> {
    let categories: Vec<&'static str> = match only {
        Some(category) => vec![category.as_str()],
        None => Category::ALL.map(Category::as_str).to_vec(),
    };
    let mut sql = String::from(
        "SELECT 0 AS part, id, name, category FROM (
             SELECT id, name, category FROM businesses
             WHERE is_active AND category = ANY($1) AND name_document @@ to_tsquery('russian', $2)
             ORDER BY name || '', id LIMIT $3) AS by_name",
    );
    let mut binds: Vec<(Vec<&'static str>, String)> = Vec::new();
    // Categories grouped by the words their own words leave to the name.
    let mut left_to_name: Vec<(String, Vec<&'static str>)> = Vec::new();
    for category in &categories {
        let left: Vec<Word> = words
            .iter()
            .filter(|w| !w.categories.iter().any(|c| c == category))
            .cloned()
            .collect();
        if left.len() == words.len() {
            continue;
        }
        let text = tsquery_text(&left);
        match left_to_name.iter_mut().find(|(t, _)| *t == text) {
            Some((_, group)) => group.push(*category),
            None => left_to_name.push((text, vec![*category])),
        }
    }
    // Each branch binds two parameters: its categories and the words left to the name.
    let mut branch = |categories: Vec<&'static str>, left: String, sql: &mut String| {
        let (c, q) = (4 + 2 * binds.len(), 5 + 2 * binds.len());
        sql.push_str(&if left.is_empty() {
            // One category, so that its index is walked in name order.
            format!(
                " UNION ALL SELECT 1, id, name, category FROM (
                     SELECT id, name, category FROM businesses
                     WHERE is_active AND category = (${c})[1] AND ${q} = ''
                     ORDER BY name, id LIMIT $3) AS c{c}"
            )
        } else {
            format!(
                " UNION ALL SELECT 1, id, name, category FROM (
                     SELECT id, name, category FROM businesses
                     WHERE is_active AND category = ANY(${c})
                       AND name_document @@ to_tsquery('russian', ${q})
                     ORDER BY name || '', id LIMIT $3) AS c{c}"
            )
        });
        binds.push((categories, left));
    };
    for (left, group) in left_to_name {
        if left.is_empty() {
            for category in group {
                branch(vec![category], String::new(), &mut sql);
            }
        } else {
            branch(group, left, &mut sql);
        }
    }
    sql.push_str(" ORDER BY part, name, id");
    let mut statement = sqlx::query_as::<_, (i32, Uuid, String, String)>(sqlx::AssertSqlSafe(sql))
        .bind(&categories)
        .bind(tsquery_text(words))
        .bind(limit as i64);
    for (group, text) in &binds {
        statement = statement.bind(group).bind(text);
    }
    let mut hits: Vec<BusinessHit> = Vec::with_capacity(limit);
    for (_, id, name, category) in statement.fetch_all(&mut **tx).await? {
        if hits.len() == limit {
            break;
        }
        if !hits.iter().any(|h| h.id == id) {
            hits.push(BusinessHit { id, name, category });
        }
    }
    Ok(hits)
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
        let word = |alternatives: &[&str]| Word {
            alternatives: alternatives.iter().map(|w| w.to_string()).collect(),
            categories: Vec::new(),
        };
        assert_eq!(
            tsquery_text(&[word(&["лисичкно", "лисичкино"]), word(&["сыры"])]),
            "(лисичкно | лисичкино) & (сыры)"
        );
    }
}
