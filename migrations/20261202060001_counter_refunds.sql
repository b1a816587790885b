-- Round 2 partner terms. `bonus_hold_days`: how long an accrual waits before it enters the
-- ledger and can be spent (a refund inside the window cancels it); 0 keeps accruals
-- immediate. `staff_refund_limit`: the largest refund staff may give; above it, the owner.
ALTER TABLE businesses
    ADD COLUMN bonus_hold_days integer NOT NULL DEFAULT 0
        CHECK (bonus_hold_days >= 0 AND bonus_hold_days <= 365),
    ADD COLUMN staff_refund_limit numeric(14,2) NOT NULL DEFAULT 5000.00
        CHECK (staff_refund_limit >= 0);

-- Refunds given at the counter through the API: source `counter`, and the request's
-- Idempotency-Key as external_id, so that (business, source, key) makes a retry a replay.
ALTER TABLE transactions DROP CONSTRAINT transactions_source_check;
ALTER TABLE transactions ADD CONSTRAINT transactions_source_check
    CHECK (source IN ('qr', 'crm', 'counter'));

-- What the ledger does not say about a counter refund: why, and who gave it.
CREATE TABLE refund_details (
    transaction_id uuid PRIMARY KEY REFERENCES transactions(id),
    reason         text NOT NULL,
    refunded_by    uuid REFERENCES users(id) ON DELETE SET NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- A partner lists its own purchases, newest first (the partner page, refunds at the counter).
CREATE INDEX transactions_business_time_idx ON transactions (business_id, created_at DESC, id DESC);

-- One refund per Idempotency-Key at a business (a QR code and a CRM record have their own
-- unique keys since the integrations migration; a counter refund keeps its own).
CREATE UNIQUE INDEX transactions_counter_key ON transactions (business_id, external_id) WHERE source = 'counter';
