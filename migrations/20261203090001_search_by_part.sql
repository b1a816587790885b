-- GET /search answers each part of a business's document from an index of its own (see
-- `storage/src/search.rs`): its name from a name-only document, its category's words by
-- walking the category's businesses in name order. The combined document matched a word
-- every business of a category has («красоты») in thousands of rows, each fetched and
-- rechecked (41 ms on average over 10 000 businesses under load).
ALTER TABLE businesses ADD COLUMN name_document tsvector GENERATED ALWAYS AS (
    to_tsvector('russian', name)
) STORED;
-- Without `fastupdate`: new entries go straight into the index instead of a pending list
-- that every search reads through until a vacuum merges it (96 pages per search after the
-- benchmark's 10 000 inserts). The catalogue is written rarely and searched often.
CREATE INDEX businesses_name_search_idx ON businesses USING gin (name_document)
    WITH (fastupdate = off);
CREATE INDEX businesses_active_category_name_idx ON businesses (category, name, id) WHERE is_active;
-- Nothing reads the combined document any more.
DROP INDEX businesses_search_idx;
ALTER TABLE businesses DROP COLUMN search_document;

-- Published events' words, apart from the rest: a word thousands of proposals or past
-- events have and no published one («йога») used to fetch each of them (93 ms).
CREATE INDEX events_published_search_idx ON events USING gin (search_document)
    WITH (fastupdate = off) WHERE status IN ('approved', 'active');
-- The lexicon's trigrams likewise (its pending entries merged now).
ALTER INDEX search_lexicon_trgm_idx SET (fastupdate = off);
SELECT gin_clean_pending_list('search_lexicon_trgm_idx'::regclass);
-- The whole table's index served only that search.
DROP INDEX events_search_idx;
