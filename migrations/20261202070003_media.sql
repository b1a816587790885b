-- Media in the object store (business logos and photos, event covers, the onboarding
-- video). A row is made when an upload is asked for (`pending`), checked when the client
-- says it is done (`processing`, or `rejected` with the reason), and `ready` once the
-- `media` job has made its thumbnail. A newer logo, cover or video `replaced` the older.
CREATE TABLE media (
    id              uuid PRIMARY KEY,
    purpose         text NOT NULL CHECK (purpose IN ('business_logo', 'business_photo', 'event_cover', 'onboarding_video')),
    business_id     uuid REFERENCES businesses(id) ON DELETE CASCADE,
    event_id        uuid REFERENCES events(id) ON DELETE CASCADE,
    -- What the client said; never trusted.
    declared_type   text NOT NULL,
    declared_size   bigint NOT NULL CHECK (declared_size > 0),
    -- What the stored object turned out to be.
    content_type    text,
    size            bigint,
    object_key      text NOT NULL UNIQUE,
    thumbnail_key   text,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'processing', 'ready', 'rejected', 'replaced')),
    rejection       text,
    uploaded_by     uuid NOT NULL REFERENCES users(id),
    upload_expires_at timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((business_id IS NOT NULL) = (purpose IN ('business_logo', 'business_photo'))),
    CHECK ((event_id IS NOT NULL) = (purpose = 'event_cover'))
);
CREATE INDEX media_business_ready_idx ON media (business_id, created_at) WHERE status = 'ready';
CREATE INDEX media_event_ready_idx ON media (event_id, created_at) WHERE status = 'ready';
CREATE INDEX media_onboarding_ready_idx ON media (created_at) WHERE status = 'ready' AND purpose = 'onboarding_video';
