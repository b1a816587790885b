-- Referral (DESIGN.md). Each member's code, made the first time she asks for it; who invited
-- whom, taken at sign-up or within `window_days` of it, one inviter per invitee; and how each
-- invitation was settled once its invitee made her first qualifying purchase.
CREATE TABLE referral_codes (
    user_id    uuid PRIMARY KEY REFERENCES users(id),
    code       text NOT NULL UNIQUE CHECK (code ~ '^[A-Z0-9]{8}$'),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE referrals (
    invitee_id  uuid PRIMARY KEY REFERENCES users(id),
    inviter_id  uuid NOT NULL REFERENCES users(id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- `pending` until the invitee's first qualifying purchase is past its hold window;
    -- then `rewarded` (a `referral` ledger entry for each side) or `refused` (`refusal` says why).
    status      text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'rewarded', 'refused')),
    refusal     text CHECK (refusal IN ('same_device', 'yearly_limit')),
    purchase_id uuid REFERENCES transactions(id),
    settled_at  timestamptz,
    CHECK (inviter_id <> invitee_id),
    CHECK ((status = 'refused') = (refusal IS NOT NULL))
);
CREATE INDEX referrals_inviter_idx ON referrals (inviter_id, settled_at);
CREATE INDEX referrals_pending_idx ON referrals (created_at) WHERE status = 'pending';

-- Every account a push token was ever registered to (a token moves to the account that
-- registers it last, so `devices` forgets): "the same device" for referrals. A SHA-256 of
-- the token, never the token.
CREATE TABLE device_sightings (
    token_hash    text NOT NULL,
    user_id       uuid NOT NULL REFERENCES users(id),
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (token_hash, user_id)
);
CREATE INDEX device_sightings_user_idx ON device_sightings (user_id);
INSERT INTO device_sightings (token_hash, user_id)
    SELECT encode(sha256(convert_to(token, 'UTF8')), 'hex'), user_id FROM devices
    ON CONFLICT DO NOTHING;

-- The rules (DESIGN.md defaults), one row, editable like `tier_rules`. `link_base` is where
-- the app's invitation links point (the code is appended).
CREATE TABLE referral_rules (
    id           boolean PRIMARY KEY DEFAULT true CHECK (id),
    bonus        numeric(14,2) NOT NULL DEFAULT 300 CHECK (bonus >= 0),
    min_purchase numeric(14,2) NOT NULL DEFAULT 1000 CHECK (min_purchase >= 0),
    yearly_limit integer NOT NULL DEFAULT 20 CHECK (yearly_limit >= 0),
    window_days  integer NOT NULL DEFAULT 7 CHECK (window_days >= 0),
    link_base    text NOT NULL DEFAULT 'https://svoykrug.ru/r/'
);
INSERT INTO referral_rules DEFAULT VALUES;
