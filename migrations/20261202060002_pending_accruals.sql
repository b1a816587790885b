-- Accruals waiting out their business's `bonus_hold_days` before they enter the ledger and
-- can be spent. A refund inside the window shrinks (a partial refund) or cancels (a full
-- one) the accrual here, and the ledger never sees what was taken back. The hourly `expire`
-- job releases what is due: an `accrual` ledger entry, the same idempotency key an
-- immediate accrual would have had.
CREATE TABLE pending_accruals (
    -- The purchase whose cashback waits.
    transaction_id uuid PRIMARY KEY REFERENCES transactions(id),
    user_id        uuid NOT NULL REFERENCES users(id),
    business_id    uuid NOT NULL REFERENCES businesses(id),
    -- What will be released: the accrual less what refunds took back meanwhile.
    amount         numeric(14,2) NOT NULL CHECK (amount >= 0),
    release_at     timestamptz NOT NULL,
    released_at    timestamptz,
    cancelled_at   timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (released_at IS NULL OR cancelled_at IS NULL)
);
CREATE INDEX pending_accruals_due_idx ON pending_accruals (release_at)
    WHERE released_at IS NULL AND cancelled_at IS NULL;
CREATE INDEX pending_accruals_user_idx ON pending_accruals (user_id)
    WHERE released_at IS NULL AND cancelled_at IS NULL;
