-- Paid events through ЮKassa (issue 16). An event may have a price; registering for a paid
-- event holds a seat for 15 minutes while the member pays on ЮKassa's page. A held seat is a
-- registration like any other for the seat count (`events.registered_count` stays the one
-- counter of taken seats), but it is `held` until ЮKassa says the payment succeeded.

ALTER TABLE events ADD COLUMN price numeric(14,2) CHECK (price IS NULL OR price > 0);

ALTER TABLE event_registrations
    ADD COLUMN status text NOT NULL DEFAULT 'confirmed' CHECK (status IN ('held', 'confirmed')),
    -- A held seat is released (by the `payments` job) once this passes unpaid.
    ADD COLUMN hold_until timestamptz,
    ADD CONSTRAINT event_registrations_hold_check
        CHECK ((status = 'held') = (hold_until IS NOT NULL));

-- One row per attempt to pay for a seat. Our id is the Idempotence-Key of its creation at
-- ЮKassa and travels in the payment's metadata.
CREATE TABLE event_payments (
    id                 uuid PRIMARY KEY,
    event_id           uuid NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    user_id            uuid NOT NULL REFERENCES users(id),
    amount             numeric(14,2) NOT NULL CHECK (amount > 0),
    -- creating: asked ЮKassa, no answer yet; pending: the member may pay; succeeded: paid
    -- (her seat is confirmed); canceled: ЮKassa canceled it; failed: ЮKassa refused to
    -- create it; expired: her hold ran out unpaid (a late payment is still honoured).
    status             text NOT NULL CHECK (status IN ('creating', 'pending', 'succeeded', 'canceled', 'failed', 'expired')),
    yookassa_id        text UNIQUE,
    confirmation_url   text,
    hold_until         timestamptz NOT NULL,
    paid_at            timestamptz,
    -- A refund: requested when she cancels 48 hours or more before the event (or when a late
    -- payment finds the event full); its own Idempotence-Key is `refund_key`.
    refund_status      text CHECK (refund_status IN ('requested', 'pending', 'succeeded', 'canceled')),
    refund_key         uuid,
    yookassa_refund_id text UNIQUE,
    refunded_at        timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
-- At most one payment a member may still pay per event.
CREATE UNIQUE INDEX event_payments_one_open_idx ON event_payments (event_id, user_id)
    WHERE status IN ('creating', 'pending');
-- The `payments` job's sweeps: open payments past their hold, refunds not finished.
CREATE INDEX event_payments_open_idx ON event_payments (hold_until) WHERE status IN ('creating', 'pending');
CREATE INDEX event_payments_refunds_idx ON event_payments (updated_at) WHERE refund_status IN ('requested', 'pending');
