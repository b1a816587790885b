-- GET /search: Russian full-text search (stemming: «красоты» and «красота» share the stem
-- `красот`) with typo tolerance from trigrams («лисичкно» → «лисичкино»), the way the
-- PostgreSQL manual suggests for pg_trgm and full-text search together: query words that
-- are not known are corrected against a lexicon of the words of names, titles and places,
-- then the corrected query runs against GIN-indexed documents. pg_trgm ships with Debian's
-- PostgreSQL; trigrams of Cyrillic need a UTF-8 ctype (C.UTF-8 or ru_RU.UTF-8).
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- The words a member may type for a category. IMMUTABLE, so that the generated search
-- documents below may use it; changing the words means a migration that recreates them.
CREATE FUNCTION krug_category_words(category text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE category
        WHEN 'beauty' THEN 'красота салон красоты косметология уход маникюр парикмахерская beauty'
        WHEN 'wellness' THEN 'велнес спа баня сауна массаж отдых wellness'
        WHEN 'gastronomy' THEN 'гастрономия еда ресторан кафе рынок продукты кухня gastronomy'
        WHEN 'health' THEN 'здоровье медицина клиника врач health'
        ELSE ''
    END;

-- A business's name weighs A (a name match ranks first), its category's words B.
ALTER TABLE businesses ADD COLUMN search_document tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('russian', name), 'A')
    || setweight(to_tsvector('russian', krug_category_words(category)), 'B')
) STORED;
CREATE INDEX businesses_search_idx ON businesses USING gin (search_document);
-- Results come in name order: for a word half the catalogue matches, walking this index
-- until the page is full beats fetching every match.
CREATE INDEX businesses_active_name_idx ON businesses (name, id) WHERE is_active;

ALTER TABLE events ADD COLUMN search_document tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('russian', title), 'A')
    || setweight(to_tsvector('russian', location), 'B')
    || setweight(to_tsvector('russian', description), 'C')
) STORED;
CREATE INDEX events_search_idx ON events USING gin (search_document);
-- Published events come soonest first (as in GET /events).
CREATE INDEX events_published_date_idx ON events (date, id) WHERE status IN ('approved', 'active');

-- Every word (letters only, 3 or more) of business names, event titles and places, and of
-- the category words: what a misspelt query word is corrected to. Words are never removed:
-- a stale one only yields a correction that matches nothing.
CREATE TABLE search_lexicon (
    word text PRIMARY KEY
);
CREATE INDEX search_lexicon_trgm_idx ON search_lexicon USING gin (word gin_trgm_ops);

CREATE FUNCTION krug_learn_words(source text) RETURNS void
    LANGUAGE sql VOLATILE
    BEGIN ATOMIC
        INSERT INTO search_lexicon (word)
        SELECT DISTINCT w FROM regexp_split_to_table(lower(source), '[^[:alpha:]]+') AS w
        WHERE length(w) >= 3
        ON CONFLICT DO NOTHING;
    END;

CREATE FUNCTION krug_learn_business_words() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM krug_learn_words(NEW.name || ' ' || krug_category_words(NEW.category));
    RETURN NULL;
END $$;
CREATE TRIGGER businesses_learn_words AFTER INSERT OR UPDATE OF name, category ON businesses
    FOR EACH ROW EXECUTE FUNCTION krug_learn_business_words();

CREATE FUNCTION krug_learn_event_words() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM krug_learn_words(NEW.title || ' ' || NEW.location);
    RETURN NULL;
END $$;
CREATE TRIGGER events_learn_words AFTER INSERT OR UPDATE OF title, location ON events
    FOR EACH ROW EXECUTE FUNCTION krug_learn_event_words();

-- What already exists.
SELECT krug_learn_words(name || ' ' || krug_category_words(category)) FROM businesses;
SELECT krug_learn_words(title || ' ' || location) FROM events;

-- Marketing consent per channel (GET/PATCH /users/me/settings). Joining the programme
-- accepts its offers (the app's terms at sign-up), so consent starts given; a member
-- withdraws it per channel, and `notify` and win-back never send marketing against it.
ALTER TABLE users
    ADD COLUMN push_marketing  boolean NOT NULL DEFAULT true,
    ADD COLUMN sms_marketing   boolean NOT NULL DEFAULT true,
    ADD COLUMN email_marketing boolean NOT NULL DEFAULT true;

-- History filters (GET /transactions?business_id=): a member's purchases at one business.
CREATE INDEX transactions_user_business_idx ON transactions (user_id, business_id, created_at DESC, id DESC);
