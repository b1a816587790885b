-- Lots of bonuses (DESIGN.md "Expiry"): every credit a member can spend — an accrual, a
-- bonus coupon's or an operator's positive adjustment, a referral reward — is a lot that
-- expires KRUG_BONUS_EXPIRY_DAYS after it became spendable (its ledger entry's time).
-- What is left of each lot is not stored: it follows from the member's ledger
-- (`domain::lots::replay`). This table only says which lots the `expire` job still has to
-- look at, and which were announced, so that its daily work is the lots coming due, not
-- the whole ledger. Written by `storage::ledger` with the entry it belongs to.
CREATE TABLE bonus_lots (
    entry_id     uuid PRIMARY KEY REFERENCES bonus_ledger(id),
    user_id      uuid NOT NULL REFERENCES users(id),
    spendable_at timestamptz NOT NULL,
    -- The 14-day notice was sent (or found nothing left to announce): once per lot.
    notified_at  timestamptz,
    -- Its time came and nothing is left of it. A refund giving back bonuses reopens the
    -- member's lots: what returns to a lot whose time has passed expires at the next run.
    closed_at    timestamptz
);
CREATE INDEX bonus_lots_open_idx ON bonus_lots (spendable_at) WHERE closed_at IS NULL;
CREATE INDEX bonus_lots_user_idx ON bonus_lots (user_id);

INSERT INTO bonus_lots (entry_id, user_id, spendable_at)
SELECT id, user_id, created_at FROM bonus_ledger
WHERE amount > 0 AND kind IN ('accrual', 'adjustment', 'referral');
