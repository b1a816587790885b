-- Referral rewards are ledger entries of their own kind (DESIGN.md: `referral`).
ALTER TABLE bonus_ledger DROP CONSTRAINT bonus_ledger_kind_check;
ALTER TABLE bonus_ledger ADD CONSTRAINT bonus_ledger_kind_check
    CHECK (kind IN ('accrual', 'redemption', 'reversal', 'expiry', 'adjustment', 'referral'));
