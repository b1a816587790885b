-- The whole product's schema. Money is numeric(14,2) (roubles with kopecks), never float.
-- Enumerations are text with CHECK constraints: readable in psql, simple for sqlx.

CREATE TABLE users (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    phone           text NOT NULL UNIQUE CHECK (phone ~ '^\+7[0-9]{10}$'),
    first_name      text,
    last_name       text,
    email           text,
    status_tier     text NOT NULL DEFAULT 'Insider' CHECK (status_tier IN ('Insider', 'VIP', 'Elite')),
    tier_changed_at timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Platform-wide roles; business roles live in business_staff.
CREATE TABLE user_roles (
    user_id    uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role       text NOT NULL CHECK (role IN ('superadmin', 'moderator')),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, role)
);

CREATE TABLE businesses (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name               text NOT NULL,
    category           text NOT NULL CHECK (category IN ('beauty', 'wellness', 'gastronomy', 'health')),
    cashback_percent   numeric(5,2) NOT NULL CHECK (cashback_percent >= 0 AND cashback_percent <= 100),
    max_redeem_percent numeric(5,2) NOT NULL DEFAULT 30 CHECK (max_redeem_percent >= 0 AND max_redeem_percent <= 100),
    is_medical         boolean NOT NULL DEFAULT false,
    is_active          boolean NOT NULL DEFAULT true,
    crm_type           text CHECK (crm_type IN ('yclients', 'iiko', '1c', 'amo_crm', 'renovatio')),
    crm_base_url       text,
    -- AES-256-GCM: 12-byte nonce followed by the ciphertext of the credentials JSON.
    crm_credentials    bytea,
    -- 'ok' | 'failing' (401/403 from the vendor) with the reason operators see.
    integration_status text NOT NULL DEFAULT 'ok' CHECK (integration_status IN ('ok', 'failing')),
    integration_error  text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE business_staff (
    business_id uuid NOT NULL REFERENCES businesses(id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role        text NOT NULL CHECK (role IN ('owner', 'staff', 'viewer')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (business_id, user_id)
);
CREATE INDEX business_staff_user_idx ON business_staff (user_id);

-- Editable loyalty rules (DESIGN.md defaults).
CREATE TABLE tier_rules (
    tier           text PRIMARY KEY CHECK (tier IN ('Insider', 'VIP', 'Elite')),
    min_spend      numeric(14,2) NOT NULL,
    min_categories integer NOT NULL,
    multiplier     numeric(4,2) NOT NULL
);
INSERT INTO tier_rules VALUES
    ('Insider', 0, 0, 1.0),
    ('VIP', 100000, 2, 1.5),
    ('Elite', 300000, 3, 2.0);

CREATE TABLE promo_chains (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    trigger_business_id uuid REFERENCES businesses(id),
    trigger_category    text CHECK (trigger_category IN ('beauty', 'wellness', 'gastronomy', 'health')),
    min_amount          numeric(14,2) NOT NULL DEFAULT 0,
    target_business_id  uuid NOT NULL REFERENCES businesses(id),
    discount_type       text NOT NULL CHECK (discount_type IN ('percent', 'fixed', 'bonus')),
    discount_value      numeric(14,2) NOT NULL CHECK (discount_value > 0),
    valid_days          integer NOT NULL CHECK (valid_days > 0),
    cooldown_days       integer NOT NULL DEFAULT 0,
    is_active           boolean NOT NULL DEFAULT true,
    created_at          timestamptz NOT NULL DEFAULT now(),
    CHECK ((trigger_business_id IS NULL) <> (trigger_category IS NULL))
);

-- Purchases and refunds, from QR scans and from CRM polling.
CREATE TABLE transactions (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id                 uuid NOT NULL REFERENCES users(id),
    business_id             uuid NOT NULL REFERENCES businesses(id),
    transaction_type        text NOT NULL CHECK (transaction_type IN ('purchase', 'refund')),
    source                  text NOT NULL CHECK (source IN ('qr', 'crm')),
    -- The QR code, or the CRM's own id: a purchase is recorded once per business.
    external_id             text NOT NULL,
    amount                  numeric(14,2) NOT NULL CHECK (amount > 0),
    coupon_discount         numeric(14,2) NOT NULL DEFAULT 0,
    coupon_id               uuid,
    bonus_redeemed          numeric(14,2) NOT NULL DEFAULT 0,
    bonus_accrued           numeric(14,2) NOT NULL DEFAULT 0,
    -- For refunds: the purchase they refund.
    original_transaction_id uuid REFERENCES transactions(id),
    -- Copied from the business when recorded: medical secrecy must hold even if the flag changes.
    is_medical              boolean NOT NULL,
    -- False until bonus_calc has run for a CRM-ingested row (QR rows accrue at once).
    bonus_applied           boolean NOT NULL DEFAULT false,
    occurred_at             timestamptz NOT NULL DEFAULT now(),
    created_at              timestamptz NOT NULL DEFAULT now(),
    UNIQUE (business_id, source, external_id)
);
CREATE INDEX transactions_user_time_idx ON transactions (user_id, created_at DESC, id DESC);
CREATE INDEX transactions_user_occurred_idx ON transactions (user_id, occurred_at);
CREATE INDEX transactions_original_idx ON transactions (original_transaction_id) WHERE original_transaction_id IS NOT NULL;
CREATE INDEX transactions_unapplied_idx ON transactions (created_at) WHERE NOT bonus_applied;

-- Append-only: every balance change, each with its own idempotency key.
CREATE TABLE bonus_ledger (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         uuid NOT NULL REFERENCES users(id),
    kind            text NOT NULL CHECK (kind IN ('accrual', 'redemption', 'reversal', 'expiry', 'adjustment')),
    amount          numeric(14,2) NOT NULL CHECK (amount <> 0),
    transaction_id  uuid REFERENCES transactions(id),
    idempotency_key text NOT NULL UNIQUE,
    note            text,
    -- clock_timestamp(): entries written in one transaction keep their order.
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX bonus_ledger_user_time_idx ON bonus_ledger (user_id, created_at DESC, id DESC);

-- One row per member, written in the same transaction as each ledger entry:
-- balance = Σ bonus_ledger.amount (checked by the audit in tests).
CREATE TABLE bonus_balances (
    user_id         uuid PRIMARY KEY REFERENCES users(id),
    balance         numeric(14,2) NOT NULL DEFAULT 0,
    lifetime_earned numeric(14,2) NOT NULL DEFAULT 0,
    lifetime_spent  numeric(14,2) NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE coupons (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    code                    text NOT NULL UNIQUE,
    user_id                 uuid NOT NULL REFERENCES users(id),
    business_id             uuid NOT NULL REFERENCES businesses(id),
    discount_type           text NOT NULL CHECK (discount_type IN ('percent', 'fixed', 'bonus')),
    discount_value          numeric(14,2) NOT NULL,
    expires_at              timestamptz NOT NULL,
    redeemed_at             timestamptz,
    redeemed_transaction_id uuid REFERENCES transactions(id),
    expired_at              timestamptz,
    source_chain_id         uuid REFERENCES promo_chains(id),
    -- The purchase that triggered it: a retried cross_promo job issues nothing twice.
    issue_key               text UNIQUE,
    created_at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX coupons_user_active_idx ON coupons (user_id, expires_at) WHERE redeemed_at IS NULL AND expired_at IS NULL;
-- At most one active coupon per chain and member.
CREATE UNIQUE INDEX coupons_one_active_per_chain_idx ON coupons (source_chain_id, user_id)
    WHERE redeemed_at IS NULL AND expired_at IS NULL AND source_chain_id IS NOT NULL;

CREATE TABLE events (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    title            text NOT NULL,
    description      text NOT NULL DEFAULT '',
    date             timestamptz NOT NULL,
    location         text NOT NULL DEFAULT '',
    max_participants integer NOT NULL CHECK (max_participants > 0),
    min_status_tier  text NOT NULL DEFAULT 'Insider' CHECK (min_status_tier IN ('Insider', 'VIP', 'Elite')),
    status           text NOT NULL DEFAULT 'proposed' CHECK (status IN ('proposed', 'approved', 'active', 'completed', 'cancelled')),
    registered_count integer NOT NULL DEFAULT 0 CHECK (registered_count >= 0 AND registered_count <= max_participants),
    proposed_by      uuid REFERENCES users(id),
    reminder_sent_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_date_idx ON events (date);

CREATE TABLE event_registrations (
    event_id   uuid NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users(id),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, user_id)
);

CREATE TABLE devices (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token        text NOT NULL UNIQUE,
    platform     text NOT NULL CHECK (platform IN ('ios', 'android')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX devices_user_idx ON devices (user_id);

-- Login codes: only an HMAC of the code is stored.
CREATE TABLE otp_codes (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    phone       text NOT NULL,
    code_hash   text NOT NULL,
    attempts    integer NOT NULL DEFAULT 0,
    expires_at  timestamptz NOT NULL,
    consumed_at timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX otp_codes_phone_idx ON otp_codes (phone, created_at DESC);

-- Refresh tokens rotate within a family; reuse of a rotated token revokes the family.
CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    family_id   uuid NOT NULL,
    token_hash  text NOT NULL UNIQUE,
    expires_at  timestamptz NOT NULL,
    rotated_at  timestamptz,
    revoked_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);

-- A member's QR scan, from the API's 202 to the qr_scan job's result.
-- The id is the job id the API returns (and the apalis task id).
CREATE TABLE scan_requests (
    id             uuid PRIMARY KEY,
    user_id        uuid NOT NULL REFERENCES users(id),
    code           text NOT NULL,
    -- What the QR said when it was scanned (null: unknown or already expired in Redis).
    qr             jsonb,
    redeem_bonus   numeric(14,2) NOT NULL DEFAULT 0,
    coupon_id      uuid,
    state          text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'processing', 'done', 'failed')),
    result         jsonb,
    error_code     text,
    error_message  text,
    transaction_id uuid REFERENCES transactions(id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX scan_requests_user_idx ON scan_requests (user_id, created_at DESC);

-- Per-business CRM polling position: advanced only after a window is stored.
CREATE TABLE crm_cursors (
    business_id     uuid PRIMARY KEY REFERENCES businesses(id) ON DELETE CASCADE,
    polled_until    timestamptz NOT NULL,
    vendor_cursor   text,
    last_success_at timestamptz,
    last_error      text,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Every job whose loss would lose money or a message is recorded here first, in the same
-- transaction as the write that calls for it, then relayed to Redis. `reconcile` relays
-- what was never relayed and re-relays what Redis lost (relayed, never finished).
CREATE TABLE job_outbox (
    job_id       uuid PRIMARY KEY,
    queue        text NOT NULL,
    payload      jsonb NOT NULL,
    max_attempts integer NOT NULL,
    run_at       timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    relayed_at   timestamptz,
    finished_at  timestamptz,
    outcome      text CHECK (outcome IN ('done', 'dead', 'discarded'))
);
CREATE INDEX job_outbox_unrelayed_idx ON job_outbox (created_at) WHERE relayed_at IS NULL;
CREATE INDEX job_outbox_unfinished_idx ON job_outbox (relayed_at) WHERE finished_at IS NULL;

-- Every SMS and push we send or try to send, with the provider's reply.
CREATE TABLE notifications (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id        uuid REFERENCES users(id) ON DELETE SET NULL,
    phone          text,
    channel        text NOT NULL CHECK (channel IN ('sms', 'push')),
    template       text NOT NULL,
    title          text,
    body           text NOT NULL,
    -- A retry finds the row by this key and does not send twice.
    dedupe_key     text NOT NULL UNIQUE,
    status         text NOT NULL CHECK (status IN ('sending', 'sent', 'failed', 'scheduled', 'skipped')),
    provider       text NOT NULL,
    provider_reply text,
    error          text,
    send_after     timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    sent_at        timestamptz
);
CREATE INDEX notifications_user_idx ON notifications (user_id, created_at DESC);

-- Each scheduled tick, enqueued once however many schedulers run.
CREATE TABLE schedule_runs (
    schedule    text NOT NULL,
    tick_at     timestamptz NOT NULL,
    job_id      uuid NOT NULL,
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    outcome     text,
    PRIMARY KEY (schedule, tick_at)
);
